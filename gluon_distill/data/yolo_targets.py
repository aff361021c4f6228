"""YOLOv3 training targets in NumPy, and the training transform of the loader's workers.

:class:`YOLO3TargetGenerator` computes what GluonCV's ``YOLOV3PrefetchTargetGenerator``
computes (``gluoncv/model_zoo/yolo/yolo_target.py``, the targets its
``YOLO3DefaultTrainTransform`` makes in the data workers), with the same float32 arithmetic in
the same order, so the arrays are equal (``tests/test_yolo3.py`` compares them on the same
draws): each ground-truth box is matched to the one anchor (of the nine, over the three scales)
whose shape it overlaps most when both are centred, in the cell of that anchor's scale that
holds the box centre; there its objectness target is 1 (the box's mixup ratio with mixup),
centre targets the centre's offset in the cell, scale targets ``log(box side / anchor side)``,
weights ``2 - box area / image area``, and a one-hot class target (-1 elsewhere: ignored).
GluonCV builds them with NDArray item assignments and needs the network's outputs for the
anchor and map layout; here the layout comes from the architecture and the map sizes, and the
arrays are NumPy (no engine calls in the workers).

Layout: the scales deepest first (stride 32, 16, 8), as GluonCV's network concatenates its
outputs; per scale its cells row by row, per cell its three anchors: ``N = sum_k H_k W_k 3``.
"""
import numpy as np

from gluoncv.data.transforms.presets.yolo import YOLO3DefaultTrainTransform


def _box_iou(a, b):
    """MXNet's ``contrib.box_iou`` (corner format) in float32: ``(N, 4), (M, 4) -> (N, M)``."""
    left = np.maximum(a[:, None, 0], b[None, :, 0])
    top = np.maximum(a[:, None, 1], b[None, :, 1])
    right = np.minimum(a[:, None, 2], b[None, :, 2])
    bottom = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.maximum(right - left, 0) * np.maximum(bottom - top, 0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide='ignore', invalid='ignore'):
        iou = np.where(union > 0, inter / union, 0)
    return iou.astype(np.float32)


class YOLO3TargetGenerator:
    """GluonCV's YOLOv3 prefetch targets of one image, in NumPy.

    Parameters
    ----------
    num_class : int
        Foreground classes.
    anchors : list of array (A_k, 2)
        Per scale, *deepest first* (GluonCV's output order), its anchors' width and height in
        pixels.
    """

    def __init__(self, num_class, anchors):
        self.num_class = int(num_class)
        self.anchors = [np.asarray(a, np.float32).reshape((-1, 2)) for a in anchors]
        self.all_anchors = np.concatenate(self.anchors, 0)                  # (9, 2)
        self.num_anchors = np.cumsum([len(a) for a in self.anchors])
        w, h = self.all_anchors[:, 0], self.all_anchors[:, 1]
        # GluonCV's BBoxCenterToCorner of (0, 0, w, h)
        self._anchor_corners = np.stack([0 - w * 0.5, 0 - h * 0.5, 0 + w * 0.5, 0 + h * 0.5],
                                        1).astype(np.float32)

    def __call__(self, map_sizes, image_size, boxes, ids, mixratio=None):
        """The targets of one image.

        Parameters
        ----------
        map_sizes : list of (int, int)
            ``(H_k, W_k)`` of each scale's map, deepest first.
        image_size : (int, int)
            ``(height, width)`` of the network input.
        boxes : array (M, 4)
            Ground-truth corners in input pixels; processing stops at the first box with a
            negative coordinate (GluonCV's padding rule).
        ids : array (M,)
            Class of each box.
        mixratio : array (M,), optional
            Mixup weight of each box (its objectness target); None: 1.

        Returns
        -------
        ``objectness (N, 1)``, ``center_targets (N, 2)``, ``scale_targets (N, 2)``,
        ``weights (N, 2)``, ``class_targets (N, num_class)``, float32.
        """
        orig_height, orig_width = int(image_size[0]), int(image_size[1])
        cells = [int(h) * int(w) for h, w in map_sizes]
        offsets = [0] + np.cumsum(cells).tolist()
        total, anchors = offsets[-1], len(self.all_anchors)
        center_t = np.zeros((total, anchors, 2), np.float32)
        scale_t = np.zeros((total, anchors, 2), np.float32)
        weights = np.zeros((total, anchors, 2), np.float32)
        objectness = np.zeros((total, anchors, 1), np.float32)
        class_t = np.full((total, anchors, self.num_class), -1, np.float32)
        boxes = np.asarray(boxes, np.float32).reshape((-1, 4))
        if len(boxes):
            # GluonCV's BBoxCornerToCenter, float32
            gtw = boxes[:, 2] - boxes[:, 0]
            gth = boxes[:, 3] - boxes[:, 1]
            gtx = boxes[:, 0] + gtw * np.float32(0.5)
            gty = boxes[:, 1] + gth * np.float32(0.5)
            shifted = np.stack([np.float32(-0.5) * gtw, np.float32(-0.5) * gth,
                                np.float32(0.5) * gtw, np.float32(0.5) * gth], 1)
            matches = _box_iou(self._anchor_corners, shifted).argmax(axis=0)    # (M,)
            valid = (boxes >= 0).prod(axis=-1)
            ids = np.asarray(ids, np.float32).reshape(-1)
            ratios = None if mixratio is None else np.asarray(mixratio, np.float32).reshape(-1)
            for m in range(len(boxes)):
                if valid[m] < 1:
                    break
                match = int(matches[m])
                layer = int(np.nonzero(self.num_anchors > match)[0][0])
                height, width = map_sizes[layer]
                x, y, w, h = gtx[m], gty[m], gtw[m], gth[m]       # float32 scalars, as GluonCV
                loc_x = int(x / orig_width * width)
                loc_y = int(y / orig_height * height)
                index = offsets[layer] + loc_y * width + loc_x
                center_t[index, match, 0] = x / orig_width * width - loc_x
                center_t[index, match, 1] = y / orig_height * height - loc_y
                scale_t[index, match, 0] = np.log(max(w, 1) / self.all_anchors[match, 0])
                scale_t[index, match, 1] = np.log(max(h, 1) / self.all_anchors[match, 1])
                weights[index, match, :] = 2.0 - w * h / orig_width / orig_height
                objectness[index, match, 0] = ratios[m] if ratios is not None else 1
                class_t[index, match, :] = 0
                class_t[index, match, int(ids[m])] = 1
        out = []
        starts = [0] + self.num_anchors.tolist()
        for x in (objectness, center_t, scale_t, weights, class_t):
            out.append(np.concatenate([
                x[offsets[k]:offsets[k + 1], starts[k]:starts[k + 1]].reshape(
                    (-1, x.shape[-1])) for k in range(len(map_sizes))], 0))
        return tuple(out)


class YOLO3TrainTransform:
    """Augmentation plus targets, for the loader's workers: ``(img, label, size) -> (image,
    objectness, center_targets, scale_targets, weights, class_targets, gt_boxes)``.

    The augmentation is GluonCV's YOLOv3 policy (``YOLO3DefaultTrainTransform``, the same as
    its SSD one: colour distortion, expansion with p 0.5, constrained crop, resize with a
    random interpolation to ``size`` x ``size``, flip): with ``pipeline='gluoncv'`` GluonCV's
    own transform (the image normalised ``(3, S, S)`` float32); with ``'fast'`` the NumPy/OpenCV
    one of :mod:`gluon_distill.data.augment` (uint8 ``(S, S, 3)``, normalised while batching or
    on the device). ``mixup``: the label's last column is each box's mixup ratio (GluonCV's
    ``MixupDetection``). ``map_sizes``: size -> the maps' ``(H, W)``, deepest first.
    ``gt_boxes (M, 4)``: the augmented boxes (at least one row; -1 rows pad)."""

    def __init__(self, num_class, anchors, map_sizes, mean, std, pipeline='fast', mixup=False):
        self.generator = YOLO3TargetGenerator(num_class, anchors)
        self.map_sizes = dict(map_sizes)
        self.mean, self.std = tuple(mean), tuple(std)
        self.pipeline = pipeline
        self.mixup = mixup
        self._augment = {}

    def augment(self, size):
        if size not in self._augment:
            if self.pipeline == 'fast':
                from .augment import SSDTrainAugment
                self._augment[size] = SSDTrainAugment(size, self.mean)
            else:
                self._augment[size] = YOLO3DefaultTrainTransform(
                    size, size, None, mean=self.mean, std=self.std, mixup=self.mixup)
        return self._augment[size]

    def __call__(self, img, label, size):
        img, bbox = self.augment(size)(img, label)
        bbox = np.asarray(bbox, np.float32)
        ratio = bbox[:, -1] if self.mixup else None
        targets = self.generator(self.map_sizes[size], (size, size), bbox[:, :4], bbox[:, 4],
                                 ratio)
        gt = bbox[:, :4] if len(bbox) else np.full((1, 4), -1, np.float32)
        if hasattr(img, 'asnumpy'):
            img = img.asnumpy()
        return (img,) + targets + (np.ascontiguousarray(gt, np.float32),)


def mix_images(img1, label1, img2, label2, lambd):
    """GluonCV's ``MixupDetection`` of two samples: the images blended on a canvas of the
    larger size (``lambd`` and ``1 - lambd``, float32, truncated to uint8), the labels stacked
    with each box's ratio as a last column. ``img*``: uint8 ``(H, W, 3)`` NumPy."""
    height = max(img1.shape[0], img2.shape[0])
    width = max(img1.shape[1], img2.shape[1])
    mix = np.zeros((height, width, 3), np.float32)
    mix[:img1.shape[0], :img1.shape[1], :] = img1.astype(np.float32) * lambd
    mix[:img2.shape[0], :img2.shape[1], :] += img2.astype(np.float32) * (1. - lambd)
    y1 = np.hstack((label1, np.full((label1.shape[0], 1), lambd)))
    y2 = np.hstack((label2, np.full((label2.shape[0], 1), 1. - lambd)))
    return mix.astype(np.uint8), np.vstack((y1, y2))


class MixupSource:
    """``get(index, mix)``: sample ``index`` of ``dataset``; with ``mix`` GluonCV's
    ``MixupDetection`` draws (a ratio from Beta(1.5, 1.5), clipped to [0, 1]; below 1 a second
    image, drawn uniformly among the others, blended in), always with the ratio column.
    Without ``mix`` the label keeps its columns (``mixup`` False) or gets a ratio column of 1
    (GluonCV's ``set_mixup(None)`` for the last epochs)."""

    def __init__(self, dataset, mixup=False):
        self.dataset = dataset
        self.mixup = mixup

    def __len__(self):
        return len(self.dataset)

    def get(self, index, mix):
        img1, label1 = self.dataset[index]
        if not self.mixup:
            return img1, label1
        lambd = 1
        if mix:
            lambd = max(0, min(1, np.random.beta(1.5, 1.5)))
        if lambd >= 1:
            return img1, np.hstack((label1, np.ones((label1.shape[0], 1))))
        idx2 = np.random.choice(np.delete(np.arange(len(self)), index))
        img2, label2 = self.dataset[idx2]
        nd = hasattr(img1, 'asnumpy')
        a = img1.asnumpy() if nd else img1
        b = img2.asnumpy() if nd else img2
        img, label = mix_images(a, label1, b, label2, lambd)
        if nd:
            import mxnet as mx
            img = mx.nd.array(img, dtype='uint8')
        return img, label
