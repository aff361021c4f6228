"""Shipping a trained detector: MXNet symbol + params and ONNX, verified against the original.

Any model the package trains (teacher, no-teacher baseline, distilled student) is exported
from its ``.params`` + ``model.json``. A distilled student is exported with its 1x1 adapters
folded into the head's predictors (:func:`gluon_distill.distill.student.fold`), so the shipped
network is an ordinary SSD of the student's backbone and costs what the plain SSD costs.

Files written to ``OUT``:

``model-symbol.json`` + ``model-0000.params`` (``--format mxnet``)
    GluonCV's own inference graph (NMS included), outputs ``ids (B, P, 1)``, ``scores (B, P,
    1)``, ``boxes (B, P, 4)`` (corner pixels of the ``data_shape`` input; padding rows -1).
    Loads with ``gluon.SymbolBlock.imports(json, ['data'], params)``; no gluon_distill import.
``model-raw-symbol.json`` (``--format mxnet``, same params file)
    the network before decoding: ``cls_preds (B, N, C+1)`` (logits), ``box_preds (B, N, 4)``
    (encoded offsets), ``anchors (1, N, 4)``.
``model.onnx`` (``--format onnx``), opset 13, dynamic batch
    outputs ``ids``, ``scores``, ``boxes`` (as above, NMS in the graph) and ``cls_preds``,
    ``box_preds`` (raw, computed anyway on the way to the detections).
``deploy.json``
    classes, input size, mean/std, files, opset, verification report.

ONNX findings (mxnet 1.9.1 ``mx.onnx`` with onnx 1.16.2 / onnxruntime 1.19.2):

* ``mx.onnx.export_model`` has no opset argument: it converts with ``onnx_opset_version()``
  (21 for onnx 1.16), each op falling back to the newest converter it has (12 or 13), and
  stamps the model with opset 21. We call the converter with ``opset_version=13`` and stamp
  the model 13, so the declared opset is the one the converters wrote.
* Its ``_contrib_box_nms`` converter ignores ``id_index``/``force_suppress=False`` (it warns:
  "boxes of different categories will NOT be exempted from suppression"): GluonCV's per-class
  NMS becomes class-agnostic and detections differ from MXNet's. We therefore convert the
  graph *without* NMS (``nms_thresh=0``: the per-anchor, per-class candidates) and append our
  own NMS in ONNX ops (:func:`_append_nms`): the global top ``nms_topk`` candidates by score
  (as ``box_nms``'s ``topk``), then ``NonMaxSuppression`` with one score row per class
  (per-class suppression, ``valid_thresh`` 0.01 as ``score_threshold``), then the top
  ``post_nms`` survivors by score, padding rows -1, exactly MXNet's output layout.
* "two nodes with same node name" at ONNX Runtime's extended/full optimisation level: most
  converted nodes have an empty name (151 of ~300 for the tiny SSD); ORT's
  ``GatherSliceToSplitFusion`` names its fused node after the original ones, so two fusions
  of unnamed nodes both become ``/GatherSliceToSplitFusion/`` and the optimised graph is
  invalid. Fix: every node gets a unique name after conversion (:func:`_name_nodes`); the
  full optimisation level (``ORT_ENABLE_ALL``, ORT's default) then loads and runs it.
  We also move the weights out of the graph inputs (the converter lists every initializer as
  an input, which stops ORT from constant-folding them).
"""
import json
import os
import tempfile

import numpy as np

import mxnet as mx
from mxnet import gluon
from mxnet.gluon import nn

from .io_utils import atomic_write_json
from .models.ssd import ModelError, ssd_head
from .io_utils import ensure_writable_dir

ONNX_OPSET = 13
VALID_THRESH = 0.01          # GluonCV SSD's box_nms valid_thresh and class-decoder threshold
PREFIX = 'model'
ONNX_OUTPUTS = ['ids', 'scores', 'boxes', 'cls_preds', 'box_preds']


class ExportError(ModelError):
    """An export whose verification failed (the exported model disagrees with the original)."""


# ------------------------------------------------------------------------ graphs

class RawSSD(nn.HybridBlock):
    """GluonCV SSD's forward up to the per-anchor outputs, in inference mode.

    Outputs ``cls_preds (B, N, C+1)``, ``box_preds (B, N, 4)``, ``anchors (1, N, 4)`` and,
    with ``candidates=True``, also GluonCV's pre-NMS candidates ``ids, scores, boxes``
    (``(B, N*C, 1|1|4)``, class-major as GluonCV concatenates them). Same code as
    ``gluoncv.model_zoo.ssd.SSD.hybrid_forward`` (training branch and the inference branch
    before ``box_nms``), but without ``autograd.train_mode()``: BatchNorm keeps using its
    running statistics, so the outputs are what the deployed detector computes.
    """

    def __init__(self, ssd, candidates=False, **kwargs):
        super(RawSSD, self).__init__(prefix='', **kwargs)
        self.ssd = ssd
        self.candidates = candidates
        self.register_child(ssd, 'ssd')

    def hybrid_forward(self, F, x):
        ssd = self.ssd
        cls_preds, box_preds, anchors = ssd_head(F, ssd, ssd.features(x), with_anchors=True)
        if not self.candidates:
            return cls_preds, box_preds, anchors
        bboxes = ssd.bbox_decoder(box_preds, anchors)
        cls_ids, scores = ssd.cls_decoder(F.softmax(cls_preds, axis=-1))
        results = []
        for i in range(ssd.num_classes):
            results.append(F.concat(cls_ids.slice_axis(axis=-1, begin=i, end=i + 1),
                                    scores.slice_axis(axis=-1, begin=i, end=i + 1),
                                    bboxes, dim=-1))
        result = F.concat(*results, dim=1)
        return (cls_preds, box_preds,
                F.slice_axis(result, axis=2, begin=0, end=1),
                F.slice_axis(result, axis=2, begin=1, end=2),
                F.slice_axis(result, axis=2, begin=2, end=6))


def deployable(net, spec):
    """``(net, folded)``: the network to ship. A distilled student with adapters is folded
    (adapters multiplied into the head's predictors); anything else is returned as is."""
    adapters = getattr(getattr(net, 'features', None), 'adapters', None)
    if spec.get('kind') == 'distilled_ssd' and adapters is not None:
        from .distill.student import fold
        return fold(net), True
    return net, False


def _sym_and_params(block, x):
    """The hybridized symbol of ``block`` on input ``x`` and its ``arg:``/``aux:`` dicts."""
    block.hybridize()
    block(x)
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, 'b')
        block.export(prefix, 0)
        sym = mx.sym.load(prefix + '-symbol.json')
        saved = mx.nd.load(prefix + '-0000.params')
    params = {k.split(':', 1)[1]: v for k, v in saved.items()}
    return sym, params


# ------------------------------------------------------------------------ MXNet

def export_mxnet(net, out_dir, data_shape, nms=(0.45, 400, 100)):
    """Write ``model-symbol.json`` (GluonCV's NMS graph), ``model-raw-symbol.json`` and
    ``model-0000.params`` to ``out_dir``; returns the file paths."""
    os.makedirs(out_dir, exist_ok=True)
    ctx = net.collect_params().list_ctx()[0]
    x = mx.nd.zeros((1, 3, data_shape, data_shape), ctx=ctx)
    net.set_nms(*nms)                      # clears a cached (maybe training) graph
    net.hybridize()
    with mx.autograd.predict_mode():
        net(x)
    prefix = os.path.join(out_dir, PREFIX)
    net.export(prefix, 0)
    raw_sym, _ = _sym_and_params(RawSSD(net), x)
    raw_sym.save(prefix + '-raw-symbol.json')
    net.hybridize(active=False)
    net.set_nms(*nms)
    return {'symbol': prefix + '-symbol.json', 'raw_symbol': prefix + '-raw-symbol.json',
            'params': prefix + '-0000.params'}


def load_mxnet(out_dir, raw=False, ctx=None):
    """The exported detector (or its raw-output graph) as a hybridized SymbolBlock."""
    prefix = os.path.join(out_dir, PREFIX)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        block = gluon.SymbolBlock.imports(prefix + ('-raw' if raw else '') + '-symbol.json',
                                          ['data'], prefix + '-0000.params', ctx=ctx or mx.cpu())
    block.hybridize(static_alloc=True, static_shape=True)
    return block


# ------------------------------------------------------------------------ ONNX

def _require_onnx():
    try:
        import onnx  # noqa: F401
    except ImportError as e:
        raise ModelError('ONNX export needs the deploy extra: pip install -e ".[deploy]" '
                         '(onnx 1.16.2, onnxruntime 1.19.2): {}'.format(e))
    import mxnet.onnx  # noqa: F401


def _name_nodes(graph):
    """Give every node a unique name (the converter leaves most empty; see module doc)."""
    seen = set()
    for i, node in enumerate(graph.node):
        name = node.name or '{}_{}'.format(node.op_type, i)
        while name in seen:
            name = '{}_{}'.format(name, i)
        node.name = name
        seen.add(name)


def _drop_initializer_inputs(graph):
    """Graph inputs that are also initializers (every weight, as the converter writes them)
    are removed from the inputs, so ORT treats them as constants."""
    inits = {t.name for t in graph.initializer}
    keep = [i for i in graph.input if i.name not in inits]
    del graph.input[:]
    graph.input.extend(keep)


def _append_nms(graph, num_classes, num_candidates, nms_thresh, nms_topk, post_nms,
                ids='cand_ids', scores='cand_scores', boxes='cand_boxes'):
    """Append GluonCV's per-class ``box_nms`` + ``post_nms`` slicing in ONNX ops (opset 13).

    Inputs: the pre-NMS candidates ``ids (B, M, 1)``, ``scores (B, M, 1)``, ``boxes (B, M,
    4)``. Outputs ``ids (B, P, 1)``, ``scores (B, P, 1)``, ``boxes (B, P, 4)`` with
    ``P = min(post_nms, M)``, sorted by score, rows that are not detections all -1.
    """
    from onnx import TensorProto, helper, numpy_helper
    k = num_candidates if nms_topk <= 0 else min(nms_topk, num_candidates)
    p = num_candidates if post_nms <= 0 else min(post_nms, num_candidates)
    nodes, inits = [], []

    def const(name, value, dtype=np.int64):
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), 'nms_' + name))
        return 'nms_' + name

    def node(op, inputs, outputs, **attrs):
        outs = ['nms_' + o for o in outputs]
        nodes.append(helper.make_node(op, inputs, outs, name='nms_{}_{}'.format(
            op, len(nodes)), **attrs))
        return outs[0] if len(outs) == 1 else outs

    ax2 = const('ax2', [2])
    ax1 = const('ax1', [1])
    axm1 = const('axm1', [-1])
    s = node('Squeeze', [scores, ax2], ['s'])                              # (B, M)
    i = node('Squeeze', [ids, ax2], ['i'])                                 # (B, M)
    topv, topi = node('TopK', [s, const('k', [k])], ['topv', 'topi'], axis=1)   # (B, K)
    topi3 = node('Unsqueeze', [topi, axm1], ['topi3'])                     # (B, K, 1)
    box_k = node('GatherND', [boxes, topi3], ['box_k'], batch_dims=1)      # (B, K, 4)
    id_k = node('GatherElements', [i, topi], ['id_k'], axis=1)             # (B, K)
    classes = const('classes', np.arange(num_classes).reshape(1, -1, 1), np.float32)
    onehot = node('Equal', [node('Unsqueeze', [id_k, ax1], ['id_k3']), classes],
                  ['onehot'])                                              # (B, C, K)
    score_ck = node('Where', [onehot, node('Unsqueeze', [topv, ax1], ['topv3']),
                              const('zero', 0.0, np.float32)], ['score_ck'])
    sel = node('NonMaxSuppression', [box_k, score_ck, const('maxout', [k]),
                                     const('iou', [nms_thresh], np.float32),
                                     const('sthr', [VALID_THRESH], np.float32)],
               ['sel'], center_point_box=0)                                # (S, 3)
    nsel = node('Slice', [node('Shape', [sel], ['selshape']), const('z1', [0]), ax1],
                ['nsel'])
    ones = node('ConstantOfShape', [nsel], ['ones'],
                value=helper.make_tensor('one', TensorProto.FLOAT, [1], [1.0]))
    keep = node('ScatterND', [node('Mul', [score_ck, const('zf', 0.0, np.float32)],
                                   ['zeros_ck']), sel, ones], ['keep'])    # (B, C, K)
    kept = node('Where', [node('Greater', [keep, const('half', 0.5, np.float32)], ['keepb']),
                          score_ck, const('m1', -1.0, np.float32)], ['kept'])
    flat = node('Reshape', [kept, const('flatshape', [0, -1])], ['flat'])  # (B, C*K)
    v, idx = node('TopK', [flat, const('p', [p])], ['v', 'idx'], axis=1)   # (B, P)
    cls = node('Div', [idx, const('kk', k)], ['cls'])
    pos = node('Mod', [idx, const('kk2', k)], ['pos'])
    valid = node('Greater', [v, const('mhalf', -0.5, np.float32)], ['valid'])
    m1 = const('m1b', -1.0, np.float32)
    out_ids = node('Where', [valid, node('Cast', [cls], ['clsf'], to=TensorProto.FLOAT), m1],
                   ['ids2'])
    out_scores = node('Where', [valid, v, m1], ['scores2'])
    pos3 = node('Unsqueeze', [pos, axm1], ['pos3'])
    box_p = node('GatherND', [box_k, pos3], ['box_p'], batch_dims=1)      # (B, P, 4)
    out_boxes = node('Where', [node('Unsqueeze', [valid, axm1], ['valid3']), box_p, m1],
                     ['boxes_'])
    nodes.append(helper.make_node('Unsqueeze', [out_ids, axm1], ['ids'], name='nms_out_ids'))
    nodes.append(helper.make_node('Unsqueeze', [out_scores, axm1], ['scores'],
                                  name='nms_out_scores'))
    nodes.append(helper.make_node('Identity', [out_boxes], ['boxes'], name='nms_out_boxes'))
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    return p


def export_onnx(net, out_dir, data_shape, nms=(0.45, 400, 100), dynamic_batch=True,
                path=None):
    """Write ``model.onnx`` (opset 13): raw outputs and per-class NMS detections."""
    _require_onnx()
    import onnx
    from onnx import TensorProto, helper
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
    os.makedirs(out_dir, exist_ok=True)
    ctx = net.collect_params().list_ctx()[0]
    x = mx.nd.zeros((1, 3, data_shape, data_shape), ctx=ctx)
    block = RawSSD(net, candidates=True)
    sym, params = _sym_and_params(block, x)
    block.hybridize(active=False)
    net.hybridize(active=False)
    net.set_nms(*nms)
    in_shape = (None if dynamic_batch else 1, 3, data_shape, data_shape)
    import logging
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)     # the converter logs every node at INFO
    try:
        graph = MXNetGraph().create_onnx_graph_proto(
            sym, params, [(1, 3, data_shape, data_shape)], [TensorProto.FLOAT],
            opset_version=ONNX_OPSET, dynamic=dynamic_batch,
            dynamic_input_shapes=[in_shape] if dynamic_batch else None)
    finally:
        logging.getLogger().setLevel(level)
    # rename the converter's outputs: cls_preds, box_preds, cand_ids, cand_scores, cand_boxes
    outs = [o.name for o in graph.output]
    rename = dict(zip(outs, ['cls_preds', 'box_preds', 'cand_ids', 'cand_scores',
                             'cand_boxes']))
    for n in graph.node:
        n.output[:] = [rename.get(o, o) for o in n.output]
        n.input[:] = [rename.get(o, o) for o in n.input]
    with mx.autograd.predict_mode():
        num_candidates = block(x)[3].shape[1]
    post = _append_nms(graph, net.num_classes, num_candidates, *nms)
    _name_nodes(graph)
    _drop_initializer_inputs(graph)
    b = 'batch' if dynamic_batch else 1
    n_anchors = num_candidates // net.num_classes
    del graph.output[:]
    graph.output.extend([
        helper.make_tensor_value_info('ids', TensorProto.FLOAT, [b, post, 1]),
        helper.make_tensor_value_info('scores', TensorProto.FLOAT, [b, post, 1]),
        helper.make_tensor_value_info('boxes', TensorProto.FLOAT, [b, post, 4]),
        helper.make_tensor_value_info('cls_preds', TensorProto.FLOAT,
                                      [b, n_anchors, net.num_classes + 1]),
        helper.make_tensor_value_info('box_preds', TensorProto.FLOAT, [b, n_anchors, 4])])
    graph.input[0].name = graph.input[0].name  # 'data'
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', ONNX_OPSET)],
                              producer_name='gluon_distill (mxnet {} mx.onnx)'.format(
                                  mx.__version__))
    model.ir_version = min(model.ir_version, 8)     # readable by older runtimes (ORT >= 1.10)
    onnx.checker.check_model(model)
    path = path or os.path.join(out_dir, PREFIX + '.onnx')
    onnx.save(model, path)
    return {'onnx': path}


def onnx_session(path, threads=None, level='all'):
    """An ONNX Runtime CPU session (``level``: basic, extended or all graph optimisation)."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ModelError('running the ONNX model needs onnxruntime (pip install -e '
                         '".[deploy]"): {}'.format(e))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = {
        'basic': ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        'extended': ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        'all': ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=['CPUExecutionProvider'])


def run_onnx(session, x):
    """``dict`` of the ONNX model's outputs for the NCHW float32 batch ``x``."""
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {session.get_inputs()[0].name: x})))


# ------------------------------------------------------------------------ verify

def detections_agree(ref, got, score_tol=1e-4, box_tol=1e-2):
    """``(ok, message)``: the same detections (class, score, box) per image, in any order of
    equal scores; padding rows (id -1) ignored. ``ref``/``got``: (ids, scores, boxes)."""
    worst = ''
    for b in range(ref[0].shape[0]):
        r = [(int(i), float(s), bx) for i, s, bx in zip(ref[0][b, :, 0], ref[1][b, :, 0],
                                                        ref[2][b]) if i >= 0]
        g = [(int(i), float(s), bx) for i, s, bx in zip(got[0][b, :, 0], got[1][b, :, 0],
                                                        got[2][b]) if i >= 0]
        if len(r) != len(g):
            return False, 'image {}: {} detections vs {}'.format(b, len(r), len(g))
        unused = list(range(len(g)))
        for cls, score, box in r:
            match = [j for j in unused if g[j][0] == cls and abs(g[j][1] - score) <= score_tol
                     and np.abs(g[j][2] - box).max() <= box_tol]
            if not match:
                return False, 'image {}: no match for class {} score {:.5f} box {}'.format(
                    b, cls, score, np.round(box, 2).tolist())
            unused.remove(match[0])
    return True, worst


def _diff(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max()) if np.size(a) else 0.0


def verify_input(data_shape, mean, std, batch=2, seed=0):
    """A fixed, normalised input batch: smooth random images in [0, 1], normalised."""
    rng = np.random.RandomState(seed)
    small = rng.uniform(size=(batch, 3, max(data_shape // 8, 1), max(data_shape // 8, 1)))
    img = np.repeat(np.repeat(small, 8, axis=2), 8, axis=3)[:, :, :data_shape, :data_shape]
    img = img + 0.1 * rng.randn(*img.shape)
    m = np.array(mean, np.float32).reshape(1, 3, 1, 1)
    s = np.array(std, np.float32).reshape(1, 3, 1, 1)
    return ((img - m) / s).astype(np.float32)


def reference_outputs(net, x):
    """The original Gluon network (not hybridized) on ``x``: raw (cls_preds, box_preds) and
    GluonCV's detections (ids, scores, boxes)."""
    net.hybridize(active=False)
    xn = mx.nd.array(x, ctx=net.collect_params().list_ctx()[0])
    with mx.autograd.predict_mode():
        cls, box, _ = RawSSD(net)(xn)
        dets = net(xn)
    return ((cls.asnumpy(), box.asnumpy()), tuple(d.asnumpy() for d in dets))


def compare(name, ref, raw, dets, raw_tol=1e-3, score_tol=1e-4, box_tol=1e-2):
    """One verification row for an exported runtime against the reference outputs."""
    (ref_raw, ref_dets) = ref
    cls_diff = _diff(ref_raw[0], raw[0])
    box_diff = _diff(ref_raw[1], raw[1])
    agree, why = detections_agree(ref_dets, dets, score_tol, box_tol)
    n = int((ref_dets[0] >= 0).sum())
    # absolute tolerance for outputs of magnitude <= 1, relative above (float32 rounding)
    ok = (agree and cls_diff <= raw_tol * max(1.0, float(np.abs(ref_raw[0]).max())) and
          box_diff <= raw_tol * max(1.0, float(np.abs(ref_raw[1]).max())))
    return {'runtime': name, 'max_abs_diff_cls_preds': cls_diff,
            'max_abs_diff_box_preds': box_diff, 'detections': n,
            'max_abs_diff_scores': _diff(ref_dets[1], dets[1]) if agree else None,
            'max_abs_diff_boxes': _diff(ref_dets[2], dets[2]) if agree else None,
            'detections_agree': agree, 'why': why, 'ok': ok}


def verify_export(net, spec, out_dir, formats, x=None, raw_tol=1e-3):
    """Run the exported model(s) and the original ``net`` on the same input; return the
    report rows, raise :class:`ExportError` if any disagrees."""
    x = x if x is not None else verify_input(spec['data_shape'], spec['mean'], spec['std'])
    ref = reference_outputs(net, x)
    rows = []
    if 'mxnet' in formats:
        det_block = load_mxnet(out_dir)
        raw_block = load_mxnet(out_dir, raw=True)
        xn = mx.nd.array(x)
        dets = tuple(a.asnumpy() for a in det_block(xn))
        raw = tuple(a.asnumpy() for a in raw_block(xn))[:2]
        rows.append(compare('mxnet-symbol', ref, raw, dets, raw_tol))
    if 'onnx' in formats:
        out = run_onnx(onnx_session(os.path.join(out_dir, PREFIX + '.onnx')), x)
        rows.append(compare('onnxruntime', ref, (out['cls_preds'], out['box_preds']),
                            (out['ids'], out['scores'], out['boxes']), raw_tol))
    bad = [r for r in rows if not r['ok']]
    if bad:
        raise ExportError('exported model disagrees with the original:\n' + format_report(rows))
    return rows


def format_report(rows):
    lines = ['{:<14} {:>14} {:>14} {:>10} {:>8}'.format(
        'runtime', 'max|d cls|', 'max|d box|', 'dets', 'agree')]
    for r in rows:
        lines.append('{:<14} {:>14.3e} {:>14.3e} {:>10} {:>8}'.format(
            r['runtime'], r['max_abs_diff_cls_preds'], r['max_abs_diff_box_preds'],
            r['detections'], 'yes' if r['detections_agree'] else 'NO: ' + r['why']))
    return '\n'.join(lines)


# ------------------------------------------------------------------------ entry point

def image_input(paths, data_shape, mean, std):
    """A normalised ``(B, 3, S, S)`` float32 batch of image files, decoded and resized as
    ``tools/detect.py`` does (:func:`gluon_distill.detect.preprocess`)."""
    from .data.images import read_image
    from .detect import preprocess
    return np.concatenate([preprocess(read_image(p), data_shape, mean, std).asnumpy()
                           for p in paths]).astype(np.float32)


def export_detector(params, out_dir, formats=('mxnet', 'onnx'), verify=True, nms_thresh=0.45,
                    nms_topk=400, post_nms=100, net=None, spec=None, verify_images=None):
    """Export the detector at ``params`` (or the given ``net``/``spec``) to ``out_dir``.

    ``out_dir`` is checked writable first. Verification runs on :func:`verify_input`, or on
    the image files ``verify_images`` (:func:`image_input`). Returns the ``deploy.json``
    content (files, folding, opset, verification report).
    """
    formats = [formats] if isinstance(formats, str) else list(formats)
    unknown = [f for f in formats if f not in ('mxnet', 'onnx')]
    if unknown:
        raise ModelError('unknown export format {}: choose mxnet or onnx'.format(unknown))
    ensure_writable_dir(out_dir, 'export folder')
    if net is None:
        from .models.io import load_detector
        net, spec = load_detector(params)
    original = net
    ship, folded = deployable(net, spec)
    nms = (nms_thresh, nms_topk, post_nms)
    os.makedirs(out_dir, exist_ok=True)
    files = {}
    if 'mxnet' in formats:
        files.update(export_mxnet(ship, out_dir, spec['data_shape'], nms))
    if 'onnx' in formats:
        files.update(export_onnx(ship, out_dir, spec['data_shape'], nms))
    ship.set_nms(*nms)
    original.set_nms(*nms)
    info = {
        'source': os.path.abspath(params) if params else None,
        'kind': spec['kind'], 'adapters_folded': folded,
        'classes': list(spec['classes']), 'data_shape': spec['data_shape'],
        'mean': list(spec['mean']), 'std': list(spec['std']),
        'nms': {'thresh': nms_thresh, 'topk': nms_topk, 'post_nms': post_nms,
                'valid_thresh': VALID_THRESH},
        'files': {k: os.path.basename(v) for k, v in files.items()},
        'input': 'data: (B, 3, {0}, {0}) float32, RGB, (pixel / 255 - mean) / std'.format(
            spec['data_shape']),
        'outputs': 'ids, scores (B, P, 1), boxes (B, P, 4) corner pixels of the input; -1 '
                   'rows are padding',
    }
    if 'onnx' in formats:
        import onnx
        import onnxruntime
        info['onnx'] = {'opset': ONNX_OPSET, 'onnx': onnx.__version__,
                        'onnxruntime': onnxruntime.__version__,
                        'outputs': ONNX_OUTPUTS}
    if verify:
        # the original (unfolded) network is the reference: this also checks the folding
        x = (image_input(verify_images, spec['data_shape'], spec['mean'], spec['std'])
             if verify_images else None)
        info['verification'] = verify_export(original, spec, out_dir, formats, x=x)
    atomic_write_json(os.path.join(out_dir, 'deploy.json'), info)
    return info


# ------------------------------------------------------------------------ cost

def count_params_macs(sym, data_shape, params=None):
    """``(parameters, multiply-accumulates)`` per image of the graph ``sym`` at
    ``(1, 3, S, S)``: MACs of Convolution, Deconvolution and FullyConnected nodes from shape
    inference; parameters = elements of ``params`` (a dict of arrays) the graph uses."""
    internals = sym.get_internals()
    arg_shapes, out_shapes, aux_shapes = internals.infer_shape(data=(1, 3, data_shape,
                                                                     data_shape))
    args = dict(zip(internals.list_arguments(), arg_shapes))
    outs = dict(zip(internals.list_outputs(), out_shapes))
    nodes = json.loads(sym.tojson())['nodes']
    macs = 0
    for node in nodes:
        if node['op'] not in ('Convolution', 'Deconvolution', 'FullyConnected'):
            continue
        w = args[nodes[node['inputs'][1][0]]['name']]
        out = outs[node['name'] + '_output']
        if node['op'] == 'FullyConnected':
            macs += int(np.prod(w))
        else:
            macs += int(np.prod(out[1:])) * int(np.prod(w[1:]))
    used = set(sym.list_arguments()) | set(sym.list_auxiliary_states())
    n_params = 0
    if params is not None:
        n_params = int(sum(v.size for k, v in params.items() if k in used and
                           not k.endswith(('running_mean', 'running_var')) and
                           'anchor' not in k))
    return n_params, macs
