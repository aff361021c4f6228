"""Export of a Faster R-CNN (GluonCV's ``FasterRCNN``): the MXNet inference graph, one image
per call.

``model-symbol.json`` + ``model-0000.params``: input ``data (1, 3, H, W)`` (any size; the
image resized to a short side ``data_shape`` within ``max_size`` and normalised, as
``FasterRCNNDefaultValTransform`` does), outputs ``ids (1, P, 1)``, ``scores (1, P, 1)``,
``boxes (1, P, 4)`` (corner pixels of the input; padding rows -1). Verified against the Gluon
network on one image (detections agree).

ONNX is attempted and refused with the reason (:func:`export_rcnn_onnx`): MXNet 1.9.1's
converter writes a graph onnxruntime cannot load, with class-agnostic NMS.
"""
import os
import warnings

import numpy as np

import mxnet as mx
from mxnet import gluon

from .graph import PREFIX
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


def load_rcnn_mxnet(out_dir, ctx=None):
    """The exported Faster R-CNN as a SymbolBlock (``block(data) -> ids, scores, boxes``)."""
    prefix = os.path.join(out_dir, PREFIX)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return gluon.SymbolBlock.imports(prefix + '-symbol.json', ['data'],
                                         prefix + '-0000.params', ctx=ctx or mx.cpu())


def export_rcnn_onnx(net, out_dir, x, nms):
    """ONNX export, attempted: MXNet 1.9.1's converter translates GluonCV's inference graph
    but (measured) writes a ``Split`` node onnxruntime rejects ("Neither 'split' input nor
    'num_outputs' attribute has been given") and maps the per-class ``box_nms`` to ONNX's
    class-agnostic suppression (it warns so). Whatever fails - conversion or loading - is an
    :class:`ExportError` saying why; nothing is left behind."""
    import logging
    path = os.path.join(out_dir, PREFIX + '.onnx')
    files = export_rcnn_mxnet(net, out_dir, x, nms)
    stage = 'conversion'
    try:
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the converter's box_nms warning: said in the error
        try:
            mx.onnx.export_model(files['symbol'], files['params'], [x.shape], [np.float32],
                                 path, dynamic=True, dynamic_input_shapes=[(1, 3, None, None)])
        finally:
            root.setLevel(level)
        stage = 'loading in onnxruntime'
        import onnxruntime
        onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
    except Exception as e:  # converter and runtime raise many types
        if os.path.exists(path):
            os.remove(path)
        text = str(e).strip()
        reason = text.splitlines()[-1][:240] if text else type(e).__name__
        raise ExportError(
            "ONNX export of a Faster R-CNN fails at {} with MXNet {}'s converter ({}: {}); "
            "besides, the converter turns GluonCV's per-class NMS into class-agnostic "
            "suppression. Use --format mxnet (the MXNet symbol export is verified)".format(
                stage, mx.__version__, type(e).__name__, reason)) from None
    return path


def verify_rcnn(net, out_dir, x, nms):
    """Run the exported MXNet graph and the Gluon network on ``x``; an :class:`ExportError`
    when the detections disagree. Returns the report rows."""
    net.set_nms(nms[0], nms[1], post_nms=nms[2])
    with mx.autograd.predict_mode():
        ref = _detections(net(mx.nd.array(x)))
    got = _detections(load_rcnn_mxnet(out_dir)(mx.nd.array(x)))
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
    """``(files, report rows or None)`` of a Faster R-CNN export."""
    x = rcnn_input(spec, verify_images)
    files = {}
    if 'onnx' in formats:
        files['onnx'] = export_rcnn_onnx(net, out_dir, x, nms)
    if 'mxnet' in formats:
        files.update(export_rcnn_mxnet(net, out_dir, x, nms))
    rows = verify_rcnn(net, out_dir, x, nms) if verify and 'mxnet' in formats else None
    return files, rows
