"""Detector families (see :mod:`.base`): one object per family, chosen by ``model.family``."""
from .base import DetectorFamily, DeviceBatch, as_device_batch  # noqa: F401 (the seam's API)
from .ssd import SSDFamily
from .faster_rcnn import FasterRCNNFamily
from .yolo3 import YOLO3Family

FAMILIES = {
    'ssd': SSDFamily(),
    'faster_rcnn': FasterRCNNFamily(),
    'yolo3': YOLO3Family(),
}

#: ``model.json`` kinds -> the family that builds and evaluates them
KINDS = {'ssd': 'ssd', 'distilled_ssd': 'ssd', 'faster_rcnn': 'faster_rcnn', 'yolo3': 'yolo3'}


def get_family(name):
    """The family called ``name`` (``model.family``), or a ValueError naming the choices."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError('model.family: expected one of {}, got {!r}'.format(
            ', '.join(FAMILIES), name)) from None


def family_of_spec(spec):
    """The family of a saved model (its ``model.json``)."""
    kind = spec.get('kind')
    if kind not in KINDS:
        raise ValueError('model.json kind {!r}: not a detector this version knows ({})'.format(
            kind, ', '.join(KINDS)))
    return FAMILIES[KINDS[kind]]
