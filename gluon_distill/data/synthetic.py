"""A small synthetic detection dataset written as a real PASCAL VOC root.

Coloured shapes (circle, square, triangle, cross, star -- stretched, so ellipses and rectangles
too) on textured backgrounds. It exercises exactly the same loading and validation path as real
data, is deterministic given a seed, and a tiny CNN can learn it in minutes on a CPU.
"""
import json
import os
import shutil
import xml.etree.ElementTree as ET

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SYNTHETIC_CLASSES = ('circle', 'square', 'triangle', 'cross', 'star')
MANIFEST = 'synthetic.json'
GENERATOR_VERSION = 1
JPEG_QUALITY = 95

# Object side as a fraction of the image's short side, and the allowed stretch (w/h).
SIZE_FRACTION = (0.12, 0.6)
DIFFICULT_SIZE_FRACTION = (0.07, 0.11)
ASPECT_RANGE = (0.6, 1.6)
MAX_IOU = 0.35
MAX_COVERED = 0.4  # fraction of an earlier object a later one may hide
MIN_CONTRAST = 110.0  # Euclidean RGB distance between object and its background patch


def make_synthetic_voc(root, num_train=400, num_val=100, size_range=(96, 160), seed=0,
                       classes=SYNTHETIC_CLASSES, difficult_fraction=0.05):
    """Write a synthetic VOC dataset under ``root`` and return ``root``.

    Layout: ``Annotations/<id>.xml`` (1-based inclusive boxes), ``JPEGImages/<id>.jpg``,
    ``ImageSets/Main/{train,val,test,trainval}.txt`` (``test`` = ``val``) and ``synthetic.json``
    recording the parameters. Calling again with identical parameters on a complete root returns
    at once; different parameters regenerate it. A non-empty folder that is not a synthetic root
    is refused (FileExistsError) rather than overwritten.

    Parameters
    ----------
    num_train, num_val : int
        Images per split; ids are ``000000``... with train first.
    size_range : (int, int)
        Inclusive range of image width and height in pixels (drawn independently).
    seed : int
        Seed of the ``numpy.random.RandomState`` driving everything.
    classes : sequence of str
        Shape names, a subset of :data:`SYNTHETIC_CLASSES` (their order gives label indices).
    difficult_fraction : float
        Probability that an object is small, low-contrast and flagged ``<difficult>``.
    """
    root = os.path.abspath(os.path.expanduser(str(root)))
    unknown = [c for c in classes if c not in SYNTHETIC_CLASSES]
    if unknown or not classes:
        raise ValueError('classes must be a non-empty subset of {}, got {}'.format(
            SYNTHETIC_CLASSES, list(classes)))
    if not (0 < size_range[0] <= size_range[1]):
        raise ValueError('size_range must be (min, max) with 0 < min <= max, got {}'.format(size_range))
    params = {'version': GENERATOR_VERSION, 'num_train': int(num_train), 'num_val': int(num_val),
              'size_range': [int(size_range[0]), int(size_range[1])], 'seed': int(seed),
              'classes': list(classes), 'difficult_fraction': float(difficult_fraction)}
    ids = ['{:06d}'.format(i) for i in range(num_train + num_val)]
    if _is_complete(root, params, ids):
        return root
    _prepare_root(root)
    rng = np.random.RandomState(seed)
    for image_id in ids:
        image, objects = _make_image(rng, params)
        image.save(os.path.join(root, 'JPEGImages', image_id + '.jpg'), quality=JPEG_QUALITY)
        _write_xml(os.path.join(root, 'Annotations', image_id + '.xml'), image_id, image.size, objects)
    splits = {'train': ids[:num_train], 'val': ids[num_train:], 'test': ids[num_train:],
              'trainval': ids}
    for name, split_ids in splits.items():
        with open(os.path.join(root, 'ImageSets', 'Main', name + '.txt'), 'w') as f:
            f.writelines(i + '\n' for i in split_ids)
    # Written last: its presence means the files above are complete.
    with open(os.path.join(root, MANIFEST), 'w') as f:
        json.dump(params, f, indent=2)
    return root


def _is_complete(root, params, ids):
    """True if ``root`` holds a manifest with ``params`` and every file it implies."""
    try:
        with open(os.path.join(root, MANIFEST)) as f:
            if json.load(f) != params:
                return False
    except (OSError, ValueError):
        return False
    paths = [os.path.join(root, 'ImageSets', 'Main', s + '.txt') for s in ('train', 'val', 'test', 'trainval')]
    paths += [os.path.join(root, 'Annotations', i + '.xml') for i in ids]
    paths += [os.path.join(root, 'JPEGImages', i + '.jpg') for i in ids]
    return all(os.path.isfile(p) for p in paths)


def _prepare_root(root):
    """Empty the generated sub-folders of a previous synthetic root, or create a new one."""
    subdirs = ['Annotations', 'JPEGImages', 'ImageSets']
    if os.path.isdir(root) and os.listdir(root):
        if not os.path.isfile(os.path.join(root, MANIFEST)):
            raise FileExistsError('{} is not empty and has no {}: refusing to overwrite it'.format(
                root, MANIFEST))
        os.remove(os.path.join(root, MANIFEST))
        for sub in subdirs:
            shutil.rmtree(os.path.join(root, sub), ignore_errors=True)
    for sub in ('Annotations', 'JPEGImages', os.path.join('ImageSets', 'Main')):
        os.makedirs(os.path.join(root, sub), exist_ok=True)


# ----------------------------------------------------------------------------- drawing

def _make_image(rng, params):
    """One image and its objects ``[(class_name, (x0, y0, x1, y1) 0-based inclusive, difficult)]``."""
    low, high = params['size_range']
    width, height = int(rng.randint(low, high + 1)), int(rng.randint(low, high + 1))
    background = _background(rng, width, height)
    image = Image.fromarray(background)
    draw = ImageDraw.Draw(image)
    objects = []
    for _ in range(rng.randint(1, 5)):
        difficult = rng.rand() < params['difficult_fraction']
        box = _place_box(rng, width, height, [o[1] for o in objects], difficult)
        if box is None:
            continue
        name = params['classes'][rng.randint(len(params['classes']))]
        colour = _contrasting_colour(rng, background, box, difficult)
        _draw_shape(draw, name, box, colour)
        objects.append((name, box, difficult))
    return image, objects


def _background(rng, width, height):
    """Textured background (H, W, 3) uint8: noise, gradient, stripes or blotches."""
    base = rng.uniform(0, 255, 3)
    kind = rng.randint(4)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == 0:
        img = np.broadcast_to(base, (height, width, 3)).astype(np.float32)
    elif kind == 1:
        other = rng.uniform(0, 255, 3)
        angle = rng.uniform(0, 2 * np.pi)
        t = xx * np.cos(angle) + yy * np.sin(angle)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
        img = base + t[..., None] * (other - base)
    elif kind == 2:
        other = np.clip(base + rng.uniform(-80, 80, 3), 0, 255)
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(6, 30)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
        img = base + t[..., None] * (other - base)
    else:
        img = _blotches(rng, base, width, height)
    img = img + rng.normal(0, rng.uniform(4, 18), (height, width, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _blotches(rng, base, width, height):
    """Blurred random ellipses of random colours over ``base`` colour, (H, W, 3) float32."""
    canvas = Image.new('RGB', (width, height), tuple(int(v) for v in base))
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.randint(4, 10)):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(5, width / 3), rng.uniform(5, height / 3)
        colour = tuple(int(v) for v in np.clip(base + rng.uniform(-90, 90, 3), 0, 255))
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=colour)
    canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(3, 8)))
    return np.asarray(canvas, np.float32)


def _area(box):
    return (box[2] - box[0] + 1) * (box[3] - box[1] + 1)


def _intersection(a, b):
    """Pixel count shared by two inclusive boxes ``(x0, y0, x1, y1)``."""
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    return max(iw, 0) * max(ih, 0)


def _acceptable_overlap(new, old):
    """True if ``new`` (drawn on top) overlaps ``old`` by IoU <= MAX_IOU and hides at most
    MAX_COVERED of it."""
    inter = _intersection(new, old)
    iou = inter / float(_area(new) + _area(old) - inter)
    return iou <= MAX_IOU and inter <= MAX_COVERED * _area(old)


def _place_box(rng, width, height, existing, difficult, tries=20):
    """A random inclusive box ``(x0, y0, x1, y1)`` overlapping ``existing`` boxes only a little
    (see :func:`_acceptable_overlap`), or None after ``tries`` failures."""
    short = min(width, height)
    low, high = DIFFICULT_SIZE_FRACTION if difficult else SIZE_FRACTION
    for _ in range(tries):
        side = rng.uniform(low, high) * short
        aspect = np.exp(rng.uniform(np.log(ASPECT_RANGE[0]), np.log(ASPECT_RANGE[1])))
        w = int(np.clip(round(side * np.sqrt(aspect)), 6, width))
        h = int(np.clip(round(side / np.sqrt(aspect)), 6, height))
        x0, y0 = int(rng.randint(0, width - w + 1)), int(rng.randint(0, height - h + 1))
        box = (x0, y0, x0 + w - 1, y0 + h - 1)
        if all(_acceptable_overlap(box, other) for other in existing):
            return box
    return None


def _contrasting_colour(rng, background, box, difficult):
    """An RGB colour far (>= MIN_CONTRAST) from the mean background under ``box``; difficult
    objects get half that contrast."""
    x0, y0, x1, y1 = box
    mean = background[y0:y1 + 1, x0:x1 + 1].reshape(-1, 3).mean(axis=0)
    threshold = MIN_CONTRAST / 2 if difficult else MIN_CONTRAST
    best, best_distance = None, -1.0
    for _ in range(50):
        colour = rng.randint(0, 256, 3)
        distance = float(np.linalg.norm(colour - mean))
        if distance >= threshold:
            return tuple(int(v) for v in colour)
        if distance > best_distance:
            best, best_distance = colour, distance
    return tuple(int(v) for v in best)


def _unit_polygon(name):
    """Vertices of a shape in the unit square (x right, y down), touching all four sides."""
    if name == 'triangle':
        return [(0.5, 0.0), (1.0, 1.0), (0.0, 1.0)]
    if name == 'cross':
        a, b = 1 / 3, 2 / 3
        return [(a, 0), (b, 0), (b, a), (1, a), (1, b), (b, b), (b, 1), (a, 1), (a, b), (0, b),
                (0, a), (a, a)]
    if name == 'star':
        angles = -np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        pts = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
        pts = (pts - pts.min(axis=0)) / (pts.max(axis=0) - pts.min(axis=0))
        return [tuple(p) for p in pts]
    raise ValueError('no polygon for shape {!r}'.format(name))


def _draw_shape(draw, name, box, colour):
    """Fill shape ``name`` stretched to the inclusive pixel box ``(x0, y0, x1, y1)``."""
    x0, y0, x1, y1 = box
    if name == 'circle':
        draw.ellipse([x0, y0, x1, y1], fill=colour)
    elif name == 'square':
        draw.rectangle([x0, y0, x1, y1], fill=colour)
    else:
        draw.polygon([(x0 + u * (x1 - x0), y0 + v * (y1 - y0)) for u, v in _unit_polygon(name)],
                     fill=colour)


def _write_xml(path, image_id, size, objects):
    """Write a full VOC annotation with 1-based inclusive ``bndbox`` values."""
    width, height = size
    root = ET.Element('annotation')
    ET.SubElement(root, 'folder').text = 'JPEGImages'
    ET.SubElement(root, 'filename').text = image_id + '.jpg'
    source = ET.SubElement(root, 'source')
    ET.SubElement(source, 'database').text = 'gluon-distill synthetic shapes'
    size_el = ET.SubElement(root, 'size')
    for tag, value in (('width', width), ('height', height), ('depth', 3)):
        ET.SubElement(size_el, tag).text = str(value)
    ET.SubElement(root, 'segmented').text = '0'
    for name, (x0, y0, x1, y1), difficult in objects:
        obj = ET.SubElement(root, 'object')
        ET.SubElement(obj, 'name').text = name
        ET.SubElement(obj, 'pose').text = 'Unspecified'
        ET.SubElement(obj, 'truncated').text = '0'
        ET.SubElement(obj, 'difficult').text = str(int(difficult))
        bndbox = ET.SubElement(obj, 'bndbox')
        for tag, value in (('xmin', x0), ('ymin', y0), ('xmax', x1), ('ymax', y1)):
            ET.SubElement(bndbox, tag).text = str(value + 1)
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding='utf-8', xml_declaration=False)
