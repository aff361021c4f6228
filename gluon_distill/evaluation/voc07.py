"""PASCAL VOC2007 detection metric (11-point interpolated AP), as the official devkit computes it.

The reference is the devkit's ``VOCevaldet.m``:

* per class, the detections of all images are sorted by descending score (MATLAB's ``sort`` is
  stable, so equal scores keep their input order);
* each detection takes the ground truth of the same class and image with the highest IoU, where
  widths and heights count pixels (``xmax - xmin + 1``) and only boxes that really overlap
  (``iw > 0 and ih > 0``) are candidates;
* ``ovmax >= minoverlap``: a difficult box makes the detection "don't care" (neither TP nor FP),
  an already matched box makes it a FP (duplicate), otherwise it is a TP and the box is matched;
  below the threshold it is a FP;
* difficult boxes are not positives; AP = mean over ``t in 0:0.1:1`` of the highest precision at
  recall ``>= t`` (0 if that recall is never reached).

A class without any non-difficult ground truth has no recall: its AP is NaN and it is left out of
the mean (GluonCV's ``VOC07MApMetric`` does the same).

Boxes are 0-based pixels of the original image (see :mod:`gluon_distill.data.records`); the
devkit result files are 1-based, so the writer adds 1 and the reader subtracts it.
"""
import math
import os

import numpy as np

from ..io_utils import atomic_write_json

# The devkit's ``0:0.1:1``, spelt as numpy produces it (0.30000000000000004, ...) like every
# Python port; a recall of exactly 0.3 therefore does not reach the 4th point.
RECALL_POINTS = np.arange(0.0, 1.1, 0.1)


class VOC07Evaluator:
    """Accumulates per-image predictions and ground truth, then computes VOC07 AP per class.

    Parameters
    ----------
    classes : sequence of str
        Class names; label ``k`` is ``classes[k]``.
    iou_thresh : float
        Minimum IoU for a detection to match a ground-truth box.
    strict : bool
        False (default) follows ``VOCevaldet.m`` (``ovmax >= iou_thresh`` matches). True follows
        the py-faster-rcnn ``voc_eval.py`` port (``ovmax > iou_thresh``); the two only differ for
        an IoU exactly equal to the threshold.
    """

    def __init__(self, classes, iou_thresh=0.5, *, strict=False):
        self.classes = [str(name) for name in classes]
        if not self.classes:
            raise ValueError('classes must not be empty')
        if not 0.0 <= iou_thresh <= 1.0:
            raise ValueError('iou_thresh must be in [0, 1], got %r' % (iou_thresh,))
        self.iou_thresh = float(iou_thresh)
        self.strict = bool(strict)
        self.reset()

    def reset(self):
        """Forget every processed image."""
        self._image_ids = []
        self._known_ids = set()
        self._dets = []  # per image: (boxes (N,4) f8, labels (N,) i8, scores (N,) f8)
        self._gts = []   # per image: (boxes (M,4) f8, labels (M,) i8, difficult (M,) bool)

    def process(self, image_ids, pred_boxes, pred_labels, pred_scores,
                gt_boxes, gt_labels, gt_difficult=None):
        """Add a batch of images; every argument is a list with one entry per image.

        Parameters
        ----------
        image_ids : list of str
            Unique image ids (no whitespace: they are written to devkit files).
        pred_boxes : list of array (N, 4)
            Predicted ``xmin, ymin, xmax, ymax`` in 0-based pixels of the original image.
        pred_labels : list of array (N,)
            Predicted class indices; negative values are padding and ignored.
        pred_scores : list of array (N,)
            Confidence of each prediction.
        gt_boxes : list of array (M, 4)
            Ground-truth boxes, same convention as ``pred_boxes``.
        gt_labels : list of array (M,)
            Ground-truth class indices; negative values are padding and ignored.
        gt_difficult : list of (array (M,) of bool, or None), or None
            VOC "difficult" flags; None means no box is difficult.
        """
        n = len(image_ids)
        if gt_difficult is None:
            gt_difficult = [None] * n
        per_image = [pred_boxes, pred_labels, pred_scores, gt_boxes, gt_labels, gt_difficult]
        if any(len(arg) != n for arg in per_image):
            raise ValueError('process() arguments must all have one entry per image')
        for image_id, pb, pl, ps, gb, gl, gd in zip(image_ids, *per_image):
            self._add_image(str(image_id), pb, pl, ps, gb, gl, gd)

    def _add_image(self, image_id, pred_boxes, pred_labels, pred_scores,
                   gt_boxes, gt_labels, gt_difficult):
        if image_id in self._known_ids:
            raise ValueError('image %r was already processed' % image_id)
        if not image_id or any(ch.isspace() for ch in image_id):
            raise ValueError('image id %r is empty or contains whitespace' % image_id)
        boxes, labels, scores = _clean_predictions(pred_boxes, pred_labels, pred_scores)
        gboxes, glabels, gdiff = _clean_ground_truth(gt_boxes, gt_labels, gt_difficult)
        for lab in (labels, glabels):
            if lab.size and lab.max() >= len(self.classes):
                raise ValueError('label %d out of range for %d classes in image %r'
                                 % (lab.max(), len(self.classes), image_id))
        self._known_ids.add(image_id)
        self._image_ids.append(image_id)
        self._dets.append((boxes, labels, scores))
        self._gts.append((gboxes, glabels, gdiff))

    def evaluate(self):
        """Compute the metric over every processed image.

        Returns
        -------
        dict
            ``mAP`` (float, mean of the non-NaN APs, NaN if none), ``AP`` (class -> float, NaN
            without positives), ``num_gt`` (class -> non-difficult boxes), ``num_det``
            (class -> detections), ``num_images`` (int).
        """
        det_img, det_boxes, det_labels, det_scores = _stack(self._dets)
        gt_img, gt_boxes, gt_labels, gt_diff = _stack(self._gts)
        gt_diff = gt_diff.astype(bool)
        n_images = len(self._image_ids)
        ap, num_gt, num_det = {}, {}, {}
        for k, name in enumerate(self.classes):
            dm, gm = det_labels == k, gt_labels == k
            tp, fp = match_detections(
                det_img[dm], det_boxes[dm], det_scores[dm],
                gt_img[gm], gt_boxes[gm], gt_diff[gm], n_images,
                self.iou_thresh, self.strict)
            npos = int(np.count_nonzero(~gt_diff[gm]))
            ap[name] = voc07_average_precision(tp, fp, npos)
            num_gt[name] = npos
            num_det[name] = int(np.count_nonzero(dm))
        valid = [v for v in ap.values() if not math.isnan(v)]
        m_ap = float(np.mean(valid)) if valid else float('nan')
        return {'mAP': m_ap, 'AP': ap, 'num_gt': num_gt, 'num_det': num_det,
                'num_images': n_images}

    def write_devkit_results(self, results_dir, split='test', comp='comp4'):
        """Write the devkit's ``<comp>_det_<split>_<class>.txt`` file of every class.

        Each line is ``image_id score xmin ymin xmax ymax`` with 1-based pixel coordinates
        (the stored 0-based box plus 1), the score with 6 decimals and the coordinates with 1.
        Lines follow the processing order of the images, and descending score within an image,
        as a writer looping over the test set would produce them. Classes without detections
        get an empty file.

        Returns
        -------
        list of str
            The written paths, in class order.
        """
        os.makedirs(results_dir, exist_ok=True)
        det_img, det_boxes, det_labels, det_scores = _stack(self._dets)
        paths = []
        for k, name in enumerate(self.classes):
            sel = np.flatnonzero(det_labels == k)
            order = sel[np.lexsort((-det_scores[sel], det_img[sel]))]
            path = os.path.join(results_dir, devkit_filename(name, split, comp))
            ids = [self._image_ids[i] for i in det_img[order].tolist()]
            with open(path, 'w') as f:
                f.writelines(map(_devkit_line, ids, det_scores[order].tolist(),
                                 (det_boxes[order] + 1.0).tolist()))
            paths.append(path)
        return paths


def devkit_filename(class_name, split='test', comp='comp4'):
    """The devkit's result file name of one class, e.g. ``comp4_det_test_dog.txt``."""
    if os.sep in class_name or (os.altsep and os.altsep in class_name):
        raise ValueError('class name %r cannot be used in a file name' % class_name)
    return '%s_det_%s_%s.txt' % (comp, split, class_name)


def _devkit_line(image_id, score, box_1based):
    return '%s %.6f %.1f %.1f %.1f %.1f\n' % (image_id, score, *box_1based)


def read_devkit_results(results_dir, classes, split='test', comp='comp4'):
    """Read back the files of :meth:`VOC07Evaluator.write_devkit_results`.

    Returns
    -------
    dict
        ``image_id -> (boxes (N, 4) float64 0-based, labels (N,) int64, scores (N,) float64)``,
        images in order of first appearance, detections of an image in class order then file
        order. Images without any detection are absent.
    """
    per_image = {}
    for k, name in enumerate(classes):
        path = os.path.join(results_dir, devkit_filename(str(name), split, comp))
        with open(path) as f:
            for line_no, line in enumerate(f, 1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 6:
                    raise ValueError('%s:%d: expected 6 fields, got %d'
                                     % (path, line_no, len(fields)))
                rows = per_image.setdefault(fields[0], [])
                rows.append((k, float(fields[1]), [float(v) - 1.0 for v in fields[2:]]))
    return {image_id: _rows_to_arrays(rows) for image_id, rows in per_image.items()}


def _rows_to_arrays(rows):
    labels = np.array([r[0] for r in rows], dtype=np.int64)
    scores = np.array([r[1] for r in rows], dtype=np.float64)
    boxes = np.array([r[2] for r in rows], dtype=np.float64).reshape(-1, 4)
    return boxes, labels, scores


NO_GROUND_TRUTH = 'no ground truth: excluded from mAP'


def format_ap_table(result, classes):
    """Aligned table ``class  #gt  #det  AP`` of an :meth:`~VOC07Evaluator.evaluate` result.

    A class without non-difficult ground truth (AP NaN) shows :data:`NO_GROUND_TRUTH` in its
    AP column. The last line is ``mAP=0.xxxx`` (4 decimals, the mean over the classes with
    ground truth; ``mAP=nan`` when no class has any).
    """
    names = [str(c) for c in classes]
    width = max([len('class')] + [len(n) for n in names])
    lines = ['%-*s %7s %7s %7s' % (width, 'class', '#gt', '#det', 'AP')]
    for name in names:
        ap = result['AP'][name]
        ap_text = ' ' + NO_GROUND_TRUTH if math.isnan(ap) else '%7.4f' % ap
        lines.append('%-*s %7d %7d %s' % (width, name, result['num_gt'][name],
                                         result['num_det'][name], ap_text))
    lines.append('mAP=%.4f' % result['mAP'])
    return '\n'.join(lines)


def save_metrics_json(result, path):
    """Write ``result`` as JSON (NaN becomes null), atomically."""
    atomic_write_json(path, _jsonable(result), allow_nan=False)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    return value


# ----------------------------------------------------------------------------- core metric

def match_detections(det_img, det_boxes, det_scores, gt_img, gt_boxes, gt_difficult,
                     n_images, iou_thresh=0.5, strict=False):
    """Label the detections of one class as TP / FP / don't care, in devkit order.

    Parameters
    ----------
    det_img : array (D,) int
        Image index of each detection.
    det_boxes : array (D, 4)
    det_scores : array (D,)
    gt_img : array (G,) int, non-decreasing
        Image index of each ground-truth box (boxes grouped by image).
    gt_boxes : array (G, 4)
    gt_difficult : array (G,) bool
    n_images : int
        Number of images (upper bound of the image indices).
    iou_thresh, strict :
        See :class:`VOC07Evaluator`.

    Returns
    -------
    tp, fp : array (D,) bool
        Sorted by descending score (stable); a detection on a difficult box is neither.
    """
    order = np.argsort(-np.asarray(det_scores, dtype=np.float64), kind='stable')
    det_img = np.asarray(det_img, dtype=np.int64)[order]
    det_boxes = np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)[order]
    gt_img = np.asarray(gt_img, dtype=np.int64)
    if np.any(np.diff(gt_img) < 0):
        raise ValueError('gt_img must be grouped by image (non-decreasing)')
    gt_count = np.bincount(gt_img, minlength=n_images)
    gt_start = np.cumsum(gt_count) - gt_count
    ovmax, jmax = best_ground_truth(det_img, det_boxes, np.asarray(gt_boxes, np.float64),
                                    gt_start, gt_count)
    hit = ovmax > iou_thresh if strict else ovmax >= iou_thresh
    on_difficult = np.zeros_like(hit)
    on_difficult[hit] = np.asarray(gt_difficult, dtype=bool)[jmax[hit]]
    candidate = hit & ~on_difficult
    # Greedy matching in score order == only the first candidate of each box is a TP, the
    # later ones are duplicates (FP); difficult and missed detections never mark a box.
    tp = np.zeros_like(hit)
    _, first = np.unique(jmax[candidate], return_index=True)
    tp[np.flatnonzero(candidate)[first]] = True
    fp = ~hit | (candidate & ~tp)
    return tp, fp


def best_ground_truth(det_img, det_boxes, gt_boxes, gt_start, gt_count):
    """For every detection, the overlapping ground truth of its image with the highest IoU.

    Parameters
    ----------
    det_img : array (D,) int
    det_boxes : array (D, 4) float
    gt_boxes : array (G, 4) float, grouped by image
    gt_start, gt_count : array (n_images,) int
        Where each image's boxes start in ``gt_boxes`` and how many there are.

    Returns
    -------
    ovmax : array (D,) float
        Highest IoU, ``-inf`` when no box of the image overlaps the detection.
    jmax : array (D,) int
        Index into ``gt_boxes`` of that box (the first one on ties, like the devkit's
        ``if ov > ovmax``), -1 when none.
    """
    n_dets = len(det_img)
    ovmax = np.full(n_dets, -np.inf)
    jmax = np.full(n_dets, -1, dtype=np.int64)
    per_det = gt_count[det_img]
    n_pairs = int(per_det.sum())
    if n_pairs == 0:
        return ovmax, jmax
    # every (detection, ground truth of the same image) pair, grouped by detection
    pair_det = np.repeat(np.arange(n_dets), per_det)
    first_pair = np.cumsum(per_det) - per_det
    pair_gt = gt_start[det_img][pair_det] + np.arange(n_pairs) - first_pair[pair_det]
    iou = iou_plus1(det_boxes[pair_det], gt_boxes[pair_gt])
    ranked = np.lexsort((pair_gt, -iou, pair_det))
    has_gt = per_det > 0
    best = ranked[first_pair[has_gt]]
    ovmax[has_gt] = iou[best]
    jmax[has_gt] = np.where(np.isfinite(iou[best]), pair_gt[best], -1)
    return ovmax, jmax


def iou_plus1(boxes_a, boxes_b):
    """IoU of aligned box pairs with inclusive pixel extents (``width = xmax - xmin + 1``).

    Parameters
    ----------
    boxes_a, boxes_b : array (P, 4)

    Returns
    -------
    array (P,)
        IoU, ``-inf`` for pairs that do not overlap (``iw <= 0`` or ``ih <= 0``): the devkit
        never considers them as a match.
    """
    iw = np.minimum(boxes_a[:, 2], boxes_b[:, 2]) - np.maximum(boxes_a[:, 0], boxes_b[:, 0]) + 1
    ih = np.minimum(boxes_a[:, 3], boxes_b[:, 3]) - np.maximum(boxes_a[:, 1], boxes_b[:, 1]) + 1
    inter = iw * ih
    area_a = (boxes_a[:, 2] - boxes_a[:, 0] + 1) * (boxes_a[:, 3] - boxes_a[:, 1] + 1)
    area_b = (boxes_b[:, 2] - boxes_b[:, 0] + 1) * (boxes_b[:, 3] - boxes_b[:, 1] + 1)
    overlaps = (iw > 0) & (ih > 0)
    iou = np.full(len(inter), -np.inf)
    iou[overlaps] = inter[overlaps] / (area_a + area_b - inter)[overlaps]
    return iou


def voc07_average_precision(tp, fp, npos):
    """11-point interpolated AP.

    Parameters
    ----------
    tp, fp : array (D,) bool
        Per detection in descending score order; a "don't care" detection has both False.
    npos : int
        Number of non-difficult ground-truth boxes.

    Returns
    -------
    float
        ``mean over t in RECALL_POINTS of max(precision[recall >= t])`` (0 when recall ``t`` is
        never reached); NaN when ``npos == 0``.
    """
    if npos == 0:
        return float('nan')
    tp_cum = np.cumsum(tp, dtype=np.float64)
    fp_cum = np.cumsum(fp, dtype=np.float64)
    recall = tp_cum / npos
    seen = tp_cum + fp_cum
    # Leading "don't care" detections give 0/0; MATLAB's max() skips that NaN, a 0 is the same.
    precision = np.divide(tp_cum, seen, out=np.zeros_like(tp_cum), where=seen > 0)
    best_from = np.maximum.accumulate(precision[::-1])[::-1]  # max precision over [i:]
    best_from = np.append(best_from, 0.0)
    # recall is non-decreasing: the first index with recall >= t starts the allowed suffix
    first = np.searchsorted(recall, RECALL_POINTS, side='left')
    return float(np.mean(best_from[first]))


def _clean_predictions(boxes, labels, scores):
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not len(boxes) == len(labels) == len(scores):
        raise ValueError('pred boxes/labels/scores lengths differ: %d/%d/%d'
                         % (len(boxes), len(labels), len(scores)))
    keep = labels >= 0
    return boxes[keep], labels[keep].astype(np.int64), scores[keep]


def _clean_ground_truth(boxes, labels, difficult):
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(labels).reshape(-1)
    if difficult is None:
        difficult = np.zeros(len(labels), dtype=bool)
    difficult = np.asarray(difficult).reshape(-1).astype(bool)
    if not len(boxes) == len(labels) == len(difficult):
        raise ValueError('gt boxes/labels/difficult lengths differ: %d/%d/%d'
                         % (len(boxes), len(labels), len(difficult)))
    keep = labels >= 0
    return boxes[keep], labels[keep].astype(np.int64), difficult[keep]


def _stack(per_image):
    """Concatenate per-image ``(boxes (K,4), labels (K,), extra (K,))`` tuples.

    Returns image index (K_total,), boxes (K_total, 4), labels (K_total,), extra (K_total,).
    """
    counts = np.array([len(item[1]) for item in per_image], dtype=np.int64)
    img = np.repeat(np.arange(len(per_image)), counts)
    if not per_image:
        return img, np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0)
    boxes = np.concatenate([item[0] for item in per_image])
    labels = np.concatenate([item[1] for item in per_image])
    extra = np.concatenate([item[2] for item in per_image])
    return img, boxes, labels, extra
