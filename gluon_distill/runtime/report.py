"""Detections on image files with an exported model: drawn with OpenCV, saved, listed as text.

:func:`detect_images` is ``tools/detect.py --model DIR``: the folder rules, output names,
drawing bound and printed lines of ``tools/detect.py --params`` (:mod:`gluon_distill.detect`),
with the export folder's :class:`~.detector.Detector` instead of the Gluon network and OpenCV
instead of GluonCV's ``plot_bbox`` for the drawing. Imports: NumPy, OpenCV (and the backend's
runtime).
"""
import os

import cv2
import numpy as np

from .detector import Detector
from .images import (DRAW_MAX_SIDE, ImageReadError, bounded_copy, find_images, output_names,
                     read_image)


def _colour(label):
    """A distinct, stable BGR colour per class index."""
    rng = np.random.RandomState(int(label) * 7 + 3)
    return tuple(int(v) for v in rng.randint(40, 230, 3))


def draw(image, boxes, labels, scores, classes, out_path, thresh=0.5):
    """``image`` (RGB) with the boxes scoring at least ``thresh`` drawn (class and score
    above each), saved to ``out_path`` (PNG); returns the path."""
    canvas = np.ascontiguousarray(image[:, :, ::-1])              # BGR for OpenCV
    h, w = canvas.shape[:2]
    thick = max(1, int(round(max(h, w) / 400.0)))
    font = max(0.4, max(h, w) / 1200.0)
    for box, label, score in zip(boxes, labels, scores):
        if score < thresh:
            continue
        colour = _colour(label)
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thick)
        name = classes[int(label)] if 0 <= int(label) < len(classes) else str(int(label))
        text = '{} {:.3f}'.format(name, float(score))
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, 1)
        ty = max(y1, th + base)
        cv2.rectangle(canvas, (x1, ty - th - base), (x1 + tw, ty), colour, -1)
        cv2.putText(canvas, text, (x1, ty - base), cv2.FONT_HERSHEY_SIMPLEX, font,
                    (255, 255, 255), 1, cv2.LINE_AA)
    if not cv2.imwrite(out_path, canvas):
        raise OSError('cannot write {}'.format(out_path))
    return out_path


def detect_images(model_dir, images, out_dir='detections', thresh=0.5, format=None,
                  draw_max_side=DRAW_MAX_SIDE, recursive=False, threads=None, progress=None):
    """Run the export in ``model_dir`` on ``images`` (files or folders; ``recursive``: their
    subfolders too) and draw ``OUT/<name>.png`` per image; the result has the form of
    :func:`gluon_distill.detect.detect_images`: ``[(image, out_path or None, detections or
    reason), ...]``, notes as ``(None, None, note)``. ``progress``: an optional wrapper
    ``progress(iterable, total)`` (a progress bar)."""
    paths, names, notes = planned_inputs(images, recursive, draw_max_side)
    detector = Detector(model_dir, format, threads)
    classes = detector.classes
    results = [(None, None, note) for note in notes]
    items = zip(paths, names)
    if progress is not None:
        items = progress(items, len(paths))
    os.makedirs(out_dir, exist_ok=True)
    for path, name in items:
        try:
            image = read_image(path)
        except ImageReadError as e:
            results.append((path, None, 'skipped: {}'.format(str(e).split(': ', 1)[-1])))
            continue
        boxes, labels, scores = detector.detect([image])[0]
        results += drawn_result(path, bounded_copy(image, draw_max_side), image.shape[:2],
                                boxes, labels, scores, classes, os.path.join(out_dir, name),
                                thresh, draw_max_side)
    return results


def planned_inputs(images, recursive=False, draw_max_side=DRAW_MAX_SIDE):
    """``(paths, names, notes)`` of ``tools/detect.py``'s inputs: the image files of
    ``images`` (see :func:`~.images.find_images`), a distinct output name each
    (:func:`~.images.output_names`) and the notes on the folders; ``ValueError`` for a negative
    ``draw_max_side``, before anything is read. Both detect paths start with it."""
    if draw_max_side is not None and draw_max_side < 0:
        raise ValueError('draw_max_side: expected a side in pixels (0: full size), got '
                         '{}'.format(draw_max_side))
    files, notes = find_images(images, recursive)
    paths = [path for path, _ in files]
    return paths, output_names(paths, [sub for _, sub in files]), notes


def drawn_result(path, bounded, size, boxes, labels, scores, classes, out_path, thresh,
                 draw_max_side, draw_fn=draw):
    """The result entries of one image (see :func:`detect_images`): its detections scoring at
    least ``thresh`` drawn by ``draw_fn`` (:func:`draw`'s arguments) on ``bounded``, the
    ``(picture, (sx, sy))`` of :func:`~.images.bounded_copy`, into ``out_path``; preceded by a
    note when the picture is scaled down from the image's ``size`` ``(h, w)``. Boxes are in the
    image's pixels. ``tools/detect.py --params`` and ``--model`` both end an image with it."""
    keep = scores >= thresh
    boxes, labels, scores = boxes[keep], labels[keep], scores[keep]
    (picture, scale), (h, w) = bounded, size
    entries = []
    if scale != (1.0, 1.0):
        entries.append((None, None, '{}: drawn at {}x{} px, scaled down from {}x{} '
                                    '(--draw-max-side {}; 0 draws full size); boxes are in '
                                    'the original pixels'.format(
                                        path, picture.shape[1], picture.shape[0], w, h,
                                        draw_max_side)))
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    out = draw_fn(picture, boxes * np.array(scale * 2, np.float32), labels, scores, classes,
                  out_path, thresh)
    dets = [(classes[c], float(s), tuple(float(v) for v in b))
            for b, c, s in zip(boxes, labels, scores)]
    entries.append((path, out, dets))
    return entries


def skipped(results):
    """The inputs of a :func:`detect_images` result that were skipped."""
    return [path for path, _, dets in results if path is not None and isinstance(dets, str)]


def format_detections(results):
    """The lines ``tools/detect.py`` prints: per image ``PATH: N detections -> OUT`` and one
    line per detection (class, score, box ``x1 y1 x2 y2``); notes and skipped inputs as
    they are."""
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
