"""Detections on image files: drawn with GluonCV's ``plot_bbox``, saved, and listed as text.

Images are decoded by :func:`gluon_distill.data.images.read_image` (stored pixels, EXIF
orientation ignored), as in training and evaluation. A folder argument means the image files
in it; an input that is missing or not a decodable image is reported and skipped, the others
are processed.
"""
import os

import numpy as np

import mxnet as mx

from .data.images import ImageReadError, is_image_file, read_image
from .evaluation.inference import clip_boxes, prepare_for_inference
from .io_utils import ensure_writable_dir


def preprocess(image, data_shape, mean, std):
    """``(1, 3, S, S)`` float32 NDArray of an RGB uint8 ``(H, W, 3)`` image, resized and
    normalised as the evaluation does (GluonCV's SSDDefaultValTransform)."""
    from gluoncv.data.transforms import image as timage
    src = mx.nd.array(image, dtype=np.uint8)
    img = timage.imresize(src, data_shape, data_shape, interp=9)
    img = mx.nd.image.normalize(mx.nd.image.to_tensor(img), mean=tuple(mean), std=tuple(std))
    return img.expand_dims(0)


def load_image(path, data_shape, mean, std):
    """``(batch (1, 3, S, S), original RGB uint8 image (H, W, 3))`` of the file at ``path``;
    raises :class:`~gluon_distill.data.images.ImageReadError` naming it if it is unusable."""
    image = read_image(path)
    return preprocess(image, data_shape, mean, std), image


def detect(net, x, image_size, data_shape, thresh=0.5):
    """``(boxes (K, 4), labels (K,), scores (K,))`` above ``thresh``, boxes in the original
    image's 0-based pixels, clipped to it."""
    ids, scores, boxes = [a[0].asnumpy() for a in net(x)]
    keep = (ids[:, 0] >= 0) & (scores[:, 0] >= thresh)
    h, w = image_size
    scale = np.array([w, h, w, h], np.float32) / data_shape
    return clip_boxes(boxes[keep] * scale, w, h), ids[keep, 0].astype(int), scores[keep, 0]


def draw(image, boxes, labels, scores, classes, out_path, thresh=0.5):
    """Boxes drawn on ``image`` with GluonCV's ``plot_bbox``, saved to ``out_path``."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from gluoncv.utils.viz import plot_bbox
    h, w = image.shape[:2]
    fig = plt.figure(figsize=(w / 100.0, h / 100.0), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.axis('off')
    plot_bbox(image, boxes, scores, labels, thresh=thresh, class_names=classes, ax=ax)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path


def expand_inputs(inputs):
    """``(paths, notes)``: each folder of ``inputs`` replaced by its image files (sorted, by
    extension, not recursive); ``notes`` says what a folder held besides images."""
    paths, notes = [], []
    for item in inputs:
        item = os.fspath(item)
        if not os.path.isdir(item):
            paths.append(item)
            continue
        names = sorted(os.listdir(item))
        files = [n for n in names if os.path.isfile(os.path.join(item, n))]
        images = [n for n in files if is_image_file(n)]
        if not images:
            notes.append('{}: no image files (.jpg, .jpeg, .png, .bmp) in this folder'.format(
                item))
        elif len(images) < len(files):
            notes.append('{}: {} image files, {} other files ignored'.format(
                item, len(images), len(files) - len(images)))
        paths += [os.path.join(item, n) for n in images]
    return paths, notes


def output_names(paths):
    """A distinct ``.png`` name per input: its stem, or ``stem_ext`` when another input has
    the same stem, and a ``-N`` suffix when even that is taken (same name, other folder)."""
    stems = [os.path.splitext(os.path.basename(p)) for p in paths]
    count = {}
    for stem, _ in stems:
        count[stem] = count.get(stem, 0) + 1
    names, used = [], set()
    for stem, ext in stems:
        base = stem if count[stem] == 1 else '{}_{}'.format(stem, ext.lstrip('.') or 'noext')
        name, n = base, 1
        while name in used:
            n += 1
            name = '{}-{}'.format(base, n)
        used.add(name)
        names.append(name + '.png')
    return names


def detect_images(params, images, out_dir='detections', thresh=0.5, ctx=None):
    """Run the detector saved at ``params`` on ``images`` (files or folders of images); write
    ``OUT/<name>.png`` per image. ``out_dir`` is checked writable before anything is loaded.

    Returns ``[(image, out_path or None, detections or error message), ...]``: detections as
    ``[(class, score, (x1, y1, x2, y2)), ...]`` for processed images, a one-line reason (str)
    for skipped inputs; plus, first, ``(folder, None, note)`` entries describing folders.
    """
    ensure_writable_dir(out_dir, 'output folder')
    paths, notes = expand_inputs(images)
    from .models.io import load_detector
    net, spec = load_detector(params, ctx)
    prepare_for_inference(net)
    net.hybridize(static_alloc=True)
    results = [(None, None, note) for note in notes]
    for path, name in zip(paths, output_names(paths)):
        try:
            x, image = load_image(path, spec['data_shape'], spec['mean'], spec['std'])
        except ImageReadError as e:
            results.append((path, None, 'skipped: {}'.format(str(e).split(': ', 1)[-1])))
            continue
        boxes, labels, scores = detect(net, x, image.shape[:2], spec['data_shape'], thresh)
        out = draw(image, boxes, labels, scores, spec['classes'], os.path.join(out_dir, name),
                   thresh)
        dets = [(spec['classes'][c], float(s), tuple(float(v) for v in b))
                for b, c, s in zip(boxes, labels, scores)]
        results.append((path, out, dets))
    return results


def skipped(results):
    """The inputs of a :func:`detect_images` result that were skipped."""
    return [path for path, _, dets in results if path is not None and isinstance(dets, str)]


def format_detections(results):
    lines = []
    for path, out, dets in results:
        if path is None:
            lines.append(dets)
        elif isinstance(dets, str):
            lines.append('{}: {}'.format(path, dets))
        else:
            lines.append('{}: {} detection{} -> {}'.format(
                path, len(dets), '' if len(dets) == 1 else 's', out))
            for cls, score, box in dets:
                lines.append('  {:<16} {:.3f}  {:.1f} {:.1f} {:.1f} {:.1f}'.format(
                    cls, score, *box))
    return '\n'.join(lines)
