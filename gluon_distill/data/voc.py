"""PASCAL VOC-format datasets: validated loading, a problem report, and a Gluon dataset.

Every annotation is checked against its image before training starts, so that a broken file is
reported once, by name, instead of crashing an epoch hours later. Problems have a severity:

* ``fatal``   -- the image or annotation cannot be used (malformed XML, missing, undecodable
  or mostly missing image, non-numeric coordinates, unknown class, split id without
  annotation, a split without annotations...).
* ``skipped`` -- a bad image (missing, undecodable, mostly missing) left out of the dataset
  because ``on_bad_image='skip'``; without it these are fatal.
* ``fixed``   -- repaired on load and counted (boxes clipped to the image, degenerate boxes
  dropped, missing ``<difficult>``/``<size>`` filled with defaults, grayscale/CMYK images
  decoded to RGB).
* ``warning`` -- usable but suspicious (annotated size differs from the real one, images
  without objects, duplicate ids, a JPEG missing only its end, an EXIF orientation that a
  viewer would apply, ``<filename>`` naming another image, an image claimed by two
  annotations, a class without objects).

Images are judged by the decoder training uses, :func:`gluon_distill.data.images.read_image`
(OpenCV, stored pixels); Pillow only reads metadata (mode, format, EXIF).
The image of an annotation is ``JPEGImages/<id>.<ext>`` of its file name's id, as in GluonCV;
``<filename>`` is only a fallback when that file is absent.

Loading never stops at the first problem; callers decide with ``report.raise_if_fatal()``.

Boxes follow GluonCV's ``VOCDetection``: the 1-based inclusive VOC values minus 1.
"""
import glob
import os
import re
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

import gluon_distill  # noqa: F401  (numpy shim before mxnet)
import mxnet as mx

from .images import (ImageReadError, ORIENTATION_MEANING, exif_orientation, grey_tail_rows,
                     jpeg_truncation, read_image)
from .records import Record

VOC_CLASSES = ['aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car',
               'cat', 'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike',
               'person', 'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor']

SEVERITIES = ('fatal', 'skipped', 'fixed', 'warning')
IMAGE_EXTENSIONS = ('.jpg', '.png', '.jpeg', '.JPG', '.PNG', '.JPEG')
GRAYSCALE_MODES = ('1', 'L', 'LA', 'I', 'I;16', 'F')
SEEDED_SPLITS = ('train', 'val', 'test', 'trainval', 'all')
ON_BAD_IMAGE = ('stop', 'skip')
# A truncated JPEG that OpenCV decodes is usable (a warning) unless at least this share of its
# rows is libjpeg's grey fill: then a quarter of the picture or more is not the scene its boxes
# describe, and it is fatal (or skipped).
MAX_GREY_SHARE = 0.25


class DatasetError(ValueError):
    """A dataset has fatal problems; the message is the report summary."""


@dataclass
class Problem:
    """One finding about one file.

    Attributes
    ----------
    severity : str
        ``'fatal'``, ``'fixed'`` or ``'warning'``.
    path : str
        The file concerned (annotation, image or split file).
    message : str
        What is wrong, naming the offending value.
    kind : str
        Category used for counting, e.g. ``'boxes_clipped'``.
    """
    severity: str
    path: str
    message: str
    kind: str = ''

    def __str__(self):
        return '[{}] {}: {}'.format(self.severity, self.path, self.message)


@dataclass
class ValidationReport:
    """All problems found while loading a dataset, plus what was loaded.

    ``counts`` maps a problem kind to how many times it occurred (a clipped box counts once per
    box). The dataset fields (``num_images``, ``objects_per_class``...) are filled by
    :func:`load_voc_records` and printed by :meth:`summary`.
    """
    problems: list = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    severity_of: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    source: str = ''
    num_images: int = 0
    num_difficult: int = 0
    objects_per_class: dict = field(default_factory=dict)
    on_bad_image: str = 'stop'

    def add(self, kind, severity, path, message):
        """Record one problem of ``kind``; returns it."""
        if severity not in SEVERITIES:
            raise ValueError('severity must be one of {}, got {!r}'.format(SEVERITIES, severity))
        problem = Problem(severity, str(path), message, kind)
        self.problems.append(problem)
        self.counts[kind] += 1
        self.severity_of.setdefault(kind, severity)
        return problem

    def fatal(self):
        """The fatal problems (list of :class:`Problem`)."""
        return [p for p in self.problems if p.severity == 'fatal']

    def set_dataset(self, records, classes):
        """Store image and per-class object counts of the loaded ``records``."""
        self.num_images = len(records)
        per_class = Counter()
        self.num_difficult = 0
        for record in records:
            per_class.update(int(label) for label in record.labels)
            self.num_difficult += int(record.difficult.sum())
        self.objects_per_class = {name: per_class.get(i, 0) for i, name in enumerate(classes)}

    def summary(self, max_lines=20):
        """Readable multi-line text: dataset counts, problem counts, then the first problems."""
        num_objects = sum(self.objects_per_class.values())
        lines = ['dataset {}: {} images, {} objects ({} difficult)'.format(
            self.source or '?', self.num_images, num_objects, self.num_difficult)]
        lines += ['  ' + note for note in self.notes]
        if self.objects_per_class:
            lines.append('objects per class:')
            width = max(len(name) for name in self.objects_per_class)
            lines += ['  {:<{w}} {:>7}'.format(name, count, w=width)
                      for name, count in self.objects_per_class.items()]
        by_severity = Counter(p.severity for p in self.problems)
        lines.append('problems: {} fatal, {} skipped, {} fixed, {} warning'.format(
            by_severity['fatal'], by_severity['skipped'], by_severity['fixed'],
            by_severity['warning']))
        if by_severity['skipped']:
            lines.append('  {} bad image(s) left out of the dataset (data.on_bad_image=skip)'
                         .format(by_severity['skipped']))
        for kind in sorted(self.counts, key=lambda k: (SEVERITIES.index(self.severity_of[k]), k)):
            lines.append('  {:<26} {:>7}  ({})'.format(kind, self.counts[kind], self.severity_of[kind]))
        if self.problems:
            ordered = sorted(self.problems, key=lambda p: SEVERITIES.index(p.severity))
            lines.append('first problems:')
            lines += ['  ' + str(p) for p in ordered[:max_lines]]
            if len(ordered) > max_lines:
                lines.append('  ... and {} more'.format(len(ordered) - max_lines))
        return '\n'.join(lines)

    def bad_image(self, kind, path, message):
        """Record a problem that makes an image unusable: fatal, or ``skipped`` (the image is
        left out) when ``on_bad_image == 'skip'``."""
        if self.on_bad_image == 'skip':
            return self.add(kind, 'skipped', path, message + '; image left out (on_bad_image=skip)')
        return self.add(kind, 'fatal', path, message)

    def raise_if_fatal(self):
        """Raise :class:`DatasetError` with the summary if any problem is fatal."""
        if self.fatal():
            raise DatasetError(self.summary())


def normalize_class_name(name):
    """GluonCV's normalisation of a class name: stripped and lower-cased."""
    return name.strip().lower()


def discover_classes(annotation_paths):
    """Sorted unique (normalised) class names of the ``<object>`` s in the given XML files.

    Unreadable files are skipped here; :func:`parse_voc_annotation` reports them.
    """
    names = set()
    for path in annotation_paths:
        try:
            root = ET.parse(path).getroot()
        except (ET.ParseError, OSError):
            continue
        for obj in root.iter('object'):
            name = obj.findtext('name')
            if name and name.strip():
                names.add(normalize_class_name(name))
    return sorted(names)


def parse_voc_annotation(xml_path, classes, image_dir, report, *, check_images=True):
    """Parse and validate one VOC XML file against its image.

    Parameters
    ----------
    xml_path : str
        The annotation file; its stem is the image id.
    classes : sequence of str or None
        Class list giving label indices. ``None`` accepts any name and sets labels to -1
        (use :func:`discover_classes` first to obtain indices).
    image_dir : str
        Folder of the images (``JPEGImages``).
    report : ValidationReport
        Receives every problem found.
    check_images : bool
        Decode the image with :func:`~gluon_distill.data.images.read_image` (finds corrupt and
        truncated files, the real size, colour mode, EXIF orientation). If False only its
        existence is checked and the annotated size is trusted.

    Returns
    -------
    Record or None
        None when a fatal problem makes the annotation unusable.
    """
    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as err:
        report.add('malformed_xml', 'fatal', xml_path, 'cannot parse XML: {}'.format(err))
        return None
    image_id = os.path.splitext(os.path.basename(xml_path))[0]
    image_path = _find_image(xml_path, root.findtext('filename'), image_id, image_dir, report)
    if image_path is None:
        return None
    size = _image_size(xml_path, root, image_path, report, check_images)
    if size is None:
        return None
    objects = _parse_objects(xml_path, root, classes, size, report)
    if objects is None:
        return None
    boxes, labels, difficult = objects
    if len(boxes) == 0:
        report.add('images_without_objects', 'warning', xml_path, 'no usable objects')
    return Record(image_id=image_id, image_path=os.path.abspath(image_path),
                  width=size[0], height=size[1], boxes=boxes, labels=labels,
                  difficult=difficult, annotation_path=os.path.abspath(xml_path))


def _find_image(xml_path, filename, image_id, image_dir, report):
    """Path of the image of annotation ``image_id``, or None (reported).

    VOC convention (GluonCV's ``VOCDetection``): ``image_dir/<id>.<ext>``. The XML's
    ``<filename>`` is only used when no such file exists; when it names another file than the
    one used, a warning names both.
    """
    declared = os.path.basename((filename or '').strip())
    for ext in IMAGE_EXTENSIONS:
        path = os.path.join(image_dir, image_id + ext)
        if os.path.isfile(path):
            if declared and declared not in (image_id + ext, image_id):
                report.add('filename_mismatch', 'warning', xml_path,
                           '<filename> is {!r} but the image of id {!r} is {}; using {} '
                           '(VOC convention: JPEGImages/<id>.<ext>)'.format(
                               declared, image_id, path, image_id + ext))
            return path
    if declared and os.path.isfile(os.path.join(image_dir, declared)):
        path = os.path.join(image_dir, declared)
        report.add('filename_mismatch', 'warning', xml_path,
                   'no image {}.jpg/.png/.jpeg for id {!r}; using its <filename> {}'.format(
                       image_id, image_id, path))
        return path
    report.bad_image('missing_image', xml_path, 'no image {}.jpg/.png/.jpeg{} in {}'.format(
        image_id, ' (nor <filename> {!r})'.format(declared) if declared else '', image_dir))
    return None


def _annotated_size(root):
    """``(width, height)`` from ``<size>``, or None when absent/non-numeric/non-positive."""
    size = root.find('size')
    if size is None:
        return None
    try:
        width, height = int(float(size.findtext('width'))), int(float(size.findtext('height')))
    except (TypeError, ValueError):
        return None
    return (width, height) if width > 0 and height > 0 else None


def _image_size(xml_path, root, image_path, report, check_images):
    """Real ``(width, height)`` of the image in pixels, reporting mismatch/conversion/corruption.

    Returns None (after a fatal or skipped problem) if the image cannot be used.
    """
    annotated = _annotated_size(root)
    if annotated is None:
        report.add('missing_size', 'fixed', xml_path,
                   'no valid <size> (width/height); using the real image size')
    if not check_images and annotated is not None:
        return annotated
    mode, fmt = _header(image_path)
    try:
        img = read_image(image_path)
    except ImageReadError:
        if fmt is not None and fmt not in ('JPEG', 'PNG', 'BMP'):
            report.bad_image('unsupported_format', image_path,
                             'format {} cannot be decoded by OpenCV (use JPEG, PNG or BMP)'
                             .format(fmt))
        else:
            report.bad_image('corrupt_image', image_path,
                             'cannot decode image: OpenCV (the decoder training uses) fails on '
                             'it{}'.format(_jpeg_note(image_path)))
        return None
    real = (img.shape[1], img.shape[0])
    if not check_images:
        return real
    if fmt == 'JPEG' and not _truncation_ok(image_path, img, report):
        return None
    if annotated is not None and annotated != real:
        report.add('size_mismatch', 'warning', xml_path,
                   'annotated size {}x{} but image {} is {}x{}; using the real size'.format(
                       annotated[0], annotated[1], os.path.basename(image_path), *real))
    if mode in GRAYSCALE_MODES:
        report.add('converted_grayscale', 'fixed', image_path,
                   'mode {}: decoded to 3-channel RGB'.format(mode))
    elif mode == 'CMYK':
        report.add('converted_cmyk', 'fixed', image_path, 'mode CMYK: decoded to 3-channel RGB')
    elif mode not in (None, 'RGB'):
        report.add('converted_other', 'fixed', image_path,
                   'mode {}: decoded to 3-channel RGB'.format(mode))
    orientation = exif_orientation(image_path)
    if orientation is not None and orientation != 1:
        report.add('exif_orientation', 'warning', image_path,
                   'EXIF orientation {} ({}): viewers show it turned, training and evaluation '
                   'use the stored {}x{} pixels (as GluonCV does); its boxes must be drawn on '
                   'those'.format(orientation, ORIENTATION_MEANING[orientation], *real))
    return real


def _header(image_path):
    """``(mode, format)`` from Pillow's header parsing, ``(None, None)`` if it cannot open it."""
    from PIL import Image
    try:
        with Image.open(image_path) as img:
            return img.mode, img.format
    except Exception:  # PIL raises many types; the decoder's verdict is what counts
        return None, None


def _jpeg_note(image_path):
    try:
        with open(image_path, 'rb') as f:
            why = jpeg_truncation(f.read())
    except OSError:
        return ''
    return ' (truncated JPEG: {})'.format(why) if why else ''


def _truncation_ok(image_path, img, report):
    """Report a JPEG whose stream ends early; False if too much of it is lost (bad image)."""
    with open(image_path, 'rb') as f:
        why = jpeg_truncation(f.read())
    if why is None:
        return True
    height = img.shape[0]
    grey = grey_tail_rows(img)
    lost = '{} of {} rows ({:.0%}) are grey fill'.format(grey, height, grey / height)
    if grey >= MAX_GREY_SHARE * height:
        report.bad_image('truncated_image', image_path,
                         'truncated JPEG ({}): mostly missing, {}'.format(why, lost))
        return False
    report.add('truncated_jpeg', 'warning', image_path,
               'truncated JPEG ({}): OpenCV decodes it as training does; {}'.format(why, lost))
    return True


def _parse_objects(xml_path, root, classes, size, report):
    """Boxes ``(N, 4)`` float32 0-based, labels ``(N,)`` int32, difficult ``(N,)`` bool.

    Returns None if any object is fatally wrong (all such objects are reported first).
    """
    index = {name: i for i, name in enumerate(classes)} if classes is not None else None
    boxes, labels, difficult = [], [], []
    ok = True
    for number, obj in enumerate(root.iter('object'), 1):
        where = 'object {}'.format(number)
        name = obj.findtext('name')
        if name is None or not name.strip():
            report.add('malformed_xml', 'fatal', xml_path, '{} has no <name>'.format(where))
            ok = False
            continue
        name = normalize_class_name(name)
        where = 'object {} ({})'.format(number, name)
        if index is not None and name not in index:
            report.add('unknown_class', 'fatal', xml_path, '{}: unknown class {!r} (known: {})'.format(
                where, name, ', '.join(classes)))
            ok = False
            continue
        box = _read_box(xml_path, obj, where, report)
        if box is None:
            ok = False
            continue
        box = _clip_box(xml_path, box, size, where, report)
        if box is None:
            continue
        boxes.append(box)
        labels.append(index[name] if index is not None else -1)
        difficult.append(_read_difficult(xml_path, obj, where, report))
    if not ok:
        return None
    return (np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int32),
            np.array(difficult, bool))


def _read_box(xml_path, obj, where, report):
    """The 1-based ``[xmin, ymin, xmax, ymax]`` floats of ``<bndbox>``, or None (fatal)."""
    bndbox = obj.find('bndbox')
    if bndbox is None:
        report.add('malformed_xml', 'fatal', xml_path, '{} has no <bndbox>'.format(where))
        return None
    values = []
    for tag in ('xmin', 'ymin', 'xmax', 'ymax'):
        text = bndbox.findtext(tag)
        try:
            value = float(text)
            if not np.isfinite(value):
                raise ValueError
        except (TypeError, ValueError):
            report.add('bad_coordinate', 'fatal', xml_path,
                       '{}: <{}> is {!r}, not a number'.format(where, tag, text))
            return None
        values.append(value)
    return values


def _clip_box(xml_path, box, size, where, report):
    """Clip a 1-based inclusive box to ``[1, width] x [1, height]`` and convert to 0-based.

    Returns the 0-based ``[xmin, ymin, xmax, ymax]`` or None if it is empty or inverted after
    clipping (dropped and counted).
    """
    width, height = size
    limits = np.array([width, height, width, height], np.float64)
    original = np.array(box, np.float64)
    clipped = np.clip(original, 1.0, limits)
    xmin, ymin, xmax, ymax = clipped - 1.0
    if xmax <= xmin or ymax <= ymin:
        report.add('boxes_dropped_zero_area', 'fixed', xml_path,
                   '{}: box {} has no area inside the {}x{} image; dropped'.format(
                       where, _fmt_box(original), width, height))
        return None
    if not np.array_equal(clipped, original):
        report.add('boxes_clipped', 'fixed', xml_path,
                   '{}: box {} outside the {}x{} image; clipped to {}'.format(
                       where, _fmt_box(original), width, height, _fmt_box(clipped)))
    return [xmin, ymin, xmax, ymax]


def _fmt_box(box):
    return '({})'.format(', '.join('{:g}'.format(v) for v in box))


def _read_difficult(xml_path, obj, where, report):
    """The ``<difficult>`` flag; missing or invalid values default to False (counted)."""
    text = obj.findtext('difficult')
    if text is None:
        report.add('missing_difficult', 'fixed', xml_path, '{}: no <difficult>; using 0'.format(where))
        return False
    try:
        return bool(int(float(text)))
    except ValueError:
        report.add('invalid_difficult', 'fixed', xml_path,
                   '{}: <difficult> is {!r}; using 0'.format(where, text))
        return False


# ----------------------------------------------------------------------------- split handling

def read_split_file(path):
    """Ids listed in a VOC ``ImageSets/Main`` file (first token of each non-empty line)."""
    with open(path) as f:
        return [line.split()[0] for line in f if line.strip()]


def seeded_split(ids, split, val_fraction=0.2, seed=0):
    """Deterministic split of ``ids`` when a dataset has no ``ImageSets/Main``.

    The sorted ids are permuted with ``np.random.RandomState(seed)``; the first
    ``round(n * val_fraction)`` form ``val`` (also returned for ``test``), the rest ``train``;
    ``trainval``/``all`` are every id. Returns a sorted list.
    """
    if split not in SEEDED_SPLITS:
        raise ValueError('split {!r} unknown; without ImageSets/Main use one of {}'.format(
            split, SEEDED_SPLITS))
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError('val_fraction must be in [0, 1), got {}'.format(val_fraction))
    ids = sorted(ids)
    if split in ('trainval', 'all'):
        return ids
    order = np.random.RandomState(seed).permutation(len(ids))
    num_val = int(round(len(ids) * val_fraction))
    chosen = order[:num_val] if split in ('val', 'test') else order[num_val:]
    return sorted(ids[i] for i in chosen)


def is_gluoncv_layout(root):
    """Whether ``root`` is GluonCV's VOC root (``VOC<year>/`` folders, no ``Annotations/``)."""
    return (not os.path.isdir(os.path.join(root, 'Annotations'))
            and bool(glob.glob(os.path.join(root, 'VOC[0-9][0-9][0-9][0-9]'))))


def _gluoncv_parts(root, split, report):
    """``[(subroot, ids, split_file)]`` for a split like ``2007_trainval+2012_trainval``.

    A part without a year (``trainval``) means that split of every ``VOC<year>`` folder having it.
    """
    parts = []
    for part in split.split('+'):
        part = part.strip()
        match = re.fullmatch(r'(\d{4})_(\w+)', part)
        if match:
            files = [os.path.join(root, 'VOC' + match.group(1), 'ImageSets', 'Main',
                                  match.group(2) + '.txt')]
        else:
            files = sorted(glob.glob(os.path.join(root, 'VOC[0-9]*', 'ImageSets', 'Main', part + '.txt')))
        if not files or not all(os.path.isfile(f) for f in files):
            report.add('missing_split', 'fatal', files[0] if files else root,
                       'split {!r} not found (GluonCV layout expects YEAR_NAME parts joined by '
                       '"+", e.g. 2007_trainval+2012_trainval)'.format(part))
            continue
        for split_file in files:
            subroot = os.path.dirname(os.path.dirname(os.path.dirname(split_file)))
            parts.append((subroot, read_split_file(split_file), split_file))
    return parts


def _voc_root_ids(root, split, val_fraction, seed, report):
    """``(ids, split_file or None)`` for a plain VOC root (``root/Annotations`` ...)."""
    main = os.path.join(root, 'ImageSets', 'Main')
    split_file = os.path.join(main, split + '.txt')
    if os.path.isfile(split_file):
        return read_split_file(split_file), split_file
    all_ids = [os.path.splitext(os.path.basename(p))[0]
               for p in glob.glob(os.path.join(root, 'Annotations', '*.xml'))]
    if split == 'all':
        return sorted(all_ids), None
    if os.path.isdir(main):
        available = sorted(os.path.splitext(f)[0] for f in os.listdir(main) if f.endswith('.txt'))
        report.add('missing_split', 'fatal', split_file, 'no split file {!r}; available: {}'.format(
            split, ', '.join(available) or 'none'))
        return [], None
    if split not in SEEDED_SPLITS:
        report.add('missing_split', 'fatal', root, 'no ImageSets/Main and split {!r} is not one '
                   'of {}'.format(split, ', '.join(SEEDED_SPLITS)))
        return [], None
    ids = seeded_split(all_ids, split, val_fraction, seed)
    report.notes.append('no ImageSets/Main: seeded split {!r} (seed={}, val_fraction={}) of {} '
                        'annotations -> {} ids'.format(split, seed, val_fraction, len(all_ids), len(ids)))
    return ids, None


def _collect_items(root, split, val_fraction, seed, report):
    """``[(image_id, xml_path, image_dir)]`` for ``split``; problems go to ``report``.

    Ids listed twice are kept once (warning); ids without XML are fatal.
    """
    if is_gluoncv_layout(root):
        parts = _gluoncv_parts(root, split, report)
    elif os.path.isdir(os.path.join(root, 'Annotations')):
        ids, split_file = _voc_root_ids(root, split, val_fraction, seed, report)
        parts = [(root, ids, split_file)]
    else:
        report.add('missing_annotations', 'fatal', root, 'neither Annotations/ nor VOC<year>/ folders '
                   'found: not a VOC root')
        return []
    items, seen = [], set()
    for subroot, ids, split_file in parts:
        for image_id in ids:
            xml_path = os.path.join(subroot, 'Annotations', image_id + '.xml')
            if image_id in seen:
                report.add('duplicate_id', 'warning', split_file or xml_path,
                           'id {!r} listed more than once; kept once'.format(image_id))
                continue
            seen.add(image_id)
            if not os.path.isfile(xml_path):
                report.add('missing_annotation', 'fatal', split_file or xml_path,
                           'id {!r} has no annotation {}'.format(image_id, xml_path))
                continue
            items.append((image_id, xml_path, os.path.join(subroot, 'JPEGImages')))
    return items


def load_voc_records(root, split, classes=None, *, val_fraction=0.2, seed=0, check_images=True,
                     progress=False, on_bad_image='stop'):
    """Load and validate the records of one split of a VOC-format dataset.

    Parameters
    ----------
    root : str
        Either GluonCV's layout (``root/VOC2007/{Annotations,JPEGImages,ImageSets/Main}``) with
        ``split`` like ``'2007_trainval+2012_trainval'``, or a plain VOC root
        (``root/Annotations``, ``root/JPEGImages``, optional ``root/ImageSets/Main/<split>.txt``).
        Without ``ImageSets/Main`` a seeded split is made (see :func:`seeded_split`).
    split : str
        Split name (see above).
    classes : sequence of str or None
        Class names defining label indices; None discovers them (sorted) from the annotations.
    val_fraction, seed : float, int
        Parameters of the seeded split.
    check_images : bool
        Decode every image (detects corrupt files, real sizes, grayscale/CMYK).
    progress : bool
        Show a tqdm progress bar.
    on_bad_image : str
        ``'stop'``: a missing, undecodable or mostly missing image is fatal. ``'skip'``: it is
        left out and reported with severity ``skipped``.

    Returns
    -------
    (list of Record, list of str, ValidationReport)
        Records (including those without objects) of every usable annotation, the class list,
        and the report. Nothing is raised for data problems: call ``report.raise_if_fatal()``.
    """
    if on_bad_image not in ON_BAD_IMAGE:
        raise ValueError('data.on_bad_image must be one of {}, got {!r}'.format(
            ', '.join(ON_BAD_IMAGE), on_bad_image))
    root = os.path.abspath(os.path.expanduser(str(root)))
    report = ValidationReport(source='{} (split {!r})'.format(root, split),
                              on_bad_image=on_bad_image)
    items = _collect_items(root, split, val_fraction, seed, report)
    if classes is None:
        classes = discover_classes([xml for _, xml, _ in items])
        report.notes.append('classes discovered from annotations ({}): {}'.format(
            len(classes), ', '.join(classes)))
    else:
        classes = _normalized_classes(classes)
    if progress:
        from tqdm import tqdm
        items = tqdm(items, desc='checking {}'.format(os.path.basename(root) or root), unit='img')
    records = []
    for _, xml_path, image_dir in items:
        record = parse_voc_annotation(xml_path, classes, image_dir, report, check_images=check_images)
        if record is not None:
            records.append(record)
    report.set_dataset(records, classes)
    _check_dataset_level(root, split, records, len(items), report)
    return records, classes, report


def _check_dataset_level(root, split, records, num_items, report):
    """Problems of the whole split: shared images, classes without objects, emptiness."""
    claims = {}
    for record in records:
        claims.setdefault(record.image_path, []).append(record.annotation_path)
    for image_path, annotations in claims.items():
        if len(annotations) > 1:
            report.add('image_shared', 'warning', image_path,
                       'used by {} annotations: {}'.format(len(annotations), ', '.join(
                           os.path.basename(a) for a in annotations)))
    if records:
        for name, count in report.objects_per_class.items():
            if count == 0:
                report.add('class_without_objects', 'warning', root,
                           'class {!r} has no object in split {!r}: it has no ground truth, '
                           'evaluation excludes it from mAP'.format(name, split))
    elif not report.fatal():
        report.add('empty_split', 'fatal', root, 'split {!r} has no usable annotation ({} ids '
                   'listed{}): nothing to train or evaluate on'.format(
                       split, num_items, ', every image skipped' if num_items else ''))


def _normalized_classes(classes):
    """Stripped lower-case class names; raises ValueError on duplicates or empty names."""
    names = [normalize_class_name(str(c)) for c in classes]
    duplicates = sorted(n for n, c in Counter(names).items() if c > 1)
    if duplicates or '' in names:
        raise ValueError('class names must be unique and non-empty, got {}'.format(list(classes)))
    return names


class DetectionDataset(mx.gluon.data.Dataset):
    """A Gluon dataset over validated :class:`Record` s.

    ``dataset[i]`` is ``(img, label)``: ``img`` an ``mx.nd.NDArray`` (H, W, 3) uint8 RGB, the
    stored pixels as :func:`~gluon_distill.data.images.read_image` decodes them (grayscale and
    CMYK files are converted, EXIF orientation ignored), ``label`` a float32 array (N, 6) of
    ``xmin, ymin, xmax, ymax, class, difficult`` in 0-based pixels. With ``transform`` the item
    is ``transform(img, label)``, as in GluonCV.
    """

    def __init__(self, records, classes, transform=None):
        self.records = list(records)
        self.classes = list(classes)
        self._transform = transform

    def __len__(self):
        return len(self.records)

    def record(self, idx):
        """The :class:`Record` of item ``idx``."""
        return self.records[idx]

    def __getitem__(self, idx):
        record = self.records[idx]
        img = mx.nd.array(read_image(record.image_path), dtype=np.uint8)
        label = record.label_array()
        if self._transform is not None:
            return self._transform(img, label)
        return img, label

    def __repr__(self):
        return '{}({} images, {} classes)'.format(type(self).__name__, len(self), len(self.classes))
