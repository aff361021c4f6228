"""Detections on image files: drawn with GluonCV's ``plot_bbox``, saved, and listed as text.

Images are decoded by :func:`gluon_distill.data.images.read_image` (stored pixels, EXIF
orientation ignored), as in training and evaluation. A folder argument means the image files
in it (a note names its subfolders, not searched), or with ``recursive`` the image files at any
depth below it, drawn into the same subfolders of the output folder; an input that is missing
or not a decodable image is reported and skipped, the others are processed.

Detections come from the model family's own prediction path, the one ``tools/eval.py`` scores
(:meth:`~gluon_distill.families.base.DetectorFamily.predictions`: an SSD's square input, a
Faster R-CNN's short side within its max size), with the NMS settings of the training run
(``model.json``'s ``eval``), boxes in the original image's 0-based pixels, clipped to it. So a
box printed here is the box ``tools/eval.py`` writes for the image to its devkit results file
(there 1-based) and the box the exported model gives.

The drawing is made on a copy of the image no larger than ``draw_max_side`` pixels on its
longer side (default :data:`DRAW_MAX_SIDE`; 0: full size): a 14000 x 14000 image drawn at full
size took 61 s and 3.7 GB and gave a 50 MB PNG; bounded, 8 s and 1.5 GB. The printed boxes stay
in the original pixels; a note says when the drawing was scaled down.
"""
import os
from collections import namedtuple

import numpy as np

import mxnet as mx

from .data.images import ImageReadError, read_image
from .io_utils import ensure_writable_dir
# the folder rules, output names, drawing bound and printed lines are the runtime's, so that
# detect --params and detect --model (an export folder) treat inputs alike
from .runtime.images import (DRAW_MAX_SIDE, NAMED_SUBFOLDERS, bounded_copy,  # noqa: F401
                             expand_inputs, find_images, output_names)
from .runtime.report import (drawn_result, format_detections, planned_inputs,  # noqa: F401
                              skipped)


def preprocess(image, data_shape, mean, std):
    """``(1, 3, S, S)`` float32 NDArray of an RGB uint8 ``(H, W, 3)`` image, resized and
    normalised as the SSD evaluation does (GluonCV's SSDDefaultValTransform). Export
    verification on photos uses it (:func:`gluon_distill.export.image_input`)."""
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


FileRecord = namedtuple('FileRecord', ['index', 'image_id', 'path', 'width', 'height'])


class ImageFiles(mx.gluon.data.Dataset):
    """Image files as the dataset a family's ``predictions`` reads: item ``(image (H, W, 3)
    uint8 NDArray, no labels (0, 6))``, ``record(i)`` its :data:`FileRecord` (known once the
    item was read). Files are decoded when the loader asks for them, one at a time;
    ``keep(image)`` (if given) is stored per index in :attr:`kept` (the drawing copy). A file
    that cannot be read raises :class:`ImageReadError` and is remembered in :attr:`failed`."""

    def __init__(self, paths, keep=None):
        self.paths = list(paths)
        self.keep = keep
        self.kept = {}
        self.failed = None
        self._records = {}

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        path = self.paths[index]
        try:
            image = read_image(path)
        except ImageReadError:
            self.failed = index
            raise
        height, width = image.shape[:2]
        self._records[index] = FileRecord(index, os.path.splitext(os.path.basename(path))[0],
                                          path, width, height)
        if self.keep is not None:
            self.kept[index] = self.keep(image)
        return mx.nd.array(image, dtype=np.uint8), np.zeros((0, 6), np.float32)

    def record(self, index):
        return self._records[index]


def predict_files(net, spec, paths, ctx=None, settings=None, keep=None):
    """Yield ``(path, kept, boxes (K, 4), labels (K,), scores (K,))`` per image file, in
    order, from the family's :meth:`predictions` (the path evaluation takes), or ``(path,
    None, reason, None, None)`` for a file that cannot be read. ``settings``: an
    :class:`~gluon_distill.config.EvalConfig` (default: the run's NMS, batch size 1)."""
    from .config import EvalConfig
    from .evaluation.run import eval_settings
    from .families import family_of_spec
    family = family_of_spec(spec)
    ctx = ctx or [mx.cpu()]
    ctx = list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]
    if settings is None:
        settings = EvalConfig(batch_size=1, **eval_settings(
            spec, nms_thresh=None, nms_topk=None, post_nms=None, iou_thresh=None))
    start = 0
    while start < len(paths):
        files = ImageFiles(paths[start:], keep)
        try:
            for record, boxes, labels, scores in family.predictions(net, files, spec, ctx,
                                                                    settings):
                yield record.path, files.kept.pop(record.index, None), boxes, labels, scores
        except ImageReadError as e:
            # the loader stops at an unreadable file: report it, go on after it
            yield paths[start + files.failed], None, str(e).split(': ', 1)[-1], None, None
            start += files.failed + 1
            continue
        break


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


def detect_images(params, images, out_dir='detections', thresh=0.5, ctx=None,
                  draw_max_side=DRAW_MAX_SIDE, recursive=False, progress=True):
    """Run the detector saved at ``params`` on ``images`` (files or folders of images; with
    ``recursive``, a folder's subfolders too); write ``OUT/<name>.png`` per image (an image
    a recursive search found in the folder's ``a/`` goes to ``OUT/a/<name>.png``), drawn on
    a copy at most ``draw_max_side`` px on its longer side (0: full size). ``out_dir`` is
    checked writable before anything is loaded. ``progress``: a bar over the images on a
    terminal (:func:`gluon_distill.progress.progress_bar`).

    Returns ``[(image, out_path or None, detections or error message), ...]``: detections as
    ``[(class, score, (x1, y1, x2, y2)), ...]`` (original pixels) for processed images, a
    one-line reason (str) for skipped inputs; plus ``(None, None, note)`` entries: first
    those describing folders (without ``recursive``, the subfolders not searched), and before
    an image drawn scaled down, one saying so.
    """
    ensure_writable_dir(out_dir, 'output folder')
    paths, names, notes = planned_inputs(images, recursive, draw_max_side)
    from .models.io import load_detector
    from .progress import progress_bar
    net, spec = load_detector(params, ctx)
    net.hybridize(static_alloc=True)
    results = [(None, None, note) for note in notes]
    predictions = predict_files(net, spec, paths, ctx, keep=lambda image: (
        bounded_copy(image, draw_max_side), image.shape[:2]))
    bar = progress_bar(zip(predictions, names), progress, total=len(paths), desc='detect',
                       unit='img', leave=False, dynamic_ncols=True)
    for (path, kept, boxes, labels, scores), name in bar:
        if kept is None:
            results.append((path, None, 'skipped: {}'.format(boxes)))
            continue
        results += drawn_result(path, kept[0], kept[1], boxes, labels, scores,
                                spec['classes'], os.path.join(out_dir, name), thresh,
                                draw_max_side, draw)
    bar.close()
    return results
