"""GluonCV's YOLOv3 (``gluoncv.model_zoo.yolo.yolo3.YOLOV3``): architecture records, builders,
the training forward pass that also returns the three backbone maps, and the loss of GluonCV's
recipe (``scripts/detection/yolo/train_yolo3.py``).

GluonCV's ``YOLOV3.__call__`` in training mode takes the ground truth and the prefetched
targets and returns the four losses; it never returns its backbone maps ("routes"). The
deployable network here is :class:`YOLOV3Net`, GluonCV's ``YOLOV3`` whose routes may pass
per-scale 1x1 adapters (a distilled student feeding the teacher's head) and whose box decoding
is clamped like the other families'; :class:`YOLOTrainForward` composes its parts for training
(the routes for the distillers and the raw head outputs from one backbone pass) and
:class:`YOLO3Loss` is GluonCV's target merger and ``YOLOV3Loss`` in the family form.

Zoo networks by name: ``darknet53``, ``mobilenet1.0``, ``mobilenet0.25`` or the full zoo names
``yolo3_<network>_voc`` (also ``_coco`` / ``_custom``); ``tiny`` is a small Darknet-style
backbone for CPU runs (``model.width`` / ``model.blocks``).
"""
import dataclasses
import math
import re
import warnings
from dataclasses import dataclass, field
from typing import List

import numpy as np

import mxnet as mx
from mxnet import autograd
from mxnet.gluon import nn
from gluoncv.model_zoo.yolo.darknet import _conv2d
from gluoncv.model_zoo.yolo.yolo3 import YOLOV3, YOLOOutputV3, _upsample

from .ssd import BOX_SCALE_CLAMP, ModelError, base_weights_error, checked_arch

#: GluonCV's YOLOv3 backbones (``yolo3_<network>_voc`` presets), and the tiny CPU net
ZOO_NETWORKS = ('darknet53', 'mobilenet1.0', 'mobilenet0.25')
NETWORKS = ZOO_NETWORKS + ('tiny',)
#: GluonCV's anchors (pixels, width/height pairs) per scale, stride 8, 16, 32
ANCHORS = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]
STRIDES = [8, 16, 32]
#: the YOLO detection blocks' channels, deepest scale first (GluonCV's presets)
HEAD_CHANNELS = {'darknet53': [512, 256, 128], 'mobilenet1.0': [512, 256, 128],
                 'mobilenet0.25': [256, 128, 128]}
#: GluonCV's training sizes (train_yolo3.py: ``x * 32 for x in range(10, 20)``)
RANDOM_SHAPES = [x * 32 for x in range(10, 20)]
#: the input size the zoo's anchors are sized for (the tiny net's anchors are scaled from it)
ANCHOR_BASE = 416
#: backbone stage output channels at stride 8, 16, 32
STAGE_CHANNELS = {'darknet53': [256, 512, 1024], 'mobilenet1.0': [256, 512, 1024],
                  'mobilenet0.25': [64, 128, 256]}

_ZOO_NAME = re.compile(r'^yolo3_(.+?)(_voc|_coco|_custom)?$')


@dataclass
class YOLOArch:
    """Everything that fixes a YOLOv3's parameters and behaviour (``model.json``'s ``arch``).

    ``network``: the backbone; ``channels``: the detection blocks' channels, deepest scale
    first; ``anchors``: per scale (stride 8, 16, 32) three width/height pairs in input pixels;
    ``data_shape``: the (square) validation and test size."""
    network: str
    data_shape: int = 416
    channels: List[int] = field(default_factory=lambda: [512, 256, 128])
    anchors: List[List[float]] = field(default_factory=lambda: [list(a) for a in ANCHORS])
    strides: List[int] = field(default_factory=lambda: list(STRIDES))
    alloc_size: List[int] = field(default_factory=lambda: [128, 128])
    ignore_iou_thresh: float = 0.7
    width: int = 16
    blocks: int = 1
    family: str = 'yolo3'

    def to_dict(self):
        return dataclasses.asdict(self)


def arch_from_dict(d):
    return checked_arch(YOLOArch, d, 'YOLOv3')


def parse_network(name):
    """``darknet53`` from ``darknet53`` or ``yolo3_darknet53[_voc|_coco|_custom]``."""
    match = _ZOO_NAME.match(name or '')
    return match.group(1) if match else name


def tiny_channels(width):
    """Channels of the tiny backbone's maps (stride 8, 16, 32) for ``width``."""
    return [2 * width, 4 * width, 8 * width]


def tiny_head_channels(width):
    """The tiny net's detection block channels (deepest first): half its maps'."""
    return [max(4 * width, 2) // 2 * 2, max(2 * width, 2) // 2 * 2, max(width, 2) // 2 * 2]


def scaled_anchors(data_shape):
    """GluonCV's anchors scaled from 416 px to ``data_shape`` (the tiny net's)."""
    scale = data_shape / float(ANCHOR_BASE)
    return [[round(v * scale, 1) for v in a] for a in ANCHORS]


def check_sizes(sizes, key):
    for s in sizes:
        if s <= 0 or s % 32:
            raise ModelError('{}: YOLOv3 input sizes are multiples of its largest stride 32, '
                             'got {}'.format(key, s))


def resolve_arch(model_cfg):
    """The :class:`YOLOArch` of a ``model`` config section, checked."""
    m = model_cfg
    network = parse_network(m.network)
    if network not in NETWORKS:
        raise ModelError('model.network: a YOLOv3 backbone is one of {} (or a zoo name such as '
                         'yolo3_darknet53_voc), got {!r}'.format(', '.join(NETWORKS), m.network))
    check_sizes([m.data_shape], 'model.data_shape')
    check_sizes(list(m.random_shapes), 'model.random_shapes')
    if network == 'tiny':
        return YOLOArch('tiny', m.data_shape, tiny_head_channels(m.width),
                        scaled_anchors(m.data_shape), width=m.width, blocks=m.blocks)
    return YOLOArch(network, m.data_shape, list(HEAD_CHANNELS[network]))


def training_sizes(model_cfg):
    """The square sizes the training loader draws from (``model.random_shapes``; none:
    ``model.data_shape`` alone, GluonCV's ``--no-random-shape``)."""
    return sorted(set(model_cfg.random_shapes)) or [model_cfg.data_shape]


class TinyDarknet(nn.HybridBlock):
    """Three stages of GluonCV's Darknet cells (3x3 convolution, BatchNorm, LeakyReLU 0.1) to
    ``2 * width``, ``4 * width``, ``8 * width`` channels at stride 8, 16, 32, each stage ending
    in ``blocks`` stride-1 cells. ``stages`` is what GluonCV's YOLOV3 takes."""

    def __init__(self, width=16, blocks=1, **kwargs):
        super(TinyDarknet, self).__init__(**kwargs)
        c8, c16, c32 = tiny_channels(width)
        with self.name_scope():
            self.stages = nn.HybridSequential(prefix='')
            specs = [[max(width // 2, 4), width, c8], [c16], [c32]]
            for k, channels in enumerate(specs):
                stage = nn.HybridSequential(prefix='stage%d_' % k)
                with stage.name_scope():
                    for c in channels:
                        stage.add(_conv2d(c, 3, 1, 2))
                    for _ in range(max(blocks, 0)):
                        stage.add(_conv2d(channels[-1], 3, 1, 1))
                self.stages.add(stage)

    def hybrid_forward(self, F, x):
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps


def _zoo_stages(network, pretrained_base):
    """GluonCV's three backbone stages of ``network`` (its ``yolo3_<network>_voc`` split)."""
    from gluoncv.model_zoo.mobilenet import get_mobilenet
    from gluoncv.model_zoo.yolo.darknet import darknet53
    try:
        if network == 'darknet53':
            base = darknet53(pretrained=pretrained_base)
            return [base.features[:15], base.features[15:24], base.features[24:]]
        base = get_mobilenet(multiplier=float(network[len('mobilenet'):]),
                             pretrained=pretrained_base)
        return [base.features[:33], base.features[33:69], base.features[69:-2]]
    except Exception as e:  # a failed download surfaces as several exception types
        if not pretrained_base:
            raise
        raise base_weights_error(network, e) from e


class ClampedYOLOOutput(YOLOOutputV3):
    """GluonCV's ``YOLOOutputV3`` whose decoded box scale (``exp`` of the raw width/height
    offsets) is clamped at :data:`~gluon_distill.models.ssd.BOX_SCALE_CLAMP`, as the SSD and
    Faster R-CNN decoders are: an early student never yields a non-finite box (validation,
    eval, detect and the exported graph alike). The raw outputs the loss reads are unchanged;
    a trained network's boxes are not affected (62.5 times the anchor)."""

    def hybrid_forward(self, F, x, anchors, offsets):
        pred = self.prediction(x).reshape((0, self._num_anchors * self._num_pred, -1))
        pred = pred.transpose(axes=(0, 2, 1)).reshape((0, -1, self._num_anchors, self._num_pred))
        raw_box_centers = pred.slice_axis(axis=-1, begin=0, end=2)
        raw_box_scales = pred.slice_axis(axis=-1, begin=2, end=4)
        objness = pred.slice_axis(axis=-1, begin=4, end=5)
        class_pred = pred.slice_axis(axis=-1, begin=5, end=None)
        offsets = F.slice_like(offsets, x * 0, axes=(2, 3))
        offsets = offsets.reshape((1, -1, 1, 2))
        box_centers = F.broadcast_add(F.sigmoid(raw_box_centers), offsets) * self._stride
        box_scales = F.broadcast_mul(F.exp(F.minimum(raw_box_scales, BOX_SCALE_CLAMP)),
                                     anchors)
        confidence = F.sigmoid(objness)
        class_score = F.broadcast_mul(F.sigmoid(class_pred), confidence)
        wh = box_scales / 2.0
        bbox = F.concat(box_centers - wh, box_centers + wh, dim=-1)
        if autograd.is_training():
            return (bbox.reshape((0, -1, 4)), raw_box_centers, raw_box_scales,
                    objness, class_pred, anchors, offsets)
        bboxes = F.tile(bbox, reps=(self._classes, 1, 1, 1, 1))
        scores = F.transpose(class_score, axes=(3, 0, 1, 2)).expand_dims(axis=-1)
        ids = F.broadcast_add(scores * 0, F.arange(0, self._classes).reshape((0, 1, 1, 1, 1)))
        detections = F.concat(ids, scores, bboxes, dim=-1)
        return F.reshape(detections.transpose(axes=(1, 0, 2, 3, 4)), (0, -1, 6))


class YOLOFeatures(nn.HybridBlock):
    """``x -> [route_8, route_16, route_32]``: the backbone stages of a YOLOv3 (each feeding
    the next) and, when given, the per-scale adapters the routes pass before the head.
    :attr:`YOLOV3Net.features` (the GAN distiller's "student features": backbone and
    adapters); :func:`teacher_maps` for a teacher."""

    def __init__(self, stages, adapters=None, **kwargs):
        super(YOLOFeatures, self).__init__(**kwargs)
        self.stages = stages
        self.register_child(stages, 'stages')
        self.adapters = adapters
        if adapters is not None:
            self.register_child(adapters, 'adapters')

    def hybrid_forward(self, F, x):
        routes = []
        for stage in self.stages:
            x = stage(x)
            routes.append(x)
        if self.adapters is None:
            return routes
        return list(self.adapters(*routes))


def yolo_head(F, net, routes):
    """GluonCV's YOLOv3 head over ``routes`` (stride 8, 16, 32; already adapted): per
    detection block, deepest first, the output layer's result (training mode: GluonCV's tuple
    ``(bbox, raw centers, raw scales, objness, class_pred, anchors, offsets)``; inference:
    detections ``(B, N_k, 6)``) and a fake feature map of the block's size. The same code as
    ``YOLOV3.hybrid_forward`` between the routes and the final concatenation."""
    outputs = []
    x = routes[-1]
    for i, block, output in zip(range(len(routes)), net.yolo_blocks, net.yolo_outputs):
        x, tip = block(x)
        # GluonCV's fake feature map (only its shape is read), in training mode only
        fake = F.zeros_like(tip.slice_axis(axis=0, begin=0, end=1).slice_axis(
            axis=1, begin=0, end=1)) if autograd.is_training() else None
        outputs.append((output(tip), fake))
        if i >= len(routes) - 1:
            break
        x = net.transitions[i](x)
        upsample = _upsample(x, stride=2)
        route_now = routes[::-1][i + 1]
        x = F.concat(F.slice_like(upsample, route_now * 0, axes=(2, 3)), route_now, dim=1)
    return outputs


class YOLOV3Net(YOLOV3):
    """GluonCV's ``YOLOV3`` (same parameters, names and outputs) whose backbone routes pass
    ``adapters`` (:class:`~gluon_distill.models.student.ChannelAdapters`, a distilled student
    feeding its teacher's head; None: none) and whose output layers are
    :class:`ClampedYOLOOutput`. :attr:`features` is the backbone (and adapters) as one block,
    not a registered child: the parameter names stay GluonCV's, and zoo weights load."""

    def __init__(self, stages, channels, anchors, strides, classes, adapters=None, **kwargs):
        super(YOLOV3Net, self).__init__(stages, channels, anchors, strides, classes, **kwargs)
        for output in self.yolo_outputs:
            output.__class__ = ClampedYOLOOutput
        self.adapters = adapters
        object.__setattr__(self, '_feature_view', YOLOFeatures(
            self.stages, adapters, prefix=self.prefix + 'features_'))

    @property
    def features(self):
        return self._feature_view

    @property
    def num_classes(self):
        return len(self.classes)

    def hybrid_forward(self, F, x, *args):
        """GluonCV's ``YOLOV3.hybrid_forward`` with the routes taken through
        :attr:`features` (and so through the adapters)."""
        if len(args) != 0 and not autograd.is_training():
            raise TypeError('YOLOV3 inference only need one input data.')
        outputs = yolo_head(F, self, self.features(x))
        if autograd.is_training():
            dets = [o[0][0] for o in outputs]
            if autograd.is_recording():
                box_preds = F.concat(*dets, dim=1)
                all_preds = [F.concat(*[o[0][k].reshape((0, -3, -1)) for o in outputs], dim=1)
                             for k in (3, 1, 2, 4)]
                all_targets = self._target_generator(box_preds, *args)
                return self._loss(*(all_preds + all_targets))
            return (F.concat(*dets, dim=1), [o[0][5] for o in outputs],
                    [o[0][6] for o in outputs], [o[1] for o in outputs],
                    *[F.concat(*[o[0][k].reshape((0, -3, -1)) for o in outputs], dim=1)
                      for k in (1, 2, 3, 4)])
        result = F.concat(*[o[0] for o in outputs], dim=1)
        if 0 < self.nms_thresh < 1:
            result = F.contrib.box_nms(
                result, overlap_thresh=self.nms_thresh, valid_thresh=0.01,
                topk=self.nms_topk, id_index=0, score_index=1, coord_start=2,
                force_suppress=False)
            if self.post_nms > 0:
                result = result.slice_axis(axis=1, begin=0, end=self.post_nms)
        ids = result.slice_axis(axis=-1, begin=0, end=1)
        scores = result.slice_axis(axis=-1, begin=1, end=2)
        bboxes = result.slice_axis(axis=-1, begin=2, end=None)
        return ids, scores, bboxes


def stage_blocks(arch, pretrained_base=False):
    """The three backbone stages of ``arch`` (GluonCV's split of its zoo backbone, or the tiny
    net's)."""
    if arch.network == 'tiny':
        return list(TinyDarknet(arch.width, arch.blocks, prefix='tinydarknet_').stages)
    return _zoo_stages(arch.network, bool(pretrained_base))


def build_yolo3(arch, classes, pretrained_base=False, ctx=None, adapters=None):
    """A :class:`YOLOV3Net` for ``arch`` predicting ``classes``, initialised on ``ctx`` (a list)
    with GluonCV's initializer (``net.initialize()``: uniform, an ImageNet base kept; the tiny
    net's objectness at :data:`TINY_OBJECTNESS_PRIOR`, :func:`objectness_prior`), its deferred
    shapes resolved by one inference pass."""
    ctx = ctx or [mx.cpu()]
    stages = stage_blocks(arch, pretrained_base)
    net = YOLOV3Net(stages, list(arch.channels), [list(a) for a in arch.anchors],
                    list(arch.strides), list(classes), adapters=adapters,
                    alloc_size=tuple(arch.alloc_size),
                    ignore_iou_thresh=arch.ignore_iou_thresh)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # "already initialized" for a pretrained base
        net.initialize(ctx=ctx)
    with autograd.predict_mode():  # shapes of deferred parameters, before any trainer
        net(mx.nd.zeros((1, 3, arch.data_shape, arch.data_shape), ctx=ctx[0]))
    for p in net.collect_params().values():
        # that pass may leave weights in MKL-DNN's layout, which a distributed KVStore cannot
        # send ("We can't generate TBlob for MKLDNN data"): plain layout, new arrays
        with autograd.pause():
            p._init_impl(mx.nd.array(p.data(ctx[0]).asnumpy(), dtype=p.dtype), p.list_ctx())
    if arch.network == 'tiny':
        objectness_prior(net, TINY_OBJECTNESS_PRIOR)
    net.arch = arch
    return net


#: the tiny net's initial objectness (ours; GluonCV's initializer starts every anchor at 0.5)
TINY_OBJECTNESS_PRIOR = 0.01


def objectness_prior(net, prior):
    """Start every anchor's objectness at ``prior``: the bias of the objectness channel of
    each output layer's prediction set to ``log(prior / (1 - prior))`` (RetinaNet's prior).

    With GluonCV's initializer all of the ~1000 anchors per image start at objectness 0.5 and
    GluonCV's loss sums their cross-entropy: a short CPU run spends its first epochs pushing
    them down. Measured on the generated shapes (tiny width 16, two cells per stage, 60
    epochs, Adam 2e-3): best validation mAP 0.048 from GluonCV's initialization, 0.31 from this
    prior. Applied to the tiny network only; the zoo networks keep GluonCV's initialization."""
    value = math.log(prior / (1.0 - prior))
    for output in net.yolo_outputs:
        bias = output.prediction.bias
        data = bias.data(bias.list_ctx()[0]).asnumpy()
        for a in range(output._num_anchors):
            data[a * output._num_pred + 4] = value
        bias.set_data(mx.nd.array(data))


def no_weight_decay(net):
    """GluonCV's ``--no-wd``: no weight decay on biases and BatchNorm's beta and gamma."""
    for p in net.collect_params('.*beta|.*gamma|.*bias').values():
        p.wd_mult = 0.0


def route_shapes(block, size, ctx):
    """``[(C, H, W)]`` of the three routes ``block`` (a :class:`YOLOFeatures`) gives for a
    ``size`` square input."""
    with autograd.predict_mode():
        maps = block(mx.nd.zeros((1, 3, size, size), ctx=ctx))
    return [tuple(m.shape[1:]) for m in maps]


def map_sizes(net, size):
    """``[(H, W)]`` of the three routes (stride 8, 16, 32) for a ``size`` square input, from
    the network's symbol (no computation)."""
    cache = net.__dict__.setdefault('_map_sizes', {})
    if size not in cache:
        sym = net.features(mx.sym.var('data'))
        _, shapes, _ = mx.sym.Group(sym).infer_shape(data=(1, 3, size, size))
        cache[size] = [tuple(s[2:]) for s in shapes]
    return cache[size]


class YOLOTrainForward(nn.HybridBlock):
    """The training pass of a :class:`YOLOV3Net` from its parts: ``x -> [routes] + head
    outputs`` (the routes after the adapters, with ``with_features``).

    Head outputs (what :class:`YOLO3Loss` takes; deepest scale first, as GluonCV concatenates
    them): ``box_preds (B, N, 4)`` (decoded corners, for the dynamic "ignore" targets),
    ``objness (B, N, 1)``, ``box_centers (B, N, 2)``, ``box_scales (B, N, 2)`` (raw),
    ``cls_preds (B, N, C)``, ``N`` the anchors of all three scales."""
    num_head_outputs = 5

    def __init__(self, net, with_features=False, **kwargs):
        super(YOLOTrainForward, self).__init__(**kwargs)
        self.net = net
        self.register_child(net, 'net')
        self.with_features = with_features

    def hybrid_forward(self, F, x):
        routes = self.net.features(x)
        outputs = yolo_head(F, self.net, routes)

        def cat(k):
            return F.concat(*[o[0][k].reshape((0, -3, -1)) for o in outputs], dim=1)
        heads = [F.concat(*[o[0][0] for o in outputs], dim=1), cat(3), cat(1), cat(2), cat(4)]
        if not self.with_features:
            return tuple(heads)
        return list(routes) + heads


class YOLO3Loss:
    """GluonCV's YOLOv3 loss in the family form: its ``YOLOV3TargetMerger`` (the prefetched
    targets over the dynamic ones: anchors whose prediction overlaps a ground-truth box by
    more than ``ignore_iou_thresh`` are not penalised as background; ``label_smooth``: its
    ``--label-smooth``) and ``YOLOV3Loss`` (sigmoid cross-entropy for objectness, centres and
    classes, L1 for scales, each summed over the anchors of an image), per device, divided by
    the batch size (GluonCV's ``trainer.step(batch_size)``).

    ``targets``: per device ``gt_boxes (B, M, 4)`` (-1 padding), ``objectness (B, N, 1)``,
    ``center_targets``, ``scale_targets``, ``weights (B, N, 2)``, ``class_targets (B, N,
    C)``, from :class:`~gluon_distill.data.yolo_targets.YOLO3TargetGenerator`."""
    names = ('ObjLoss', 'BoxCenterLoss', 'BoxScaleLoss', 'ClassLoss')

    def __init__(self, num_class, ignore_iou_thresh=0.7, label_smooth=False):
        from gluoncv.loss import YOLOV3Loss
        from gluoncv.model_zoo.yolo.yolo_target import YOLOV3TargetMerger
        self.merger = YOLOV3TargetMerger(num_class, ignore_iou_thresh)
        self.merger._label_smooth = bool(label_smooth)
        self.loss = YOLOV3Loss()

    def __call__(self, outputs, targets):
        batch_total = sum(int(o[0].shape[0]) for o in outputs)
        parts = {name: [] for name in self.names}
        totals = []
        for o, gt_boxes, obj_t, center_t, scale_t, weight_t, class_t in zip(outputs, *targets):
            box_preds, objness, box_centers, box_scales, cls_preds = o
            with autograd.pause():
                merged = self.merger(box_preds, gt_boxes, obj_t, center_t, scale_t, weight_t,
                                     class_t)
            losses = self.loss(objness, box_centers, box_scales, cls_preds, *merged)
            device = [l.sum() / batch_total for l in losses]
            for name, value in zip(self.names, device):
                parts[name].append(value)
            totals.append(mx.nd.add_n(*device))
        return totals, parts


def teacher_maps(net):
    """A block ``x -> the teacher's three routes`` (its backbone; a teacher has no adapters)."""
    return YOLOFeatures(net.stages, prefix='teachermaps_')


HEAD_PARTS = ('transitions', 'yolo_blocks', 'yolo_outputs')


def copy_head(source, target):
    """Copy the transitions, detection blocks and output layers of YOLOv3 ``source`` into
    ``target`` (same channels: a student whose routes are adapted to the teacher's)."""
    for part in HEAD_PARTS:
        src = getattr(source, part)._collect_params_with_prefix()
        dst = getattr(target, part)._collect_params_with_prefix()
        if set(src) != set(dst):
            raise ModelError('head copy: the teacher\'s {} differs from the student\'s'.format(
                part))
        for name, p_dst in dst.items():
            p_src = src[name]
            if p_src.shape != p_dst.shape:
                raise ModelError('head copy: {} has shape {}, {} expects {}'.format(
                    p_src.name, p_src.shape, p_dst.name, p_dst.shape))
            p_dst.set_data(p_src.data(p_src.list_ctx()[0]))


def fold_adapters(student, ctx=None):
    """An equivalent :class:`YOLOV3Net` without adapters: each 1x1 adapter ``A`` (t x s) of
    route ``k`` is multiplied into the 1x1 convolution that reads it, the first convolution of
    the detection block of that scale (for the two upper scales, the part of its input
    channels after the upsampled transition): ``W' = W . A``. Everything else is copied.
    Outputs agree to float rounding; the folded net costs what a plain student with the
    teacher's head channels costs."""
    adapters = student.adapters
    ctx = ctx or student.collect_params().list_ctx()
    if adapters is None:
        return student
    folded = build_yolo3(student.arch, student.classes, ctx=ctx)
    src = student._collect_params_with_prefix()
    dst = folded._collect_params_with_prefix()
    num = len(student.yolo_blocks)
    first_convs = {}
    for i in range(num):
        route = num - 1 - i          # block i reads route num-1-i (deepest first)
        first_convs['yolo_blocks.{}.body.0.0.weight'.format(i)] = route
    for name, p in dst.items():
        value = src[name].data(ctx[0])
        conv = adapters.convs[first_convs[name]] if name in first_convs else None
        if conv is not None:
            a = conv.weight.data(ctx[0]).reshape((0, -1))              # (t, s)
            t = a.shape[0]
            w = value.reshape((0, -1))                                 # (o, c_up + t)
            up = w.shape[1] - t
            route_w = mx.nd.dot(w.slice_axis(axis=1, begin=up, end=None), a)   # (o, s)
            parts = ([w.slice_axis(axis=1, begin=0, end=up)] if up else []) + [route_w]
            value = mx.nd.concat(*parts, dim=1).reshape(p.shape)
        p.set_data(value)
    return folded


def build_from_spec(spec, ctx=None):
    """The YOLOv3 of a ``model.json`` spec (weights not loaded): a distilled student's
    unfolded adapters (``spec['adapters']``) included."""
    from .student import ChannelAdapters
    ctx = ctx or [mx.cpu()]
    ctx = ctx if isinstance(ctx, (list, tuple)) else [ctx]
    adapters = None
    info = spec.get('adapters')
    if info and not info.get('folded') and \
            info['student_channels'] != info['teacher_channels']:
        adapters = ChannelAdapters(info['student_channels'], info['teacher_channels'])
    return build_yolo3(arch_from_dict(spec['arch']), spec['classes'], ctx=ctx,
                       adapters=adapters)


def anchors_per_scale(arch):
    """Per route (stride 8, 16, 32), its anchors ``(3, 2)`` width/height in pixels."""
    return [np.asarray(a, np.float32).reshape((-1, 2)) for a in arch.anchors]


def grid_anchors(arch, size):
    """Per route, its anchors ``(H, W, 3, 4)`` (centre x, y, width, height in input pixels)
    of a ``size`` square input: cell centres and GluonCV's anchor sizes (a smaller input's
    grid is the top-left crop: the sizes do not depend on the input)."""
    out = []
    for stride, wh in zip(arch.strides, anchors_per_scale(arch)):
        n = int(math.ceil(size / float(stride)))
        ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing='ij')
        centres = np.stack([(xs + 0.5) * stride, (ys + 0.5) * stride], -1)   # (n, n, 2)
        centres = np.broadcast_to(centres[:, :, None, :], (n, n, len(wh), 2))
        sizes = np.broadcast_to(wh[None, None], (n, n, len(wh), 2))
        out.append(np.concatenate([centres, sizes], -1).astype(np.float64))
    return out
