"""Tests of the VOC07 evaluator against hand-computed APs, the devkit rules and GluonCV."""
import json
import math
import os
import re
import sys
import time

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gluon_distill  # noqa: E402,F401  (numpy shim before mxnet/gluoncv)
from gluon_distill.evaluation.voc07 import (  # noqa: E402
    VOC07Evaluator, format_ap_table, read_devkit_results, save_metrics_json)

EMPTY_BOXES = np.zeros((0, 4))
EMPTY_INTS = np.zeros((0,), np.int64)


def box(x1, y1, x2, y2):
    return [float(x1), float(y1), float(x2), float(y2)]


def run(classes, images, **kwargs):
    """Evaluate ``images``: list of dicts with keys id, det (list of (box, label, score)),
    gt (list of (box, label, difficult))."""
    ev = VOC07Evaluator(classes, **kwargs)
    for im in images:
        det, gt = im.get('det', []), im.get('gt', [])
        ev.process([im['id']],
                   [np.array([d[0] for d in det]).reshape(-1, 4)],
                   [np.array([d[1] for d in det], np.int64)],
                   [np.array([d[2] for d in det], np.float64)],
                   [np.array([g[0] for g in gt]).reshape(-1, 4)],
                   [np.array([g[1] for g in gt], np.int64)],
                   [np.array([g[2] for g in gt], bool)])
    return ev, ev.evaluate()


def test_hand_computed_11_point_ap():
    # gt: img0 G1, G2 ; img1 G3  -> npos = 3
    # detections by score: d1 .9 on G1 TP   -> P=1   R=1/3
    #                      d2 .8 nowhere FP -> P=1/2 R=1/3
    #                      d3 .7 on G2 TP   -> P=2/3 R=2/3
    #                      d4 .6 IoU(G3)=0.4 FP -> P=2/4 R=2/3
    #                      d5 .5 on G3 TP   -> P=3/5 R=1
    # t in {0,.1,.2,.3}: max P over R>=t = 1 ; t in {.4,.5,.6}: max(2/3,1/2,3/5) = 2/3 ;
    # t in {.7,.8,.9,1}: 3/5.  AP = (4*1 + 3*2/3 + 4*3/5) / 11 = 8.4 / 11
    g1, g2, g3 = box(0, 0, 9, 9), box(20, 20, 29, 29), box(0, 0, 9, 9)
    images = [
        # img1 processed first and a -1 padding with the highest score: neither may matter
        {'id': 'img1', 'gt': [(g3, 0, False)],
         'det': [(box(50, 50, 59, 59), 0, .8), (box(0, 0, 9, 3), 0, .6),
                 (g3, 0, .5), (g3, -1, .99)]},
        {'id': 'img0', 'gt': [(g1, 0, False), (g2, 0, False)],
         'det': [(g2, 0, .7), (g1, 0, .9)]},
    ]
    _, res = run(['a'], images)
    assert res['AP']['a'] == pytest.approx(8.4 / 11, abs=1e-9)
    assert res['mAP'] == pytest.approx(8.4 / 11, abs=1e-9)
    assert res['num_gt'] == {'a': 3}
    assert res['num_det'] == {'a': 5}
    assert res['num_images'] == 2


def test_detection_on_difficult_box_is_ignored_and_not_a_positive():
    # gt: D (difficult), N.  dets: .9 on D (ignored), .85 nowhere (FP), .8 on N (TP)
    # -> P/R: (0, 0), (1/2, 1); AP = 1/2 at every t.
    # D's detection as TP would give AP = 1, as FP 1/3; D counted in npos would give 6/11 * 1/2.
    d_box, n_box = box(0, 0, 9, 9), box(30, 30, 39, 39)
    images = [{'id': 'x', 'gt': [(d_box, 0, True), (n_box, 0, False)],
               'det': [(d_box, 0, .9), (box(60, 60, 69, 69), 0, .85), (n_box, 0, .8)]}]
    _, res = run(['a'], images)
    assert res['num_gt']['a'] == 1
    assert res['AP']['a'] == pytest.approx(0.5, abs=1e-9)


def test_equal_scores_keep_input_order():
    # The devkit's stable sort: img0's FP (processed first) precedes img1's TP at equal score.
    # P/R: (0, 0), (1/2, 1/2) -> AP = 6 * 1/2 / 11 = 3/11.  GluonCV's argsort()[::-1] reverses
    # the tie (TP first) and reports 6/11 on this input.
    g = box(0, 0, 9, 9)
    images = [{'id': 'img0', 'gt': [(g, 0, False)], 'det': [(box(50, 50, 59, 59), 0, .5)]},
              {'id': 'img1', 'gt': [(g, 0, False)], 'det': [(g, 0, .5)]}]
    _, res = run(['a'], images)
    assert res['AP']['a'] == pytest.approx(3 / 11, abs=1e-9)


def test_only_difficult_boxes_give_nan():
    images = [{'id': 'x', 'gt': [(box(0, 0, 9, 9), 0, True)], 'det': [(box(0, 0, 9, 9), 0, .9)]}]
    _, res = run(['a'], images)
    assert res['num_gt']['a'] == 0
    assert math.isnan(res['AP']['a']) and math.isnan(res['mAP'])


def test_duplicate_detection_is_false_positive():
    # G1, G2 in one image. dets: .9 on G1 TP, .8 on G1 again FP (dup), .7 on G2 TP
    # P/R: (1, 1/2), (1/2, 1/2), (2/3, 1) -> t in {0..0.5} (6 points): 1 ; t in {.6..1} (5): 2/3
    # AP = (6 + 5 * 2/3) / 11 = 28/33   (a TP duplicate would give AP = 1)
    g1, g2 = box(0, 0, 9, 9), box(30, 30, 39, 39)
    images = [{'id': 'x', 'gt': [(g1, 0, False), (g2, 0, False)],
               'det': [(g1, 0, .9), (box(0, 0, 9, 8), 0, .8), (g2, 0, .7)]}]
    _, res = run(['a'], images)
    assert res['AP']['a'] == pytest.approx(28 / 33, abs=1e-9)


GT_100 = box(0, 0, 99, 99)  # 100 x 100 pixels with the +1 convention


@pytest.mark.parametrize('det_box, strict, expected_ap', [
    # +1 IoU = 100*50 / 10000 = 0.5 exactly: VOCevaldet.m matches (ovmax >= 0.5).
    # Without the +1 it would be 99*49 / 99^2 = 0.4949 -> FP, so this also checks the convention.
    (box(0, 0, 99, 49), False, 1.0),
    # py-faster-rcnn's voc_eval.py rule (ovmax > 0.5) rejects exactly 0.5
    (box(0, 0, 99, 49), True, 0.0),
    (box(0, 0, 99, 48), False, 0.0),   # 4900 / 10000 = 0.49 just below
    (box(0, 0, 99, 50), False, 1.0),   # 5100 / 10000 = 0.51 just above
    # detection larger than gt: inter 10000, union 100*201 = 20100 -> 0.4975 FP
    (box(0, 0, 99, 200), False, 0.0),
    # inter 10000, union 100*199 = 19900 -> 0.5025 TP
    (box(0, 0, 99, 198), False, 1.0),
])
def test_iou_threshold_with_plus_one_convention(det_box, strict, expected_ap):
    images = [{'id': 'x', 'gt': [(GT_100, 0, False)], 'det': [(det_box, 0, .9)]}]
    _, res = run(['a'], images, strict=strict)
    assert res['AP']['a'] == pytest.approx(expected_ap, abs=1e-12)


def test_best_iou_ground_truth_is_taken_even_if_matched():
    # The detection's best box is G1 (already taken by a better det), so it is a FP even though
    # it overlaps G2 by more than 0.5: the devkit does not fall back to the second best box.
    g1, g2 = box(0, 0, 99, 99), box(0, 20, 99, 119)
    images = [{'id': 'x', 'gt': [(g1, 0, False), (g2, 0, False)],
               'det': [(g1, 0, .9), (box(0, 5, 99, 104), 0, .8)]}]
    _, res = run(['a'], images)
    # P/R: (1, 1/2), (1/2, 1/2) -> 6 points at 1, 5 at 0
    assert res['AP']['a'] == pytest.approx(6 / 11, abs=1e-9)


def test_class_without_gt_is_nan_and_excluded_from_map():
    g = box(0, 0, 9, 9)
    images = [{'id': 'x', 'gt': [(g, 0, False)],
               'det': [(g, 0, .9), (g, 1, .8)]}]  # class b: detections but no gt; c: nothing
    _, res = run(['a', 'b', 'c'], images)
    assert res['AP']['a'] == pytest.approx(1.0)
    assert math.isnan(res['AP']['b']) and math.isnan(res['AP']['c'])
    assert res['mAP'] == pytest.approx(1.0)
    assert res['num_det'] == {'a': 1, 'b': 1, 'c': 0}


def random_dataset(seed, n_images=50, n_classes=4, gt_classes=3, pad_to=40):
    """Integer pixel boxes (all IoU arithmetic exact in float64) and unique float scores.
    Class index ``gt_classes..n_classes-1`` only has false detections (no gt)."""
    rng = np.random.RandomState(seed)
    data = []
    for i in range(n_images):
        m = rng.randint(0, 7)
        xy = rng.randint(0, 400, size=(m, 2))
        wh = rng.randint(4, 120, size=(m, 2))
        gtb = np.concatenate([xy, xy + wh], axis=1).astype(np.float64)
        gtl = rng.randint(0, gt_classes, size=m)
        gtd = rng.rand(m) < 0.2
        dets, labels = [], []
        for b, lab in zip(gtb, gtl):
            for _ in range(rng.randint(0, 3)):  # 0, 1 or 2 (duplicate) jittered copies
                dets.append(b + rng.randint(-12, 13, size=4))
                labels.append(lab if rng.rand() < 0.85 else rng.randint(0, n_classes))
        for _ in range(rng.randint(0, 6)):  # pure false positives
            xy0 = rng.randint(0, 400, size=2)
            dets.append(np.concatenate([xy0, xy0 + rng.randint(4, 120, size=2)]))
            labels.append(rng.randint(0, n_classes))
        n = len(dets)
        pb = np.zeros((pad_to, 4))
        pl = -np.ones(pad_to, np.int64)
        ps = -np.ones(pad_to)
        if n:
            pb[:n] = np.array(dets, np.float64)
            pb[:n, 2:] = np.maximum(pb[:n, 2:], pb[:n, :2])
            pl[:n] = labels
            ps[:n] = np.round(rng.rand(n), 6)
        data.append(dict(id='%06d' % i, pb=pb, pl=pl, ps=ps, gb=gtb, gl=gtl, gd=gtd))
    all_scores = np.concatenate([d['ps'][d['pl'] >= 0] for d in data])
    assert len(np.unique(all_scores)) == len(all_scores)  # no ties: sort order is unambiguous
    return data


def evaluate_dataset(classes, data, dets=None):
    ev = VOC07Evaluator(classes)
    for d in data:
        pb, pl, ps = (d['pb'], d['pl'], d['ps']) if dets is None else dets.get(
            d['id'], (EMPTY_BOXES, EMPTY_INTS, np.zeros(0)))
        ev.process([d['id']], [pb], [pl], [ps], [d['gb']], [d['gl']], [d['gd']])
    return ev, ev.evaluate()


def test_agrees_with_gluoncv_voc07_metric():
    # GluonCV's update() adds 1 to xmax/ymax and calls bbox_iou with offset 0: the same +1
    # IoU as the devkit; it also matches with `iou >= thresh` and excludes difficult boxes from
    # npos like VOCevaldet.m. It differs only on tied scores (argsort()[::-1] puts equal scores in
    # reverse input order; the devkit's stable sort keeps them in order), which this data avoids.
    from gluoncv.utils.metrics.voc_detection import VOC07MApMetric
    classes = ['a', 'b', 'c', 'd']
    data = random_dataset(seed=7)
    _, res = evaluate_dataset(classes, data)

    metric = VOC07MApMetric(iou_thresh=0.5, class_names=classes)
    for d in data:
        metric.update(d['pb'][None], d['pl'][None], d['ps'][None],
                      d['gb'][None], d['gl'][None], d['gd'][None])
    names, values = metric.get()
    theirs = dict(zip(names, values))

    assert math.isnan(res['AP']['d']) and math.isnan(theirs['d'])
    for name in classes[:3]:
        assert 0.05 < res['AP'][name] < 0.95  # a non-trivial curve, not all-or-nothing
        assert res['AP'][name] == pytest.approx(theirs[name], abs=1e-6)
    assert res['mAP'] == pytest.approx(theirs['mAP'], abs=1e-6)


def test_devkit_files_round_trip(tmp_path):
    classes = ['a', 'b', 'c', 'd', 'empty']
    data = random_dataset(seed=3, n_images=20)
    ev, res = evaluate_dataset(classes, data)
    paths = ev.write_devkit_results(str(tmp_path), split='test')
    assert [os.path.basename(p) for p in paths] == \
        ['comp4_det_test_%s.txt' % c for c in classes]
    assert all(os.path.isfile(p) for p in paths)
    assert open(paths[-1]).read() == ''

    line_re = re.compile(r'^\d{6} \d\.\d{6}( -?\d+\.\d){4}$')
    for p in paths:
        lines = open(p).read().splitlines()
        assert all(line_re.match(line) for line in lines), p
        keys = [(line.split()[0], -float(line.split()[1])) for line in lines]
        assert keys == sorted(keys)  # by image, then descending score

    dets = read_devkit_results(str(tmp_path), classes)
    _, res2 = evaluate_dataset(classes, data, dets)
    assert res2['num_det'] == res['num_det']
    assert res2['mAP'] == res['mAP']
    for c in classes:
        assert res2['AP'][c] == res['AP'][c] or (math.isnan(res2['AP'][c])
                                                 and math.isnan(res['AP'][c]))


def test_devkit_writer_is_one_based(tmp_path):
    ev = VOC07Evaluator(['cat'])
    ev.process(['000001'], [np.array([[0., 0., 9., 19.]])], [np.array([0])],
               [np.array([0.25])], [np.array([[0., 0., 9., 19.]])], [np.array([0])], None)
    (path,) = ev.write_devkit_results(str(tmp_path))
    assert open(path).read() == '000001 0.250000 1.0 1.0 10.0 20.0\n'
    boxes, labels, scores = read_devkit_results(str(tmp_path), ['cat'])['000001']
    np.testing.assert_array_equal(boxes, [[0., 0., 9., 19.]])
    np.testing.assert_array_equal(labels, [0])
    np.testing.assert_array_equal(scores, [0.25])


def test_format_ap_table_and_json(tmp_path):
    classes = ['a', 'b', 'c', 'd']
    _, res = evaluate_dataset(classes, random_dataset(seed=1, n_images=10))
    table = format_ap_table(res, classes)
    lines = table.splitlines()
    assert re.match(r'^mAP=\d\.\d{4}$', lines[-1])
    assert len(lines) == len(classes) + 2
    assert len({len(line) for line in lines[:-2]}) == 1  # aligned columns
    assert lines[4].split()[:3] == ['d', '0', str(res['num_det']['d'])]
    assert lines[4].endswith('no ground truth: excluded from mAP') and 'nan' not in table

    path = tmp_path / 'sub' / 'metrics.json'
    save_metrics_json(res, str(path))
    loaded = json.loads(path.read_text())
    assert loaded['AP']['d'] is None
    assert loaded['mAP'] == pytest.approx(res['mAP'])
    assert os.listdir(str(path.parent)) == ['metrics.json']  # no leftover temporary file


def test_reset_and_duplicate_image_ids():
    ev = VOC07Evaluator(['a'])
    args = ([np.zeros((0, 4))], [EMPTY_INTS], [np.zeros(0)],
            [np.array([[0., 0., 9., 9.]])], [np.array([0])], None)
    ev.process(['x'], *args)
    with pytest.raises(ValueError):
        ev.process(['x'], *args)
    assert ev.evaluate()['AP']['a'] == 0.0
    ev.reset()
    assert ev.evaluate()['num_images'] == 0


def test_5000_images_100_detections_takes_seconds():
    rng = np.random.RandomState(0)
    n_img, n_det, n_gt = 5000, 100, 3
    classes = ['c%d' % k for k in range(20)]
    ev = VOC07Evaluator(classes)
    xy = rng.randint(0, 400, size=(n_img, n_gt, 2)).astype(np.float64)
    gtb = np.concatenate([xy, xy + 60], axis=2)
    gtl = rng.randint(0, 20, size=(n_img, n_gt))
    idx = rng.randint(0, n_gt, size=(n_img, n_det))
    pb = np.take_along_axis(gtb, idx[..., None], axis=1) + rng.randint(-20, 21, (n_img, n_det, 4))
    pl = np.where(rng.rand(n_img, n_det) < 0.7, np.take_along_axis(gtl, idx, 1),
                  rng.randint(0, 20, (n_img, n_det)))
    ps = rng.rand(n_img, n_det)
    ev.process(['%d' % i for i in range(n_img)], list(pb), list(pl), list(ps),
               list(gtb), list(gtl), [None] * n_img)
    start = time.perf_counter()
    res = ev.evaluate()
    elapsed = time.perf_counter() - start
    assert res['num_images'] == n_img
    assert sum(res['num_det'].values()) == n_img * n_det
    assert 0.0 < res['mAP'] < 1.0
    assert elapsed < 20.0, elapsed
