"""COCO annotation files for a generated synthetic VOC root, so the COCO path runs anywhere.

:func:`make_synthetic_coco` writes ``annotations/instances_<split>.json`` (``train`` and ``val``)
beside the root's ``JPEGImages/`` from its XML files; the root is then a COCO root
(:func:`gluon_distill.data.coco.coco_split_paths` finds ``JPEGImages/``). Category ids are
deliberately not contiguous (:data:`SYNTHETIC_CATEGORY_IDS`), as COCO's own are not, so a label
-> category id mistake cannot go unnoticed.
"""
import json
import os

from .convert import voc_to_coco
from .coco import ANNOTATION_PATTERN
from .synthetic import MANIFEST, SYNTHETIC_CLASSES, make_synthetic_voc

# category id of each shape, in sorted name order (circle, cross, square, star, triangle)
SYNTHETIC_CATEGORY_IDS = (1, 3, 4, 7, 9)
COCO_SPLITS = ('train', 'val')


def make_synthetic_coco(root, **kwargs):
    """Generate (or reuse) the synthetic VOC root ``root`` (``kwargs`` as
    :func:`~gluon_distill.data.synthetic.make_synthetic_voc`) and write its COCO files.

    Files already written for the same generator parameters are kept. Returns ``root``.
    """
    root = make_synthetic_voc(root, **kwargs)
    with open(os.path.join(root, MANIFEST)) as f:
        params = json.load(f)
    info = {'description': 'gluon-distill synthetic shapes', 'synthetic': params}
    for split in COCO_SPLITS:
        path = os.path.join(root, ANNOTATION_PATTERN.format(split))
        if _written_for(path, info):
            continue
        classes = sorted(params['classes'])
        ids = [SYNTHETIC_CATEGORY_IDS[sorted(SYNTHETIC_CLASSES).index(c)] for c in classes]
        voc_to_coco(root, split, path, classes=classes, category_ids=ids,
                    image_root=os.path.join(root, 'JPEGImages'), info=info)
    return root


def _written_for(path, info):
    try:
        with open(path) as f:
            return json.load(f).get('info') == info
    except (OSError, ValueError, AttributeError):
        return False
