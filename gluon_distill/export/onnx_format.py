"""ONNX export (opset 13, dynamic batch) with per-class NMS in ONNX ops, and running it.

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
* Its ``BatchNorm`` converter ignores ``fix_gamma``: MXNet's symbol ``BatchNorm`` defaults to
  ``fix_gamma=True`` (gamma read as 1), which the BatchNorm layers GluonCV's
  ``FeatureExpander`` adds after a zoo backbone (``expand_bn*``, ``expand_trans_bn*``) use,
  but the converter writes the stored gamma. Training leaves that gamma slightly off 1
  (weight decay acts on it; 0.999 after one epoch on the raccoon photos), so each such layer
  scaled the ONNX outputs by it: raw outputs of a zoo MobileNet SSD (a ResNet50 -> MobileNet
  student, 256 px, one epoch) differed from MXNet's by ~1e-2 (5e-4 of their largest value),
  while the backbone agreed to 1e-7. We convert with gamma 1 wherever MXNet reads 1
  (:func:`_fixed_gammas`): the difference is then ~5e-5.
"""
import json
import logging
import os

import numpy as np

import mxnet as mx

from ..models.ssd import ModelError
from .graph import PREFIX, VALID_THRESH, RawSSD, _sym_and_params

ONNX_OPSET = 13
ONNX_OUTPUTS = ['ids', 'scores', 'boxes', 'cls_preds', 'box_preds']


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


def _fixed_gammas(sym, params):
    """``params`` with the gamma of every ``BatchNorm`` whose ``fix_gamma`` is true (MXNet's
    default) replaced by ones, as MXNet computes it (see the module doc)."""
    nodes = json.loads(sym.tojson())['nodes']
    params = dict(params)
    for node in nodes:
        if node['op'] != 'BatchNorm':
            continue
        attrs = node.get('attrs') or node.get('param') or {}
        if str(attrs.get('fix_gamma', 'True')).lower() not in ('true', '1'):
            continue
        gamma = nodes[node['inputs'][1][0]]['name']
        if gamma in params:
            params[gamma] = mx.nd.ones_like(params[gamma])
    return params


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
    os.makedirs(out_dir, exist_ok=True)
    ctx = net.collect_params().list_ctx()[0]
    x = mx.nd.zeros((1, 3, data_shape, data_shape), ctx=ctx)
    block = RawSSD(net, candidates=True)
    sym, params = _sym_and_params(block, x)
    params = _fixed_gammas(sym, params)
    block.hybridize(active=False)
    net.hybridize(active=False)
    net.set_nms(*nms)
    graph = converted_graph(sym, params, data_shape, dynamic_batch,
                            ['cls_preds', 'box_preds', 'cand_ids', 'cand_scores', 'cand_boxes'])
    with mx.autograd.predict_mode():
        num_candidates = block(x)[3].shape[1]
    n_anchors = num_candidates // net.num_classes
    with_nms_outputs(graph, net.num_classes, num_candidates, nms, dynamic_batch,
                     [('cls_preds', [n_anchors, net.num_classes + 1]),
                      ('box_preds', [n_anchors, 4])])
    return {'onnx': save_model(graph, path or os.path.join(out_dir, PREFIX + '.onnx'))}


def with_nms_outputs(graph, num_classes, num_candidates, nms, dynamic_batch, extra_outputs):
    """Append the per-class NMS to a converted ``graph`` whose candidates are ``cand_ids``,
    ``cand_scores``, ``cand_boxes``, name its nodes, drop initializers listed as inputs and set
    its outputs: ``ids``, ``scores`` (B, post, 1), ``boxes`` (B, post, 4), then
    ``extra_outputs``, (name, shape after the batch axis) pairs of graph values."""
    from onnx import TensorProto, helper
    post = _append_nms(graph, num_classes, num_candidates, *nms)
    _name_nodes(graph)
    _drop_initializer_inputs(graph)
    b = 'batch' if dynamic_batch else 1
    outputs = [('ids', [post, 1]), ('scores', [post, 1]), ('boxes', [post, 4])] + \
        list(extra_outputs)
    del graph.output[:]
    graph.output.extend([helper.make_tensor_value_info(name, TensorProto.FLOAT, [b] + shape)
                         for name, shape in outputs])
    return graph


def converted_graph(sym, params, data_shape, dynamic_batch, names):
    """MXNet 1.9.1's ONNX graph (opset :data:`ONNX_OPSET`) of ``sym`` with input ``data (B, 3,
    S, S)`` (``B`` dynamic or 1), its outputs renamed, in order, to ``names``."""
    from onnx import TensorProto
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
    in_shape = (None if dynamic_batch else 1, 3, data_shape, data_shape)
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)     # the converter logs every node at INFO
    try:
        graph = MXNetGraph().create_onnx_graph_proto(
            sym, params, [(1, 3, data_shape, data_shape)], [TensorProto.FLOAT],
            opset_version=ONNX_OPSET, dynamic=dynamic_batch,
            dynamic_input_shapes=[in_shape] if dynamic_batch else None)
    finally:
        logging.getLogger().setLevel(level)
    rename = dict(zip([o.name for o in graph.output], names))
    for n in graph.node:
        n.output[:] = [rename.get(o, o) for o in n.output]
        n.input[:] = [rename.get(o, o) for o in n.input]
    return graph


def save_model(graph, path):
    """Write ``graph`` as an opset-:data:`ONNX_OPSET` model to ``path`` (checked); returns
    ``path``."""
    import onnx
    from onnx import helper
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', ONNX_OPSET)],
                              producer_name='gluon_distill (mxnet {} mx.onnx)'.format(
                                  mx.__version__))
    model.ir_version = min(model.ir_version, 8)     # readable by older runtimes (ORT >= 1.10)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


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

