"""GluonCV's Faster R-CNN (one C4 map, no FPN): architecture records, builders, the training
forward pass that also returns the backbone map, and the loss of GluonCV's recipe.

GluonCV's ``FasterRCNN.__call__`` in training mode needs the ground truth, fixes the images
per device when the network is built and never returns the backbone map. The deployable
network here is a plain GluonCV ``FasterRCNN`` (one image per call at inference);
:class:`RCNNTrainForward` composes its parts for training (sampler and RCNN target generator
of its own, sized by the images per device of the batch it sees) and, for distillation, also
returns the C4 map from the same backbone pass.
"""
import dataclasses
import math
from dataclasses import dataclass, field
from typing import List

import numpy as np

import mxnet as mx
from mxnet import autograd, gluon
from mxnet.gluon import nn

from .ssd import (BOX_SCALE_CLAMP, ModelError, base_weights_error, checked_arch,
                  default_initializer)

#: GluonCV's VOC Faster R-CNN presets (``faster_rcnn_<network>_voc``), and the tiny test net
ZOO_NETWORKS = ('resnet50_v1b', 'resnet101_v1d')
NETWORKS = ZOO_NETWORKS + ('tiny',)


@dataclass
class RCNNArch:
    """Everything that fixes a Faster R-CNN's parameters and behaviour (``model.json``'s
    ``arch``). ``data_shape``: the short side of the input (``max_size`` the long side's
    limit); the anchors are ``base_size * scales`` px at ``ratios`` on the stride-16 map."""
    network: str
    data_shape: int = 600
    max_size: int = 1000
    roi_mode: str = 'align'
    roi_size: List[int] = field(default_factory=lambda: [14, 14])
    rpn_channel: int = 1024
    base_size: int = 16
    scales: List[float] = field(default_factory=lambda: [2, 4, 8, 16, 32])
    ratios: List[float] = field(default_factory=lambda: [0.5, 1, 2])
    alloc_size: List[int] = field(default_factory=lambda: [128, 128])
    rpn_train_pre_nms: int = 12000
    rpn_train_post_nms: int = 2000
    rpn_test_pre_nms: int = 6000
    rpn_test_post_nms: int = 300
    rpn_min_size: int = 16
    num_sample: int = 128
    max_num_gt: int = 100
    width: int = 64
    blocks: int = 1
    family: str = 'faster_rcnn'

    @property
    def anchors_per_location(self):
        return len(self.scales) * len(self.ratios)

    def to_dict(self):
        return dataclasses.asdict(self)


def arch_from_dict(d):
    return checked_arch(RCNNArch, d, 'Faster R-CNN')


# the tiny net's RPN and RCNN settings, scaled for 128-256 px inputs (8x8 to 16x16 maps):
# GluonCV's 2000 training proposals exceed the 768 anchors of a 128 px image ("Invalid end")
TINY_PRESET = dict(roi_size=[7, 7], rpn_channel=64, base_size=16, scales=[1, 2, 4, 8],
                   ratios=[0.5, 1, 2], alloc_size=[64, 64], rpn_train_pre_nms=512,
                   rpn_train_post_nms=128, rpn_test_pre_nms=512, rpn_test_post_nms=64,
                   rpn_min_size=4, num_sample=64, max_num_gt=50)


def resolve_arch(model_cfg):
    """The :class:`RCNNArch` of a ``model`` config section (``model.rpn_*`` and
    ``model.rcnn_*`` other than 0 replace the network's preset), checked."""
    m = model_cfg
    if m.network not in NETWORKS:
        raise ModelError('model.network: a Faster R-CNN backbone is one of {}, got {!r}'.format(
            ', '.join(NETWORKS), m.network))
    preset = dict(TINY_PRESET) if m.network == 'tiny' else {}
    if m.network == 'tiny':
        preset['blocks'] = m.blocks
    arch = RCNNArch(network=m.network, data_shape=m.data_shape, max_size=m.max_size,
                    roi_mode=m.roi_mode, width=m.width, **preset)
    for key, name in (('rpn_train_pre_nms', 'rpn_train_pre_nms'),
                      ('rpn_train_post_nms', 'rpn_train_post_nms'),
                      ('rpn_test_pre_nms', 'rpn_test_pre_nms'),
                      ('rpn_test_post_nms', 'rpn_test_post_nms'),
                      ('rcnn_num_sample', 'num_sample'), ('rcnn_max_num_gt', 'max_num_gt')):
        value = getattr(m, key)
        if value < 0:
            raise ModelError('model.{}: expected a positive count (0: the preset), got '
                             '{}'.format(key, value))
        if value:
            setattr(arch, name, value)
    check_arch(arch)
    return arch


def min_anchors(arch):
    """RPN anchors of the smallest input the network sees (a square of the short side)."""
    side = int(math.ceil(arch.data_shape / 16.0))
    return side * side * arch.anchors_per_location, side


def check_arch(arch):
    """Refuse RPN settings the input size cannot serve, naming the keys."""
    if arch.max_size < arch.data_shape:
        raise ModelError('model.max_size {} is below the short side model.data_shape {}'.format(
            arch.max_size, arch.data_shape))
    if arch.roi_mode not in ('align', 'pool'):
        raise ModelError("model.roi_mode: expected align or pool, got {!r}".format(arch.roi_mode))
    anchors, side = min_anchors(arch)
    for key in ('rpn_train_post_nms', 'rpn_test_post_nms'):
        value = getattr(arch, key)
        if value > anchors:
            raise ModelError(
                'model.{} {} exceeds the {} RPN anchors of a {} px input ({}x{} map, {} per '
                'location): GluonCV would fail with "Invalid end"; set it to at most {} (e.g. '
                '--set model.{}={})'.format(key, value, anchors, arch.data_shape, side, side,
                                            arch.anchors_per_location, anchors, key,
                                            min(anchors, 128 if 'train' in key else 64)))
    if arch.num_sample > arch.rpn_train_post_nms:
        raise ModelError('model.rcnn_num_sample {} exceeds model.rpn_train_post_nms {} (the '
                         'proposals it samples from)'.format(arch.num_sample,
                                                             arch.rpn_train_post_nms))


class TinyBackbone(nn.HybridSequential):
    """Four stages to ``width`` channels at stride 16, each a stride-2 3x3 convolution and
    ``blocks - 1`` stride-1 ones (BatchNorm, ReLU)."""

    def __init__(self, width=64, blocks=1, **kwargs):
        super(TinyBackbone, self).__init__(**kwargs)
        with self.name_scope():
            for c in (max(width // 4, 8), max(width // 2, 8), width, width):
                for b in range(max(blocks, 1)):
                    self.add(nn.Conv2D(c, 3, 2 if b == 0 else 1, 1, use_bias=False),
                             nn.BatchNorm(), nn.Activation('relu'))


def _zoo_parts(network, pretrained_base):
    """``(features, top_features, train_patterns)`` of GluonCV's VOC preset for ``network``:
    conv1..layer3 (the C4 map), layer4 on the RoIs; stem, layer1 and every BatchNorm frozen.

    Without ImageNet weights, BatchNorm normalises by batch statistics in training (frozen
    identity statistics let a random 101-layer residual net overflow at once); inference
    uses the running statistics either way."""
    from gluoncv.model_zoo import resnetv1b
    try:
        base = getattr(resnetv1b, network)(pretrained=pretrained_base, dilated=False,
                                           use_global_stats=bool(pretrained_base))
    except Exception as e:  # a failed download surfaces as several exception types
        if not pretrained_base:
            raise
        raise base_weights_error(network, e) from e
    features = nn.HybridSequential()
    top_features = nn.HybridSequential()
    for layer in ('conv1', 'bn1', 'relu', 'maxpool', 'layer1', 'layer2', 'layer3'):
        features.add(getattr(base, layer))
    top_features.add(base.layer4)
    patterns = '|'.join(['.*dense', '.*rpn', '.*down(2|3|4)_conv', '.*layers(2|3|4)_conv'])
    return features, top_features, patterns


def build_faster_rcnn(arch, classes, pretrained_base=False, ctx=None):
    """A GluonCV ``FasterRCNN`` for ``arch`` predicting ``classes``, initialised on ``ctx``
    (a list), with GluonCV's frozen parameters (``grad_req='null'``) outside its
    ``train_patterns``. Built with ``get_faster_rcnn`` (the zoo constructors refuse
    ``roi_mode``); one image per device (inference; training runs :class:`RCNNTrainForward`).
    The RPN's and the RCNN's box decoders clamp their width/height offsets at
    :data:`~gluon_distill.models.ssd.BOX_SCALE_CLAMP` (detectron2's log(1000/16)), as the
    SSD's does: no path yields a non-finite box."""
    from gluoncv.model_zoo.rcnn.faster_rcnn import get_faster_rcnn
    ctx = ctx or [mx.cpu()]
    if arch.network == 'tiny':
        features = TinyBackbone(arch.width, arch.blocks, prefix='tinyrcnn_')
        top_features = nn.HybridSequential(prefix='tinytop_')
        with top_features.name_scope():
            top_features.add(nn.Conv2D(2 * arch.width, 3, 1, 1), nn.Activation('relu'))
        patterns = None
        pretrained = False
    else:
        pretrained = bool(pretrained_base)
        features, top_features, patterns = _zoo_parts(arch.network, pretrained)
    net = get_faster_rcnn(
        name=arch.network, dataset='voc', pretrained=False, features=features,
        top_features=top_features, classes=list(classes), short=arch.data_shape,
        max_size=arch.max_size, train_patterns=patterns, nms_thresh=0.3, nms_topk=400,
        post_nms=100, roi_mode=arch.roi_mode, roi_size=tuple(arch.roi_size), strides=16,
        clip=BOX_SCALE_CLAMP, rpn_channel=arch.rpn_channel, base_size=arch.base_size,
        scales=tuple(arch.scales), ratios=tuple(arch.ratios), alloc_size=tuple(arch.alloc_size),
        rpn_nms_thresh=0.7, rpn_train_pre_nms=arch.rpn_train_pre_nms,
        rpn_train_post_nms=arch.rpn_train_post_nms, rpn_test_pre_nms=arch.rpn_test_pre_nms,
        rpn_test_post_nms=arch.rpn_test_post_nms, rpn_min_size=arch.rpn_min_size,
        per_device_batch_size=1, num_sample=arch.num_sample, pos_iou_thresh=0.5,
        pos_ratio=0.25, max_num_gt=arch.max_num_gt)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # "already initialized" for a pretrained base
        net.initialize(default_initializer(), ctx=ctx)
    with autograd.predict_mode():  # shapes of deferred parameters, before any trainer
        net(mx.nd.zeros((1, 3, arch.data_shape, arch.data_shape), ctx=ctx[0]))
    for p in net.collect_params().values():
        # that inference pass may leave weights in MKL-DNN's layout, which a distributed
        # KVStore cannot send ("We can't generate TBlob for MKLDNN data"); so
        # plain layout: new arrays (set_data would copy into the MKL-DNN ones)
        with autograd.pause():
            p._init_impl(mx.nd.array(p.data(ctx[0]).asnumpy(), dtype=p.dtype), p.list_ctx())
    for p in net.collect_params().values():
        if p.grad_req != 'null':  # statistics and constants stay as they are
            p.grad_req = 'null' if patterns else 'write'
    if patterns:
        for p in net.collect_train_params().values():
            if not isinstance(p, gluon.parameter.Constant):  # the RPN's anchors
                p.grad_req = 'write'
    net.arch = arch
    return net


def c4_shape(net, data_shape, ctx):
    """``(C, H, W)`` of the C4 map of a ``data_shape`` square input."""
    with autograd.predict_mode():
        feat = net.features(mx.nd.zeros((1, 3, data_shape, data_shape), ctx=ctx))
    return tuple(feat.shape[1:])


def rpn_anchors(net, side, ctx=None):
    """The RPN anchors of a ``side`` x ``side`` C4 map: ``(side, side, A, 4)`` centre x, y,
    width, height in input pixels (NumPy). A smaller map's anchors are the top-left crop:
    GluonCV slices one pre-computed grid."""
    ctx = ctx or mx.cpu()
    generator = net.rpn.anchor_generator
    anchors = generator(mx.nd.zeros((1, 1, side, side), ctx=ctx)).asnumpy().reshape((-1, 4))
    centre = (anchors[:, :2] + anchors[:, 2:]) / 2
    size = anchors[:, 2:] - anchors[:, :2]
    return np.concatenate([centre, size], 1).reshape((side, side, -1, 4))


def sampler_draws(arch):
    """Uniform draws per image the RoI sampler needs (proposals + ground-truth slots)."""
    return arch.rpn_train_post_nms + arch.max_num_gt


def _sampler_base():
    from gluoncv.model_zoo.rcnn.faster_rcnn.rcnn_target import RCNNTargetSampler
    return RCNNTargetSampler


class SeededRCNNSampler(_sampler_base()):
    """GluonCV's ``RCNNTargetSampler`` whose shuffle of the proposals comes from an input
    ``rand (B, num_proposal + max_num_gt)`` (drawn per image by the loader's seeded
    workers) instead of ``F.random.uniform``.

    MXNet has one random stream for all CPU devices of a process, drawn in the order the
    devices run: with it, the RoIs device 1 samples in one process differ from those a second
    worker samples on its own device, and a job over workers cannot equal one process. With
    the draws made per image, the sampling depends on the image alone."""

    def hybrid_forward(self, F, rois, scores, gt_boxes, rand):
        out_rois, out_samples, out_matches = [], [], []
        with autograd.pause():
            for i in range(self._num_image):
                def image(a):
                    return F.squeeze(F.slice_axis(a, axis=0, begin=i, end=i + 1), axis=0)
                roi, score, gt_box = image(rois), image(scores), image(gt_boxes)
                gt_score = F.sign(F.sum(gt_box, axis=-1, keepdims=True) + 1)
                all_roi = F.concat(roi, gt_box, dim=0)
                all_score = F.concat(score, gt_score, dim=0).squeeze(axis=-1)
                ious = F.contrib.box_iou(all_roi, gt_box, format='corner')
                best = ious.max(axis=-1)
                match = ious.argmax(axis=-1)
                # 3 positive, 2 negative, 0 ignored (padding, invalid proposals)
                mask = F.where(all_score < 0, F.zeros_like(best), F.ones_like(best) * 2)
                mask = F.where(best >= self._pos_iou_thresh, F.ones_like(mask) * 3, mask)
                shuffle = F.argsort(F.slice_like(image(rand), match))
                mask = F.take(mask, shuffle)
                match = F.take(match, shuffle)
                # positives first (at most max_pos), in shuffled order
                order = F.slice_axis(F.argsort(mask, is_ascend=False), axis=0, begin=0,
                                     end=self._max_pos)
                pos_index = F.take(shuffle, order)
                pos_sample = F.take(mask, order)
                pos_match = F.take(match, order)
                pos_sample = F.where(pos_sample == 3, F.ones_like(pos_sample), pos_sample)
                pos_sample = F.where(pos_sample == 2, -F.ones_like(pos_sample), pos_sample)
                # then negatives from the rest (4 negative > 3 positive > 0 ignored)
                rest = F.slice_axis(shuffle, axis=0, begin=self._max_pos, end=None)
                rest_mask = F.slice_axis(mask, axis=0, begin=self._max_pos, end=None)
                rest_match = F.slice_axis(match, axis=0, begin=self._max_pos, end=None)
                rest_mask = F.where(rest_mask == 2, F.ones_like(rest_mask) * 4, rest_mask)
                order = F.slice_axis(F.argsort(rest_mask, is_ascend=False), axis=0, begin=0,
                                     end=self._num_sample - self._max_pos)
                neg_index = F.take(rest, order)
                neg_sample = F.take(rest_mask, order)
                neg_match = F.take(rest_match, order)
                neg_sample = F.where(neg_sample == 3, F.ones_like(neg_sample), neg_sample)
                neg_sample = F.where(neg_sample == 4, -F.ones_like(neg_sample), neg_sample)
                index = F.concat(pos_index, neg_index, dim=0)
                samples = F.concat(pos_sample, neg_sample, dim=0)
                matches = F.concat(pos_match, neg_match, dim=0)
                picked = all_roi.take(index)
                x1, y1, x2, y2 = F.split(picked, axis=-1, num_outputs=4, squeeze_axis=True)
                by_area = F.argsort((x2 - x1) * (y2 - y1))
                out_rois.append(picked.take(by_area))
                out_samples.append(samples.take(by_area))
                out_matches.append(matches.take(by_area))
            return (F.stack(*out_rois, axis=0), F.stack(*out_samples, axis=0),
                    F.stack(*out_matches, axis=0))


class RCNNTrainForward(nn.HybridBlock):
    """The training pass of a GluonCV ``FasterRCNN`` from its parts: ``(x, gt_box, gt_label,
    rand) -> [C4 map] + head outputs`` (``rand``: the RoI sampler's per-image uniform draws,
    :class:`SeededRCNNSampler`).

    Head outputs (what :class:`RCNNLoss` takes): ``cls_pred (B, S, C+1)``, ``box_pred (B, P,
    C, 4)``, ``rpn_score (B, N, 1)`` and ``rpn_box (B, N, 4)`` (raw RPN outputs), and the RCNN
    targets of the sampled RoIs ``cls_targets (B, S)``, ``box_targets``, ``box_masks (B, P, C,
    4)``. With ``with_features`` the C4 map (through ``adapters`` when given) comes first.

    The RoI sampler and target generator are this block's own, sized by the images per
    device of the batch (GluonCV's fix them when the network is built).
    """
    num_head_outputs = 7

    def __init__(self, net, adapters=None, with_features=False, **kwargs):
        super(RCNNTrainForward, self).__init__(**kwargs)
        from gluoncv.model_zoo.rcnn.faster_rcnn.rcnn_target import RCNNTargetGenerator
        self.net = net
        self.register_child(net, 'net')
        self.adapters = adapters
        if adapters is not None:
            self.register_child(adapters, 'adapters')
        self.with_features = with_features
        arch = net.arch
        with self.name_scope():
            self.sampler = SeededRCNNSampler(
                num_image=1, num_proposal=net.rpn._train_post_nms, num_sample=arch.num_sample,
                pos_iou_thresh=0.5, pos_ratio=0.25, max_num_gt=arch.max_num_gt)
            self.targets = RCNNTargetGenerator(net.num_class, self.sampler._max_pos, 1)
        ctx = list(net.collect_params().values())[0].list_ctx()
        self.targets.initialize(ctx=ctx)
        self.images = 1

    def set_images(self, images):
        """Images per device: GluonCV's sampler and target encoder loop over them."""
        self.images = images
        self.sampler._num_image = images
        self.targets._box_encoder._batch_size = images
        self._clear_cached_op()

    def forward(self, x, *args):
        if isinstance(x, mx.nd.NDArray) and x.shape[0] != self.images:
            self.set_images(x.shape[0])
        return super(RCNNTrainForward, self).forward(x, *args)

    def hybrid_forward(self, F, x, gt_box, gt_label, rand):
        net = self.net
        images = self.images
        num_sample = net._num_sample
        feat = net.features(x)
        rpn_score, rpn_box, raw_score, raw_box, _ = net.rpn(F.zeros_like(x), feat)
        rois, samples, matches = self.sampler(rpn_box, rpn_score, gt_box, rand)
        with autograd.pause():
            batch_id = F.repeat(F.arange(0, images), num_sample)
            roi = F.stop_gradient(F.concat(batch_id.reshape((-1, 1)), rois.reshape((-1, 4)),
                                           dim=-1))
        if net._roi_mode == 'pool':
            pooled = F.ROIPooling(feat, roi, net._roi_size, 1. / net._strides)
        else:
            pooled = F.contrib.ROIAlign(feat, roi, net._roi_size, 1. / net._strides,
                                        sample_ratio=2)
        top = net.top_features(pooled)
        box_feat = (F.contrib.AdaptiveAvgPooling2D(top, output_size=1)
                    if net.box_features is None else net.box_features(top))
        cls_pred = net.class_predictor(box_feat).reshape((images, num_sample, net.num_class + 1))
        cls_targets, box_targets, box_masks, indices = self.targets(rois, samples, matches,
                                                                    gt_label, gt_box)
        box_feat = F.reshape(box_feat.expand_dims(0), (images, -1, 0))
        positives = [F.take(F.slice_axis(box_feat, axis=0, begin=i, end=i + 1).squeeze(axis=0),
                            F.slice_axis(indices, axis=0, begin=i, end=i + 1).squeeze(axis=0))
                     for i in range(images)]
        box_pred = net.box_predictor(F.concat(*positives, dim=0)).reshape(
            (images, -1, net.num_class, 4))
        heads = [cls_pred, box_pred, raw_score, raw_box, cls_targets, box_targets, box_masks]
        if not self.with_features:
            return tuple(heads)
        maps = [feat] if self.adapters is None else list(self.adapters(feat))
        return maps + heads


class RCNNLoss:
    """GluonCV's Faster R-CNN loss (``ForwardBackwardTask``) in the family form.

    Per device: RPN sigmoid binary cross-entropy and Huber (``rho`` 1/9) over the sampled
    anchors, RCNN softmax cross-entropy and Huber (``rho`` 1) over the sampled RoIs, each a
    per-image mean times the element count over the number of sampled anchors (RoIs) of the
    device, as GluonCV computes them; divided by the batch size (GluonCV's
    ``trainer.step(batch_size)``). ``targets``: per device ``rpn_cls_targets (B, N)`` (-1
    ignored), ``rpn_box_targets``, ``rpn_box_masks (B, N, 4)``.
    """
    names = ('RPN_Conf', 'RPN_SmoothL1', 'RCNN_CrossEntropy', 'RCNN_SmoothL1')

    def __init__(self, rpn_rho=1. / 9, rcnn_rho=1.):
        self.rpn_cls = gluon.loss.SigmoidBinaryCrossEntropyLoss(from_sigmoid=False)
        self.rpn_box = gluon.loss.HuberLoss(rho=rpn_rho)
        self.rcnn_cls = gluon.loss.SoftmaxCrossEntropyLoss()
        self.rcnn_box = gluon.loss.HuberLoss(rho=rcnn_rho)

    def __call__(self, outputs, targets):
        batch_total = sum(int(o[0].shape[0]) for o in outputs)
        parts = {name: [] for name in self.names}
        totals = []
        for o, rpn_cls_t, rpn_box_t, rpn_mask in zip(outputs, *targets):
            cls_pred, box_pred, rpn_score, rpn_box, cls_t, box_t, box_m = o
            rpn_score = rpn_score.squeeze(axis=-1)
            num_rpn = (rpn_cls_t >= 0).sum()
            rpn1 = self.rpn_cls(rpn_score, rpn_cls_t, rpn_cls_t >= 0) * rpn_cls_t.size / num_rpn
            rpn2 = self.rpn_box(rpn_box, rpn_box_t, rpn_mask) * rpn_box.size / num_rpn
            num_rcnn = (cls_t >= 0).sum()
            rcnn1 = self.rcnn_cls(cls_pred, cls_t, cls_t.expand_dims(-1) >= 0) * \
                cls_t.size / num_rcnn
            rcnn2 = self.rcnn_box(box_pred, box_t, box_m) * box_pred.size / num_rcnn
            device = [rpn1.sum() / batch_total, rpn2.sum() / batch_total,
                      rcnn1.sum() / batch_total, rcnn2.sum() / batch_total]
            for name, value in zip(self.names, device):
                parts[name].append(value)
            totals.append(mx.nd.add_n(*device))
        return totals, parts


class TeacherMaps(nn.HybridBlock):
    """A Faster R-CNN's C4 map as the one-element list of maps the distillers index."""

    def __init__(self, net, **kwargs):
        super(TeacherMaps, self).__init__(**kwargs)
        self.features = net.features
        self.register_child(net.features, 'features')

    def hybrid_forward(self, F, x):
        return [self.features(x)]


def build_from_spec(spec, ctx=None):
    """The Faster R-CNN of a ``model.json`` spec, initialised (weights not loaded)."""
    ctx = ctx or [mx.cpu()]
    ctx = ctx if isinstance(ctx, (list, tuple)) else [ctx]
    return build_faster_rcnn(arch_from_dict(spec['arch']), spec['classes'], ctx=ctx)
