"""Verification: the exported model(s) against the original network on the same input.

Two checks per runtime, with tolerances that follow from one another:

* raw outputs (class logits ``cls_preds``, box offsets ``box_preds``) within ``raw_tol``
  (1e-3; absolute for outputs of magnitude <= 1, relative above: float32 rounding);
* detections (after decoding and NMS) within the differences the raw differences found can
  cause, at most those the raw tolerance allows (:func:`detection_tolerances`): a score is a
  softmax of the logits, so it moves by at most half the largest logit difference; a box
  corner moves by at most ``std_xy * anchor size + std_wh / 2 * box size`` times the largest
  offset difference (plus 1e-4 in score and 0.01 px in box of float32 rounding).

Ties are not errors: candidates whose scores are equal within the tolerance may be taken in
either order at the top-k cut before NMS, at the per-class suppression, and at the
``post_nms`` cut; a pair of boxes whose overlap is within the tolerance of the NMS threshold
may be suppressed in one runtime and kept in the other. Below the highest score at which such
an ambiguity exists (per class for NMS, for all classes at the cuts), every exported detection
must still be a candidate of the original network (same class, score and box within the
tolerances); above it, both sets of detections must be the same.
"""
import os
from collections import namedtuple

import numpy as np

import mxnet as mx

from ..models.ssd import ModelError
from .graph import PREFIX, VALID_THRESH, RawSSD
from .mxnet_format import load_mxnet
from .onnx_format import onnx_session, run_onnx


class ExportError(ModelError):
    """An export whose verification failed (the exported model disagrees with the original)."""


Reference = namedtuple('Reference', ['raw', 'dets', 'candidates', 'anchors'])
Reference.__doc__ = """The original network's outputs on the verification input: ``raw``
``(cls_preds, box_preds)``, ``dets`` ``(ids, scores, boxes)`` after NMS, ``candidates`` the
same before NMS (``(B, N*C, 1|1|4)``, ids -1 below the valid threshold), ``anchors (1, N, 4)``
(centre x, y, width, height)."""

Tolerances = namedtuple('Tolerances', ['score', 'box', 'box_rel'])
Tolerances.__doc__ = """Detection tolerances: ``score`` (absolute), a box coordinate within
``box + box_rel * max(width, height)`` px of the reference box's."""

#: floors of the detection tolerances: float32 rounding of decode and softmax
MIN_SCORE_TOL = 1e-4
MIN_BOX_TOL = 1e-2


def raw_allowance(ref_raw, raw_tol=1e-3):
    """``(cls, box)``: the largest raw differences ``raw_tol`` allows (absolute up to
    magnitude 1, relative above)."""
    return tuple(raw_tol * max(1.0, float(np.abs(a).max()) if np.size(a) else 1.0)
                 for a in ref_raw)


def detection_tolerances(raw_diffs, anchors, stds=(0.1, 0.1, 0.2, 0.2)):
    """The :class:`Tolerances` that raw differences ``raw_diffs = (d, e)`` (largest absolute
    difference of the logits, of the box offsets) imply for the detections.

    A logit difference of at most ``d`` moves a softmax score by at most ``d / 2`` (the
    softmax Jacobian's rows have absolute sum ``2 p (1 - p) <= 1/2``). An offset difference
    of at most ``e`` moves a decoded corner ``c +- w/2`` (``c = a_c + std_xy * a_w * t``,
    ``w = a_w * exp(std_wh * t)``, clamped) by at most ``std_xy * a_w * e + w * (exp(std_wh *
    e) - 1) / 2``, with ``a_w`` at most the largest anchor side. Floors: 1e-4 in score,
    0.01 px in box (float32 rounding of decoding and softmax).
    """
    d_cls, d_box = raw_diffs
    anchor = float(np.abs(np.asarray(anchors)[..., 2:4]).max()) if np.size(anchors) else 0.0
    return Tolerances(score=max(MIN_SCORE_TOL, d_cls / 2.0),
                      box=MIN_BOX_TOL + max(stds[0], stds[1]) * anchor * d_box,
                      box_rel=0.5 * float(np.expm1(max(stds[2], stds[3]) * d_box)))


def _sorted_valid(dets, b):
    """``(ids, scores, boxes)`` of image ``b``'s rows with id >= 0, by descending score."""
    ids = np.asarray(dets[0])[b, :, 0]
    scores = np.asarray(dets[1])[b, :, 0].astype(np.float64)
    boxes = np.asarray(dets[2])[b].astype(np.float64)
    keep = ids >= 0
    order = np.argsort(-scores[keep], kind='stable')
    return ids[keep][order].astype(int), scores[keep][order], boxes[keep][order]


def _box_tol(boxes, box_tol, box_rel):
    """Per box, its coordinate tolerance (px)."""
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    return box_tol + box_rel * np.maximum(sides, 0.0)


def _iou(a, b):
    """``(len(a), len(b))`` IoU of corner boxes, areas without +1 (as MXNet's ``box_nms`` and
    ONNX's ``NonMaxSuppression``), and the intersection/union arrays."""
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.maximum(iw, 0) * np.maximum(ih, 0)
    area_a = np.maximum(a[:, 2] - a[:, 0], 0) * np.maximum(a[:, 3] - a[:, 1], 0)
    area_b = np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid='ignore', divide='ignore'):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou, iw, ih, union


def _iou_slack(boxes, iw, ih, union, iou, t):
    """How much the IoU of each pair of ``boxes`` can change when every coordinate of box
    ``i`` moves by at most ``t[i]`` (bounded with ``max(t_i, t_j)`` for both): the
    intersection by at most ``(iw + 2t)(ih + 2t) - iw ih``, each area by at most ``2t (w + h)
    + 4t^2``."""
    tt = np.maximum.outer(t, t)
    iw, ih = np.maximum(iw, -2 * tt), np.maximum(ih, -2 * tt)
    d_inter = (np.maximum(iw + 2 * tt, 0) * np.maximum(ih + 2 * tt, 0) -
               np.maximum(iw, 0) * np.maximum(ih, 0))
    side = (boxes[:, 2] - boxes[:, 0]) + (boxes[:, 3] - boxes[:, 1])
    d_area = 2 * tt * (side[:, None] + side[None, :]) + 8 * tt ** 2
    d_union = d_area + d_inter
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(union - d_union > 0, (d_inter + iou * d_union) / (union - d_union), 1.0)


def _class_levels(ids, scores, boxes, nms_thresh, tol, max_boxes=1000):
    """Per class, the highest score at which NMS may decide differently within the
    tolerances: a pair of the class whose IoU is within its slack of the threshold (the lower
    box may or may not be suppressed), or whose scores are within ``2 * score tol`` while
    they overlap enough to suppress one another (either may come first)."""
    levels = {}
    if not 0 < nms_thresh < 1:
        return levels
    for c in np.unique(ids):
        sel = np.flatnonzero(ids == c)[:max_boxes]       # scores sorted: the highest kept
        if len(sel) < 2:
            continue
        s, bx = scores[sel], boxes[sel]
        t = _box_tol(bx, tol.box, tol.box_rel)
        iou, iw, ih, union = _iou(bx, bx)
        slack = _iou_slack(bx, iw, ih, union, iou, t)
        upper = np.triu(np.ones(iou.shape, bool), 1)       # i < j: s_i >= s_j
        boundary = upper & (np.abs(iou - nms_thresh) <= slack)
        tied = upper & (s[:, None] - s[None, :] <= 2 * tol.score) & (iou > nms_thresh - slack)
        level = -np.inf
        if boundary.any():
            level = max(level, float(s[np.nonzero(boundary)[1]].max()))
        if tied.any():
            level = max(level, float(s[np.nonzero(tied)[0]].max()))
        if len(sel) < np.count_nonzero(ids == c):        # not all compared: below, ambiguous
            level = max(level, float(s[-1]))
        if level > -np.inf:
            levels[int(c)] = level
    return levels


def _ambiguity(r, g, cand, rows, tol, nms):
    """``(level for all classes, {class: level})`` of image: scores at or below which the
    runtimes may legitimately differ (see the module docstring)."""
    level = VALID_THRESH
    for ids, scores, _ in (r, g):
        if len(ids) and len(ids) >= rows:              # the post_nms cut was reached
            level = max(level, float(scores[-1]))
    nms_thresh, nms_topk = (nms or (0.0, -1))[:2]
    pool = r
    if cand is not None:
        c_ids, c_scores, c_boxes = cand
        valid = c_scores > VALID_THRESH - tol.score
        c_ids, c_scores, c_boxes = c_ids[valid], c_scores[valid], c_boxes[valid]
        if nms_topk and 0 < nms_topk < len(c_scores):
            cut = float(c_scores[nms_topk - 1])
            level = max(level, cut)
            inside = c_scores >= cut - tol.score
            c_ids, c_scores, c_boxes = c_ids[inside], c_scores[inside], c_boxes[inside]
        pool = (c_ids, c_scores, c_boxes)
    return level, _class_levels(*pool, nms_thresh, tol)


def _non_finite(arrays):
    """``'N of M values of NAME, ...'`` (inf or nan) of the named arrays, or ''."""
    parts = []
    for name, a in arrays:
        a = np.asarray(a)
        n = int(a.size - np.isfinite(a).sum())
        if n:
            parts.append('{} of {} values of {}'.format(n, a.size, name))
    return ', '.join(parts)


def detections_agree(ref, got, score_tol=MIN_SCORE_TOL, box_tol=MIN_BOX_TOL, box_rel=0.0,
                     candidates=None, nms=None):
    """``(ok, message)``: the same detections (class, score, box) per image, in any order of
    equal scores; padding rows (id -1) ignored. ``ref``/``got``: (ids, scores, boxes).

    A box matches when every coordinate is within ``box_tol + box_rel * max(width, height)``
    px of the reference's. ``candidates``: the reference's pre-NMS ``(ids, scores, boxes)``,
    and ``nms``: ``(nms_thresh, nms_topk, post_nms)``; with them, detections that depend on
    tie-breaking (see the module docstring) need only be candidates of the reference. The
    message is '' when every detection matched one to one, else says what differs.
    """
    tol = Tolerances(score_tol, box_tol, box_rel)
    rows = ref[0].shape[1]
    relaxed = 0
    for b in range(ref[0].shape[0]):
        r, g = _sorted_valid(ref, b), _sorted_valid(got, b)
        for who, dets in (('the original network', r), ('the exported model', g)):
            bad = _non_finite([('scores', dets[1]), ('boxes', dets[2])])
            if bad:
                return False, 'image {}: {} gives non-finite detections ({})'.format(b, who, bad)
        cand = None
        if candidates is not None:
            cand = _sorted_valid(candidates, b)
        level, class_levels = _ambiguity(r, g, cand, rows, tol, nms)

        def strict(cls, score):
            return score > max(level, class_levels.get(int(cls), -np.inf)) + tol.score
        g_tol = _box_tol(g[2], tol.box, tol.box_rel)
        r_tol = _box_tol(r[2], tol.box, tol.box_rel)
        unused = np.ones(len(g[0]), bool)
        for i, (cls, score, box) in enumerate(zip(*r)):
            dist = np.abs(g[2] - box).max(axis=1) if len(g[0]) else np.zeros(0)
            ok = (unused & (g[0] == cls) & (np.abs(g[1] - score) <= tol.score) &
                  (dist <= np.maximum(r_tol[i], g_tol)))
            if ok.any():
                unused[np.flatnonzero(ok)[np.argmin(dist[ok])]] = False
            elif strict(cls, score):
                return False, ('image {}: no match for class {} score {:.5f} box {} (score '
                               '+-{:.2g}, box +-{:.2g} px)'.format(
                                   b, cls, score, np.round(box, 2).tolist(), tol.score,
                                   float(r_tol[i])))
            else:
                relaxed += 1
        for j in np.flatnonzero(unused):
            cls, score, box = g[0][j], g[1][j], g[2][j]
            if strict(cls, score):
                return False, ('image {}: the exported model detects class {} score {:.5f} box '
                               '{}, the original network does not'.format(
                                   b, cls, score, np.round(box, 2).tolist()))
            if cand is not None:
                c_ids, c_scores, c_boxes = cand
                near = ((c_ids == cls) & (np.abs(c_scores - score) <= tol.score) &
                        (np.abs(c_boxes - box).max(axis=1) <= g_tol[j]
                         if len(c_ids) else np.zeros(0, bool)))
                if not near.any():
                    return False, ('image {}: the exported detection class {} score {:.5f} box '
                                   '{} is no candidate of the original network'.format(
                                       b, cls, score, np.round(box, 2).tolist()))
            relaxed += 1
    if relaxed:
        return True, '{} detection(s) differ by tie-breaking at equal scores or overlaps at ' \
                     'the NMS threshold'.format(relaxed)
    return True, ''


def _diff(a, b):
    if not np.size(a):
        return 0.0
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float('inf')
    with np.errstate(invalid='ignore'):
        d = np.abs(a - b)
    return float(np.nan_to_num(d, nan=np.inf).max())


def verify_input(data_shape, mean, std, batch=2, seed=0):
    """A fixed, normalised input batch: smooth random images in [0, 1], normalised."""
    rng = np.random.RandomState(seed)
    small = rng.uniform(size=(batch, 3, max(data_shape // 8, 1), max(data_shape // 8, 1)))
    img = np.repeat(np.repeat(small, 8, axis=2), 8, axis=3)[:, :, :data_shape, :data_shape]
    img = img + 0.1 * rng.randn(*img.shape)
    m = np.array(mean, np.float32).reshape(1, 3, 1, 1)
    s = np.array(std, np.float32).reshape(1, 3, 1, 1)
    return ((img - m) / s).astype(np.float32)


def image_input(paths, data_shape, mean, std):
    """A normalised ``(B, 3, S, S)`` float32 batch of image files, decoded and resized as
    ``tools/detect.py`` does (:func:`gluon_distill.detect.preprocess`)."""
    from ..data.images import read_image
    from ..detect import preprocess
    return np.concatenate([preprocess(read_image(p), data_shape, mean, std).asnumpy()
                           for p in paths]).astype(np.float32)


def reference_outputs(net, x):
    """The original Gluon network (not hybridized) on ``x``: a :class:`Reference`."""
    net.hybridize(active=False)
    xn = mx.nd.array(x, ctx=net.collect_params().list_ctx()[0])
    with mx.autograd.predict_mode():
        cls, box, anchors = RawSSD(net)(xn)
        cand = RawSSD(net, candidates=True)(xn)[2:]
        dets = net(xn)
    return Reference((cls.asnumpy(), box.asnumpy()), tuple(d.asnumpy() for d in dets),
                     tuple(c.asnumpy() for c in cand), anchors.asnumpy())


def reference_problem(ref):
    """Why the original network's outputs cannot serve as a reference ('' if they can)."""
    bad = _non_finite([('cls_preds', ref.raw[0]), ('box_preds', ref.raw[1]),
                       ('detection scores', ref.dets[1]), ('detection boxes', ref.dets[2])])
    if not bad:
        return ''
    return ('the original network itself gives non-finite outputs on the verification input '
            '({}): its weights have diverged (inf or nan), so no export of it can be checked; '
            'export a checkpoint from before the divergence'.format(bad))


def compare(name, ref, raw, dets, raw_tol=1e-3, nms=None, stds=(0.1, 0.1, 0.2, 0.2)):
    """One verification row for an exported runtime against the :class:`Reference`: raw
    outputs within ``raw_tol`` (absolute up to magnitude 1, relative above), detections
    within the tolerances that implies (:func:`detection_tolerances`), ties allowed
    (``nms``: ``(nms_thresh, nms_topk, post_nms)`` of both)."""
    cls_diff = _diff(ref.raw[0], raw[0])
    box_diff = _diff(ref.raw[1], raw[1])
    d_cls, d_box = raw_allowance(ref.raw, raw_tol)
    # the detections may differ by what the raw differences found can cause, and never by
    # more than the raw tolerance allows
    tol = detection_tolerances((min(cls_diff, d_cls), min(box_diff, d_box)), ref.anchors, stds)
    n = int((ref.dets[0] >= 0).sum())
    problem = reference_problem(ref)
    if problem:
        agree, why = False, problem
    else:
        bad = _non_finite([('cls_preds', raw[0]), ('box_preds', raw[1]),
                           ('detection scores', dets[1]), ('detection boxes', dets[2])])
        if bad:
            agree, why = False, 'the exported model gives non-finite outputs ({})'.format(bad)
        else:
            agree, why = detections_agree(ref.dets, dets, tol.score, tol.box, tol.box_rel,
                                          ref.candidates, nms)
    ok = agree and cls_diff <= d_cls and box_diff <= d_box
    return {'runtime': name, 'max_abs_diff_cls_preds': cls_diff,
            'max_abs_diff_box_preds': box_diff, 'detections': n,
            'max_abs_diff_scores': _diff(ref.dets[1], dets[1]) if agree else None,
            'max_abs_diff_boxes': _diff(ref.dets[2], dets[2]) if agree else None,
            'tolerances': {'raw_cls': d_cls, 'raw_box': d_box, 'score': tol.score,
                           'box_px': tol.box, 'box_relative': tol.box_rel},
            'detections_agree': agree, 'why': why, 'ok': ok}


def verify_export(net, spec, out_dir, formats, x=None, raw_tol=1e-3):
    """Run the exported model(s) and the original ``net`` on the same input; return the
    report rows, raise :class:`ExportError` if any disagrees, or if the original network
    itself gives non-finite outputs (then nothing can be verified)."""
    x = x if x is not None else verify_input(spec['data_shape'], spec['mean'], spec['std'])
    ref = reference_outputs(net, x)
    problem = reference_problem(ref)
    if problem:
        raise ExportError('cannot verify the export: ' + problem)
    nms = (net.nms_thresh, net.nms_topk, net.post_nms)
    stds = tuple(net.bbox_decoder._stds)
    rows = []
    if 'mxnet' in formats:
        det_block = load_mxnet(out_dir)
        raw_block = load_mxnet(out_dir, raw=True)
        xn = mx.nd.array(x)
        dets = tuple(a.asnumpy() for a in det_block(xn))
        raw = tuple(a.asnumpy() for a in raw_block(xn))[:2]
        rows.append(compare('mxnet-symbol', ref, raw, dets, raw_tol, nms, stds))
    if 'onnx' in formats:
        out = run_onnx(onnx_session(os.path.join(out_dir, PREFIX + '.onnx')), x)
        rows.append(compare('onnxruntime', ref, (out['cls_preds'], out['box_preds']),
                            (out['ids'], out['scores'], out['boxes']), raw_tol, nms, stds))
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
        t = r.get('tolerances')
        if t:
            lines.append('{:<14} {:>14.3e} {:>14.3e} {:>10} {}'.format(
                '  tolerance', t['raw_cls'], t['raw_box'], '',
                'score +-{:.2g}, box +-({:.2g} px + {:.2g} x size)'.format(
                    t['score'], t['box_px'], t['box_relative'])))
        if r['detections_agree'] and r['why']:
            lines.append('{:<14} {}'.format('', r['why']))
    return '\n'.join(lines)
