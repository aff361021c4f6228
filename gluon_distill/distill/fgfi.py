"""Fine-grained feature imitation (FGFI, Wang et al. CVPR 2019), per paired scale.

The student imitates the teacher only near objects. The imitation mask of one scale, per
image: for each ground-truth box, the anchors of that scale whose IoU with the box exceeds
``psi`` x the box's best IoU over that scale's anchors (strict, anchors crossing the border
included); the union over boxes and over the anchors of a location marks the location. The
student's paired map passes an adaptation layer (3x3 convolution + ReLU, as in the authors'
code, ``twangnh/Distilling-Object-Detectors``); the loss::

    weight * sum_{k, b, c, h, w} mask_k * (teacher_k - adapt_k(student_k))^2 / (2 * points)

``points``: the number of mask locations of the batch over all paired scales (the original's
``mask.sum() * 2`` normaliser, over every scale here). Defaults: ``psi`` 0.5, ``weight`` 0.01,
off for the first 400 iterations (the original's). The adaptation layers train with the
student's optimizer, are saved in checkpoints (group ``fgfi_adapt``), and are not part of the
deployable student.

Anchors and each image's ground-truth boxes come from the detector family
(:meth:`~gluon_distill.families.base.DetectorFamily.scale_anchors`,
:meth:`~gluon_distill.families.base.DetectorFamily.ground_truth_reader`; SSD recovers the boxes
from the batch's targets, so the method needs nothing from the loader beyond what SSD
training already has).
"""
import numpy as np

import mxnet as mx
from mxnet.gluon import nn
from ..engine.distributed import worker_mean_value
from ..families.ssd import SSDFamily, TargetGroundTruth
from .step import Distiller


def corner(anchors):
    """``(..., 4)`` centre x, y, width, height -> corners x1, y1, x2, y2."""
    a = np.asarray(anchors, np.float64)
    return np.concatenate([a[..., :2] - a[..., 2:] / 2, a[..., :2] + a[..., 2:] / 2], -1)


def box_iou(a, b):
    """IoU of corner boxes ``a (N, 4)`` with ``b (M, 4)``: ``(N, M)`` (continuous areas)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def imitation_mask(boxes, anchors, psi=0.5):
    """The FGFI mask of one image on one scale.

    Parameters
    ----------
    boxes : array (M, 4)
        Ground-truth corners in input pixels.
    anchors : array (H, W, A, 4)
        That scale's anchors, centre x, y, width, height in input pixels.
    psi : float
        Fraction of each box's best anchor IoU an anchor must exceed.

    Returns
    -------
    array (H, W) float32: 1 where some anchor of the location imitates some box.
    """
    h, w, a, _ = anchors.shape
    mask = np.zeros((h, w), np.float32)
    boxes = np.asarray(boxes, np.float64).reshape((-1, 4))
    if not len(boxes):
        return mask
    iou = box_iou(corner(anchors.reshape((-1, 4))), boxes)        # (H*W*A, M)
    best = iou.max(axis=0)
    keep = (iou > psi * best[None, :]) & (best[None, :] > 0)
    return keep.any(axis=1).reshape((h, w, a)).any(axis=2).astype(np.float32)


class Adaptation(nn.HybridBlock):
    """Per paired scale, a 3x3 convolution (``channels`` -> ``channels``) and a ReLU: FGFI's
    adaptation of the student's map. Input/output: lists of ``(B, C_k, H_k, W_k)``."""

    def __init__(self, channels, **kwargs):
        super(Adaptation, self).__init__(**kwargs)
        self.convs = []
        with self.name_scope():
            for k, c in enumerate(channels):
                conv = nn.Conv2D(c, 3, padding=1, in_channels=c, activation='relu',
                                 prefix='adapt%d_' % k)
                self.register_child(conv, 'adapt%d' % k)
                self.convs.append(conv)

    def hybrid_forward(self, F, *maps):
        return [conv(x) for x, conv in zip(maps, self.convs)]


class FGFIDistiller(Distiller):
    """Masked feature imitation through an adaptation layer.

    Parameters
    ----------
    pairs : list of (int, int)
        ``(student map index, teacher map index)``.
    anchors : list of array (H, W, A, 4)
        Per *student* map, its anchors (the family's ``scale_anchors``).
    channels : list of int
        Per pair, the channels of the compared maps (the teacher's).
    ctx_list : list of Context
    weight, psi : float
    warmup_iters : int
        The loss is off for the first ``warmup_iters`` iterations.
    ground_truth : callable, optional
        Loader batch -> per image, its boxes ``(M, 4)`` in input pixels; default: decoded
        from the batch's SSD targets over ``anchors``.
    """
    name = 'fgfi'
    loss_name = 'Loss_fgfi'

    def __init__(self, pairs, anchors, channels, ctx_list, weight=0.01, psi=0.5,
                 warmup_iters=400, ground_truth=None):
        self.pairs = list(pairs)
        self.anchors = [anchors[s] for s, _ in self.pairs]
        self.ground_truth = ground_truth or TargetGroundTruth(
            np.concatenate([a.reshape((-1, 4)) for a in anchors], 0))
        self.ctx_list = list(ctx_list)
        self.weight = weight
        self.psi = psi
        self.warmup_iters = warmup_iters
        self.adapt = Adaptation(channels, prefix='fgfi_')
        self.adapt.initialize(mx.init.Xavier(), ctx=self.ctx_list)
        self._masks = None
        self._points = 0

    def active(self, epoch, iteration):
        return iteration >= self.warmup_iters

    def describe(self):
        return 'fgfi: weight {:g}, psi {:g}, from iteration {}, pairs {}'.format(
            self.weight, self.psi, self.warmup_iters, self.pairs)

    def blocks(self):
        return {'fgfi_adapt': self.adapt}

    def student_params(self):
        return list(self.adapt.collect_params().values())

    def masks(self, image_boxes):
        """Per pair, the batch's masks ``(B, 1, H, W)`` (NumPy) from each image's boxes."""
        out = [[] for _ in self.pairs]
        for boxes in image_boxes:
            for k, anchors in enumerate(self.anchors):
                out[k].append(imitation_mask(boxes, anchors, self.psi)[None])
        return [np.stack(m) for m in out]

    def begin(self, batch, ctx_list):
        # the loader's CPU arrays, ready before the step: no wait on any device
        self._host = self.masks(self.ground_truth(batch))
        self._ctx_list = list(ctx_list)
        self._masks = None

    def auxiliary(self, teacher_maps, student_maps, batch_total):
        # every device's maps at hand: the masks are cropped per device
        self._load_masks(teacher_maps)
        return []

    def _load_masks(self, device_maps):
        """The batch's masks on the devices, each device's part cropped to its paired maps'
        spatial size (``device_maps``: per device, the teacher's maps): a family whose input
        size varies (Faster R-CNN, padded per device) gives the anchors of its largest map,
        whose top-left crop is any smaller map's; a fixed-size family (SSD) crops nothing."""
        n = len(self._ctx_list)
        per = self._host[0].shape[0] // n
        parts = [[m[i * per:(i + 1) * per, :, :maps[t].shape[2], :maps[t].shape[3]]
                  for m, (_, t) in zip(self._host, self.pairs)]
                 for i, maps in enumerate(device_maps)]
        self._points = worker_mean_value(float(sum(p.sum() for d in parts for p in d)),
                                         'fgfi_points')
        self._masks = [[mx.nd.array(parts[i][k], ctx=ctx) for i, ctx in
                        enumerate(self._ctx_list)] for k in range(len(self.pairs))]

    def loss(self, index, teacher_maps, student_maps, batch_total):
        student, teacher = self.select(student_maps, teacher_maps)
        if self._masks is None:  # called without auxiliary(): every device's maps as this one's
            self._load_masks([teacher_maps] * len(self._ctx_list))
        if self._points == 0:
            return None
        adapted = self.adapt(*student)
        terms = [mx.nd.broadcast_mul(self._masks[k][index], mx.nd.square(t - s)).sum()
                 for k, (s, t) in enumerate(zip(adapted, teacher))]
        return self.weight * mx.nd.add_n(*terms) / (2 * self._points)


def build(f, plan, ctx, kv, student_params=None, data_shape=None, family=None):
    """The FGFI distiller of config section ``distill.fgfi`` (``f``) for ``plan``; anchors and
    ground truth come from the detector ``family`` (default SSD)."""
    family = family or SSDFamily()
    anchors = family.scale_anchors(plan.net, data_shape, ctx[0])
    return FGFIDistiller(plan.pairs, anchors, [plan.teacher_channels[t] for _, t in plan.pairs],
                         ctx, f.weight, f.psi, f.warmup_iters,
                         family.ground_truth_reader(plan.net, data_shape, ctx[0]))
