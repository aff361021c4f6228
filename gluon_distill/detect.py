"""Detections on image files: drawn with GluonCV's ``plot_bbox``, saved, and listed as text."""
import os

import numpy as np

from . import _compat  # noqa: F401
import mxnet as mx

from .evaluation.inference import prepare_for_inference


def load_image(path, data_shape, mean, std):
    """``(batch (1, 3, S, S), original RGB uint8 image (H, W, 3))``: the image resized to the
    network's input as the evaluation does (GluonCV's SSDDefaultValTransform)."""
    if not os.path.exists(path):
        raise FileNotFoundError('no image at {}'.format(path))
    from gluoncv.data.transforms import image as timage
    src = mx.image.imread(path)                                   # RGB uint8
    img = timage.imresize(src, data_shape, data_shape, interp=9)
    img = mx.nd.image.normalize(mx.nd.image.to_tensor(img), mean=tuple(mean), std=tuple(std))
    return img.expand_dims(0), src.asnumpy()


def detect(net, x, image_size, data_shape, thresh=0.5):
    """``(boxes (K, 4) in original pixels, labels (K,), scores (K,))`` above ``thresh``."""
    ids, scores, boxes = [a[0].asnumpy() for a in net(x)]
    keep = (ids[:, 0] >= 0) & (scores[:, 0] >= thresh)
    h, w = image_size
    scale = np.array([w, h, w, h], np.float32) / data_shape
    return boxes[keep] * scale, ids[keep, 0].astype(int), scores[keep, 0]


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


def detect_images(params, images, out_dir='detections', thresh=0.5, ctx=None):
    """Run the detector saved at ``params`` on ``images``; write ``OUT/<name>.png`` per image.

    Returns ``[(image, out_path, [(class, score, (x1, y1, x2, y2)), ...]), ...]``.
    """
    from .models.io import load_detector
    net, spec = load_detector(params, ctx)
    prepare_for_inference(net)
    net.hybridize(static_alloc=True)
    os.makedirs(out_dir, exist_ok=True)
    results = []
    for path in images:
        x, image = load_image(path, spec['data_shape'], spec['mean'], spec['std'])
        boxes, labels, scores = detect(net, x, image.shape[:2], spec['data_shape'], thresh)
        name = os.path.splitext(os.path.basename(path))[0] + '.png'
        out = draw(image, boxes, labels, scores, spec['classes'], os.path.join(out_dir, name),
                   thresh)
        dets = [(spec['classes'][c], float(s), tuple(float(v) for v in b))
                for b, c, s in zip(boxes, labels, scores)]
        results.append((path, out, dets))
    return results


def format_detections(results):
    lines = []
    for path, out, dets in results:
        lines.append('{}: {} detection{} -> {}'.format(path, len(dets), '' if len(dets) == 1
                                                         else 's', out))
        for cls, score, box in dets:
            lines.append('  {:<16} {:.3f}  {:.1f} {:.1f} {:.1f} {:.1f}'.format(cls, score, *box))
    return '\n'.join(lines)
