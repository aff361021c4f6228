"""The validated form of one annotated image, shared by every dataset and evaluator.

Coordinates follow GluonCV's ``VOCDetection``: pixel boxes ``(xmin, ymin, xmax, ymax)`` in the
original image, 0-based, obtained by subtracting 1 from the 1-based inclusive VOC values. The
devkit writer adds the 1 back.
"""
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Record:
    """One image and its objects.

    Attributes
    ----------
    image_id : str
        The VOC id (file stem), unique within a dataset.
    image_path : str
        Absolute path of the image file.
    width, height : int
        Real size of the image in pixels (validated against the file).
    boxes : np.ndarray, shape (N, 4), float32
        ``xmin, ymin, xmax, ymax`` 0-based pixels.
    labels : np.ndarray, shape (N,), int32
        Class indices into the dataset's class list.
    difficult : np.ndarray, shape (N,), bool
        VOC "difficult" flags (ignored by VOC07 evaluation).
    annotation_path : str
        The XML file the record came from ('' for generated records).
    """
    image_id: str
    image_path: str
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int32))
    difficult: np.ndarray = field(default_factory=lambda: np.zeros((0,), bool))
    annotation_path: str = ''

    def label_array(self):
        """GluonCV's label layout: array (N, 6) of ``xmin, ymin, xmax, ymax, class, difficult``."""
        return np.concatenate([self.boxes.astype(np.float32),
                               self.labels[:, None].astype(np.float32),
                               self.difficult[:, None].astype(np.float32)], axis=1)
