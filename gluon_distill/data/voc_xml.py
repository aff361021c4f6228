"""Parsing and validation of one PASCAL VOC XML annotation against its image.

The image of an annotation is ``JPEGImages/<id>.<ext>`` of its id, as in GluonCV; an id may be a
relative path (``sub/00002``, from a split file: ``Annotations/sub/00002.xml`` and
``JPEGImages/sub/00002.jpg``). ``<filename>`` is only a fallback when that file is absent; a
relative path in it (``sub/00001.jpg``) is a path under ``JPEGImages/``, and messages quote it
as written. Boxes follow GluonCV's ``VOCDetection``: the 1-based inclusive VOC values minus 1,
clipped to the image. The same class and box twice in one file is one object: the copies are
dropped and counted (``duplicate_object``); they would otherwise be ground truth twice, and
each copy that no second detection matches is a miss.
"""
import os
import xml.etree.ElementTree as ET

import numpy as np

from .image_checks import checked_image_size
from .records import Record

IMAGE_EXTENSIONS = ('.jpg', '.png', '.jpeg', '.JPG', '.PNG', '.JPEG')


def parse_voc_annotation(xml_path, classes, image_dir, report, *, check_images=True,
                         image_id=None):
    """Parse and validate one VOC XML file against its image.

    Parameters
    ----------
    xml_path : str
        The annotation file.
    classes : sequence of str or None
        Class list giving label indices. ``None`` accepts any name and sets labels to -1
        (use :func:`~gluon_distill.data.voc.discover_classes` first to obtain indices).
    image_dir : str
        Folder of the images (``JPEGImages``).
    report : ValidationReport
        Receives every problem found.
    check_images : bool
        Decode the image with :func:`~gluon_distill.data.images.read_image` (finds corrupt and
        truncated files, the real size, colour mode, EXIF orientation). If False only its
        existence is checked and the annotated size is trusted.
    image_id : str or None
        The id (a split file's line, e.g. ``'000005'`` or ``'sub/000005'``); its image is
        ``image_dir/<id>.<ext>``. Default: the stem of ``xml_path``.

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
    if image_id is None:
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
    ``<filename>`` is only used when no such file exists: as a path under ``image_dir``
    (``sub/00001.jpg``), else by its base name (an absolute or foreign path, as some labelling
    tools write); when it names another file than the one used, a warning names both. Messages
    quote ``<filename>`` exactly as written.
    """
    declared = (filename or '').strip()
    for ext in IMAGE_EXTENSIONS:
        path = os.path.join(image_dir, image_id + ext)
        if os.path.isfile(path):
            if declared and not _names_image(declared, image_id, ext):
                report.add('filename_mismatch', 'warning', xml_path,
                           '<filename> is {!r} but the image of id {!r} is {}; using {} '
                           '(VOC convention: JPEGImages/<id>.<ext>)'.format(
                               declared, image_id, path, image_id + ext))
            return path
    for candidate in _filename_candidates(declared):
        path = os.path.join(image_dir, candidate)
        if os.path.isfile(path):
            report.add('filename_mismatch', 'warning', xml_path,
                       'no image {}.jpg/.png/.jpeg for id {!r}; using its <filename> {!r}: {}'
                       .format(image_id, image_id, declared, path))
            return path
    report.bad_image('missing_image', xml_path, 'no image {}.jpg/.png/.jpeg{} in {}'.format(
        image_id, ' (nor <filename> {!r})'.format(declared) if declared else '', image_dir))
    return None


def _names_image(declared, image_id, ext):
    """Whether ``<filename>`` names the image ``<id><ext>``: as that relative path, or, when
    it has no folder part, by the base name (``00002.jpg`` for id ``sub/00002``)."""
    declared = os.path.normpath(declared)
    if declared in (os.path.normpath(image_id + ext), os.path.normpath(image_id)):
        return True
    return os.path.dirname(declared) == '' and declared in (
        os.path.basename(image_id + ext), os.path.basename(image_id))


def _filename_candidates(declared):
    """Paths under the image folder that ``<filename>`` may mean: itself when it is a relative
    path inside the folder, then its base name."""
    if not declared:
        return []
    candidates = []
    relative = os.path.normpath(declared)
    if not os.path.isabs(relative) and relative.split(os.sep)[0] != os.pardir:
        candidates.append(relative)
    base = os.path.basename(relative)
    if base and base not in candidates:
        candidates.append(base)
    return candidates


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
    """Real ``(width, height)`` of the image (the annotated one when ``check_images`` is False
    and ``<size>`` is valid), see :func:`~gluon_distill.data.image_checks.checked_image_size`.

    Returns None (after a fatal or skipped problem) if the image cannot be used.
    """
    annotated = _annotated_size(root)
    if annotated is None:
        report.add('missing_size', 'fixed', xml_path,
                   'no valid <size> (width/height); using the real image size')
    if not check_images and annotated is not None:
        return annotated
    return checked_image_size(xml_path, image_path, annotated, report, check_images)


def _parse_objects(xml_path, root, classes, size, report):
    """Boxes ``(N, 4)`` float32 0-based, labels ``(N,)`` int32, difficult ``(N,)`` bool.

    Returns None if any object is fatally wrong (all such objects are reported first).
    """
    index = {name: i for i, name in enumerate(classes)} if classes is not None else None
    boxes, labels, difficult = [], [], []
    ok = True
    seen = {}   # (class, box as written) -> (object number, <difficult> text)
    for number, obj in enumerate(root.iter('object'), 1):
        where = 'object {}'.format(number)
        spelling = obj.findtext('name')
        if spelling is None or not spelling.strip():
            report.add('malformed_xml', 'fatal', xml_path, '{} has no <name>'.format(where))
            ok = False
            continue
        name = report.class_name(spelling)
        where = 'object {} ({})'.format(number, spelling.strip())
        if index is not None and name not in index:
            report.add('unknown_class', 'fatal', xml_path, '{}: unknown class {!r} (known: {})'.format(
                where, name, ', '.join(classes)))
            ok = False
            continue
        box = _read_box(xml_path, obj, where, report)
        if box is None:
            ok = False
            continue
        flag = (obj.findtext('difficult') or '').strip()
        first = seen.setdefault((name, tuple(box)), (number, flag))
        if first[0] != number:
            report.add('duplicate_object', 'fixed', xml_path,
                       '{}: same class and box {} as object {}{}; dropped'.format(
                           where, _fmt_box(box), first[0],
                           ' (its <difficult> is {!r}, object {}\'s {!r}: object {} kept)'
                           .format(flag, first[0], first[1], first[0])
                           if flag != first[1] else ''))
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
