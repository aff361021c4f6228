"""Images for the runtime: decoding, the exported model's input, finding image files.

:func:`read_image` decodes as the package's one decoder does
(:func:`gluon_distill.data.images.read_image`: OpenCV ``imread``, colour, the stored pixels,
EXIF orientation ignored, RGB). :func:`preprocess` makes the input ``deploy.json`` describes
(its ``preprocess`` section), as the evaluation of the ``.params`` makes it:

``square`` (SSD, YOLOv3)
    resized to ``size x size`` with GluonCV's ``interp=9`` rule (``auto``: bicubic when both
    sides grow, area when both shrink, else bilinear), as ``SSDDefaultValTransform`` and
    ``YOLO3DefaultValTransform`` do;
``short_within`` (Faster R-CNN)
    the short side resized to ``short`` unless the long side would exceed ``max_size``
    (then the long side to ``max_size``), bilinear, as ``FasterRCNNDefaultValTransform`` does;

then ``(pixel / 255 - mean) / std`` in float32, ``(1, 3, H, W)``. OpenCV's resize of
``cv2`` and the one bundled in MXNet give the same pixels for area and bilinear resizing; for
bicubic enlarging (an image smaller than an SSD's input) they differ by at most one grey
level in a few percent of the pixels (OpenCV 4.11 against MXNet 1.9.1's).

:func:`find_images` and :func:`output_names` are the folder rules of ``tools/detect.py`` (for
the ``.params`` path and the exported one alike).

Imports: NumPy and OpenCV only.
"""
import os

import cv2
import numpy as np

#: Extensions of the image files a folder argument means (case-insensitive).
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp')
READ_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
#: longest side (px) of a drawing by default; larger images are drawn on a scaled-down copy
DRAW_MAX_SIDE = 2048
#: how many skipped subfolders a note names before it says "and N more"
NAMED_SUBFOLDERS = 10

# GluonCV / MXNet interpolation codes, which are OpenCV's
_LINEAR, _CUBIC, _AREA = cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_AREA


class ImageReadError(ValueError):
    """An image file is missing or cannot be decoded; the message names the file."""


def is_image_file(path):
    """Whether ``path``'s extension is one of :data:`IMAGE_SUFFIXES`."""
    return os.path.splitext(path)[1].lower() in IMAGE_SUFFIXES


def read_image(path):
    """``(H, W, 3)`` uint8 RGB: the stored pixels of an image file (EXIF orientation ignored);
    :class:`ImageReadError` naming the file if it is missing or undecodable."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ImageReadError('{}: {}'.format(
            path, 'is a directory, not an image' if os.path.isdir(path) else 'no such file'))
    img = cv2.imread(path, READ_FLAGS)
    if img is None or img.size == 0:
        raise ImageReadError('{}: OpenCV cannot decode this file as an image'.format(path))
    return np.ascontiguousarray(img[:, :, ::-1])


def input_size(height, width, pre):
    """``(new_width, new_height)`` of an image of ``height x width`` for the ``preprocess``
    section ``pre``."""
    if pre['resize'] == 'square':
        return int(pre['size']), int(pre['size'])
    if pre['resize'] != 'short_within':
        raise ValueError('unknown resize {!r} in deploy.json (square or short_within)'.format(
            pre['resize']))
    short, max_size = pre['short'], pre['max_size']
    lo, hi = (height, width) if width > height else (width, height)
    scale = float(short) / float(lo)
    if np.round(scale * hi) > max_size:              # GluonCV's resize_short_within
        scale = float(np.floor(max_size)) / float(hi)
    return int(np.round(width * scale)), int(np.round(height * scale))


def _interpolation(pre, oh, ow, nh, nw):
    if pre.get('interpolation', 'auto') == 'linear':
        return _LINEAR
    if nh > oh and nw > ow:                         # GluonCV's interp=9
        return _CUBIC
    if nh < oh and nw < ow:
        return _AREA
    return _LINEAR


def resize(image, pre):
    """``image`` resized for the exported model (see the module docstring)."""
    h, w = image.shape[:2]
    nw, nh = input_size(h, w, pre)
    return cv2.resize(image, (nw, nh), interpolation=_interpolation(pre, h, w, nh, nw))


def normalize(image, mean, std):
    """``(1, 3, H, W)`` float32 of an RGB uint8 image: ``(pixel / 255 - mean) / std``."""
    x = image.astype(np.float32) / np.float32(255.0)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def preprocess(image, pre, mean, std):
    """``(x (1, 3, H, W) float32, box scale)``: the model input of an RGB uint8 image and the
    factors ``(sx, sy, sx, sy)`` taking the model's boxes back to the image's pixels."""
    h, w = image.shape[:2]
    resized = resize(image, pre)
    nh, nw = resized.shape[:2]
    if pre['resize'] == 'square':
        scale = np.array([w, h, w, h], np.float32) / np.float32(pre['size'])
    else:   # one factor, h / new_h, rounded to float32 (GluonCV's im_scale)
        scale = np.full(4, float(np.float32(h / float(nh))), np.float32)
    return normalize(resized, mean, std), scale


def clip_boxes(boxes, width, height):
    """``(K, 4)`` corner boxes clipped to the 0-based pixels of a ``width x height`` image."""
    limits = np.array([width - 1, height - 1] * 2, np.float32)
    return np.clip(boxes, 0, limits).astype(np.float32)


def bounded_copy(image, max_side=DRAW_MAX_SIDE):
    """``(image, (sx, sy))``: ``image`` scaled down (area interpolation) so that its longer
    side is at most ``max_side`` px, and the factors along x and y; the image itself and
    ``(1.0, 1.0)`` when it fits or ``max_side`` is 0."""
    h, w = image.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return image, (1.0, 1.0)
    scale = float(max_side) / max(h, w)
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return small, (size[0] / float(w), size[1] / float(h))


def find_images(inputs, recursive=False):
    """``(files, notes)``: ``files`` is ``[(path, subfolder), ...]``, each folder of ``inputs``
    replaced by its image files (by extension) and other inputs kept as given (subfolder
    ``''``). Without ``recursive`` a folder gives the files directly in it, sorted by name,
    and a note names the subfolders not searched; with it, the files at any depth, sorted by
    their path relative to the folder, with ``subfolder`` that relative folder (``a/b``).
    Symbolic links to folders are followed, but a folder already searched is not searched
    again (a link back to a parent would loop). ``notes`` says what a folder held besides
    images."""
    files, notes = [], []
    for item in inputs:
        item = os.fspath(item)
        if not os.path.isdir(item):
            files.append((item, ''))
            continue
        if recursive:
            found, others, repeated = _walk_images(item)
        else:
            names = sorted(os.listdir(item))
            found = [(os.path.join(item, n), '') for n in names
                     if os.path.isfile(os.path.join(item, n)) and is_image_file(n)]
            others = sum(1 for n in names if os.path.isfile(os.path.join(item, n))
                         and not is_image_file(n))
            subfolders = [n for n in names if os.path.isdir(os.path.join(item, n))]
            repeated = []
        where = 'in this folder or its subfolders' if recursive else 'in this folder'
        if not found:
            notes.append('{}: no image files (.jpg, .jpeg, .png, .bmp) {}'.format(item, where))
        elif others:
            notes.append('{}: {} image files, {} other files ignored'.format(
                item, len(found), others))
        if not recursive and subfolders:
            shown = ', '.join(n + '/' for n in subfolders[:NAMED_SUBFOLDERS])
            if len(subfolders) > NAMED_SUBFOLDERS:
                shown += ' and {} more'.format(len(subfolders) - NAMED_SUBFOLDERS)
            notes.append('{}: {} subfolder(s) not searched: {} (use --recursive)'.format(
                item, len(subfolders), shown))
        for link, target in repeated:
            notes.append('{}: not searched again: it leads to {}, already searched'.format(
                link, target))
        files += found
    return files, notes


def _walk_images(folder):
    """``(files, others, repeated)`` of a recursive search of ``folder``: image files as
    ``(path, subfolder)`` sorted by relative path, the count of other files, and ``(link,
    folder)`` for each folder reached a second time (through a symbolic link)."""
    seen = {}
    found, others, repeated = [], 0, []

    def key(path):
        st = os.stat(path)
        return st.st_dev, st.st_ino

    seen[key(folder)] = folder
    for top, dirs, names in os.walk(folder, followlinks=True):
        kept = []
        for d in sorted(dirs):
            path = os.path.join(top, d)
            try:
                k = key(path)
            except OSError:
                continue
            if k in seen:
                repeated.append((path, seen[k]))
                continue
            seen[k] = path
            kept.append(d)
        dirs[:] = kept
        rel = os.path.relpath(top, folder)
        rel = '' if rel == os.curdir else rel
        for n in names:
            if is_image_file(n):
                found.append((os.path.join(top, n), rel))
            else:
                others += 1
    found.sort(key=lambda f: os.path.relpath(f[0], folder).split(os.sep))
    return found, others, repeated


def expand_inputs(inputs, recursive=False):
    """``(paths, notes)``: each folder of ``inputs`` replaced by its image files (see
    :func:`find_images`; sorted, by extension, at any depth with ``recursive``); ``notes``
    says what a folder held besides images, and without ``recursive`` which subfolders were
    not searched."""
    files, notes = find_images(inputs, recursive)
    return [path for path, _ in files], notes


def output_names(paths, subfolders=None):
    """A distinct ``.png`` name per input, relative to the output folder: its stem, or
    ``stem_ext`` when another input of the same subfolder has the same stem, and a ``-N``
    suffix when even that is taken (same name, other folder). ``subfolders`` (one per path,
    e.g. ``a/b`` for a file a recursive search found in the folder's ``a/b``) puts the name
    in that subfolder, so ``a/x.jpg`` and ``b/x.jpg`` give ``a/x.png`` and ``b/x.png``."""
    subfolders = list(subfolders) if subfolders is not None else [''] * len(paths)
    stems = [os.path.splitext(os.path.basename(p)) for p in paths]
    count = {}
    for sub, (stem, _) in zip(subfolders, stems):
        count[sub, stem] = count.get((sub, stem), 0) + 1
    names, used = [], set()
    for sub, (stem, ext) in zip(subfolders, stems):
        base = stem if count[sub, stem] == 1 else '{}_{}'.format(stem, ext.lstrip('.') or
                                                                  'noext')
        name, n = base, 1
        while (sub, name) in used:
            n += 1
            name = '{}-{}'.format(base, n)
        used.add((sub, name))
        names.append(os.path.join(sub, name + '.png') if sub else name + '.png')
    return names
