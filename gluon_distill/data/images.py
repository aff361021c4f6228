"""The one image decoder of the package, and what a file's bytes say about it.

Every consumer -- data validation, the training loaders, validation, ``tools/eval.py``,
``tools/detect.py`` and export verification -- reads pixels through :func:`read_image`:
OpenCV's ``imread`` (the decoder GluonCV's ``mx.image.imread`` wraps), colour, **stored
pixels**. The EXIF orientation tag is ignored, as GluonCV's datasets and ``mx.image.imread``
ignore it: VOC-style annotations are drawn on the stored pixels, so rotating the image for
display would put every box on the wrong object. :func:`exif_orientation` lets the dataset
check name the images a photo viewer would show rotated.

``imread`` of a file (unlike ``imdecode`` of a buffer) decodes a JPEG whose end is missing,
filling the missing blocks with grey, as ``mx.image.imread`` does; :func:`jpeg_truncation`
finds such files and :func:`grey_tail_rows` measures how much of the picture was lost.
"""
import os
import re

import cv2
import numpy as np

READ_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
# Extensions of the files ``tools/detect.py`` takes from a folder (case-insensitive).
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp')
EXIF_ORIENTATION_TAG = 0x0112
ORIENTATION_MEANING = {
    2: 'mirrored', 3: 'rotated 180 degrees', 4: 'mirrored vertically',
    5: 'mirrored and rotated 90 degrees', 6: 'rotated 90 degrees clockwise',
    7: 'mirrored and rotated 270 degrees', 8: 'rotated 90 degrees counter-clockwise'}
# libjpeg fills the blocks after a premature end of data with zero coefficients: grey 128.
JPEG_FILL_VALUE = 128


class ImageReadError(ValueError):
    """An image file is missing or cannot be decoded; the message names the file."""


def read_image(path):
    """Decode an image file to its stored pixels.

    Parameters
    ----------
    path : str
        Image file (JPEG, PNG, BMP or anything else OpenCV reads).

    Returns
    -------
    np.ndarray
        ``(H, W, 3)`` uint8 **RGB** (grayscale, CMYK and alpha files are converted), the EXIF
        orientation ignored.

    Raises
    ------
    ImageReadError
        If there is no such file or OpenCV cannot decode it.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ImageReadError('{}: {}'.format(
            path, 'is a directory, not an image' if os.path.isdir(path) else 'no such file'))
    img = cv2.imread(path, READ_FLAGS)
    if img is None or img.size == 0:
        raise ImageReadError('{}: OpenCV cannot decode this file as an image'.format(path))
    return np.ascontiguousarray(img[:, :, ::-1])


def exif_orientation(path):
    """The EXIF orientation tag (1-8) of an image file, or None when it has none."""
    from PIL import Image
    try:
        with Image.open(path) as img:
            value = img.getexif().get(EXIF_ORIENTATION_TAG)
    except Exception:  # PIL raises many types on odd files; the decoder check reports them
        return None
    try:
        value = int(value)
    except (TypeError, ValueError):
        return None
    return value if 1 <= value <= 8 else None


_MARKER = re.compile(b'\xff+([^\x00\xff\xd0-\xd7])', re.DOTALL)
_STANDALONE = set(range(0xd0, 0xd8)) | {0x01, 0xd8}


def jpeg_truncation(data):
    """How a JPEG's byte stream ends.

    Walks the marker segments (skipping APPn payloads such as an EXIF thumbnail, which has
    its own end marker) and the entropy-coded scans up to the end-of-image marker (EOI).

    Parameters
    ----------
    data : bytes
        The whole file.

    Returns
    -------
    None or str
        None when the stream reaches its EOI (bytes after it are ignored, as decoders do);
        otherwise why not, e.g. ``'ends inside scan data without an end-of-image marker'``.
    """
    if data[:2] != b'\xff\xd8':
        return 'no JPEG start-of-image marker'
    pos, in_scan = 2, False
    while True:
        match = _MARKER.search(data, pos)
        if match is None:
            where = 'inside scan data' if in_scan else 'inside the header'
            return 'ends {} without an end-of-image marker'.format(where)
        marker = match.group(1)[0]
        pos = match.end()
        if marker == 0xd9:
            return None
        if marker in _STANDALONE:
            continue
        if len(data) < pos + 2:
            return 'ends inside a marker segment'
        length = int.from_bytes(data[pos:pos + 2], 'big')
        if length < 2 or pos + length > len(data):
            return 'ends inside a marker segment'
        pos += length
        in_scan = marker == 0xda


def grey_tail_rows(img):
    """Rows at the bottom of a decoded image that are entirely libjpeg's grey fill value."""
    flat = (img.reshape(img.shape[0], -1) == JPEG_FILL_VALUE).all(axis=1)
    not_grey = np.flatnonzero(~flat)
    return int(img.shape[0] - 1 - not_grey[-1]) if len(not_grey) else int(img.shape[0])


def is_image_file(path):
    """Whether ``path``'s extension is one of :data:`IMAGE_SUFFIXES`."""
    return os.path.splitext(path)[1].lower() in IMAGE_SUFFIXES
