"""Faster R-CNN training transform with RPN targets in NumPy (``bench/rpn_targets.py``).

GluonCV's ``FasterRCNNDefaultTrainTransform`` makes each image's RPN targets with MXNet
operators on small arrays (``box_iou``, ``split``, a slice of its anchor grid, copies back to
NumPy) and infers the backbone's map size from its symbol for every image; per image that
overhead, not the arithmetic, is most of its cost. :class:`RCNNTrainTransform` gives the same
output (same image operations, the same random draws in the same order, the same sampling
and encoding rules) with the anchor grid and map sizes cached and the targets computed in
NumPy.
"""
import numpy as np

import mxnet as mx
from gluoncv.data.transforms import bbox as tbbox
from gluoncv.data.transforms import image as timage
from gluoncv.data.transforms.presets.rcnn import FasterRCNNDefaultTrainTransform


def box_iou(anchors, boxes):
    """``(N, M)`` IoU of corner boxes, no +1 on widths (MXNet's ``box_iou``), float32."""
    tl = np.maximum(anchors[:, None, :2], boxes[None, :, :2])
    br = np.minimum(anchors[:, None, 2:], boxes[None, :, 2:])
    wh = np.clip(br - tl, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1])
    area_b = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide='ignore', invalid='ignore'):
        iou = np.where(union > 0, inter / union, 0)
    return iou.astype(np.float32)


def sample_anchors(ious, num_sample=256, pos_iou_thresh=0.7, neg_iou_thresh=0.3,
                   pos_ratio=0.5):
    """GluonCV's ``RPNTargetSampler`` rules: ``(samples (N,) 1 / -1 / 0, matches (N,))``.
    Positives: each box's best anchors and anchors of IoU >= ``pos_iou_thresh``; negatives
    below ``neg_iou_thresh`` (invalid anchors, IoU -1, ignored); at most ``num_sample`` in
    all, ``pos_ratio`` of them positive, the excess dropped with ``np.random.choice`` (the
    same draws as GluonCV's)."""
    eps = np.spacing(np.float32(1.0))
    max_pos = int(round(num_sample * pos_ratio))
    matches = np.argmax(ious, axis=1)
    best = np.max(ious, axis=1)
    samples = np.zeros_like(best)
    samples[((ious + eps) > np.max(ious, axis=0, keepdims=True)).any(axis=1)] = 1.0
    samples[best >= pos_iou_thresh] = 1.0
    samples[(best < neg_iou_thresh) & (best >= 0)] = -1.0
    num_pos = int((samples > 0).sum())
    if num_pos > max_pos:
        drop = np.random.choice(np.where(samples > 0)[0], size=num_pos - max_pos,
                                replace=False)
        samples[drop] = 0
    num_neg = int((samples < 0).sum())
    max_neg = num_sample - min(num_pos, max_pos)
    if num_neg > max_neg:
        drop = np.random.choice(np.where(samples < 0)[0], size=num_neg - max_neg,
                                replace=False)
        samples[drop] = 0
    return samples, matches


def rpn_targets(boxes, anchors, width, height, **sampler):
    """``(cls_target (N,), box_target (N, 4), box_mask (N, 4))`` of one image: class 1
    positive, 0 negative, -1 ignored; box targets (centre offsets over anchor size, log size
    ratios; stds 1) and masks on positives only. Anchors crossing the image border are
    ignored."""
    ious = box_iou(anchors, boxes)
    outside = ((anchors[:, 0] < 0) | (anchors[:, 1] < 0) | (anchors[:, 2] >= width) |
               (anchors[:, 3] >= height))
    ious[outside] = -1.0
    samples, matches = sample_anchors(ious, **sampler)
    cls_target = np.where(samples > 0, 1.0, np.where(samples < 0, 0.0, -1.0)).astype(np.float32)
    positive = samples > 0.5
    g = boxes[matches]
    a_wh = anchors[:, 2:] - anchors[:, :2]
    g_wh = g[:, 2:] - g[:, :2]
    a_c = anchors[:, :2] + a_wh * 0.5
    g_c = g[:, :2] + g_wh * 0.5
    with np.errstate(divide='ignore', invalid='ignore'):
        codes = np.concatenate([(g_c - a_c) / a_wh, np.log(g_wh / a_wh)], axis=1)
    box_target = np.where(positive[:, None], codes, 0.0).astype(np.float32)
    box_mask = np.repeat(positive[:, None], 4, axis=1).astype(np.float32)
    return cls_target, box_target, box_mask


class RCNNTrainTransform:
    """Drop-in for ``FasterRCNNDefaultTrainTransform(short, max_size, net, mean, std,
    ashape)`` (single-stage networks, fixed short side): resize within ``max_size``, random
    horizontal flip, normalise, RPN targets per map location ``(H, W, A)``."""

    def __init__(self, short, max_size, net, mean, std, ashape, flip_p=0.5, num_sample=256,
                 pos_iou_thresh=0.7, neg_iou_thresh=0.3, pos_ratio=0.5):
        reference = FasterRCNNDefaultTrainTransform(short, max_size, net, mean=tuple(mean),
                                                    std=tuple(std), ashape=ashape,
                                                    flip_p=flip_p)
        self._short, self._max_size = short, max_size
        self._mean, self._std = tuple(mean), tuple(std)
        self._flip_p = flip_p
        self._feat = reference._feat_sym
        grid = reference._anchors.asnumpy()[0, 0]          # (ashape, ashape, A * 4)
        self._grid = grid.reshape(grid.shape[:2] + (-1, 4))
        self._sampler = dict(num_sample=num_sample, pos_iou_thresh=pos_iou_thresh,
                             neg_iou_thresh=neg_iou_thresh, pos_ratio=pos_ratio)
        self._maps = {}

    def _anchors(self, height, width):
        key = (height, width)
        if key not in self._maps:
            shape = self._feat.infer_shape(data=(1, 3, height, width))[1][0]
            fh, fw = shape[2], shape[3]
            self._maps[key] = (fh, fw, np.ascontiguousarray(
                self._grid[:fh, :fw].reshape((-1, 4))))
        return self._maps[key]

    def __call__(self, src, label):
        h, w, _ = src.shape
        img = timage.resize_short_within(src, self._short, self._max_size, interp=1)
        bbox = tbbox.resize(label, (w, h), (img.shape[1], img.shape[0]))
        h, w, _ = img.shape
        img, flips = timage.random_flip(img, px=self._flip_p)
        bbox = tbbox.flip(bbox, (w, h), flip_x=flips[0])
        img = mx.nd.image.normalize(mx.nd.image.to_tensor(img), mean=self._mean,
                                    std=self._std)
        fh, fw, anchors = self._anchors(img.shape[1], img.shape[2])
        cls_t, box_t, mask = rpn_targets(bbox[:, :4].astype(np.float32), anchors,
                                         img.shape[2], img.shape[1], **self._sampler)
        return (img, bbox.astype(np.float32), [cls_t.reshape((fh, fw, -1))],
                [box_t.reshape((fh, fw, -1))], [mask.reshape((fh, fw, -1))])
