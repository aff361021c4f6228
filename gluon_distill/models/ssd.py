"""Building GluonCV SSDs by name, at any input size, for any class list.

A network is described by an :class:`SSDArch` (backbone, feature taps, extra layers, anchors),
resolved from a name and an input size by :func:`resolve_arch`; :func:`build_ssd` turns it into
GluonCV's :class:`~gluoncv.model_zoo.ssd.SSD`. The zoo architectures mirror GluonCV's VOC
presets; their anchor sizes and steps are absolute pixels for the preset's base size, so they
are scaled to the requested input size.
"""
import functools
import os
import re
from dataclasses import dataclass, asdict
from typing import List, Optional

from .. import _compat  # noqa: F401
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
    ('vgg16_atrous', 300): ('vgg16_atrous_300', None, [30, 60, 111, 162, 213, 264, 315],
                            _RATIOS_6, [8, 16, 32, 64, 100, 300]),
    ('vgg16_atrous', 512): ('vgg16_atrous_512', None,
                            [51.2, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6],
                            _RATIOS_7, [8, 16, 32, 64, 128, 256, 512]),
}
_VGG_FEATURES = {'vgg16_atrous_300': vgg16_atrous_300, 'vgg16_atrous_512': vgg16_atrous_512}

#: Anchor sizes of the demo network as fractions of the input side (SSD's s_min..s_max rule).
TINY_SIZE_FRACTIONS = [0.1, 0.2, 0.375, 0.55, 0.725, 0.9]
_RATIOS_5 = [[1, 2, 0.5]] + [[1, 2, 0.5, 3, 1.0 / 3]] * 2 + [[1, 2, 0.5]] * 2

ZOO_NETWORKS = sorted({name for name, _ in _ZOO})


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


def resolve_arch(network, data_shape, width=32, blocks=1):
    """The :class:`SSDArch` of a named network at a given input size."""
    base, size = parse_network_name(network, data_shape)
    if base == 'tiny':
        return SSDArch('tiny', size, [round(f * size, 2) for f in TINY_SIZE_FRACTIONS],
                       _RATIOS_5, list(TINY_STRIDES), width=width, blocks=blocks)
    presets = [s for (b, s) in _ZOO if b == base]
    if not presets:
        raise ModelError('unknown network {!r}: choose one of {} or tiny'.format(
            network, ', '.join(ZOO_NETWORKS)))
    preset = min(presets, key=lambda s: abs(s - size))
    features, filters, sizes, ratios, steps = _ZOO[(base, preset)]
    scale = size / float(preset)
    return SSDArch(base, size, [round(s * scale, 4) for s in sizes], ratios,
                   [round(s * scale, 4) for s in steps], features=features, filters=filters)


def arch_from_dict(d):
    return SSDArch(**d)


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
    base_name = None if callable(features) else arch.network
    pretrained = bool(pretrained_base) and arch.network != 'tiny'
    try:
        return SSD(base_name, arch.data_shape, features, arch.filters, arch.sizes, arch.ratios,
                   arch.steps, classes=list(classes), pretrained=pretrained, ctx=ctx,
                   **ssd_kwargs)
    except Exception as e:  # a failed download surfaces as several exception types
        if not pretrained:
            raise
        base = arch.features if isinstance(arch.features, str) else arch.network
        raise ModelError(
            'could not get ImageNet weights for {!r} from the GluonCV model zoo ({}: {}). '
            'Offline, download them elsewhere and place the file at {}, or pass '
            '--no-pretrained-base.'.format(base, type(e).__name__, str(e).splitlines()[0][:120]
                                           if str(e) else '', zoo_download_hint(base))) from e


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
