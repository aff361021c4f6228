"""VOC <-> COCO annotation conversion through the validated loaders.

Both directions read with the loader of their source format, so a file that would not train
does not convert either (:class:`~gluon_distill.data.voc.DatasetError` with the report), and
boxes keep the one pixel convention of :mod:`gluon_distill.data.coco`: VOC ``xmin`` (1-based,
inclusive) is COCO ``x + 1``, VOC ``xmax`` is ``x + w``. Converting back and forth gives the
same records.

What each format cannot say:

* VOC ``<difficult>`` becomes a non-standard ``"difficult": 1`` field of the COCO annotation
  (``iscrowd`` stays 0): the COCO loader reads it back as the VOC flag, pycocotools ignores it
  (COCOeval counts such boxes as positives).
* COCO crowd regions become VOC ``<difficult>1</difficult>`` objects (VOC07 ignores them; VOC
  training, like GluonCV's, uses difficult boxes as targets).

Class names are compared lower-cased (GluonCV's rule) but written as the source spells them
(:meth:`~gluon_distill.data.report.ValidationReport.display_name`): VOC ``<name>RBC</name>``
becomes the COCO category ``RBC``, and back.
"""
import os
import shutil
import xml.etree.ElementTree as ET

from ..io_utils import atomic_write_json, atomic_write_text
from ..progress import progress_bar
from .voc import DatasetError, load_voc_records


def _raise_if_fatal(report):
    if report.fatal():
        raise DatasetError('nothing converted:\n' + report.summary())


def records_to_coco(records, classes, image_root, category_ids=None, info=None, names=None):
    """A COCO ``instances`` dict of ``records``.

    Parameters
    ----------
    records : list of Record
    classes : list of str
    image_root : str
        Folder the ``file_name`` s are made relative to.
    category_ids : list of int or None
        Id of each class; ``1..K`` by default.
    info : dict or None
        The file's ``info`` field.
    names : list of str or None
        The category name written for each class (its spelling in the source); ``classes`` by
        default.

    Image ids are the records' ids as integers when they all are distinct integers (VOC's
    ``000005`` is image 5), else ``1..N`` in record order.
    """
    category_ids = list(category_ids or range(1, len(classes) + 1))
    if len(category_ids) != len(classes) or len(set(category_ids)) != len(category_ids):
        raise ValueError('need one distinct category id per class, got {} for {}'.format(
            category_ids, classes))
    numeric = [int(r.image_id) if r.image_id.isdigit() else None for r in records]
    if None in numeric or len(set(numeric)) != len(numeric):
        numeric = list(range(1, len(records) + 1))
    images, annotations = [], []
    for image_id, record in zip(numeric, records):
        images.append({'id': image_id, 'file_name': os.path.relpath(record.image_path, image_root),
                       'width': int(record.width), 'height': int(record.height)})
        for box, label, difficult in zip(record.boxes.tolist(), record.labels.tolist(),
                                         record.difficult.tolist()):
            x1, y1, x2, y2 = box
            w, h = x2 - x1 + 1.0, y2 - y1 + 1.0
            ann = {'id': len(annotations) + 1, 'image_id': image_id,
                   'category_id': int(category_ids[label]), 'bbox': [x1, y1, w, h],
                   'area': w * h, 'iscrowd': 0}
            if difficult:
                ann['difficult'] = 1
            annotations.append(ann)
    return {'info': dict(info or {}), 'images': images, 'annotations': annotations,
            'categories': [{'id': int(c), 'name': name, 'supercategory': 'none'}
                           for c, name in zip(category_ids, names or classes)]}


def voc_to_coco(voc_root, split, out_json, classes=None, category_ids=None, image_root=None,
                check_images=False, info=None):
    """Convert one split of a VOC root to a COCO ``instances`` JSON (written atomically).

    Parameters
    ----------
    voc_root, split : str
        As for :func:`~gluon_distill.data.voc.load_voc_records` (GluonCV's
        ``2007_trainval+2012_trainval`` included).
    out_json : str
        The JSON file to write.
    classes, category_ids : list or None
        Class order (discovered and sorted by default) and their ids (``1..K`` by default).
    image_root : str or None
        Folder ``file_name`` s are relative to: the common folder of the images by default.
    check_images : bool
        Decode every image (slow); otherwise the XML's ``<size>`` is trusted.

    Returns
    -------
    (str, str, int, int)
        The JSON path, the image folder to pair it with (``data.images``), images, boxes.
    """
    records, classes, report = load_voc_records(voc_root, split, classes,
                                                check_images=check_images, progress=True)
    _raise_if_fatal(report)
    if image_root is None:
        image_root = os.path.commonpath([os.path.dirname(r.image_path) for r in records])
    data = records_to_coco(records, classes, image_root, category_ids, info,
                           [report.display_name(c) for c in classes])
    atomic_write_json(out_json, data, indent=None)
    return out_json, os.path.abspath(image_root), len(data['images']), len(data['annotations'])


def coco_to_voc(annotations, images, out_root, split='all', classes=None, link=False,
                check_images=False):
    """Convert a COCO ``instances`` JSON and its images to a VOC root.

    Writes ``out_root/Annotations/<name>.xml`` (1-based inclusive boxes), the image as
    ``out_root/JPEGImages/<name><ext>`` (copied, or symlinked with ``link``) and
    ``out_root/ImageSets/Main/<split>.txt``. ``<name>`` is the image file's stem when the stems
    are distinct, else the COCO image id. Returns ``(out_root, images, boxes)``.
    """
    from .coco import load_coco_records
    records, classes, _, report = load_coco_records(annotations, images, split, classes,
                                                    check_images=check_images, progress=True)
    _raise_if_fatal(report)
    names = [report.display_name(c) for c in classes]
    stems = [os.path.splitext(os.path.basename(r.image_path))[0] for r in records]
    if len(set(stems)) != len(stems):
        stems = [r.image_id for r in records]
    for sub in ('Annotations', 'JPEGImages', os.path.join('ImageSets', 'Main')):
        os.makedirs(os.path.join(out_root, sub), exist_ok=True)
    num_boxes = 0
    for name, record in progress_bar(zip(stems, records), total=len(records),
                                     desc='writing {}'.format(os.path.basename(out_root)),
                                     unit='img'):
        ext = os.path.splitext(record.image_path)[1]
        target = os.path.join(out_root, 'JPEGImages', name + ext)
        if os.path.lexists(target):
            os.remove(target)
        if link:
            os.symlink(record.image_path, target)
        else:
            shutil.copyfile(record.image_path, target)
        atomic_write_text(os.path.join(out_root, 'Annotations', name + '.xml'),
                          _voc_xml(name + ext, record, names))
        num_boxes += len(record.labels)
    split_name = 'trainval' if split == 'all' else split
    atomic_write_text(os.path.join(out_root, 'ImageSets', 'Main', split_name + '.txt'),
                      ''.join(name + '\n' for name in stems))
    return out_root, len(records), num_boxes


def _voc_xml(filename, record, names):
    root = ET.Element('annotation')
    ET.SubElement(root, 'folder').text = 'JPEGImages'
    ET.SubElement(root, 'filename').text = filename
    size = ET.SubElement(root, 'size')
    for tag, value in (('width', record.width), ('height', record.height), ('depth', 3)):
        ET.SubElement(size, tag).text = str(value)
    for box, label, difficult in zip(record.boxes.tolist(), record.labels.tolist(),
                                     record.difficult.tolist()):
        obj = ET.SubElement(root, 'object')
        ET.SubElement(obj, 'name').text = names[label]
        ET.SubElement(obj, 'difficult').text = str(int(difficult))
        bndbox = ET.SubElement(obj, 'bndbox')
        for tag, value in zip(('xmin', 'ymin', 'xmax', 'ymax'), box):
            ET.SubElement(bndbox, tag).text = '{:g}'.format(value + 1.0)
    ET.indent(root)
    return ET.tostring(root, encoding='unicode') + '\n'
