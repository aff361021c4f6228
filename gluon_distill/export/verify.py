"""Verification: the exported model(s) against the original network on the same input."""
import os

import numpy as np

import mxnet as mx

from ..models.ssd import ModelError
from .graph import PREFIX, RawSSD
from .mxnet_format import load_mxnet
from .onnx_format import onnx_session, run_onnx


class ExportError(ModelError):
    """An export whose verification failed (the exported model disagrees with the original)."""


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

