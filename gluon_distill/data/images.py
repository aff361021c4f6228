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
finds such files and :func:`grey_tail_rows` measures how much of the picture was lost. A
*progressive* JPEG is sent as successive scans that refine the whole picture: cut short, it
decodes blurred rather than grey, and :func:`lost_progressive_detail` names the coefficients
that never arrived. libjpeg prints "Premature end of JPEG file" on stderr for every decode of a
truncated JPEG; :func:`read_image` drops that line (the dataset check reports the file once)
and passes on anything else written meanwhile. :func:`image_format` and :func:`truncation`
name a file's real format (by its bytes) and how its stream ends, for JPEG and PNG.
"""
import contextlib
import os
import re
import sys
import tempfile
import threading
from collections import namedtuple

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

    libjpeg's "Premature end of JPEG file" warning for a truncated JPEG is not printed (the
    dataset check reports such files, once); other output is unaffected.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ImageReadError('{}: {}'.format(
            path, 'is a directory, not an image' if os.path.isdir(path) else 'no such file'))
    if _is_truncated_jpeg(path):
        with _without_libjpeg_warning():
            img = cv2.imread(path, READ_FLAGS)
    else:
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
# Start-of-frame markers of progressive JPEGs (Huffman and arithmetic coded).
_PROGRESSIVE_SOF = {0xc2, 0xc6, 0xca, 0xce}
_SOF = set(range(0xc0, 0xd0)) - {0xc4, 0xc8, 0xcc}

JpegScan = namedtuple('JpegScan', 'components ss se ah al complete')
JpegScan.__doc__ = """One scan of a JPEG: component ids, spectral selection ``ss..se``,
successive approximation ``ah``/``al`` and whether its data ended (a marker followed it)."""
JpegStream = namedtuple('JpegStream', 'why progressive components scans')
JpegStream.__doc__ = """What :func:`jpeg_stream` found: ``why`` the stream ends early (None if it
reaches its end-of-image marker), whether the frame is progressive, the frame's component ids
and its scans (:class:`JpegScan`)."""


def jpeg_stream(data):
    """Walk a JPEG's marker segments and scans up to its end-of-image marker (EOI).

    APPn payloads (such as an EXIF thumbnail, which has its own end marker) are skipped, and so
    is entropy-coded data. Returns a :class:`JpegStream`.
    """
    if data[:2] != b'\xff\xd8':
        return JpegStream('no JPEG start-of-image marker', False, (), [])
    pos, scans, progressive, components = 2, [], False, ()

    def ended(why):
        return JpegStream(why, progressive, components, scans)
    while True:
        match = _MARKER.search(data, pos)
        if match is None:
            where = 'inside scan data' if scans and not scans[-1].complete else 'inside the header'
            return ended('ends {} without an end-of-image marker'.format(where))
        marker = match.group(1)[0]
        pos = match.end()
        if scans and not scans[-1].complete:
            scans[-1] = scans[-1]._replace(complete=True)
        if marker == 0xd9:
            return ended(None)
        if marker in _STANDALONE:
            continue
        if len(data) < pos + 2:
            return ended('ends inside a marker segment')
        length = int.from_bytes(data[pos:pos + 2], 'big')
        if length < 2 or pos + length > len(data):
            return ended('ends inside a marker segment')
        segment = data[pos + 2:pos + length]
        pos += length
        if marker in _SOF and len(segment) >= 6:
            progressive = marker in _PROGRESSIVE_SOF
            components = tuple(segment[6 + 3 * i] for i in range(segment[5])
                               if 6 + 3 * i < len(segment))
        elif marker == 0xda and segment:
            count = segment[0]
            tail = segment[1 + 2 * count:4 + 2 * count]
            if len(tail) == 3:
                scans.append(JpegScan(tuple(segment[1 + 2 * i] for i in range(count)),
                                      tail[0], tail[1], tail[2] >> 4, tail[2] & 15, False))


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
    return jpeg_stream(data).why


def _component_name(components, cid):
    names = {1: ('Y',), 3: ('Y', 'Cb', 'Cr')}.get(len(components))
    index = components.index(cid)
    return names[index] if names else 'component {}'.format(cid)


def _ranges(values):
    """``'1-5, 9'`` of a sorted list of ints."""
    parts, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            parts.append(str(start) if start == v else '{}-{}'.format(start, v))
            start = None
    return ', '.join(parts)


def lost_progressive_detail(stream):
    """The coefficients a truncated progressive JPEG never received, or None.

    A progressive JPEG sends each band of DCT coefficients of each component first coarsely
    (a scan with ``ah == 0``), then refines its low bits. When the file ends inside a scan, that
    scan reached only the top of the picture and every later scan is lost. A band none of
    whose first-pass scans ended is missing from (most of) the picture, which OpenCV then
    decodes blurred, not grey; lost refinement scans only cost precision.

    Parameters
    ----------
    stream : JpegStream
        Of :func:`jpeg_stream`.

    Returns
    -------
    None or str
        None for a complete or non-progressive stream, or when every band of every component
        arrived at least coarsely; otherwise what is missing, e.g. ``'never received Y
        coefficients 6-63 (4 complete scans)'``.
    """
    if stream.why is None or not stream.progressive or not stream.components:
        return None
    received = {cid: set() for cid in stream.components}
    for scan in stream.scans:
        if scan.complete and scan.ah == 0:
            for cid in scan.components:
                received.setdefault(cid, set()).update(range(scan.ss, scan.se + 1))
    missing = []
    for cid in stream.components:
        lost = sorted(set(range(64)) - received[cid])
        if lost:
            missing.append('{} coefficients {}{}'.format(
                _component_name(stream.components, cid), _ranges(lost),
                ' (all)' if len(lost) == 64 else ''))
    if not missing:
        return None
    done = sum(scan.complete for scan in stream.scans)
    return 'never received {} ({} complete scan{})'.format(
        ', '.join(missing), done, '' if done == 1 else 's')


def png_truncation(data):
    """How a PNG's chunk stream ends: None when it reaches its IEND chunk, else why not."""
    if data[:8] != b'\x89PNG\r\n\x1a\n':
        return 'no PNG signature'
    pos = 8
    while True:
        if len(data) < pos + 8:
            return 'ends {} without an IEND chunk'.format(
                'between chunks' if len(data) == pos else 'inside a chunk header')
        length = int.from_bytes(data[pos:pos + 4], 'big')
        kind = data[pos + 4:pos + 8].decode('latin-1')
        if len(data) < pos + 12 + length:
            return 'ends inside its {} chunk, without an IEND chunk'.format(kind)
        if kind == 'IEND':
            return None
        pos += 12 + length


_SIGNATURES = ((b'\xff\xd8', 'JPEG'), (b'\x89PNG\r\n\x1a\n', 'PNG'), (b'BM', 'BMP'),
               (b'GIF87a', 'GIF'), (b'GIF89a', 'GIF'), (b'II*\x00', 'TIFF'),
               (b'MM\x00*', 'TIFF'))


def image_format(data):
    """The format a file's first bytes announce (``'JPEG'``, ``'PNG'``, ``'BMP'``, ``'GIF'``,
    ``'TIFF'``, ``'WebP'``), or None when they announce none of these."""
    if data[:4] == b'RIFF' and data[8:12] == b'WEBP':
        return 'WebP'
    return next((name for magic, name in _SIGNATURES if data.startswith(magic)), None)


def truncation(data):
    """``(format, why or None)`` of a file's bytes: its format (:func:`image_format`) and, for
    a JPEG or a PNG, why its stream ends early (None when it is complete or not checked)."""
    fmt = image_format(data)
    if fmt == 'JPEG':
        return fmt, jpeg_truncation(data)
    if fmt == 'PNG':
        return fmt, png_truncation(data)
    return fmt, None


def _is_truncated_jpeg(path):
    """Whether the file is a JPEG without its end-of-image marker (cheap for complete files:
    only their first and last two bytes are read)."""
    try:
        with open(path, 'rb') as f:
            if f.read(2) != b'\xff\xd8':
                return False
            f.seek(-2, os.SEEK_END)
            if f.read(2) == b'\xff\xd9':
                return False
            f.seek(0)
            return jpeg_truncation(f.read()) is not None
    except OSError:
        return False


# What libjpeg prints (straight to stderr, from C) when a JPEG's data ends early.
_LIBJPEG_TRUNCATION_WARNINGS = (b'Premature end of JPEG file',
                                b'Corrupt JPEG data: premature end of data segment')
_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _without_libjpeg_warning():
    """Capture file descriptor 2 while the body runs; afterwards write back everything captured
    except libjpeg's truncation warnings. Serialised by a lock (the descriptor is per process)."""
    with _STDERR_LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):   # no usable stderr: nothing to hide
            yield
            return
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                capture.seek(0)
                rest = b''.join(line for line in capture
                                if not line.startswith(_LIBJPEG_TRUNCATION_WARNINGS))
                if rest:
                    os.write(2, rest)


def grey_tail_rows(img):
    """Rows at the bottom of a decoded image that are entirely libjpeg's grey fill value."""
    flat = (img.reshape(img.shape[0], -1) == JPEG_FILL_VALUE).all(axis=1)
    not_grey = np.flatnonzero(~flat)
    return int(img.shape[0] - 1 - not_grey[-1]) if len(not_grey) else int(img.shape[0])


def is_image_file(path):
    """Whether ``path``'s extension is one of :data:`IMAGE_SUFFIXES`."""
    return os.path.splitext(path)[1].lower() in IMAGE_SUFFIXES
