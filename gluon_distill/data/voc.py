"""PASCAL VOC-format datasets: validated loading, a problem report, and a Gluon dataset.

Every annotation is checked against its image before training starts, so that a broken file is
reported once, by name, instead of crashing an epoch hours later. Problems have a severity:

* ``fatal``   -- the image or annotation cannot be used (malformed XML, missing, undecodable
  or mostly missing image, non-numeric coordinates, unknown class, split id without
  annotation, a split without annotations...).
* ``skipped`` -- a bad image (missing, undecodable, mostly missing) left out of the dataset
  because ``on_bad_image='skip'``; without it these are fatal.
* ``fixed``   -- repaired on load and counted (boxes clipped to the image, degenerate boxes
  dropped, the same class and box twice in one file dropped, missing
  ``<difficult>``/``<size>`` filled with defaults, grayscale/CMYK images decoded to RGB).
* ``warning`` -- usable but suspicious (annotated size differs from the real one, images
  without objects, duplicate ids, a JPEG missing only its end, an EXIF orientation that a
  viewer would apply, ``<filename>`` naming another image, an image claimed by two
  annotations, a class without objects).

Loading never stops at the first problem; callers decide with ``report.raise_if_fatal()``.

Modules: :mod:`.report` (the format-neutral report: :class:`ValidationReport`,
:class:`DatasetError`), :mod:`.splits` (split files, GluonCV's layout, seeded splits),
:mod:`.voc_xml` (one XML annotation), :mod:`.image_checks` (one image against its
annotation). This module loads a split (:func:`load_voc_records`), discovers classes and
serves the records as a Gluon dataset; the names above are importable from it as before.
"""
import os
import xml.etree.ElementTree as ET
from collections import Counter

import numpy as np

import gluon_distill  # noqa: F401  (numpy shim before mxnet)
import mxnet as mx

from .images import read_image
from .report import (ON_BAD_IMAGE, SEVERITIES, DatasetError, Problem, ValidationReport,
                     normalize_class_name)
from .splits import SEEDED_SPLITS, _collect_items, is_gluoncv_layout, read_split_file, seeded_split
from .voc_xml import IMAGE_EXTENSIONS, parse_voc_annotation

__all__ = ['DatasetError', 'DetectionDataset', 'IMAGE_EXTENSIONS', 'ON_BAD_IMAGE', 'Problem',
           'SEEDED_SPLITS', 'SEVERITIES', 'VOC_CLASSES', 'ValidationReport', 'discover_classes',
           'is_gluoncv_layout', 'load_voc_records', 'normalize_class_name', 'normalized_classes',
           'parse_voc_annotation', 'read_split_file', 'seeded_split']

VOC_CLASSES = ['aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car',
               'cat', 'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike',
               'person', 'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor']


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
        Show a progress bar when stderr is a terminal (:mod:`gluon_distill.progress`).
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
    discovered = classes is None
    if discovered:
        classes = discover_classes([xml for _, xml, _ in items])
    else:
        for name in classes:
            report.class_name(str(name), given=True)
        classes = normalized_classes(classes)
    if progress:  # on a terminal only
        from ..progress import progress_bar
        items = progress_bar(items, desc='checking {}'.format(os.path.basename(root) or root),
                             unit='img')
    records = []
    for image_id, xml_path, image_dir in items:
        record = parse_voc_annotation(xml_path, classes, image_dir, report,
                                      check_images=check_images, image_id=image_id)
        if record is not None:
            records.append(record)
    if discovered:
        report.notes.append('classes discovered from annotations ({}): {}'.format(
            len(classes), ', '.join(report.display_name(c) for c in classes)))
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


def normalized_classes(classes):
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
