"""Issue 12 (COCO): COCO-format data validated like VOC, AP@[.5:.95] equal to raw pycocotools
on the same detections (and not fooled by the traps that silently score 0), VOC <-> COCO
conversion, and the generated COCO set.

Real files in ``tmp_path``: hand-written JSONs and small JPEGs written with PIL.
"""
import copy
import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from gluon_distill.data.coco import (coco_box_to_corners, coco_split_paths, corners_to_coco_box,
                                     load_coco_records)
from gluon_distill.data.convert import coco_to_voc, voc_to_coco
from gluon_distill.data.synthetic_coco import SYNTHETIC_CATEGORY_IDS, make_synthetic_coco
from gluon_distill.data.voc import DatasetError, load_voc_records
from gluon_distill.evaluation.coco import COCOEvaluator, format_coco_table

pycocotools = pytest.importorskip('pycocotools')
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

SIZES = {1: (80, 60), 2: (64, 64), 5: (96, 48)}


def coco_dataset():
    """3 images; categories 7 (dog) and 3 (cat) listed out of id order; one crowd region."""
    anns = [(1, 1, 3, [10, 10, 30, 20]), (2, 1, 7, [45, 25, 20, 30]),
            (3, 2, 7, [5, 5, 40, 50]), (4, 5, 3, [20, 4, 50, 40]),
            (5, 5, 7, [60, 10, 20, 20], 1)]
    return {
        'images': [{'id': i, 'file_name': 'img{}.jpg'.format(i), 'width': w, 'height': h}
                   for i, (w, h) in SIZES.items()],
        'annotations': [{'id': a[0], 'image_id': a[1], 'category_id': a[2], 'bbox': a[3],
                         'area': a[3][2] * a[3][3], 'iscrowd': a[4] if len(a) > 4 else 0}
                        for a in anns],
        'categories': [{'id': 7, 'name': 'dog'}, {'id': 3, 'name': 'cat'}],
    }


def write_coco(tmp_path, data=None, images=True):
    """The JSON at tmp_path/ann.json and real JPEGs in tmp_path/img (sizes of SIZES)."""
    image_dir = tmp_path / 'img'
    image_dir.mkdir(exist_ok=True)
    if images:
        rng = np.random.RandomState(0)
        for i, (w, h) in SIZES.items():
            Image.fromarray(rng.randint(0, 256, (h, w, 3)).astype(np.uint8)).save(
                str(image_dir / 'img{}.jpg'.format(i)), quality=90)
    path = tmp_path / 'ann.json'
    path.write_text(json.dumps(coco_dataset() if data is None else data))
    return str(path), str(image_dir)


def test_records_keep_category_ids_and_pixel_convention(tmp_path):
    path, images = write_coco(tmp_path)
    records, classes, ids, report = load_coco_records(path, images)
    assert not report.problems, report.summary()
    assert classes == ['cat', 'dog'] and ids == [3, 7]  # sorted category-id order
    by_id = {r.image_id: r for r in records}
    assert sorted(by_id) == ['1', '2', '5']
    np.testing.assert_array_equal(by_id['1'].boxes, [[10, 10, 39, 29], [45, 25, 64, 54]])
    np.testing.assert_array_equal(by_id['1'].labels, [0, 1])
    assert (by_id['1'].width, by_id['1'].height) == (80, 60)
    # the crowd region: kept as "difficult" for validation, never a training target
    np.testing.assert_array_equal(by_id['5'].difficult, [False, True])
    train, _, _, _ = load_coco_records(path, images, keep_crowd=False)
    assert len({r.image_id: r for r in train}['5'].labels) == 1
    # x2 = x + w - 1 and back: exact
    assert coco_box_to_corners([10, 20, 30, 40]) == [10, 20, 39, 59]
    assert corners_to_coco_box([10, 20, 39, 59]) == [10, 20, 30, 40]


def _mutate(kind):
    data = coco_dataset()
    if kind == 'missing_image':
        data['images'][1]['file_name'] = 'nowhere.jpg'
    elif kind == 'box_outside_image':
        data['annotations'][2]['bbox'] = [70, 70, 10, 10]          # image 2 is 64x64
    elif kind == 'boxes_clipped':
        data['annotations'][2]['bbox'] = [5, 5, 70, 50]
    elif kind == 'boxes_dropped_zero_area':
        data['annotations'][2]['bbox'] = [5, 5, 0, 50]
    elif kind == 'unknown_category':
        data['annotations'][2]['category_id'] = 1
    elif kind == 'missing_iscrowd':
        del data['annotations'][2]['iscrowd']
    elif kind == 'duplicate_image_id':
        data['images'].append(dict(data['images'][0], file_name='img5.jpg'))
    elif kind == 'duplicate_annotation_id':
        data['annotations'][2]['id'] = 1
    elif kind == 'unknown_image':
        data['annotations'][2]['image_id'] = 99
    return data


@pytest.mark.parametrize('kind, severity, shown, names', [
    ('missing_image', 'fatal', 'missing_image', 'image id 2'),
    ('box_outside_image', 'fatal', 'box_outside_image', 'annotation id 3'),
    ('boxes_clipped', 'fixed', 'boxes_clipped', 'annotation id 3'),
    ('boxes_dropped_zero_area', 'fixed', 'boxes_dropped_zero_area', 'annotation id 3'),
    ('unknown_category', 'fatal', 'unknown_category', 'annotation id 3'),
    ('missing_iscrowd', 'warning', 'missing_iscrowd', 'annotation id 3'),
    ('duplicate_image_id', 'fatal', 'duplicate_id', 'image id 1'),
    ('duplicate_annotation_id', 'fatal', 'duplicate_id', 'annotation id 1'),
    ('unknown_image', 'fatal', 'unknown_image', 'annotation id 3'),
])
def test_every_problem_is_named_with_file_and_id(tmp_path, kind, severity, shown, names):
    path, images = write_coco(tmp_path, _mutate(kind))
    records, _, _, report = load_coco_records(path, images)
    found = [p for p in report.problems if p.kind == shown]
    assert len(found) == 1, report.summary()
    assert found[0].severity == severity
    assert found[0].path == path and names in found[0].message, str(found[0])
    assert bool(report.fatal()) == (severity == 'fatal')
    if severity == 'fatal':
        with pytest.raises(DatasetError, match=shown):
            report.raise_if_fatal()
    if kind == 'boxes_clipped':
        np.testing.assert_array_equal({r.image_id: r for r in records}['2'].boxes,
                                      [[5, 5, 63, 54]])


def test_missing_image_skipped_and_malformed_json(tmp_path):
    path, images = write_coco(tmp_path, _mutate('missing_image'))
    records, _, _, report = load_coco_records(path, images, on_bad_image='skip')
    assert not report.fatal() and sorted(r.image_id for r in records) == ['1', '5']
    truncated = tmp_path / 'broken.json'
    truncated.write_text(json.dumps(coco_dataset())[:-40])
    _, _, _, report = load_coco_records(str(truncated), images)
    assert [p.kind for p in report.fatal()] == ['malformed_json']
    assert str(truncated) in str(report.fatal()[0])


def test_check_dataset_tool_reads_coco(tmp_path, capsys):
    """tools/check_dataset.py: a COCO file (--annotations/--images) and a COCO root (every
    split); exit 1 naming the file and the ids of a broken one, 0 with the category ids of a
    good one. In-process (main), one real command line."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('check_dataset',
                                                  str(REPO / 'tools' / 'check_dataset.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)

    def check(*args):
        try:
            code = tool.main([str(a) for a in args])
        except SystemExit as e:
            code = e.code
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)
    path, images = write_coco(tmp_path)
    ok = check('--annotations', path, '--images', images)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert '3 images, 5 objects' in ok.stdout and 'category ids: cat 3, dog 7' in ok.stdout
    (tmp_path / 'bad').mkdir()
    bad_path, _ = write_coco(tmp_path / 'bad', _mutate('unknown_category'), images=False)
    bad = subprocess.run([sys.executable, str(REPO / 'tools' / 'check_dataset.py'),
                          '--annotations', bad_path, '--images', images],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1
    assert 'unknown_category' in bad.stdout and bad_path in bad.stdout
    assert 'annotation id 3 (image id 2)' in bad.stdout
    root = tmp_path / 'coco'
    (root / 'annotations').mkdir(parents=True)
    os.symlink(images, str(root / 'val2017'))
    os.symlink(images, str(root / 'train2017'))
    os.symlink(path, str(root / 'annotations' / 'instances_train2017.json'))
    os.symlink(bad_path, str(root / 'annotations' / 'instances_val2017.json'))
    both = check(root)
    assert both.returncode == 1
    assert 'instances_train2017.json' in both.stdout and 'instances_val2017.json' in both.stdout
    assert check(root, '--split', 'train2017').returncode == 0
    missing = check(root, '--split', 'test2017')
    assert missing.returncode == 1 and 'splits available: train2017, val2017' in missing.stderr
    usage = check('--annotations', path)
    assert usage.returncode == 2 and '--images' in usage.stderr


# ----------------------------------------------------------------------------- evaluation

def raw_cocoeval(gt_path, detections):
    """AP@[.5:.95] of raw pycocotools on the given results list (as a user would run it)."""
    gt = COCO(gt_path)
    ev = COCOeval(gt, gt.loadRes(copy.deepcopy(detections)), 'bbox')
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return float(ev.stats[0])


def gt_predictions(data, shift=0.0, seed=0):
    """Per image: corners, labels (contiguous) and scores of every non-crowd box, x shifted by
    ``shift`` * width."""
    ids = sorted(c['id'] for c in data['categories'])
    per_image = {img['id']: ([], [], []) for img in data['images']}
    rng = np.random.RandomState(seed)
    for ann in data['annotations']:
        if ann.get('iscrowd'):
            continue
        x, y, w, h = ann['bbox']
        boxes, labels, scores = per_image[ann['image_id']]
        boxes.append(coco_box_to_corners([x + shift * w, y, w, h]))
        labels.append(ids.index(ann['category_id']))
        scores.append(float(rng.uniform(0.5, 1)))
    return per_image


def our_ap(gt_path, per_image, order=None):
    ev = COCOEvaluator(gt_path, [3, 7])
    for image_id in order or list(per_image):
        ev.process([image_id], *[[v] for v in per_image[image_id]])
    return ev.evaluate(), ev


@pytest.mark.parametrize('shift', [0.0, 0.15])
def test_ap_equals_raw_cocoeval_and_results_file_loads(tmp_path, shift):
    path, _ = write_coco(tmp_path, images=False)
    result, ev = our_ap(path, gt_predictions(coco_dataset(), shift))
    out = ev.write_results(str(tmp_path / 'results.json'))
    saved = json.load(open(out))
    assert set(saved[0]) == {'image_id', 'category_id', 'bbox', 'score'}
    assert {d['category_id'] for d in saved} == {3, 7}
    raw = raw_cocoeval(path, out)  # pycocotools' loadRes reads our file
    assert result['AP'] == pytest.approx(raw, abs=1e-12)
    if shift == 0:
        assert result['AP'] == 1.0 and result['AP50'] == 1.0
        # a perfect prediction is written as exactly the annotation's bbox
        gt_boxes = sorted(tuple(a['bbox']) for a in coco_dataset()['annotations']
                          if not a['iscrowd'])
        assert sorted(tuple(d['bbox']) for d in saved) == gt_boxes
    else:
        assert 0.3 < result['AP'] < 0.7 and result['AP50'] == 1.0


def test_category_ids_and_image_order_traps(tmp_path):
    path, _ = write_coco(tmp_path, images=False)
    per_image = gt_predictions(coco_dataset())
    result, ev = our_ap(path, per_image)
    assert result['AP'] == 1.0
    assert result['AP_per_class'] == {'cat': 1.0, 'dog': 1.0}
    # the trap: contiguous ids (label + 1) instead of the JSON's 3 and 7 score 0, no error
    contiguous = [dict(d, category_id=[3, 7].index(d['category_id']) + 1) for d in ev.results()]
    assert raw_cocoeval(path, contiguous) == 0.0
    # predictions given in any image order score the same (assembled by image id)
    for seed in range(3):
        order = list(per_image)
        random.Random(seed).shuffle(order)
        assert our_ap(path, per_image, order)[0]['AP'] == result['AP']
    # a record's string id is the same image
    ev.reset()
    ev.process(['1'], *[[v] for v in per_image[1]])
    with pytest.raises(ValueError, match='already processed'):
        ev.process([1], *[[v] for v in per_image[1]])
    with pytest.raises(ValueError, match='not an image'):
        ev.process([42], [np.zeros((0, 4))], [[]], [[]])


def test_missing_iscrowd_and_table(tmp_path):
    data = coco_dataset()
    for ann in data['annotations']:
        del ann['iscrowd'], ann['area']
    data['annotations'] = data['annotations'][:4]
    path, _ = write_coco(tmp_path, data, images=False)
    with pytest.raises(KeyError):  # what raw pycocotools does with such a file
        raw_cocoeval(path, [{'image_id': 1, 'category_id': 3, 'bbox': [10, 10, 30, 20],
                             'score': 1.0}])
    result, _ = our_ap(path, gt_predictions(data))
    assert result['AP'] == 1.0
    table = format_coco_table(result, ['cat', 'dog'])
    assert table.splitlines()[-1] == 'AP=1.0000'
    for text in ('AP @[IoU=.50]', 'AP @[IoU=.75]', 'AP small', 'AP medium', 'AP large'):
        assert text in table


# ----------------------------------------------------------------------------- conversion

def _same_records(a, b):
    a, b = sorted(a, key=lambda r: r.image_id), sorted(b, key=lambda r: r.image_id)
    assert [os.path.basename(r.image_path) for r in a] == \
        [os.path.basename(r.image_path) for r in b]
    for ra, rb in zip(a, b):
        np.testing.assert_array_equal(ra.boxes, rb.boxes)
        np.testing.assert_array_equal(ra.labels, rb.labels)
        np.testing.assert_array_equal(ra.difficult, rb.difficult)
        assert (ra.width, ra.height) == (rb.width, rb.height)


def test_synthetic_coco_and_voc_coco_round_trip(tmp_path):
    root = make_synthetic_coco(str(tmp_path / 'syn'), num_train=6, num_val=4,
                               size_range=(64, 80), seed=1, difficult_fraction=0.3)
    json_path, images = coco_split_paths(root, 'val')
    written = os.path.getmtime(json_path)
    assert make_synthetic_coco(root, num_train=6, num_val=4, size_range=(64, 80), seed=1,
                               difficult_fraction=0.3) == root
    assert os.path.getmtime(json_path) == written  # reused, not rewritten
    voc, voc_classes, _ = load_voc_records(root, 'val')
    coco, classes, ids, report = load_coco_records(json_path, images)
    assert not report.fatal() and classes == voc_classes
    assert ids == list(SYNTHETIC_CATEGORY_IDS[:len(ids)]) or set(ids) <= set(SYNTHETIC_CATEGORY_IDS)
    _same_records(voc, coco)
    assert any(r.difficult.any() for r in coco)  # the VOC flag survives as "difficult": 1
    # COCO -> VOC -> COCO gives the same records and the same category ids
    out, n_images, _ = coco_to_voc(json_path, images, str(tmp_path / 'back'))
    back, _, _ = load_voc_records(out, 'trainval', classes)
    _same_records(coco, back)
    again, images_again, _, _ = voc_to_coco(out, 'trainval', str(tmp_path / 'again.json'),
                                            classes, ids)
    records, _, ids_again, _ = load_coco_records(again, images_again)
    assert ids_again == ids
    _same_records(coco, records)


def test_convert_tool_refuses_bad_input_and_converts(tmp_path):
    path, images = write_coco(tmp_path, _mutate('unknown_category'))
    cmd = [sys.executable, str(REPO / 'tools' / 'convert.py'), 'coco2voc', '--annotations',
           path, '--images', images, '--out', str(tmp_path / 'voc')]
    bad = subprocess.run(cmd, capture_output=True, text=True)
    assert bad.returncode == 2 and 'unknown_category' in bad.stderr
    write_coco(tmp_path)
    ok = subprocess.run(cmd, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert 'wrote VOC root' in ok.stdout
    records, classes, _ = load_voc_records(str(tmp_path / 'voc'), 'trainval')
    assert classes == ['cat', 'dog'] and len(records) == 3


def test_gluoncv_coco_layout_and_config_keys(tmp_path):
    """A root like ~/.mxnet/datasets/coco is recognised with the default (VOC) config, its
    default validation split meaning val2017; data.format only takes voc or coco."""
    from gluon_distill.config import ConfigError, config_from
    from gluon_distill.data.datasets import build_datasets
    root = tmp_path / 'coco'
    (root / 'annotations').mkdir(parents=True)
    path, images = write_coco(tmp_path)
    os.rename(images, str(root / 'val2017'))
    os.rename(path, str(root / 'annotations' / 'instances_val2017.json'))
    cfg = config_from({'data.root': str(root)})
    assert cfg.data.format == 'voc' and cfg.data.val_split == '2007_test'
    bundle = build_datasets(cfg.data, need_train=False, progress=False)
    assert bundle.classes == ['cat', 'dog'] and bundle.category_ids == [3, 7]
    assert cfg.data.category_ids == [3, 7] and len(bundle.val) == 3
    assert any("'val2017' is used" in n for n in bundle.reports['val'].notes)
    with pytest.raises(ConfigError, match='data.format'):
        config_from({'data.format': 'yolo'})
    with pytest.raises(DatasetError, match='instances_test2017.json'):
        build_datasets(config_from({'data.root': str(root), 'data.val_split': 'test2017'}).data,
                       need_train=False, progress=False)


def test_validation_metric_follows_the_data(tmp_path, synthetic_root):
    """eval.metric: auto is COCO AP on COCO data and VOC07 on VOC data; voc07 can be asked
    for on COCO data, coco on VOC data is refused by name; other values are refused."""
    from gluon_distill.config import ConfigError, config_from
    from gluon_distill.evaluation.coco import COCOValidationEvaluator, validation_evaluator
    path, images = write_coco(tmp_path)
    coco = config_from({'data.annotations': path, 'data.images': images,
                        'data.val_split': 'all'})
    evaluator = validation_evaluator(coco.eval, coco.data, tmp_path, [3, 7], ['cat', 'dog'])
    assert isinstance(evaluator, COCOValidationEvaluator)
    data = coco_dataset()
    for image in data['images']:  # every ground-truth box predicted exactly
        anns = [a for a in data['annotations'] if a['image_id'] == image['id']]
        evaluator.process([image['id']], [[coco_box_to_corners(a['bbox']) for a in anns]],
                          [[[3, 7].index(a['category_id']) for a in anns]],
                          [[0.9] * len(anns)])
    result = evaluator.evaluate()
    assert result['metric'] == 'coco' and result['mAP'] == pytest.approx(1.0)
    assert set(result['AP']) == {'cat', 'dog'} and 'AP50' in result
    coco.eval.metric = 'voc07'
    assert validation_evaluator(coco.eval, coco.data, tmp_path, [3, 7], ['cat', 'dog']) is None
    voc = config_from({'data.root': synthetic_root, 'eval.metric': 'coco'})
    with pytest.raises(ConfigError, match='eval.metric=coco needs COCO-format data'):
        validation_evaluator(voc.eval, voc.data, synthetic_root, None, ['a'])
    voc.eval.metric = 'auto'
    assert validation_evaluator(voc.eval, voc.data, synthetic_root, None, ['a']) is None
    with pytest.raises(ConfigError, match='eval.metric'):
        config_from({'eval.metric': 'map'})


# ----------------------------------------------------------------------------- end to end

def test_coco_root_trains_distils_on_two_devices_and_evaluates(tmp_path):
    """The generated COCO set: train 1 epoch on cpu:0,1, then eval's COCO path equals raw
    pycocotools on the results file it wrote, from the root and from data.annotations; a
    student distilled from it on the same data evaluates the same way."""
    from conftest import tiny_config
    from gluon_distill.evaluate import evaluate_params
    from gluon_distill.training import train_detector
    root = make_synthetic_coco(str(tmp_path / 'syn'), num_train=24, num_val=8,
                               size_range=(64, 96), seed=5)
    out = tmp_path / 'run'
    train_detector(tiny_config(root, out, **{'data.format': 'coco', 'train.ctx': 'cpu:0,1',
                                             'train.lr': 0.005}))
    spec = json.load(open(out / 'model.json'))
    assert spec['data']['format'] == 'coco'
    assert spec['data']['category_ids'] == list(SYNTHETIC_CATEGORY_IDS)
    result, table = evaluate_params(str(out / 'last.params'), ctx='cpu', progress=False,
                                    save_dir=str(tmp_path / 'eval'))
    assert table.splitlines()[-1] == 'AP=%.4f' % result['AP']
    # per-epoch validation on COCO data is COCO AP (eval.metric auto): what eval.py reports
    val = [json.loads(line) for line in open(out / 'metrics.jsonl') if '"val"' in line][-1]
    assert val['mAP'] == pytest.approx(result['AP'], rel=1e-6, abs=1e-12)
    assert val['AP'] == pytest.approx({c: None if np.isnan(v) else v
                                       for c, v in result['AP_per_class'].items()}, abs=1e-6)
    results = json.load(open(tmp_path / 'eval' / 'results.json'))
    val_json, images = coco_split_paths(root, 'val')
    assert result['num_images'] == 8 and result['num_images_not_processed'] == 0
    if results:
        assert {d['category_id'] for d in results} <= set(SYNTHETIC_CATEGORY_IDS)
        assert result['AP'] == pytest.approx(raw_cocoeval(val_json, results), abs=1e-12)
    else:
        assert result['AP'] == 0.0
    # any user's JSON + image folder: the same file read whole gives the same number
    other, _ = evaluate_params(str(out / 'last.params'), ctx='cpu', progress=False,
                               overrides=['data.annotations=' + val_json,
                                          'data.images=' + images])
    assert other['AP'] == result['AP'] and other['split'] == 'all'
    cmd = [sys.executable, str(REPO / 'tools' / 'eval.py'), '--params', str(out / 'last.params'),
           '--set', 'data.format=coco', '--set', 'data.annotations=' + val_json,
           '--set', 'data.images=' + images]
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert lines[-1] == 'AP=%.4f' % result['AP'] and 'AP @[IoU=.75]' in run.stdout
    bad = subprocess.run(cmd[:4] + ['--set', 'train.epochs=3'], capture_output=True, text=True)
    assert bad.returncode == 2 and 'data.KEY=VALUE' in bad.stderr
    # distillation from that teacher on the same COCO data, then eval of the student
    from gluon_distill.distill.run import train_distilled
    student = tmp_path / 'student'
    summary = train_distilled(tiny_config(root, student, **{
        'data.format': 'coco', 'train.ctx': 'cpu:0,1', 'teacher.params': str(out / 'last.params'),
        'distill.gan.critic_width': 16}))
    spec = json.load(open(student / 'model.json'))
    assert spec['data']['category_ids'] == list(SYNTHETIC_CATEGORY_IDS)
    distilled, table = evaluate_params(summary['student'], ctx='cpu', progress=False)
    assert table.splitlines()[-1] == 'AP=%.4f' % distilled['AP']
    assert distilled['num_images'] == 8
    val = [json.loads(line) for line in open(student / 'metrics.jsonl') if '"val"' in line][-1]
    assert val['mAP'] == pytest.approx(distilled['AP'], rel=1e-6, abs=1e-12)
    # --resume: data.category_ids, unset on the command line and filled from the JSON, is
    # neither refused nor reported as a changed setting
    resumed = train_detector(tiny_config(root, out, **{
        'data.format': 'coco', 'train.ctx': 'cpu:0,1', 'train.lr': 0.005, 'train.epochs': 2,
        'train.resume': True}))
    assert resumed['last_epoch'] == 1
    log = (out / 'train.log').read_text()
    assert 'resumed from' in log and 'category_ids' not in log, log
    assert json.load(open(out / 'model.json'))['data']['category_ids'] == \
        list(SYNTHETIC_CATEGORY_IDS)
