"""Building GluonCV SSDs by name, at any input size, for any class list.

A network is described by an :class:`SSDArch` (backbone, feature taps, extra layers, anchors),
resolved from a name and an input size by :func:`resolve_arch`; :func:`build_ssd` turns it into
GluonCV's :class:`~gluoncv.model_zoo.ssd.SSD`. The zoo architectures mirror GluonCV's VOC
presets; their anchor sizes and steps are absolute pixels for the preset's base size, so they
are scaled to the requested input size.
"""
import functools
import math
import os
import re
from dataclasses import dataclass, asdict
from typing import List, Optional

import mxnet as mx
from gluoncv.model_zoo.ssd import SSD
from gluoncv.model_zoo.ssd.vgg_atrous import vgg16_atrous_300, vgg16_atrous_512

from .tiny import TinyBackbone, TINY_STRIDES

_RATIOS_6 = [[1, 2, 0.5]] + [[1, 2, 0.5, 3, 1.0 / 3]] * 3 + [[1, 2, 0.5]] * 2
_RATIOS_7 = [[1, 2, 0.5]] + [[1, 2, 0.5, 3, 1.0 / 3]] * 4 + [[1, 2, 0.5]] * 2
_RESNET_SIZES = [51.2, 102.4, 189.4, 276.4, 363.52, 450.6, 492]
_STEPS_6 = [16, 32, 64, 128, 256, 512]

# name -> (preset base size, feature taps, extra-layer filters, sizes, ratios, steps).
# Values are those of GluonCV's *_voc presets (gluoncv/model_zoo/ssd/presets.py).
_ZOO = {
    ('resnet18_v1', 512): (['stage3_activation1', 'stage4_activation1'],
                           [512, 512, 256, 256], _RESNET_SIZES, _RATIOS_6, _STEPS_6),
    ('resnet50_v1', 512): (['stage3_activation5', 'stage4_activation2'],
                           [512, 512, 256, 256], _RESNET_SIZES, _RATIOS_6, _STEPS_6),
    ('resnet101_v2', 512): (['stage3_activation22', 'stage4_activation2'],
                            [512, 512, 256, 256], _RESNET_SIZES, _RATIOS_6, _STEPS_6),
    ('mobilenet1.0', 512): (['relu22_fwd', 'relu26_fwd'],
                            [512, 512, 256, 256], _RESNET_SIZES, _RATIOS_6, _STEPS_6),
    # Not a GluonCV preset: the mobilenet1.0 preset on the ImageNet ``mobilenet0.75`` base
    # (same layer names; 384 and 768 channels), Table 2's MobileNetV1-0.75 student.
    ('mobilenet0.75', 512): (['relu22_fwd', 'relu26_fwd'],
                             [512, 512, 256, 256], _RESNET_SIZES, _RATIOS_6, _STEPS_6),
    # Not a GluonCV preset (GluonCV has no MobileNetV2 SSD): built the same way from the
    # ImageNet ``mobilenetv2_1.0`` base (prefix ``mobilenetv20_``), with SSDLite's taps:
    #   stride 16: features_linearbottleneck13_relu60_relu6 -- the 1x1 expansion (+ReLU6) of
    #              bottleneck 13, just before its stride-2 depthwise conv: 576 ch, 32x32 at 512
    #   stride 32: features_relu61_relu6 -- the last 1x1 conv (+ReLU6) of the backbone:
    #              1280 ch, 16x16 at 512
    # then the extras [512, 512, 256, 256]: maps 32, 16, 8, 4, 2, 1 at 512 px, channels
    # 576, 1280, 512, 512, 256, 256; anchors as the ResNet/MobileNet 512 presets.
    ('mobilenetv2_1.0', 512): (['features_linearbottleneck13_relu60_relu6',
                                'features_relu61_relu6'],
                               [512, 512, 256, 256], _RESNET_SIZES, _RATIOS_6, _STEPS_6),
    # ResNet101 v2 tapped at its stage outputs (see resnet101_v2_stages below): in a v2
    # (pre-activation) ResNet a stage ends on a residual sum with no activation; the first
    # layers of the next part normalise and activate it, so the activated stage outputs are
    #   stage 3: stage4_activation0 = ReLU(BN(stage3 output)): 1024 ch, 32x32 at 512
    #   stage 4: relu1_fwd = the backbone's final ReLU(BN(stage4 output)): 2048 ch, 16x16
    # channels 1024, 2048, 512, 512, 256, 256 (as ResNet50 v1's preset).
    ('resnet101_v2_stages', 512): (['stage4_activation0', 'relu1_fwd'],
                                   [512, 512, 256, 256], _RESNET_SIZES, _RATIOS_6, _STEPS_6),
    ('vgg16_atrous', 300): ('vgg16_atrous_300', None, [30, 60, 111, 162, 213, 264, 315],
                            _RATIOS_6, [8, 16, 32, 64, 100, 300]),
    ('vgg16_atrous', 512): ('vgg16_atrous_512', None,
                            [51.2, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6],
                            _RATIOS_7, [8, 16, 32, 64, 128, 256, 512]),
}
#: Network names that are not GluonCV ImageNet model names -> the base network they build on.
_BASE_NETWORK = {'resnet101_v2_stages': 'resnet101_v2'}
# GluonCV's ``*_coco`` presets that differ from the VOC ones only in their anchor sizes (the
# others share the VOC sizes): a ``ssd_<size>_<base>_coco`` name picks these, so that
# GluonCV's COCO weights (ssd_512_resnet50_v1_coco: 30.6 AP, Table 2's teacher) keep the
# anchors their box predictors were trained on.
_COCO_SIZES = {
    ('resnet50_v1', 512): [51.2, 133.12, 215.04, 296.96, 378.88, 460.8, 542.72],
    ('vgg16_atrous', 300): [21, 45, 99, 153, 207, 261, 315],
}
_VGG_FEATURES = {'vgg16_atrous_300': vgg16_atrous_300, 'vgg16_atrous_512': vgg16_atrous_512}

#: Anchor sizes of the demo network as fractions of the input side (SSD's s_min..s_max rule).
TINY_SIZE_FRACTIONS = [0.1, 0.2, 0.375, 0.55, 0.725, 0.9]
_RATIOS_5 = [[1, 2, 0.5]] + [[1, 2, 0.5, 3, 1.0 / 3]] * 2 + [[1, 2, 0.5]] * 2

ZOO_NETWORKS = sorted({name for name, _ in _ZOO})

#: The largest log-scale by which a decoded box may exceed its anchor (or proposal): the
#: width/height offsets (times the decoder's std) are clamped at it before ``exp``. It is
#: detectron2's clamp (``_DEFAULT_SCALE_CLAMP = log(1000 / 16)``: a box at most 62.5 times its
#: anchor), far above any trained offset. Without it an early student's offsets can pass
#: 88.7, where float32 ``exp`` overflows to inf: non-finite boxes, which break NMS and differ
#: between runtimes.
BOX_SCALE_CLAMP = math.log(1000.0 / 16)


class ModelError(ValueError):
    """A network name, size or weight file that cannot be used, with the reason."""


@dataclass
class SSDArch:
    """Everything needed to rebuild an SSD (saved in ``model.json``).

    ``sizes`` has one more entry than there are feature maps; ``steps`` and ``sizes`` are in
    pixels of the ``data_shape`` input.
    """
    network: str
    data_shape: int
    sizes: List[float]
    ratios: List[List[float]]
    steps: List[float]
    features: Optional[object] = None
    filters: Optional[List[int]] = None
    width: int = 32
    blocks: int = 1

    @property
    def num_scales(self):
        return len(self.ratios)

    def to_dict(self):
        return asdict(self)


_ZOO_NAME = re.compile(r'^ssd_(\d+)_(.+?)(_voc|_coco|_custom)?$')


def parse_network_name(network, data_shape):
    """``('resnet50_v1', 512)`` from ``resnet50_v1`` or ``ssd_512_resnet50_v1[_voc]``."""
    match = _ZOO_NAME.match(network)
    if match:
        size = int(match.group(1))
        if data_shape and data_shape != size:
            # An explicit --data-shape wins over the size in the name: anchors get scaled.
            size = data_shape
        return match.group(2), size
    return network, data_shape


def base_network(network):
    """The GluonCV ImageNet model an SSD network name is built on (``resnet101_v2_stages`` ->
    ``resnet101_v2``; the VGG presets -> their feature builder's name)."""
    return _BASE_NETWORK.get(network, network)


def resolve_arch(network, data_shape, width=32, blocks=1):
    """The :class:`SSDArch` of a named network at a given input size.

    Zoo names mirror GluonCV's SSD VOC presets (taps, extra layers, anchors); a full name
    ending in ``_coco`` (``ssd_512_resnet50_v1_coco``) takes the anchor sizes of GluonCV's COCO
    preset. Plus three that GluonCV does not have (``mobilenet0.75`` too, below):

    * ``mobilenetv2_1.0``: MobileNetV2 1.0 with SSDLite's taps (576 ch at stride 16, 1280 ch
      at stride 32), the extras and anchors of the other 512 presets.
    * ``resnet101_v2_stages``: ResNet101 v2 tapped at its stage-3 and stage-4 outputs
      (1024 and 2048 channels, like ResNet50 v1's preset). ``resnet101_v2`` keeps GluonCV's
      ``ssd_512_resnet101_v2`` preset, whose taps ``stage3_activation22`` and
      ``stage4_activation2`` are BN+ReLU layers *inside* bottleneck blocks (256 channels in
      the middle of stage 3, 512 channels in stage 4's first block, after its stride-2
      conv), not stage ends; only that preset matches GluonCV's published
      ``ssd_512_resnet101_v2_voc`` weights.
    """
    base, size = parse_network_name(network, data_shape)
    if base == 'tiny':
        return SSDArch('tiny', size, [round(f * size, 2) for f in TINY_SIZE_FRACTIONS],
                       _RATIOS_5, list(TINY_STRIDES), width=width, blocks=blocks)
    presets = [s for (b, s) in _ZOO if b == base]
    if not presets:
        raise ModelError('unknown network {!r}: choose one of {} or tiny'.format(
            network, ', '.join(ZOO_NETWORKS)))
    match = _ZOO_NAME.match(network)
    named = int(match.group(1)) if match else None
    if named in presets:
        # a full zoo name picks its preset (ssd_512_vgg16_atrous at 288 px: the 7-scale
        # 512 preset, scaled), whatever the input size
        preset = named
    else:
        preset = min(presets, key=lambda s: abs(s - size))
    features, filters, sizes, ratios, steps = _ZOO[(base, preset)]
    if match and match.group(3) == '_coco':
        sizes = _COCO_SIZES.get((base, preset), sizes)
    scale = size / float(preset)
    return SSDArch(base, size, [round(s * scale, 4) for s in sizes], ratios,
                   [round(s * scale, 4) for s in steps], features=features, filters=filters)


def arch_from_dict(d):
    return SSDArch(**d)


def checked_arch(cls, d, title):
    """``cls(**d)``: the arch dataclass ``cls`` of a ``model.json`` ``arch`` section, unknown
    keys refused by name (``title``: the family, e.g. ``YOLOv3``)."""
    from dataclasses import fields
    unknown = sorted(set(d) - {f.name for f in fields(cls)})
    if unknown:
        raise ModelError('model.json arch: unknown {} keys {}'.format(title, unknown))
    return cls(**d)


def _features_argument(arch):
    if arch.network == 'tiny':
        return functools.partial(TinyBackbone, width=arch.width, blocks=arch.blocks)
    if isinstance(arch.features, str):
        return _VGG_FEATURES[arch.features]
    return arch.features


def zoo_download_hint(name, root='~/.mxnet/models'):
    """The file a GluonCV zoo download of ``name`` would have written, for offline users."""
    try:
        from gluoncv.model_zoo.model_store import short_hash
        file_name = '{}-{}.params'.format(name, short_hash(name))
    except (ValueError, KeyError):
        file_name = '{}-<hash>.params'.format(name)
    return os.path.join(os.path.expanduser(root), file_name)


def build_ssd(arch, classes, pretrained_base=False, ctx=None, **ssd_kwargs):
    """A GluonCV SSD for ``arch`` predicting ``classes``; parameters not yet initialised
    (except an ImageNet-pretrained base). Offline, a needed download raises :class:`ModelError`
    saying where to place the weight file by hand."""
    ctx = ctx or mx.cpu()
    features = _features_argument(arch)
    base_name = None if callable(features) else base_network(arch.network)
    pretrained = bool(pretrained_base) and arch.network != 'tiny'
    try:
        return clamp_box_decoder(SSD(base_name, arch.data_shape, features, arch.filters,
                                     arch.sizes, arch.ratios, arch.steps, classes=list(classes),
                                     pretrained=pretrained, ctx=ctx, **ssd_kwargs))
    except Exception as e:  # a failed download surfaces as several exception types
        if not pretrained:
            raise
        base = arch.features if isinstance(arch.features, str) else base_network(arch.network)
        raise base_weights_error(base, e) from e


def base_weights_error(network, error):
    """The :class:`ModelError` for ImageNet weights of ``network`` the GluonCV zoo could not
    give (``error``, e.g. offline): where to place the file, or ``--no-pretrained-base``."""
    return ModelError(
        'could not get ImageNet weights for {!r} from the GluonCV model zoo ({}: {}). '
        'Offline, download them elsewhere and place the file at {}, or pass '
        '--no-pretrained-base.'.format(network, type(error).__name__,
                                       str(error).splitlines()[0][:120] if str(error) else '',
                                       zoo_download_hint(network)))


def clamp_box_decoder(net):
    """Clamp every box decoder of ``net`` (GluonCV's ``NormalizedBoxCenterDecoder``: the SSD's
    ``bbox_decoder``; a Faster R-CNN's RPN and RCNN decoders) at :data:`BOX_SCALE_CLAMP`.

    The clamp is the decoder's own ``clip`` (``box_decode``'s ``clip`` attribute in the
    symbol, a ``Where`` before ``Exp`` in ONNX), so validation, evaluation, detection and every
    exported graph apply the same one. Idempotent; a cached graph is dropped when a decoder
    changes. Returns ``net``.
    """
    from gluoncv.nn.coder import NormalizedBoxCenterDecoder
    blocks = list(_blocks(net))
    decoders = [b for b in blocks if isinstance(b, NormalizedBoxCenterDecoder) and
                b._clip != BOX_SCALE_CLAMP]
    for decoder in decoders:
        decoder._clip = BOX_SCALE_CLAMP
    if decoders:  # graphs traced with the old clip
        for block in blocks:
            if isinstance(block, mx.gluon.HybridBlock):
                block._clear_cached_op()
    return net


def _blocks(net):
    """``net`` and every block below it, each once."""
    stack, seen = [net], set()
    while stack:
        block = stack.pop()
        if id(block) not in seen:
            seen.add(id(block))
            yield block
            stack.extend(block._children.values())


class DetectorInit(mx.init.Xavier):
    """Xavier (gaussian, fan-out, magnitude 2) for weights; ones and zeros for vectors.

    Plain ``mx.init.Xavier`` cannot initialise 1-D parameters, and GluonCV's FeatureExpander
    (a SymbolBlock) gives its BatchNorm vectors no initializer of their own.
    """

    def __init__(self):
        super(DetectorInit, self).__init__(rnd_type='gaussian', factor_type='out', magnitude=2)

    def _init_weight(self, name, arr):
        if len(arr.shape) < 2:
            arr[:] = 1.0 if name.endswith(('gamma', 'var')) else 0.0
        else:
            super(DetectorInit, self)._init_weight(name, arr)


def default_initializer():
    return DetectorInit()


def initialize(net, ctx):
    """Initialise every parameter not yet initialised (a pretrained base is kept)."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # "already initialized" for a pretrained base
        net.initialize(default_initializer(), ctx=ctx)


def anchors_of(net, data_shape, ctx=None):
    """The net's anchors ``(1, N, 4)`` (center x, y, w, h in input pixels) on the CPU."""
    ctx = ctx or mx.cpu()
    with mx.autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, data_shape, data_shape), ctx=ctx))
    return anchors.as_in_context(mx.cpu())


def ssd_head(F, ssd, maps, with_anchors=False):
    """The raw outputs of GluonCV SSD ``ssd``'s head over feature ``maps`` (what its training
    branch computes): ``cls_preds (B, N, C+1)``, ``box_preds (B, N, 4)`` and, with
    ``with_anchors``, ``anchors (1, N, 4)``. ``SSD.__call__`` never returns its features; blocks
    that need features and predictions from one backbone pass compose them with this."""
    cls_preds = [F.flatten(F.transpose(cp(m), (0, 2, 3, 1)))
                 for m, cp in zip(maps, ssd.class_predictors)]
    box_preds = [F.flatten(F.transpose(bp(m), (0, 2, 3, 1)))
                 for m, bp in zip(maps, ssd.box_predictors)]
    cls_preds = F.concat(*cls_preds, dim=1).reshape((0, -1, ssd.num_classes + 1))
    box_preds = F.concat(*box_preds, dim=1).reshape((0, -1, 4))
    if not with_anchors:
        return cls_preds, box_preds
    anchors = [F.reshape(ag(m), shape=(1, -1)) for m, ag in zip(maps, ssd.anchor_generators)]
    return cls_preds, box_preds, F.concat(*anchors, dim=1).reshape((1, -1, 4))
