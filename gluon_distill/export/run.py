"""``export_detector``: export a trained detector, verify it and write ``deploy.json``."""
import os

from ..io_utils import atomic_write_json, ensure_writable_dir
from ..models.ssd import ModelError, clamp_box_decoder
from .graph import VALID_THRESH, deployable
from .mxnet_format import export_mxnet
from .onnx_format import ONNX_OPSET, ONNX_OUTPUTS, export_onnx
from .verify import image_input, verify_export


def square_preprocess(size, transform='SSDDefaultValTransform'):
    """``deploy.json``'s ``preprocess`` of a square input (what
    :mod:`gluon_distill.runtime` reads); ``transform``: the GluonCV validation transform it
    reproduces (SSD's, or YOLOv3's, which resizes the same way)."""
    return {'resize': 'square', 'size': size, 'interpolation': 'auto',
            'about': "GluonCV's {}: resized to size x size, bicubic when both sides grow, "
                     "area when both shrink, else bilinear (interp=9); boxes x (width, "
                     "height) / size".format(transform)}


def recorded_run(spec):
    """The training run's ``data`` and ``eval`` sections (``model.json``), so that
    ``tools/eval.py --model DIR`` evaluates the export on the data its ``.params`` is
    evaluated on."""
    return {k: spec[k] for k in ('data', 'eval') if spec.get(k)}


def export_detector(params, out_dir, formats=('mxnet', 'onnx'), verify=True, nms_thresh=None,
                    nms_topk=None, post_nms=None, net=None, spec=None, verify_images=None):
    """Export the detector at ``params`` (or the given ``net``/``spec``) to ``out_dir``.

    ``out_dir`` is checked writable first. Verification runs on :func:`verify_input`, or on
    the image files ``verify_images`` (:func:`image_input`). NMS settings left None are the
    training run's (``model.json``'s ``eval``), else 0.45 / 400 / 100. A Faster R-CNN goes
    through :mod:`.rcnn` (MXNet format; one image per call). Returns the ``deploy.json``
    content (files, folding, opset, verification report).
    """
    formats = [formats] if isinstance(formats, str) else list(formats)
    unknown = [f for f in formats if f not in ('mxnet', 'onnx')]
    if unknown:
        raise ModelError('unknown export format {}: choose mxnet or onnx'.format(unknown))
    if 'onnx' in formats and _kind(params, spec) == 'faster_rcnn':
        from .rcnn import onnx_refusal
        raise onnx_refusal()          # before the folder is touched or anything converted
    ensure_writable_dir(out_dir, 'export folder')
    if net is None:
        from ..models.io import load_detector
        net, spec = load_detector(params)
    from ..evaluation.run import eval_settings
    chosen = eval_settings(spec, nms_thresh=nms_thresh, nms_topk=nms_topk, post_nms=post_nms)
    nms = (chosen['nms_thresh'], chosen['nms_topk'], chosen['post_nms'])
    if spec['kind'] == 'faster_rcnn':
        return _export_rcnn(params, net, spec, out_dir, formats, nms, verify, verify_images)
    if spec['kind'] == 'yolo3':
        return _export_yolo3(params, net, spec, out_dir, formats, nms, verify, verify_images)
    original = clamp_box_decoder(net)     # the reference decodes as the shipped graph does
    ship, folded = deployable(net, spec)
    os.makedirs(out_dir, exist_ok=True)
    files = {}
    if 'mxnet' in formats:
        files.update(export_mxnet(ship, out_dir, spec['data_shape'], nms))
    if 'onnx' in formats:
        files.update(export_onnx(ship, out_dir, spec['data_shape'], nms))
    ship.set_nms(*nms)
    original.set_nms(*nms)
    info = _square_input_info(params, spec, folded, files, nms, formats, ONNX_OUTPUTS,
                              'SSDDefaultValTransform')
    if verify:
        # the original (unfolded) network is the reference: this also checks the folding
        x = (image_input(verify_images, spec['data_shape'], spec['mean'], spec['std'])
             if verify_images else None)
        info['verification'] = verify_export(original, spec, out_dir, formats, x=x)
    atomic_write_json(os.path.join(out_dir, 'deploy.json'), info)
    return info


def _export_rcnn(params, net, spec, out_dir, formats, nms, verify, verify_images):
    from .rcnn import export_rcnn
    os.makedirs(out_dir, exist_ok=True)
    files, rows = export_rcnn(net, spec, out_dir, formats, nms, verify, verify_images)
    info = {
        'source': os.path.abspath(params) if params else None,
        'kind': spec['kind'], 'adapters_folded': False,
        'classes': list(spec['classes']), 'data_shape': spec['data_shape'],
        'max_size': spec['max_size'], 'mean': list(spec['mean']), 'std': list(spec['std']),
        'nms': {'thresh': nms[0], 'topk': nms[1], 'post_nms': nms[2]},
        'files': {k: os.path.basename(v) for k, v in files.items()},
        'input': 'data: (1, 3, H, W) float32, RGB, (pixel / 255 - mean) / std, one image '
                 'resized to a short side of {} px within {} px'.format(spec['data_shape'],
                                                                        spec['max_size']),
        'outputs': 'ids, scores (1, P, 1), boxes (1, P, 4) corner pixels of the input; -1 '
                   'rows are padding',
        'preprocess': {'resize': 'short_within', 'short': spec['data_shape'],
                       'max_size': spec['max_size'], 'interpolation': 'linear',
                       'about': "GluonCV's FasterRCNNDefaultValTransform: the short side to "
                                "'short' unless the long side would exceed 'max_size', "
                                "bilinear; boxes x height / new height"},
    }
    info.update(recorded_run(spec))
    if rows is not None:
        info['verification'] = rows
    atomic_write_json(os.path.join(out_dir, 'deploy.json'), info)
    return info


def _export_yolo3(params, net, spec, out_dir, formats, nms, verify, verify_images):
    from .yolo3 import ONNX_OUTPUTS as YOLO_ONNX_OUTPUTS, export_yolo3
    os.makedirs(out_dir, exist_ok=True)
    files, folded, rows = export_yolo3(net, spec, out_dir, formats, nms, verify,
                                       verify_images)
    info = _square_input_info(params, spec, folded, files, nms, formats, YOLO_ONNX_OUTPUTS,
                              'YOLO3DefaultValTransform')
    if rows is not None:
        info['verification'] = rows
    atomic_write_json(os.path.join(out_dir, 'deploy.json'), info)
    return info


def _square_input_info(params, spec, folded, files, nms, formats, onnx_outputs, transform):
    """``deploy.json`` of a detector whose input is one square size (SSD, YOLOv3), before its
    verification rows; ``transform``: the GluonCV validation transform the preprocessing
    reproduces."""
    info = {
        'source': os.path.abspath(params) if params else None,
        'kind': spec['kind'], 'adapters_folded': folded,
        'classes': list(spec['classes']), 'data_shape': spec['data_shape'],
        'mean': list(spec['mean']), 'std': list(spec['std']),
        'nms': {'thresh': nms[0], 'topk': nms[1], 'post_nms': nms[2],
                'valid_thresh': VALID_THRESH},
        'files': {k: os.path.basename(v) for k, v in files.items()},
        'input': 'data: (B, 3, {0}, {0}) float32, RGB, (pixel / 255 - mean) / std'.format(
            spec['data_shape']),
        'outputs': 'ids, scores (B, P, 1), boxes (B, P, 4) corner pixels of the input; -1 '
                   'rows are padding',
        'preprocess': square_preprocess(spec['data_shape'], transform),
    }
    info.update(recorded_run(spec))
    if 'onnx' in formats:
        import onnx
        import onnxruntime
        info['onnx'] = {'opset': ONNX_OPSET, 'onnx': onnx.__version__,
                        'onnxruntime': onnxruntime.__version__, 'outputs': onnx_outputs}
    return info


def _kind(params, spec):
    """The ``model.json`` kind of the model to export, or None when it cannot be read yet
    (loading the model then reports why)."""
    if spec is not None:
        return spec.get('kind')
    from ..models.io import read_model_json
    try:
        return read_model_json(params).get('kind')
    except (ModelError, OSError, ValueError):
        return None
