"""Detector families (see :mod:`.base`): one object per family, chosen by ``model.family``."""
from .base import DetectorFamily, DeviceBatch, as_device_batch  # noqa: F401 (the seam's API)
from .ssd import SSDFamily
from .faster_rcnn import FasterRCNNFamily

FAMILIES = {
    'ssd': SSDFamily(),
    'faster_rcnn': FasterRCNNFamily(),
}

#: ``model.json`` kinds -> the family that builds and evaluates them
KINDS = {'ssd': 'ssd', 'distilled_ssd': 'ssd', 'faster_rcnn': 'faster_rcnn'}


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
