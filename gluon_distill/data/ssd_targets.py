"""SSD training targets in NumPy, and the loader workers' transform (augmentation + targets).

Same targets as GluonCV's ``SSDTargetGenerator`` with ``negative_mining_ratio=-1`` (hard
negatives are mined later, in the loss), matched greedily over the few boxes instead of
sorting every anchor-box pair (:class:`SSDTargetEncoder`). Augmentation is
:mod:`gluon_distill.data.augment`.
"""
import numpy as np

import mxnet as mx

from .augment import SSDTrainAugment, _iou


class SSDTargetEncoder:
    """SSD training targets of one image, in NumPy, as GluonCV's ``SSDTargetGenerator`` with
    ``negative_mining_ratio=-1`` computes them (hard negatives are mined later, in the loss).

    Matching: greedy bipartite (each box takes its best free anchor, best pairs first), plus
    anchors tying with a box's best anchor, plus every other anchor whose best IoU reaches
    ``iou_thresh``. ``cls_targets`` = class + 1 for matched anchors, 0 (background) otherwise;
    ``box_targets`` = centre offsets and log sizes over ``box_norm``, 0 for unmatched anchors.

    Why NumPy: GluonCV's ``contrib.bipartite_matching`` sorts all anchor-box pairs per image
    and dominated the cost of a batch on CPU (60 ms for 16 images at 128 px here); the greedy
    loop below touches each box once.

    Parameters
    ----------
    anchors : array (N, 4) or (1, N, 4)
        Centre x, centre y, width, height in input pixels (the SSD's anchors).
    """

    def __init__(self, anchors, iou_thresh=0.5, box_norm=(0.1, 0.1, 0.2, 0.2)):
        if isinstance(anchors, mx.nd.NDArray):
            anchors = anchors.asnumpy()
        a = np.asarray(anchors, np.float64).reshape((-1, 4))
        self.center = a
        self.corner = np.concatenate([a[:, :2] - a[:, 2:] / 2, a[:, :2] + a[:, 2:] / 2], 1)
        self.iou_thresh = iou_thresh
        self.box_norm = np.asarray(box_norm, np.float64)

    @property
    def num_anchors(self):
        return len(self.center)

    def match(self, boxes):
        """Index of the matched box per anchor ``(N,)``, -1 where unmatched."""
        n = self.num_anchors
        match = -np.ones(n, np.int64)
        if not len(boxes):
            return match
        iou = _iou(self.corner, boxes[:, :4].astype(np.float64))    # (N, M)
        work = iou.copy()
        for _ in range(min(n, len(boxes))):
            flat = int(np.argmax(work))
            anchor, box = divmod(flat, work.shape[1])
            if work[anchor, box] <= 1e-12:
                break
            match[anchor] = box
            work[anchor, :] = -1
            work[:, box] = -1
        best_box = iou.argmax(axis=1)
        best_iou = iou[np.arange(n), best_box]
        ties = (match < 0) & (best_iou + 1e-12 >= iou.max(axis=0)[best_box])
        match[ties] = best_box[ties]
        rest = (match < 0) & (best_iou >= self.iou_thresh)
        match[rest] = best_box[rest]
        return match

    def __call__(self, boxes, ids):
        """``boxes (M, 4)`` corner pixels, ``ids (M,)`` classes -> ``cls (N,)``,
        ``box (N, 4)``, float32."""
        boxes = np.asarray(boxes, np.float64).reshape((-1, 4))
        match = self.match(boxes)
        pos = match >= 0
        cls = np.zeros(self.num_anchors, np.float32)
        cls[pos] = np.asarray(ids).reshape(-1)[match[pos]] + 1
        box = np.zeros((self.num_anchors, 4), np.float32)
        if pos.any():
            g = boxes[match[pos]]
            gw, gh = g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]
            gx, gy = g[:, 0] + gw / 2, g[:, 1] + gh / 2
            a = self.center[pos]
            box[pos] = np.stack([(gx - a[:, 0]) / a[:, 2] / self.box_norm[0],
                                 (gy - a[:, 1]) / a[:, 3] / self.box_norm[1],
                                 np.log(gw / a[:, 2]) / self.box_norm[2],
                                 np.log(gh / a[:, 3]) / self.box_norm[3]], axis=1)
        return cls, box


class SSDTrainTransform:
    """Augmentation plus targets, for the loader's workers:
    ``(img, label) -> (uint8 (S, S, 3), cls_targets (N,), box_targets (N, 4))``."""

    def __init__(self, data_shape, anchors, mean=(0.485, 0.456, 0.406), iou_thresh=0.5):
        self.augment = SSDTrainAugment(data_shape, mean)
        self.encoder = SSDTargetEncoder(anchors, iou_thresh)

    def __call__(self, img, label):
        img, label = self.augment(img, label)
        cls, box = self.encoder(label[:, :4], label[:, 4])
        return img, cls, box
