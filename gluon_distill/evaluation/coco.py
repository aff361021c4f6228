"""COCO AP@[.5:.95] by pycocotools' ``COCOeval``, with predictions assembled by image id.

Three silent ways raw COCO evaluation goes wrong are closed here:

* **Order.** GluonCV's ``COCODetectionMetric`` gives the n-th call's predictions to the n-th
  image of ``sorted(getImgIds())``; here every prediction carries its image id, so any order
  of calls scores the same.
* **Category ids.** The network predicts contiguous labels ``0..K-1``; COCOeval compares the
  JSON's category ids (COCO's own run 1..90 with gaps). Label ``k`` is written as
  ``category_ids[k]`` (from the dataset or ``model.json``), never ``k`` or ``k + 1``.
* **Box format.** Predictions are 0-based inclusive pixel corners of the original image
  (:mod:`gluon_distill.data.coco`); results are ``[x, y, w, h]`` with ``w = x2 - x1 + 1``, the
  inverse of the loader's ``x2 = x + w - 1``, so a prediction equal to a ground-truth record is
  exactly that annotation's ``bbox``.

The ground truth is the JSON itself (what anyone re-checking the results file with pycocotools
uses), with a missing ``iscrowd`` read as 0 and a missing ``area`` as ``w * h`` (raw
pycocotools raises ``KeyError`` on both). Only the processed images are evaluated.
"""
import contextlib
import copy
import io
import json
import math
import os

import numpy as np

from ..config import CHOICES, ConfigError
from ..io_utils import atomic_write_json

# names and ``COCOeval.stats`` indices of the summary numbers
SUMMARY = (('AP', 0), ('AP50', 1), ('AP75', 2), ('APs', 3), ('APm', 4), ('APl', 5))
SUMMARY_TEXT = {'AP': 'AP @[IoU=.50:.95]', 'AP50': 'AP @[IoU=.50]', 'AP75': 'AP @[IoU=.75]',
                'APs': 'AP small', 'APm': 'AP medium', 'APl': 'AP large'}


def _quiet(fn, *args):
    """``fn(*args)`` with pycocotools' progress prints swallowed."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def coco_ground_truth(annotations):
    """A pycocotools ``COCO`` of ``annotations`` (a JSON path or its parsed dict), with a
    missing ``iscrowd`` set to 0, a missing ``area`` to the bbox's ``w * h``, and repeats of
    an object dropped as the dataset loader drops them
    (:func:`~gluon_distill.data.coco.drop_duplicate_annotations`)."""
    from pycocotools.coco import COCO
    from ..data.coco import drop_duplicate_annotations
    if isinstance(annotations, (str, os.PathLike)):
        with open(annotations) as f:
            data = json.load(f)
    else:
        data = copy.deepcopy(annotations)
    data['annotations'] = drop_duplicate_annotations(data.get('annotations', []))
    for ann in data.get('annotations', []):
        ann.setdefault('iscrowd', 0)
        if 'area' not in ann:
            ann['area'] = float(ann['bbox'][2]) * float(ann['bbox'][3])
    gt = COCO()
    gt.dataset = data
    _quiet(gt.createIndex)
    return gt


class COCOEvaluator:
    """Accumulates per-image predictions by image id; scores them with ``COCOeval``.

    Parameters
    ----------
    annotations : str or dict or pycocotools.coco.COCO
        The ground-truth ``instances`` JSON (path or parsed), or a ``COCO`` object.
    category_ids : sequence of int
        JSON category id of each class label (``category_ids[k]`` for label ``k``).
    classes : sequence of str or None
        Class names for the per-class table; the categories' names by default.
    """

    def __init__(self, annotations, category_ids, classes=None):
        from pycocotools.coco import COCO
        self.coco_gt = annotations if isinstance(annotations, COCO) else \
            coco_ground_truth(annotations)
        self.category_ids = [int(c) for c in category_ids]
        if not self.category_ids:
            raise ValueError('category_ids must not be empty')
        unknown = [c for c in self.category_ids if c not in self.coco_gt.cats]
        if unknown:
            raise ValueError('category id(s) {} are not in the ground truth (it has {})'.format(
                unknown, sorted(self.coco_gt.cats)))
        self.classes = [str(c) for c in classes] if classes is not None else \
            [self.coco_gt.cats[c]['name'] for c in self.category_ids]
        if len(self.classes) != len(self.category_ids):
            raise ValueError('{} classes for {} category ids'.format(
                len(self.classes), len(self.category_ids)))
        self._ids = {str(i): i for i in self.coco_gt.getImgIds()}
        self.reset()

    def reset(self):
        """Forget every processed image."""
        self._results = {}  # ground-truth image id -> list of result dicts

    def process(self, image_ids, pred_boxes, pred_labels, pred_scores, *ground_truth):
        """Add the predictions of a batch of images, one list entry per image.

        Parameters
        ----------
        image_ids : list of int or str
            The JSON's image ids (a record's string id is accepted: ``'42'`` is image 42).
        pred_boxes : list of array (N, 4)
            ``xmin, ymin, xmax, ymax``: 0-based inclusive pixels of the original image.
        pred_labels : list of array (N,)
            Class labels ``0..K-1``; negative values are padding and ignored.
        pred_scores : list of array (N,)
        *ground_truth :
            Ignored (the JSON is the ground truth); accepted so that this evaluator takes
            :class:`~gluon_distill.evaluation.voc07.VOC07Evaluator`'s calls.
        """
        n = len(image_ids)
        if not len(pred_boxes) == len(pred_labels) == len(pred_scores) == n:
            raise ValueError('process() arguments must all have one entry per image')
        for image_id, boxes, labels, scores in zip(image_ids, pred_boxes, pred_labels,
                                                   pred_scores):
            key = self._ids.get(str(image_id))
            if key is None:
                raise ValueError('image id {!r} is not an image of the ground truth'.format(
                    image_id))
            if key in self._results:
                raise ValueError('image {!r} was already processed'.format(image_id))
            self._results[key] = self._to_results(key, boxes, labels, scores)

    def _to_results(self, image_id, boxes, labels, scores):
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        labels = np.asarray(labels).reshape(-1).astype(np.int64)
        scores = np.asarray(scores, np.float64).reshape(-1)
        if not len(boxes) == len(labels) == len(scores):
            raise ValueError('image {!r}: pred boxes/labels/scores lengths differ: {}/{}/{}'
                             .format(image_id, len(boxes), len(labels), len(scores)))
        keep = labels >= 0
        boxes, labels, scores = boxes[keep], labels[keep], scores[keep]
        if labels.size and labels.max() >= len(self.category_ids):
            raise ValueError('label {} out of range for {} classes in image {!r}'.format(
                labels.max(), len(self.category_ids), image_id))
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2] + 1.0], axis=1)
        order = np.argsort(-scores, kind='stable')
        return [{'image_id': image_id, 'category_id': self.category_ids[labels[i]],
                 'bbox': [float(v) for v in xywh[i]], 'score': float(scores[i])}
                for i in order]

    def results(self):
        """The COCO results list ``[{"image_id", "category_id", "bbox": [x, y, w, h],
        "score"}]``, images in processing order, descending score within an image."""
        return [r for rows in self._results.values() for r in rows]

    def write_results(self, path):
        """Write :meth:`results` as the COCO results JSON at ``path`` (atomically); returns
        ``path``. ``COCO.loadRes(path)`` reads it."""
        atomic_write_json(path, self.results(), indent=None)
        return path

    def evaluate(self):
        """Run ``COCOeval`` (bbox) over the processed images.

        Returns
        -------
        dict
            ``AP``, ``AP50``, ``AP75``, ``APs``, ``APm``, ``APl`` (floats in [0, 1], NaN where
            no ground truth falls in the range), ``AP_per_class`` (class -> AP@[.5:.95], NaN
            without ground truth), ``num_gt`` (class -> non-crowd boxes), ``num_det``
            (class -> detections), ``category_ids`` (class -> id), ``num_images`` and
            ``num_images_not_processed`` (ground-truth images never given to :meth:`process`).
        """
        from pycocotools.cocoeval import COCOeval
        image_ids = list(self._results)
        gt = self.coco_gt
        results = self.results()
        num_gt, num_det = {}, {}
        for name, cid in zip(self.classes, self.category_ids):
            anns = gt.loadAnns(gt.getAnnIds(imgIds=image_ids, catIds=[cid]))
            num_gt[name] = sum(1 for a in anns if not a.get('iscrowd', 0))
            num_det[name] = sum(1 for r in results if r['category_id'] == cid)
        out = {'num_gt': num_gt, 'num_det': num_det,
               'category_ids': dict(zip(self.classes, self.category_ids)),
               'num_images': len(image_ids),
               'num_images_not_processed': len(self._ids) - len(image_ids)}
        if not results or not image_ids:
            # loadRes cannot read an empty list: nothing detected scores 0 where there is
            # ground truth
            out.update({name: 0.0 for name, _ in SUMMARY})
            out['AP_per_class'] = {n: 0.0 if num_gt[n] else float('nan') for n in self.classes}
            return out
        dt = _quiet(gt.loadRes, copy.deepcopy(results))
        coco_eval = COCOeval(gt, dt, 'bbox')
        coco_eval.params.imgIds = sorted(image_ids, key=str)
        coco_eval.params.catIds = sorted(self.category_ids)
        _quiet(coco_eval.evaluate)
        _quiet(coco_eval.accumulate)
        _quiet(coco_eval.summarize)
        for name, index in SUMMARY:
            value = float(coco_eval.stats[index])
            out[name] = value if value >= 0 else float('nan')
        precision = coco_eval.eval['precision']  # (iou, recall, category, area, max dets)
        sorted_ids = list(coco_eval.params.catIds)
        out['AP_per_class'] = {}
        for name, cid in zip(self.classes, self.category_ids):
            p = precision[:, :, sorted_ids.index(cid), 0, -1]
            p = p[p > -1]
            out['AP_per_class'][name] = float(np.mean(p)) if p.size else float('nan')
        return out


class COCOValidationEvaluator(COCOEvaluator):
    """:class:`COCOEvaluator` for per-epoch validation (``eval.metric: coco``): the result's
    ``mAP``, the number the training loop logs and picks ``best.params`` by, is COCO
    AP@[.5:.95], and ``AP`` the per-class AP@[.5:.95]; the other summary numbers (``AP50``,
    ``AP75``, ``APs``, ``APm``, ``APl``) are kept, and ``metric`` is ``'coco'``."""

    def evaluate(self):
        result = super().evaluate()
        out = dict(result, metric='coco', mAP=result['AP'], AP=result['AP_per_class'])
        out.pop('AP_per_class')
        return out


VALIDATION_METRICS = CHOICES['eval.metric']


def validation_metric(eval_cfg, data_cfg, root=None):
    """``'voc07'`` or ``'coco'``: what per-epoch validation scores (``eval.metric``).

    ``auto`` (the default) is ``coco`` on COCO-format data
    (:func:`~gluon_distill.data.coco.is_coco_data`) and ``voc07`` otherwise. ``coco`` on VOC
    data raises :class:`~gluon_distill.config.ConfigError` (convert it with ``tools/convert.py``).
    """
    from ..data.coco import is_coco_data
    metric = getattr(eval_cfg, 'metric', 'auto') or 'auto'
    if metric not in VALIDATION_METRICS:
        raise ConfigError('eval.metric: expected one of {}, got {!r}'.format(
            ', '.join(VALIDATION_METRICS), metric))
    coco = is_coco_data(data_cfg, root)
    if metric == 'auto':
        return 'coco' if coco else 'voc07'
    if metric == 'coco' and not coco:
        raise ConfigError('eval.metric=coco needs COCO-format data (data.format=coco, '
                         'data.annotations, or a COCO root); this run reads VOC data {}: use '
                         'eval.metric=voc07, or convert it with tools/convert.py'.format(
                             getattr(data_cfg, 'root', '')))
    return metric


def validation_evaluator(eval_cfg, data_cfg, root, category_ids, classes):
    """The evaluator of per-epoch validation: None (the family's default, VOC07 at
    ``eval.iou_thresh``) or a :class:`COCOValidationEvaluator` on the validation split's
    JSON (``data.val_split`` of ``data_cfg``, see
    :func:`~gluon_distill.data.coco.coco_split_source`)."""
    if validation_metric(eval_cfg, data_cfg, root) == 'voc07':
        return None
    from ..data.coco import coco_split_source
    json_path = coco_split_source(data_cfg, root, data_cfg.val_split)[0]
    return COCOValidationEvaluator(json_path, category_ids, classes)


def format_coco_table(result, classes):
    """The summary (AP, AP50, AP75, AP small/medium/large), a per-class table
    ``class  id  #gt  #det  AP`` and the last line ``AP=0.xxxx``."""
    names = [str(c) for c in classes]
    lines = ['{:<18} {}'.format(SUMMARY_TEXT[key] + ':', _num(result[key])) for key, _ in SUMMARY]
    if result.get('num_images_not_processed'):
        lines.append('({} images of the annotation file were not evaluated)'.format(
            result['num_images_not_processed']))
    width = max([len('class')] + [len(n) for n in names])
    lines.append('%-*s %6s %7s %7s %7s' % (width, 'class', 'id', '#gt', '#det', 'AP'))
    for name in names:
        lines.append('%-*s %6d %7d %7d %s' % (width, name, result['category_ids'][name],
                                             result['num_gt'][name], result['num_det'][name],
                                             _num(result['AP_per_class'][name], 7)))
    lines.append('AP=%.4f' % result['AP'])
    return '\n'.join(lines)


def _num(value, width=6):
    return ' ' * (width - 3) + 'n/a' if math.isnan(value) else '%*.4f' % (width, value)
