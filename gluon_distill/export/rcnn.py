"""Export of a Faster R-CNN (GluonCV's ``FasterRCNN``): the MXNet inference graph, one image
per call.

``model-symbol.json`` + ``model-0000.params``: input ``data (1, 3, H, W)`` (any size; the
image resized to a short side ``data_shape`` within ``max_size`` and normalised, as
``FasterRCNNDefaultValTransform`` does), outputs ``ids (1, P, 1)``, ``scores (1, P, 1)``,
``boxes (1, P, 4)`` (corner pixels of the input; padding rows -1). Verified against the Gluon
network on one image (detections agree).

ONNX is refused before anything is converted or written (:func:`onnx_refusal`): MXNet
1.9.1's converter writes a graph onnxruntime cannot load, with class-agnostic NMS.
"""
import os

import numpy as np

import mxnet as mx

from .graph import PREFIX
from .mxnet_format import load_mxnet
from .verify import ExportError, detections_agree


def rcnn_input(spec, image_paths=None, seed=0):
    """The verification input: ``image_paths[0]`` (decoded as training decodes images), or a
    generated smooth image of ``data_shape`` x ``max_size * 0.8`` px, transformed by
    GluonCV's Faster R-CNN test transform: ``(1, 3, H, W)`` float32."""
    from gluoncv.data.transforms.presets.rcnn import FasterRCNNDefaultValTransform
    transform = FasterRCNNDefaultValTransform(spec['data_shape'], spec['max_size'],
                                              mean=tuple(spec['mean']), std=tuple(spec['std']))
    if image_paths:
        from ..data.images import read_image
        img = read_image(image_paths[0])
    else:
        rng = np.random.RandomState(seed)
        h, w = spec['data_shape'], int(spec['max_size'] * 0.8)
        small = rng.uniform(0, 255, (h // 8 + 1, w // 8 + 1, 3))
        img = np.kron(small, np.ones((8, 8, 1)))[:h, :w].astype(np.uint8)
    x, _, _ = transform(mx.nd.array(img, dtype='uint8'), np.zeros((0, 6), np.float32))
    return x.expand_dims(0).astype('float32').asnumpy()


def _detections(outputs):
    return tuple(o.asnumpy() for o in outputs[:3])


def export_rcnn_mxnet(net, out_dir, x, nms):
    """Write ``model-symbol.json`` and ``model-0000.params``; returns the file paths."""
    net.set_nms(nms[0], nms[1], post_nms=nms[2])
    net.hybridize()
    with mx.autograd.predict_mode():
        net(mx.nd.array(x))
    prefix = os.path.join(out_dir, PREFIX)
    net.export(prefix, 0)
    net.hybridize(active=False)
    net.set_nms(nms[0], nms[1], post_nms=nms[2])
    return {'symbol': prefix + '-symbol.json', 'params': prefix + '-0000.params'}


def onnx_refusal():
    """The :class:`ExportError` refusing a Faster R-CNN in ONNX, raised before anything is
    converted or written. Measured with MXNet 1.9.1's converter (onnx 1.16.2, onnxruntime
    1.19.2): it translates GluonCV's inference graph (with dozens of lines of warnings) but
    writes a ``Split`` node onnxruntime rejects ("Neither 'split' input nor 'num_outputs'
    attribute has been given"), and it maps the per-class ``box_nms`` to ONNX's class-agnostic
    suppression (it warns so), which would change the detections even if the graph loaded."""
    return ExportError(
        "ONNX export of a Faster R-CNN is not supported: MXNet {}'s converter writes a graph "
        "onnxruntime cannot load (a Split node without its 'split' sizes) and turns GluonCV's "
        "per-class NMS into class-agnostic suppression. Nothing was written; use --format "
        "mxnet (the MXNet symbol export is verified)".format(mx.__version__))


def verify_rcnn(net, out_dir, x, nms):
    """Run the exported MXNet graph and the Gluon network on ``x``; an :class:`ExportError`
    when the detections disagree. Returns the report rows."""
    net.set_nms(nms[0], nms[1], post_nms=nms[2])
    with mx.autograd.predict_mode():
        ref = _detections(net(mx.nd.array(x)))
    got = _detections(load_mxnet(out_dir, static=False)(mx.nd.array(x)))
    ok, why = detections_agree(ref, got)
    diff = max(float(np.abs(a - b).max()) if a.shape == b.shape else float('inf')
               for a, b in zip(ref[1:], got[1:]))
    row = {'runtime': 'mxnet-symbol', 'max_abs_diff_cls_preds': diff,
           'max_abs_diff_box_preds': diff, 'detections': int((ref[0] >= 0).sum()),
           'detections_agree': ok, 'why': why}
    if not ok:
        raise ExportError('exported Faster R-CNN disagrees with the original: ' + why)
    return [row]


def export_rcnn(net, spec, out_dir, formats, nms, verify=True, verify_images=None):
    """``(files, report rows or None)`` of a Faster R-CNN export (MXNet format only: ONNX
    raises :func:`onnx_refusal` before anything is written)."""
    if 'onnx' in formats:
        raise onnx_refusal()
    x = rcnn_input(spec, verify_images)
    files = {}
    if 'mxnet' in formats:
        files.update(export_rcnn_mxnet(net, out_dir, x, nms))
    rows = verify_rcnn(net, out_dir, x, nms) if verify and 'mxnet' in formats else None
    return files, rows
