"""The command-line tools as a user runs them: train, evaluate, devkit files, clear errors."""
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO

PY = sys.executable


def _run(args, timeout=300):
    return subprocess.run([PY] + args, capture_output=True, text=True, timeout=timeout,
                          cwd=str(REPO))


@pytest.fixture(scope='module')
def trained(synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp('tools') / 'run'
    res = _run(['tools/train_ssd.py', '--data-root', synthetic_root, '--train-split', 'train',
                '--val-split', 'val', '--network', 'tiny', '--data-shape', '64',
                '--no-pretrained-base', '--batch-size', '8', '--epochs', '2',
                '--num-workers', '0', '--out', str(out), '--set', 'model.width=8',
                '--set', 'train.optimizer=adam', '--set', 'train.progress=false'])
    assert res.returncode == 0, res.stderr[-3000:]
    assert re.search(r'best\.params = epoch \d+, mAP \d\.\d{4}', res.stdout)
    return out


def test_eval_prints_table_and_writes_devkit_files(trained, tmp_path):
    save = tmp_path / 'eval'
    res = _run(['tools/eval.py', '--params', str(trained / 'last.params'), '--save-dir',
                str(save)])
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.strip().splitlines()
    assert re.match(r'^mAP=\d\.\d{4}$', lines[-1]), lines[-1]
    printed = float(lines[-1].split('=')[1])
    for name in ('circle', 'cross', 'square', 'star', 'triangle'):
        assert any(line.split()[0] == name for line in lines if line.split()), name
    metrics = json.loads((save / 'metrics.json').read_text())
    assert abs(metrics['mAP'] - printed) < 1e-4
    assert metrics['split'] == 'val'  # the validation data recorded in model.json

    # the devkit files re-score to the same number, boxes 1-based inside the images
    from gluon_distill.data.voc import load_voc_records
    from gluon_distill.evaluation.voc07 import VOC07Evaluator, read_devkit_results
    classes = ['circle', 'cross', 'square', 'star', 'triangle']
    files = sorted(p.name for p in (save / 'results').iterdir())
    assert files == ['comp4_det_val_{}.txt'.format(c) for c in classes]
    records, _, _ = load_voc_records(metrics['data_root'], 'val', classes)
    sizes = {r.image_id: (r.width, r.height) for r in records}
    n_lines = 0
    for name in files:
        for line in (save / 'results' / name).read_text().splitlines():
            image_id, score, x1, y1, x2, y2 = line.split()
            w, h = sizes[image_id]
            assert 0 < float(score) <= 1
            assert 1 <= float(x1) <= float(x2) <= w and 1 <= float(y1) <= float(y2) <= h
            n_lines += 1
    assert n_lines > 0
    dets = read_devkit_results(str(save / 'results'), classes, split='val')
    ev = VOC07Evaluator(classes)
    for r in records:
        boxes, labels, scores = dets.get(r.image_id, (np.zeros((0, 4)), np.zeros(0, int),
                                                       np.zeros(0)))
        ev.process([r.image_id], [boxes], [labels], [scores], [r.boxes], [r.labels],
                   [r.difficult])
    assert abs(ev.evaluate()['mAP'] - metrics['mAP']) < 1e-4


def test_eval_on_a_root_with_other_classes_names_the_class(trained, synthetic_root, tmp_path):
    import shutil
    root = tmp_path / 'other'
    (root / 'Annotations').mkdir(parents=True)
    shutil.copytree(str(REPO / synthetic_root / 'JPEGImages'), str(root / 'JPEGImages'))
    for xml in sorted((REPO / synthetic_root / 'Annotations').iterdir())[:3]:
        text = re.sub(r'<name>\w+</name>', '<name>hexagon</name>', xml.read_text(), count=1)
        (root / 'Annotations' / xml.name).write_text(text)
    res = _run(['tools/eval.py', '--params', str(trained / 'best.params'), '--data-root',
                str(root), '--split', 'all'])
    assert res.returncode == 2
    assert 'hexagon' in res.stderr


def test_unknown_config_key_is_an_error_naming_it(synthetic_root, tmp_path):
    res = _run(['tools/train_ssd.py', '--data-root', synthetic_root, '--set',
                'train.learning_rate=0.1', '--out', str(tmp_path / 'x')])
    assert res.returncode == 2
    assert 'train.learning_rate' in res.stderr


def test_offline_pretrained_base_fails_with_one_clear_line(synthetic_root, tmp_path):
    res = _run(['tools/train_ssd.py', '--data-root', synthetic_root, '--train-split', 'train',
                '--val-split', 'val', '--network', 'resnet18_v1', '--data-shape', '128',
                '--pretrained-base', '--out', str(tmp_path / 'x'), '--num-workers', '0'])
    if res.returncode == 0:
        pytest.skip('the ImageNet weights are available on this machine')
    assert res.returncode == 2
    error = [l for l in res.stderr.splitlines() if l.startswith('error:')]
    assert len(error) == 1
    assert '.mxnet/models/resnet18_v1-' in error[0] and '--no-pretrained-base' in error[0]


def test_missing_voc_root_says_how_to_get_it(tmp_path):
    res = _run(['tools/train_ssd.py', '--data-root', str(tmp_path / 'nowhere'),
                '--out', str(tmp_path / 'x')])
    assert res.returncode == 2
    assert 'nowhere' in res.stderr and 'pascal_voc.py' in res.stderr
