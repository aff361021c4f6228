"""Export of a YOLOv3 (GluonCV's ``YOLOV3``; ``model.json`` kind ``yolo3``).

A distilled student is shipped folded (its 1x1 adapters multiplied into the detection blocks'
first convolutions, :func:`gluon_distill.models.yolo3.fold_adapters`): a plain YOLOv3 of the
student's backbone with the teacher's head channels.

``model-symbol.json`` + ``model-0000.params`` (``--format mxnet``)
    GluonCV's own inference graph with its per-class NMS: input ``data (B, 3, S, S)``
    (``S = data_shape``), outputs ``ids``, ``scores (B, P, 1)``, ``boxes (B, P, 4)`` (corner
    pixels of the input; padding rows -1). Loads with ``gluon.SymbolBlock.imports``.
``model-raw-symbol.json`` (same params)
    the same graph before NMS: every anchor's per-class candidates ``ids``, ``scores``,
    ``boxes`` (``(B, N*C, 1|1|4)``).
``model.onnx`` (``--format onnx``), opset 13, dynamic batch
    MXNet 1.9.1's converter translates the pre-NMS graph (measured: candidates within ~2e-5
    px of MXNet's), and the per-class NMS is appended in ONNX ops, as for SSD
    (:func:`gluon_distill.export.onnx_format._append_nms`: the converter's own ``box_nms``
    would suppress across classes). Outputs ``ids``, ``scores``, ``boxes`` and the raw
    ``cand_scores``, ``cand_boxes``.

Verification: the exported graphs against the original (unfolded) Gluon network on the same
input: pre-NMS candidates within 1e-3 (relative above magnitude 1), detections within the
candidate differences found (ties at the cuts and at the NMS threshold allowed, as for SSD).
"""
import os

import mxnet as mx

from .graph import PREFIX, _sym_and_params
from .mxnet_format import load_mxnet
from .onnx_format import (_fixed_gammas, _require_onnx, converted_graph, onnx_session, run_onnx,
                          save_model, with_nms_outputs)
from .verify import (MIN_BOX_TOL, MIN_SCORE_TOL, ExportError, _diff, _non_finite,
                     detections_agree, raw_allowance, verify_input)

ONNX_OUTPUTS = ['ids', 'scores', 'boxes', 'cand_scores', 'cand_boxes']


def deployable(net, spec):
    """``(net, folded)``: the network to ship (a student's adapters folded)."""
    if getattr(net, 'adapters', None) is not None:
        from ..models.yolo3 import fold_adapters
        return fold_adapters(net), True
    return net, False


def _input(net, data_shape, batch=1):
    ctx = net.collect_params().list_ctx()[0]
    return mx.nd.zeros((batch, 3, data_shape, data_shape), ctx=ctx)


def export_mxnet(net, out_dir, data_shape, nms):
    """Write ``model-symbol.json`` (NMS graph), ``model-raw-symbol.json`` (candidates) and
    ``model-0000.params``; returns the file paths."""
    x = _input(net, data_shape)
    prefix = os.path.join(out_dir, PREFIX)
    net.set_nms(0, nms[1], nms[2])          # no NMS: the candidates
    raw_sym, _ = _sym_and_params(net, x)
    raw_sym.save(prefix + '-raw-symbol.json')
    net.set_nms(*nms)                       # clears the cached graph
    net.hybridize()
    with mx.autograd.predict_mode():
        net(x)
    net.export(prefix, 0)
    net.hybridize(active=False)
    net.set_nms(*nms)
    return {'symbol': prefix + '-symbol.json', 'raw_symbol': prefix + '-raw-symbol.json',
            'params': prefix + '-0000.params'}


def export_onnx(net, out_dir, data_shape, nms, dynamic_batch=True):
    """Write ``model.onnx`` (opset 13): the converted candidates graph with the per-class NMS
    appended in ONNX ops."""
    _require_onnx()
    x = _input(net, data_shape)
    net.set_nms(0, nms[1], nms[2])
    sym, params = _sym_and_params(net, x)
    params = _fixed_gammas(sym, params)
    net.hybridize(active=False)
    with mx.autograd.predict_mode():
        num_candidates = net(x)[1].shape[1]
    net.set_nms(*nms)
    graph = converted_graph(sym, params, data_shape, dynamic_batch,
                            ['cand_ids', 'cand_scores', 'cand_boxes'])
    with_nms_outputs(graph, net.num_classes, num_candidates, nms, dynamic_batch,
                     [('cand_scores', [num_candidates, 1]), ('cand_boxes', [num_candidates, 4])])
    return {'onnx': save_model(graph, os.path.join(out_dir, PREFIX + '.onnx'))}


def reference(net, x, nms):
    """The original network's ``(candidates, detections)`` on ``x`` (not hybridized)."""
    net.hybridize(active=False)
    xn = mx.nd.array(x, ctx=net.collect_params().list_ctx()[0])
    with mx.autograd.predict_mode():
        net.set_nms(0, nms[1], nms[2])
        cand = tuple(o.asnumpy() for o in net(xn))
        net.set_nms(*nms)
        dets = tuple(o.asnumpy() for o in net(xn))
    return cand, dets


def compare(name, cand, dets, got_cand, got_dets, nms, raw_tol=1e-3):
    """One verification row: candidates (scores, boxes) within ``raw_tol``, detections
    within the candidate differences found (ties allowed, :func:`detections_agree`)."""
    score_diff = _diff(cand[1], got_cand[0])
    box_diff = _diff(cand[2], got_cand[1])
    d_score, d_box = raw_allowance((cand[1], cand[2]), raw_tol)
    score_tol = max(MIN_SCORE_TOL, min(score_diff, d_score))
    box_tol = max(MIN_BOX_TOL, min(box_diff, d_box))
    bad = _non_finite([('detection scores', dets[1]), ('detection boxes', dets[2])])
    if bad:
        agree, why = False, ('the original network itself gives non-finite outputs ({}): its '
                             'weights have diverged'.format(bad))
    else:
        bad = _non_finite([('candidate scores', got_cand[0]), ('candidate boxes', got_cand[1]),
                           ('detection scores', got_dets[1]), ('detection boxes', got_dets[2])])
        if bad:
            agree, why = False, 'the exported model gives non-finite outputs ({})'.format(bad)
        else:
            agree, why = detections_agree(dets, got_dets, score_tol, box_tol, 0.0, cand, nms)
    ok = agree and score_diff <= d_score and box_diff <= d_box
    return {'runtime': name, 'max_abs_diff_cls_preds': score_diff,
            'max_abs_diff_box_preds': box_diff, 'detections': int((dets[0] >= 0).sum()),
            'tolerances': {'raw_cls': d_score, 'raw_box': d_box, 'score': score_tol,
                           'box_px': box_tol, 'box_relative': 0.0},
            'detections_agree': agree, 'why': why, 'ok': ok}


def verify_yolo3(net, spec, out_dir, formats, nms, x=None, raw_tol=1e-3):
    """Run the exported model(s) and the original ``net`` on the same input (``x``, or a
    generated 2-image batch); return the report rows, raise :class:`ExportError` on a
    disagreement. The ``max|d cls|`` column is the candidates' score difference."""
    x = x if x is not None else verify_input(spec['data_shape'], spec['mean'], spec['std'])
    cand, dets = reference(net, x, nms)
    rows = []
    if 'mxnet' in formats:
        xn = mx.nd.array(x)
        got_dets = tuple(o.asnumpy() for o in load_mxnet(out_dir, static=False)(xn))
        got_cand = tuple(o.asnumpy() for o in load_mxnet(out_dir, raw=True,
                                                   static=False)(xn))[1:]
        rows.append(compare('mxnet-symbol', cand, dets, got_cand, got_dets, nms, raw_tol))
    if 'onnx' in formats:
        out = run_onnx(onnx_session(os.path.join(out_dir, PREFIX + '.onnx')), x)
        rows.append(compare('onnxruntime', cand, dets, (out['cand_scores'], out['cand_boxes']),
                            (out['ids'], out['scores'], out['boxes']), nms, raw_tol))
    bad = [r for r in rows if not r['ok']]
    if bad:
        from .verify import format_report
        raise ExportError('exported YOLOv3 disagrees with the original:\n' + format_report(rows))
    return rows


def export_yolo3(net, spec, out_dir, formats, nms, verify=True, verify_images=None):
    """``(files, folded, report rows or None)`` of a YOLOv3 export."""
    ship, folded = deployable(net, spec)
    files = {}
    if 'mxnet' in formats:
        files.update(export_mxnet(ship, out_dir, spec['data_shape'], nms))
    if 'onnx' in formats:
        files.update(export_onnx(ship, out_dir, spec['data_shape'], nms))
    rows = None
    if verify:
        x = None
        if verify_images:
            from .verify import image_input
            x = image_input(verify_images, spec['data_shape'], spec['mean'], spec['std'])
        # the original (unfolded) network is the reference: this also checks the folding
        rows = verify_yolo3(net, spec, out_dir, formats, nms, x)
    return files, folded, rows

