"""SSD training augmentation on uint8 NumPy images, and normalisation on the device.

Same policy as GluonCV's ``SSDDefaultTrainTransform``: colour distortion (brightness,
contrast, saturation, hue, each with p 0.5, in one of GluonCV's two orders), expansion with
p 0.5 onto a mean-filled canvas up to 4x, constrained random crop, resize with a random
interpolation, horizontal flip with p 0.5. Box arithmetic uses GluonCV's own NumPy box
functions.

Why our own: GluonCV runs each of these steps as separate NDArray operations per image (tens of
engine calls, plus SSD target matching against every anchor), which makes the loader, not the
network, the bottleneck on CPU and on fast GPUs (``bench/loader.py`` measures it). Here:

* the expanded canvas is never built: only the part of the original image inside the crop
  window is resized straight to its place in the output, the rest of the output is the fill
  colour (identical up to interpolation at the seam);
* the four colour distortions are one affine map per pixel, applied by one ``cv2.transform``
  on the resized uint8 part (resizing commutes with affine pixel maps);
* the output stays uint8 HWC (4x less to move); normalisation happens on the device;
* the constrained crop draws each constraint's 50 trials at once and tests them with one
  vectorised IoU (GluonCV tries them one by one: about 230 IoU calls per image, the largest
  single cost of its pipeline);
* SSD targets are matched in NumPy, greedy over the few boxes instead of sorting every
  anchor-box pair (:mod:`gluon_distill.data.ssd_targets`).

Deliberate difference: distorted pixels are rounded and saturated to [0, 255] in uint8
(GluonCV keeps out-of-range floats).
"""
import random

import cv2
import numpy as np

import mxnet as mx
from gluoncv.data.transforms import bbox as tbbox

# RGB -> YIQ and back, for the hue rotation (as GluonCV's random_color_distort).
_TYIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.321], [0.211, -0.523, 0.311]])
_ITYIQ = np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.107, 1.705]])
_GRAY = np.array([0.299, 0.587, 0.114], np.float32)

# GluonCV's interpolation codes 0..4 are OpenCV's.
_INTERPOLATIONS = (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_AREA,
                   cv2.INTER_LANCZOS4)


def _color_plan():
    """Random draws of one colour distortion: a list of (op, value), in application order."""
    plan = []
    if np.random.uniform(0, 1) > 0.5:
        plan.append(('brightness', np.random.uniform(-32, 32)))

    def contrast():
        if np.random.uniform(0, 1) > 0.5:
            plan.append(('contrast', np.random.uniform(0.5, 1.5)))

    def saturation():
        if np.random.uniform(0, 1) > 0.5:
            plan.append(('saturation', np.random.uniform(0.5, 1.5)))

    def hue():
        if np.random.uniform(0, 1) > 0.5:
            plan.append(('hue', random.uniform(-18, 18)))

    if np.random.randint(0, 2):
        contrast(), saturation(), hue()
    else:
        saturation(), hue(), contrast()
    return plan


# SSD's crop constraints: (min IoU, max IoU) of every box with the crop; None = unbounded.
SSD_CROP_CONSTRAINTS = ((0.1, None), (0.3, None), (0.5, None), (0.7, None), (0.9, None),
                        (None, 1))


def _iou(boxes, crops):
    """IoU ``(N, T)`` of boxes ``(N, 4)`` with crops ``(T, 4)`` (corner format, no +1)."""
    tl = np.maximum(boxes[:, None, :2], crops[None, :, :2])
    br = np.minimum(boxes[:, None, 2:4], crops[None, :, 2:4])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area_b = np.prod(boxes[:, 2:4] - boxes[:, :2], axis=1)
    area_c = np.prod(crops[:, 2:] - crops[:, :2], axis=1)
    return inter / np.maximum(area_b[:, None] + area_c[None, :] - inter, 1e-12)


def random_crop_with_constraints(bbox, size, min_scale=0.3, max_scale=1.0,
                                 max_aspect_ratio=2.0, constraints=SSD_CROP_CONSTRAINTS,
                                 max_trial=50):
    """SSD's constrained random crop, with GluonCV's semantics (gluoncv.data.transforms.
    experimental.bbox): per constraint, the first of ``max_trial`` random crops whose IoU with
    every box lies within the bounds becomes a candidate; the whole image is a candidate too;
    candidates are drawn at random until one keeps a box centre. Returns
    ``(cropped boxes, (x, y, w, h))``."""
    w, h = size
    boxes = np.asarray(bbox, np.float64)[:, :4]
    candidates = [(0, 0, w, h)]
    for min_iou, max_iou in constraints:
        lo = -np.inf if min_iou is None else min_iou
        hi = np.inf if max_iou is None else max_iou
        scale = np.random.uniform(min_scale, max_scale, max_trial)
        ar_lo = np.maximum(1.0 / max_aspect_ratio, scale * scale)
        ar_hi = np.minimum(max_aspect_ratio, 1.0 / (scale * scale))
        aspect = ar_lo + np.random.uniform(0, 1, max_trial) * (ar_hi - ar_lo)
        crop_h = (h * scale / np.sqrt(aspect)).astype(int)
        crop_w = (w * scale * np.sqrt(aspect)).astype(int)
        crop_t = (np.random.uniform(0, 1, max_trial) * np.maximum(h - crop_h, 1)).astype(int)
        crop_l = (np.random.uniform(0, 1, max_trial) * np.maximum(w - crop_w, 1)).astype(int)
        crops = np.stack([crop_l, crop_t, crop_l + crop_w, crop_t + crop_h], axis=1)
        if not len(boxes):
            return bbox, (int(crop_l[0]), int(crop_t[0]), int(crop_w[0]), int(crop_h[0]))
        iou = _iou(boxes, crops)
        ok = np.nonzero((iou.min(axis=0) >= lo) & (iou.max(axis=0) <= hi))[0]
        if len(ok):
            i = ok[0]
            candidates.append((int(crop_l[i]), int(crop_t[i]), int(crop_w[i]), int(crop_h[i])))
    while candidates:
        crop = candidates.pop(np.random.randint(0, len(candidates)))
        new_bbox = tbbox.crop(bbox, crop, allow_outside_center=False)
        if new_bbox.size >= 1:
            return new_bbox, crop
    return bbox, (0, 0, w, h)


class SSDTrainAugment:
    """``(img uint8 (H, W, 3) RGB, label (N, >=5)) -> (uint8 (S, S, 3), label (M, >=5))``.

    ``label`` rows are ``xmin, ymin, xmax, ymax, class, ...`` in pixels; boxes whose centre
    leaves the crop are dropped (GluonCV's rule).
    """

    def __init__(self, data_shape, mean=(0.485, 0.456, 0.406), max_expand=4.0,
                 expand_p=0.5, flip_p=0.5):
        self.size = int(data_shape)
        self.fill = np.array([m * 255 for m in mean], np.float32)
        self.max_expand = max_expand
        self.expand_p = expand_p
        self.flip_p = flip_p

    def __call__(self, img, label):
        if isinstance(img, mx.nd.NDArray):
            img = img.asnumpy()
        h, w = img.shape[:2]
        label = np.asarray(label, np.float32)
        plan = _color_plan()
        # expansion: the original sits at (off_x, off_y) on a (ow, oh) canvas
        off_x = off_y = 0
        ow, oh = w, h
        if np.random.uniform(0, 1) > 1 - self.expand_p:
            ratio = random.uniform(1, self.max_expand)
            oh, ow = int(h * ratio), int(w * ratio)
            off_y = random.randint(0, oh - h)
            off_x = random.randint(0, ow - w)
            label = tbbox.translate(label, x_offset=off_x, y_offset=off_y)
        label, (x0, y0, cw, ch) = random_crop_with_constraints(label, (ow, oh))
        interp = _INTERPOLATIONS[np.random.randint(0, 5)]
        out = self._render(img, plan, (off_x, off_y), (x0, y0, cw, ch), interp)
        label = tbbox.resize(label, (cw, ch), (self.size, self.size))
        if np.random.uniform(0, 1) < self.flip_p:
            out = out[:, ::-1]
            label = tbbox.flip(label, (self.size, self.size), flip_x=True)
        return np.ascontiguousarray(out), label.astype(np.float32)

    def _render(self, img, plan, offset, crop, interp):
        """The crop window of the (virtual) expanded canvas, resized to S x S, as uint8.

        The colour distortion is an affine map of each pixel (``x @ M + b``) and every
        interpolation's weights sum to one, so distorting after the resize equals distorting
        before it (up to the uint8 rounding of the resized pixels): the part is resized as
        uint8, then distorted and saturated to [0, 255] by one ``cv2.transform``.
        """
        s = self.size
        off_x, off_y = offset
        x0, y0, cw, ch = crop
        h, w = img.shape[:2]
        # the original image's part inside the crop window, in original pixels
        ix0, iy0 = max(x0 - off_x, 0), max(y0 - off_y, 0)
        ix1, iy1 = min(x0 + cw - off_x, w), min(y0 + ch - off_y, h)
        sx, sy = s / float(cw), s / float(ch)
        covers_all = ix0 == x0 - off_x and iy0 == y0 - off_y and \
            ix1 == x0 + cw - off_x and iy1 == y0 + ch - off_y
        if covers_all:
            out = cv2.resize(img[iy0:iy1, ix0:ix1], (s, s), interpolation=interp)
            return _distort(out, plan)
        out = np.empty((s, s, 3), np.uint8)
        out[:] = np.clip(self.fill, 0, 255).astype(np.uint8)
        if ix1 <= ix0 or iy1 <= iy0:
            return out
        # where that part lands in the output
        left = int(round((ix0 + off_x - x0) * sx))
        top = int(round((iy0 + off_y - y0) * sy))
        right = min(int(round((ix1 + off_x - x0) * sx)), s)
        bottom = min(int(round((iy1 + off_y - y0) * sy)), s)
        if right <= left or bottom <= top:
            return out
        part = cv2.resize(img[iy0:iy1, ix0:ix1], (right - left, bottom - top),
                          interpolation=interp)
        out[top:bottom, left:right] = _distort(part, plan)
        return out


def color_affine(plan):
    """The colour plan as one affine map of RGB row vectors: ``(M (3, 3), b (3,))`` with
    ``distorted = x @ M + b`` (brightness adds, contrast scales, saturation mixes with the
    gray value, hue rotates in YIQ: all affine, so their composition is)."""
    m = np.eye(3)
    b = np.zeros(3)
    for op, value in plan:
        if op == 'brightness':
            b = b + value
        elif op == 'contrast':
            m, b = m * value, b * value
        elif op == 'saturation':
            a = value * np.eye(3) + (1.0 - value) * np.outer(_GRAY, np.ones(3))
            m, b = m @ a, b @ a
        else:
            u, w = np.cos(value * np.pi), np.sin(value * np.pi)
            bt = np.array([[1.0, 0.0, 0.0], [0.0, u, -w], [0.0, w, u]])
            t = np.dot(np.dot(_ITYIQ, bt), _TYIQ).T
            m, b = m @ t, b @ t
    return m, b


def _distort(img, plan):
    """uint8 HWC -> uint8 HWC, the colour plan applied, rounded and saturated."""
    if not plan:
        return img
    m, b = color_affine(plan)
    return cv2.transform(img, np.concatenate([m.T, b[:, None]], axis=1).astype(np.float32))


class Normalizer:
    """uint8 ``(B, S, S, 3)`` on a device -> normalised float32 ``(B, 3, S, S)`` there."""

    def __init__(self, mean, std):
        self.mean = np.array(mean, np.float32).reshape((1, 3, 1, 1)) * 255
        self.std = np.array(std, np.float32).reshape((1, 3, 1, 1)) * 255
        self._consts = {}

    def __call__(self, images):
        ctx = images.context
        if ctx not in self._consts:
            self._consts[ctx] = (mx.nd.array(self.mean, ctx=ctx), mx.nd.array(self.std, ctx=ctx))
        mean, std = self._consts[ctx]
        x = images.astype('float32').transpose((0, 3, 1, 2))
        return mx.nd.broadcast_div(mx.nd.broadcast_sub(x, mean), std)
