"""COCO-format datasets: a COCO ``instances`` JSON and an image folder, validated like VOC.

The records are the ones the VOC loader produces (:class:`~gluon_distill.data.records.Record`),
so :class:`~gluon_distill.data.voc.DetectionDataset`, the loaders, training and the VOC07
validation work unchanged. What is COCO-specific:

* **Classes and category ids.** The class list is the categories' names in sorted category-id
  order (GluonCV's ``COCODetection`` order); ``category_ids[k]`` is the JSON's id of class ``k``.
  Labels are contiguous (``0..K-1``); the ids map predictions back to the JSON
  (:class:`gluon_distill.evaluation.coco.COCOEvaluator`) and are recorded in ``model.json``.
* **Boxes.** A COCO ``bbox`` ``[x, y, w, h]`` becomes ``[x, y, x + w - 1, y + h - 1]``: 0-based
  inclusive pixel corners, GluonCV's convention and the one VOC records use (VOC ``xmin`` 1-based
  inclusive minus 1). The way back is ``w = x2 - x1 + 1``, so a box survives the round trip
  exactly, and a VOC box converted to COCO (:mod:`gluon_distill.data.convert`) is the same
  record either way. A box narrower or lower than one pixel has no area in this convention and
  is dropped (GluonCV drops it too).
* **Duplicates.** The same category, bbox and ``iscrowd`` twice for one image is one object: the
  copies are dropped (``duplicate_object``, fixed), here and in the COCO AP ground truth
  (:func:`drop_duplicate_annotations`). Like ``missing_iscrowd``, they are reported for the
  images of the split being loaded only.
* **Crowd regions** (``iscrowd: 1``) are never training targets (as in COCO and GluonCV); with
  ``keep_crowd=True`` (validation) they are kept and flagged ``difficult`` so the VOC07
  evaluator ignores them, as COCOeval does. A non-standard ``"difficult": 1`` field (written by
  the VOC -> COCO converter) is read as VOC's flag: a training target, ignored by VOC07.

Layouts (:func:`coco_split_paths`): GluonCV's ``~/.mxnet/datasets/coco``
(``annotations/instances_<split>.json`` and the image folder ``<split>/``, splits ``train2017``,
``val2017``), or any JSON and image folder (:func:`load_coco_records`).

Problems are reported, never raised, with the classes of :mod:`gluon_distill.data.voc`
(severities ``fatal``/``skipped``/``fixed``/``warning``); each names the JSON file and the image
or annotation id. Callers decide with ``report.raise_if_fatal()``.
"""
import glob
import json
import os
from collections import Counter, namedtuple

import numpy as np

from .image_checks import checked_image_size
from .records import Record
from .report import ON_BAD_IMAGE, ValidationReport
from .splits import SEEDED_SPLITS, seeded_split
from .voc import normalized_classes

# GluonCV's COCO root and its splits
GLUONCV_COCO_ROOT = '~/.mxnet/datasets/coco'
GLUONCV_COCO_SPLITS = ('train2017', 'val2017')
ANNOTATION_PATTERN = os.path.join('annotations', 'instances_{}.json')
# Image folders tried, in order, for split S of a COCO root (the first is GluonCV's).
IMAGE_DIR_CANDIDATES = ('{split}', os.path.join('images', '{split}'), 'images', 'JPEGImages')


# ----------------------------------------------------------------------------- layouts

def is_coco_layout(root):
    """Whether ``root`` holds ``annotations/instances_*.json`` (GluonCV's COCO layout)."""
    return bool(glob.glob(os.path.join(root, ANNOTATION_PATTERN.format('*'))))


def coco_splits(root):
    """The split names of a COCO root: the ``*`` of its ``annotations/instances_*.json``."""
    prefix, suffix = ANNOTATION_PATTERN.split('{}')
    return sorted(os.path.relpath(p, root)[len(prefix):-len(suffix)]
                  for p in glob.glob(os.path.join(root, ANNOTATION_PATTERN.format('*'))))


def coco_split_paths(root, split):
    """``(annotation JSON, image folder)`` of ``split`` in a COCO root.

    The JSON is ``root/annotations/instances_<split>.json``; the image folder the first existing
    one of ``root/<split>/`` (GluonCV), ``root/images/<split>/``, ``root/images/``,
    ``root/JPEGImages/`` (the generated synthetic root). Raises FileNotFoundError naming the
    available splits.
    """
    json_path = os.path.join(root, ANNOTATION_PATTERN.format(split))
    if not os.path.isfile(json_path):
        raise FileNotFoundError('COCO root {}: no {} (splits available: {})'.format(
            root, ANNOTATION_PATTERN.format(split), ', '.join(coco_splits(root)) or 'none'))
    for candidate in IMAGE_DIR_CANDIDATES:
        image_dir = os.path.join(root, candidate.format(split=split))
        if os.path.isdir(image_dir):
            return json_path, image_dir
    raise FileNotFoundError('COCO root {}: no image folder for split {!r} (looked for {})'.format(
        root, split, ', '.join(c.format(split=split) + '/' for c in IMAGE_DIR_CANDIDATES)))


# ----------------------------------------------------------------------------- reading

def read_coco_json(path, report):
    """The parsed JSON at ``path`` if it has ``images``, ``annotations`` and ``categories``
    lists, else None (a fatal ``malformed_json`` problem)."""
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as err:
        report.add('malformed_json', 'fatal', path, 'cannot read: {}'.format(err.strerror or err))
        return None
    except ValueError as err:
        report.add('malformed_json', 'fatal', path, 'not valid JSON: {}'.format(err))
        return None
    if not isinstance(data, dict):
        report.add('malformed_json', 'fatal', path, 'top level is a {}, not an object with '
                   'images, annotations, categories'.format(type(data).__name__))
        return None
    missing = [key for key in ('images', 'annotations', 'categories')
               if not isinstance(data.get(key), list)]
    if missing:
        report.add('malformed_json', 'fatal', path, 'no {} list (a COCO instances file has '
                   'images, annotations and categories)'.format(', '.join(missing)))
        return None
    return data


def _valid_id(value):
    """COCO ids are integers; strings without whitespace are accepted too."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and value != '' and not any(c.isspace() for c in value)


def coco_categories(data, path, report, classes=None, category_ids=None):
    """``(classes, category_ids)`` of the JSON's categories, or ``(None, None)`` (fatal).

    Without ``classes``/``category_ids``: every category, in sorted id order. With
    ``category_ids`` (e.g. from ``model.json``): those categories in that order, their names
    checked against ``classes`` when given. With ``classes`` only: the categories of those names.
    """
    by_id, names = {}, {}
    ok = True
    for name in classes or ():
        report.class_name(str(name), given=True)
    for number, cat in enumerate(data['categories'], 1):
        cid = cat.get('id') if isinstance(cat, dict) else None
        name = cat.get('name') if isinstance(cat, dict) else None
        if not isinstance(cid, int) or isinstance(cid, bool) or not isinstance(name, str) \
                or not name.strip():
            report.add('malformed_json', 'fatal', path, 'category {} needs an integer id and a '
                       'name, got {!r}'.format(number, cat))
            ok = False
            continue
        if cid in by_id:
            report.add('duplicate_category', 'fatal', path, 'category id {} appears twice '
                       '({!r} and {!r})'.format(cid, by_id[cid], name))
            ok = False
            continue
        name = report.class_name(name)
        if name in names:
            report.add('duplicate_category', 'fatal', path, 'category name {!r} has two ids, {} '
                       'and {}'.format(name, names[name], cid))
            ok = False
            continue
        by_id[cid], names[name] = name, cid
    if not ok:
        return None, None
    if not by_id:
        report.add('malformed_json', 'fatal', path, 'categories is empty')
        return None, None
    if category_ids:
        unknown = [c for c in category_ids if c not in by_id]
        if unknown:
            report.add('unknown_category', 'fatal', path, 'category id(s) {} of the model are not '
                       'in this file (it has {})'.format(unknown, sorted(by_id)))
            return None, None
        ids = [int(c) for c in category_ids]
        if classes is not None:
            classes = normalized_classes(classes)
            wrong = ['{} is {!r} here, {!r} in the model'.format(c, by_id[c], n)
                     for c, n in zip(ids, classes) if by_id[c] != n]
            if len(classes) != len(ids) or wrong:
                report.add('category_mismatch', 'fatal', path, 'the classes do not match the '
                           'category ids: {}'.format('; '.join(wrong) or '{} classes for {} ids'
                                                     .format(len(classes), len(ids))))
                return None, None
        return [by_id[c] for c in ids], ids
    if classes is not None:
        classes = normalized_classes(classes)
        unknown = [n for n in classes if n not in names]
        if unknown:
            report.add('unknown_class', 'fatal', path, 'class(es) {} are not categories of this '
                       'file (it has {})'.format(', '.join(unknown), ', '.join(sorted(names))))
            return None, None
        return classes, [names[n] for n in classes]
    ids = sorted(by_id)
    return [by_id[c] for c in ids], ids


def _image_entries(data, path, report):
    """``{image id: entry}`` of the valid image entries (duplicates and malformed ones fatal)."""
    images = {}
    for number, entry in enumerate(data['images'], 1):
        if not isinstance(entry, dict) or not _valid_id(entry.get('id')):
            report.add('malformed_json', 'fatal', path, 'image {} has no valid id: {!r}'.format(
                number, entry))
            continue
        image_id = entry['id']
        file_name = entry.get('file_name')
        if not isinstance(file_name, str) or not file_name.strip():
            report.add('malformed_json', 'fatal', path, 'image id {} has no file_name'.format(
                image_id))
            continue
        if image_id in images:
            report.add('duplicate_id', 'fatal', path, 'image id {} appears twice ({} and {})'
                       .format(image_id, images[image_id]['file_name'], file_name))
            continue
        images[image_id] = entry
    return images


_Annotation = namedtuple('_Annotation', 'where bbox label crowd difficult has_iscrowd')


def duplicate_key(ann):
    """What makes two annotations of one image the same object: category, bbox, iscrowd
    (None for an annotation too malformed to compare)."""
    try:
        return (ann['category_id'], tuple(float(v) for v in ann['bbox']),
                bool(ann.get('iscrowd', 0)))
    except (KeyError, TypeError, ValueError):
        return None


def drop_duplicate_annotations(annotations):
    """``annotations`` without the repeats of an earlier one of the same image
    (:func:`duplicate_key`), in file order; what :func:`load_coco_records` drops too."""
    seen, kept = set(), []
    for ann in annotations:
        key = duplicate_key(ann) if isinstance(ann, dict) else None
        if key is not None:
            key = (ann.get('image_id'),) + key
            if key in seen:
                continue
            seen.add(key)
        kept.append(ann)
    return kept


def _annotations_by_image(data, path, images, category_index, report):
    """``{image id: [_Annotation]}`` of the usable annotations; every fatal defect reported
    (the others, a missing ``iscrowd`` or a duplicate, are reported per image by
    :func:`_record`, so that a split counts its own).

    Returns None if any annotation is fatally wrong.
    """
    per_image = {}
    seen_ids = {}
    ok = True
    for number, ann in enumerate(data['annotations'], 1):
        if not isinstance(ann, dict):
            report.add('malformed_json', 'fatal', path, 'annotation {} is not an object'.format(
                number))
            ok = False
            continue
        ann_id = ann.get('id')
        where = 'annotation id {}'.format(ann_id) if ann_id is not None else \
            'annotation {} (no id)'.format(number)
        if not _valid_id(ann_id):
            report.add('malformed_json', 'fatal', path, '{}: no valid id'.format(where))
            ok = False
        elif ann_id in seen_ids:
            report.add('duplicate_id', 'fatal', path, 'annotation id {} appears twice (images {} '
                       'and {}): pycocotools keeps only one of them, so evaluation would lose '
                       'a box; give every annotation its own id'.format(
                           ann_id, seen_ids[ann_id], ann.get('image_id')))
            ok = False
        else:
            seen_ids[ann_id] = ann.get('image_id')
        image_id = ann.get('image_id')
        if image_id not in images:
            report.add('unknown_image', 'fatal', path, '{}: image_id {!r} is not an image of '
                       'this file'.format(where, image_id))
            ok = False
            continue
        where = '{} (image id {})'.format(where, image_id)
        category = ann.get('category_id')
        if category not in category_index:
            report.add('unknown_category', 'fatal', path, '{}: category_id {!r} is not a '
                       'category of the classes (known ids: {})'.format(
                           where, category, sorted(category_index)))
            ok = False
            continue
        bbox = ann.get('bbox')
        try:
            bbox = [float(v) for v in bbox]
            if len(bbox) != 4 or not all(np.isfinite(bbox)):
                raise ValueError
        except (TypeError, ValueError):
            report.add('bad_coordinate', 'fatal', path, '{}: bbox is {!r}, not 4 numbers '
                       '[x, y, width, height]'.format(where, ann.get('bbox')))
            ok = False
            continue
        per_image.setdefault(image_id, []).append(_Annotation(
            where, bbox, category_index[category], bool(ann.get('iscrowd', 0)),
            bool(ann.get('difficult', 0)), 'iscrowd' in ann))
    return per_image if ok else None


def _image_size(path, where, entry, image_path, report, check_images):
    """Real ``(width, height)`` of an image entry's file, or None after a fatal or skipped
    problem (see :func:`~gluon_distill.data.image_checks.checked_image_size`)."""
    try:
        annotated = (int(entry['width']), int(entry['height']))
        if annotated[0] <= 0 or annotated[1] <= 0:
            raise ValueError
    except (KeyError, TypeError, ValueError):
        annotated = None
        report.add('missing_size', 'fixed', path, '{}: no valid width/height; using the real '
                   'image size'.format(where))
    if not check_images and annotated is not None:
        return annotated
    return checked_image_size(path, image_path, annotated, report, check_images)


def coco_box_to_corners(bbox):
    """COCO ``[x, y, w, h]`` -> 0-based inclusive ``[x1, y1, x2, y2]`` (``x2 = x + w - 1``)."""
    x, y, w, h = bbox
    return [x, y, x + w - 1.0, y + h - 1.0]


def corners_to_coco_box(box):
    """0-based inclusive ``[x1, y1, x2, y2]`` -> COCO ``[x, y, w, h]`` (``w = x2 - x1 + 1``)."""
    x1, y1, x2, y2 = box
    return [x1, y1, x2 - x1 + 1.0, y2 - y1 + 1.0]


def _fmt(values):
    return '[{}]'.format(', '.join('{:g}'.format(v) for v in values))


def _check_box(path, where, bbox, size, report):
    """The clipped 0-based inclusive corners of a COCO bbox, None if dropped (zero area), or
    False if fatal (entirely outside the image)."""
    width, height = size
    x, y, w, h = bbox
    if w > 0 and h > 0 and (x >= width or y >= height or x + w <= 0 or y + h <= 0):
        report.add('box_outside_image', 'fatal', path, '{}: bbox {} lies entirely outside the '
                   '{}x{} image (is it [x, y, width, height]?)'.format(
                       where, _fmt(bbox), width, height))
        return False
    corners = np.array(coco_box_to_corners(bbox), np.float64)
    clipped = np.clip(corners, 0.0, [width - 1, height - 1, width - 1, height - 1])
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        report.add('boxes_dropped_zero_area', 'fixed', path, '{}: bbox {} has no area (in '
                   'pixels x2 = x + w - 1 needs width and height above 1); dropped'.format(
                       where, _fmt(bbox)))
        return None
    if not np.array_equal(clipped, corners):
        report.add('boxes_clipped', 'fixed', path, '{}: bbox {} outside the {}x{} image; '
                   'clipped to {}'.format(where, _fmt(bbox), width, height,
                                          _fmt(corners_to_coco_box(clipped))))
    return clipped.tolist()


def load_coco_records(annotations, images, split='all', classes=None, category_ids=None, *,
                      val_fraction=0.2, seed=0, check_images=True, progress=False,
                      on_bad_image='stop', keep_crowd=True):
    """Load and validate the records of a COCO ``instances`` JSON.

    Parameters
    ----------
    annotations : str
        The JSON file.
    images : str
        The folder its ``file_name`` s are relative to.
    split : str
        ``'all'`` for every image of the file, or a seeded split of its image ids (``train``,
        ``val``, ``test``, ``trainval``; see :func:`~gluon_distill.data.voc.seeded_split`).
    classes : sequence of str or None
        Class names; None takes every category in sorted id order.
    category_ids : sequence of int or None
        The category id of each class (``model.json`` records them); see
        :func:`coco_categories`.
    val_fraction, seed : float, int
        Parameters of the seeded split.
    check_images : bool
        Decode every image (corrupt files, real sizes, grayscale/CMYK, EXIF orientation).
    progress : bool
        Show a progress bar when stderr is a terminal (:mod:`gluon_distill.progress`).
    on_bad_image : str
        ``'stop'``: a missing or undecodable image is fatal; ``'skip'``: left out (``skipped``).
    keep_crowd : bool
        Keep crowd regions (flagged difficult) in the records: True for validation, False for
        training (they are never targets).

    Returns
    -------
    (list of Record, list of str, list of int, ValidationReport)
        Records (image ids as strings, images without objects included), classes,
        their category ids, and the report. Nothing is raised for data problems.
    """
    if on_bad_image not in ON_BAD_IMAGE:
        raise ValueError('data.on_bad_image must be one of {}, got {!r}'.format(
            ', '.join(ON_BAD_IMAGE), on_bad_image))
    path = os.path.abspath(os.path.expanduser(str(annotations)))
    image_dir = os.path.abspath(os.path.expanduser(str(images)))
    report = ValidationReport(source='{} (images {}, split {!r})'.format(path, image_dir, split),
                              on_bad_image=on_bad_image)
    empty = ([], list(classes or []), list(category_ids or []), report)
    if not os.path.isdir(image_dir):
        report.add('missing_images', 'fatal', image_dir, 'image folder of {} does not exist'
                   .format(path))
        return empty
    data = read_coco_json(path, report)
    if data is None:
        return empty
    classes, category_ids = coco_categories(data, path, report, classes, category_ids)
    if classes is None:
        return empty
    entries = _image_entries(data, path, report)
    category_index = {c: k for k, c in enumerate(category_ids)}
    per_image = _annotations_by_image(data, path, entries, category_index, report)
    if per_image is None or report.fatal():
        report.set_dataset([], classes)
        return [], classes, category_ids, report
    ids = _select(list(entries), split, val_fraction, seed, report)
    if progress:  # on a terminal only
        from ..progress import progress_bar
        ids = progress_bar(ids, desc='checking {}'.format(os.path.basename(path)), unit='img')
    records, num_crowd = [], 0
    for image_id in ids:
        record, crowd = _record(path, image_dir, image_id, entries[image_id],
                                per_image.get(image_id, []), report, check_images, keep_crowd)
        num_crowd += crowd
        if record is not None:
            records.append(record)
    if num_crowd:
        report.notes.append('{} crowd region(s) (iscrowd=1): {}'.format(
            num_crowd, 'kept as difficult, ignored by evaluation' if keep_crowd
            else 'not training targets'))
    report.set_dataset(records, classes)
    _check_dataset_level(path, split, records, len(ids), report)
    return records, classes, category_ids, report


def _select(image_ids, split, val_fraction, seed, report):
    """The image ids of ``split`` (``all``, or a seeded split), in file order."""
    if split == 'all':
        return image_ids
    if split not in SEEDED_SPLITS:
        raise ValueError('split {!r}: a COCO file is read whole (all) or split by seed ({})'
                         .format(split, ', '.join(SEEDED_SPLITS)))
    by_key = {str(i): i for i in image_ids}
    chosen = set(seeded_split(list(by_key), split, val_fraction, seed))
    report.notes.append('seeded split {!r} (seed={}, val_fraction={}) of {} images -> {}'.format(
        split, seed, val_fraction, len(image_ids), len(chosen)))
    return [i for i in image_ids if str(i) in chosen]


def _distinct_annotations(path, anns, report):
    """``anns`` without repeated objects (reported ``duplicate_object``, fixed), a missing
    ``iscrowd`` reported (warning)."""
    kept, seen = [], {}
    for ann in anns:
        if not ann.has_iscrowd:
            report.add('missing_iscrowd', 'warning', path, '{}: no iscrowd; using 0 (raw '
                       'pycocotools COCOeval raises KeyError on such a file)'.format(ann.where))
        first = seen.setdefault((ann.label, tuple(ann.bbox), ann.crowd), ann)
        if first is not ann:
            report.add('duplicate_object', 'fixed', path, '{}: same category, bbox {} and '
                       'iscrowd as {}; dropped{}'.format(
                           ann.where, _fmt(ann.bbox), first.where,
                           ' (its difficult flag differs: the first is kept)'
                           if ann.difficult != first.difficult else ''))
            continue
        kept.append(ann)
    return kept


def _record(path, image_dir, image_id, entry, anns, report, check_images, keep_crowd):
    """``(Record or None, crowd regions seen)`` of one image entry."""
    anns = _distinct_annotations(path, anns, report)
    file_name = entry['file_name']
    where = 'image id {} ({})'.format(image_id, file_name)
    image_path = os.path.join(image_dir, file_name)
    if not os.path.isfile(image_path):
        report.bad_image('missing_image', path, '{}: file_name not found in {}'.format(
            where, image_dir))
        return None, 0
    size = _image_size(path, where, entry, image_path, report, check_images)
    if size is None:
        return None, 0
    boxes, labels, difficult = [], [], []
    ok, crowd = True, 0
    for ann in anns:
        corners = _check_box(path, ann.where, ann.bbox, size, report)
        if corners is False:
            ok = False
            continue
        if corners is None:
            continue
        crowd += ann.crowd
        if ann.crowd and not keep_crowd:
            continue
        boxes.append(corners)
        labels.append(ann.label)
        difficult.append(ann.crowd or ann.difficult)
    if not ok:
        return None, crowd
    if not boxes:
        report.add('images_without_objects', 'warning', path, '{}: no usable objects'.format(where))
    return Record(image_id=str(image_id), image_path=os.path.abspath(image_path),
                  width=size[0], height=size[1],
                  boxes=np.array(boxes, np.float32).reshape(-1, 4),
                  labels=np.array(labels, np.int32), difficult=np.array(difficult, bool),
                  annotation_path=path), crowd


def _check_dataset_level(path, split, records, num_ids, report):
    """Images named twice, classes without objects, an empty split."""
    claims = Counter(r.image_path for r in records)
    for image_path, count in claims.items():
        if count > 1:
            ids = [r.image_id for r in records if r.image_path == image_path]
            report.add('image_shared', 'warning', image_path, 'file_name of {} image entries of '
                       '{} (ids {})'.format(count, path, ', '.join(ids)))
    if records:
        for name, count in report.objects_per_class.items():
            if count == 0:
                report.add('class_without_objects', 'warning', path, 'class {!r} has no object '
                           'in split {!r}: it has no ground truth'.format(name, split))
    elif not report.fatal():
        report.add('empty_split', 'fatal', path, 'split {!r} has no usable image ({} listed{}): '
                   'nothing to train or evaluate on'.format(
                       split, num_ids, ', every image skipped' if num_ids else ''))


# ----------------------------------------------------------------------------- config

# The config's default splits name GluonCV's VOC layout; on COCO data they mean these splits
# (the first whose annotation file exists): GluonCV's COCO names, else plain train/val.
COCO_DEFAULT_SPLITS = {'2007_trainval+2012_trainval': ('train2017', 'train'),
                       '2007_test': ('val2017', 'val')}


def is_coco_data(data_cfg, root=None):
    """Whether a ``data`` section reads COCO JSON: ``format: coco``, ``annotations`` set, or a
    ``root`` with ``annotations/instances_*.json`` and no VOC ``Annotations/`` folder."""
    if getattr(data_cfg, 'format', 'voc') == 'coco' or getattr(data_cfg, 'annotations', ''):
        return True
    return bool(root) and os.path.isdir(root) and is_coco_layout(root) and \
        not os.path.isdir(os.path.join(root, 'Annotations'))


def coco_split_source(data_cfg, root, split):
    """``(annotation JSON, image folder, split for load_coco_records, note or None)``.

    With ``data.annotations``: that file (``{split}`` in it and in ``data.images`` replaced by
    the split name, the file then read whole); without ``{split}`` the one file is split by
    seed (``train``/``val``/...; ``all`` for every image). Otherwise ``root`` is a COCO root
    (:func:`coco_split_paths`). GluonCV's default VOC split names become
    :data:`COCO_DEFAULT_SPLITS`. Raises FileNotFoundError or ValueError naming what is missing.
    """
    annotations = os.path.expanduser(getattr(data_cfg, 'annotations', '') or '')
    images = os.path.expanduser(getattr(data_cfg, 'images', '') or '')
    note = None
    if annotations and '{split}' not in annotations:
        if not images:
            raise ValueError('data.annotations={} needs data.images (the folder its file_names '
                             'are relative to)'.format(annotations))
        if split in COCO_DEFAULT_SPLITS:
            plain = COCO_DEFAULT_SPLITS[split][-1]
            note = 'split {!r} is the VOC default; one COCO file: seeded split {!r}'.format(
                split, plain)
            split = plain
        return annotations, images, split, note
    if annotations:
        def paths(name):
            return annotations.replace('{split}', name), images.replace('{split}', name)
    else:
        def paths(name):
            try:
                return coco_split_paths(root, name)
            except FileNotFoundError:
                return os.path.join(root, ANNOTATION_PATTERN.format(name)), ''
    if split in COCO_DEFAULT_SPLITS:
        names = COCO_DEFAULT_SPLITS[split]
        chosen = next((n for n in names if os.path.isfile(paths(n)[0])), names[0])
        note = 'split {!r} is the VOC default; on COCO data split {!r} is used'.format(
            split, chosen)
        split = chosen
    if annotations:
        json_path, image_dir = paths(split)
        if not image_dir:
            raise ValueError('data.annotations={} needs data.images'.format(annotations))
    else:
        json_path, image_dir = coco_split_paths(root, split)
    return json_path, image_dir, 'all', note


def load_coco_split(data_cfg, root, split, classes, progress=True, keep_crowd=True):
    """``(records, classes, report)`` of one split of the COCO data of a ``data`` section.

    ``data_cfg.category_ids`` is used when set (it must match the file) and filled otherwise,
    so that ``model.json`` records the ids.
    """
    json_path, image_dir, read_split, note = coco_split_source(data_cfg, root, split)
    records, classes, ids, report = load_coco_records(
        json_path, image_dir, read_split, classes or None,
        getattr(data_cfg, 'category_ids', None) or None,
        val_fraction=data_cfg.val_fraction, seed=data_cfg.split_seed,
        check_images=data_cfg.check_images, progress=progress,
        on_bad_image=getattr(data_cfg, 'on_bad_image', 'stop'), keep_crowd=keep_crowd)
    if note:
        report.notes.insert(0, note)
    if ids and not report.fatal():
        data_cfg.category_ids = list(ids)
    return records, classes, report
