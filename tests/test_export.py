"""Shipping: export round-trips (MXNet symbol, ONNX), folding on export, detect.py drawing.

Demo-sized networks (tiny, 64 px). Tolerances: raw outputs (class logits, box offsets) within
1e-3 (absolute, relative above magnitude 1); detections the same class, scores within 1e-4,
boxes within 1e-2 px; the folded export within 1e-4 of the unfolded network's raw outputs.
"""
import json
import subprocess
import sys

import numpy as np
import pytest

import gluon_distill  # noqa: F401
import mxnet as mx

from conftest import REPO, tiny_config
from gluon_distill.data.datasets import build_datasets
from gluon_distill.models.teacher import Teacher, plan_student
from gluon_distill.export import (ExportError, RawSSD, detections_agree, export_detector,
                                  load_mxnet, verify_input)
from gluon_distill.models.io import model_spec, write_model_json
from gluon_distill.models.ssd import anchors_of, build_ssd, initialize, resolve_arch

SIZE = 64


@pytest.fixture(scope='module')
def models(synthetic_root, tmp_path_factory):
    """A tiny SSD trained one epoch (teacher) and a distilled student composed from it
    (adapters + teacher-initialised head), both saved with their model.json."""
    from gluon_distill.training import train_detector
    out = tmp_path_factory.mktemp('export_teacher')
    cfg = tiny_config(synthetic_root, out, **{'model.width': 16})
    train_detector(cfg)
    from gluon_distill.models.io import load_detector
    teacher_net, tspec = load_detector(str(out / 'last.params'))
    ds = build_datasets(cfg.data, progress=False)
    teacher = Teacher(teacher_net, resolve_arch('tiny', SIZE, width=16), ds.classes,
                      tspec['mean'], tspec['std'], 'teacher')
    scfg = tiny_config(synthetic_root, out, **{'model.width': 8})
    mx.random.seed(3)
    plan = plan_student(teacher, scfg.model, ds.classes, [mx.cpu()])
    anchors_of(plan.net, SIZE)
    sdir = tmp_path_factory.mktemp('export_student')
    spec = model_spec(teacher.arch, ds.classes, tspec['mean'], tspec['std'], {},
                      'distilled_ssd', {'student_arch': plan.arch.to_dict(), 'adapters': {
                          'student_channels': plan.student_channels,
                          'teacher_channels': plan.teacher_channels, 'folded': False}})
    plan.net.save_parameters(str(sdir / 'student.params'))
    write_model_json(str(sdir), spec)
    return {'teacher': out / 'last.params', 'student': sdir / 'student.params',
            'root': synthetic_root, 'classes': ds.classes}


def _reference(params, x):
    from gluon_distill.models.io import load_detector
    net, spec = load_detector(str(params))
    with mx.autograd.predict_mode():
        cls, box, _ = RawSSD(net)(mx.nd.array(x))
        dets = net(mx.nd.array(x))
    return net, spec, (cls.asnumpy(), box.asnumpy()), tuple(d.asnumpy() for d in dets)


def test_mxnet_export_round_trip_without_gluon_distill(models, tmp_path):
    out = tmp_path / 'mx'
    info = export_detector(str(models['teacher']), str(out), ['mxnet'])
    assert info['verification'][0]['ok'] and info['verification'][0]['detections'] > 0
    # a fresh interpreter with only mxnet: SymbolBlock.imports, same detections
    x = verify_input(SIZE, info['mean'], info['std'], batch=2, seed=7)
    np.save(str(tmp_path / 'x.npy'), x)
    # NumPy >= 1.24 (Python 3.12, no older wheel) lacks the aliases MXNet 1.9.1 imports: a
    # deployment there restores them first, in two lines of its own (docs/deploy.md)
    aliases = ('import numpy as np\n'
               'for k, v in dict(bool=bool, int=int, float=float, complex=complex, '
               'object=object, str=str).items(): np.__dict__.setdefault(k, v)\n')
    code = aliases + ('import sys, numpy as np, mxnet as mx; from mxnet import gluon\n'
            'net = gluon.SymbolBlock.imports("{0}/model-symbol.json", ["data"], '
            '"{0}/model-0000.params")\n'
            'out = net(mx.nd.array(np.load("{1}")))\n'
            'np.savez("{2}", *[o.asnumpy() for o in out])\n'
            'assert "gluon_distill" not in sys.modules\n').format(out, tmp_path / 'x.npy',
                                                                  tmp_path / 'y.npz')
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=120, cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr[-2000:]
    got = np.load(str(tmp_path / 'y.npz'))
    got = (got['arr_0'], got['arr_1'], got['arr_2'])
    _, _, _, ref = _reference(models['teacher'], x)
    ok, why = detections_agree(ref, got, score_tol=1e-4, box_tol=1e-2)
    assert ok, why
    assert (got[0] >= 0).any()


def test_onnx_export_same_detections_full_optimisation(models, tmp_path):
    pytest.importorskip('onnxruntime')
    import onnx
    from gluon_distill.export import onnx_session, run_onnx
    out = tmp_path / 'onnx'
    info = export_detector(str(models['teacher']), str(out), ['onnx'])
    assert info['onnx']['opset'] == 13
    model = onnx.load(str(out / 'model.onnx'))
    assert [o.version for o in model.opset_import if o.domain in ('', 'ai.onnx')] == [13]
    names = [n.name for n in model.graph.node]
    assert all(names) and len(set(names)) == len(names)      # the duplicate-name fix
    x = verify_input(SIZE, info['mean'], info['std'], batch=3, seed=11)   # dynamic batch
    _, _, raw, ref = _reference(models['teacher'], x)
    for level in ('basic', 'all'):
        o = run_onnx(onnx_session(str(out / 'model.onnx'), level=level), x)
        np.testing.assert_allclose(o['cls_preds'], raw[0], atol=1e-3, rtol=1e-4)
        np.testing.assert_allclose(o['box_preds'], raw[1], atol=1e-3, rtol=1e-4)
        ok, why = detections_agree(ref, (o['ids'], o['scores'], o['boxes']))
        assert ok, (level, why)


def test_distilled_student_exports_folded_and_matches_unfolded(models, tmp_path):
    pytest.importorskip('onnxruntime')
    from gluon_distill.export import onnx_session, run_onnx
    out = tmp_path / 'student'
    info = export_detector(str(models['student']), str(out), ['mxnet', 'onnx'])
    assert info['kind'] == 'distilled_ssd' and info['adapters_folded']
    assert all(r['ok'] for r in info['verification'])
    # the exported graph has no adapter parameters; predictors read the student's channels
    saved = mx.nd.load(str(out / 'model-0000.params'))
    assert not [k for k in saved if 'adapter' in k]
    x = verify_input(SIZE, info['mean'], info['std'], batch=2, seed=5)
    net, spec, raw, ref = _reference(models['student'], x)
    assert net.features.adapters is not None                   # the reference is unfolded
    n_unfolded = sum(v.data().size for k, v in net.collect_params().items())
    n_folded = sum(v.size for k, v in saved.items())
    assert n_folded < n_unfolded
    raw_block = load_mxnet(str(out), raw=True)
    cls, box, _ = raw_block(mx.nd.array(x))
    np.testing.assert_allclose(cls.asnumpy(), raw[0], atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(box.asnumpy(), raw[1], atol=1e-4, rtol=1e-4)
    o = run_onnx(onnx_session(str(out / 'model.onnx')), x)
    np.testing.assert_allclose(o['cls_preds'], raw[0], atol=1e-4, rtol=1e-4)
    ok, why = detections_agree(ref, (o['ids'], o['scores'], o['boxes']))
    assert ok, why
    meta = json.loads((out / 'deploy.json').read_text())
    assert meta['adapters_folded'] and meta['classes'] == models['classes']


def test_verification_fails_loudly_on_a_wrong_export(models, tmp_path):
    out = tmp_path / 'bad'
    export_detector(str(models['teacher']), str(out), ['mxnet'], verify=False)
    # corrupt one predictor bias in the exported params
    path = str(out / 'model-0000.params')
    saved = mx.nd.load(path)
    key = [k for k in saved if 'predictor' in k and k.endswith('bias')][0]
    saved[key] = saved[key] + 1.0
    mx.nd.save(path, saved)
    from gluon_distill.export import verify_export
    from gluon_distill.models.io import load_detector
    net, spec = load_detector(str(models['teacher']))
    with pytest.raises(ExportError, match='disagrees'):
        verify_export(net, spec, str(out), ['mxnet'])
    res = subprocess.run([sys.executable, str(REPO / 'tools' / 'export.py'), '--params',
                          str(models['teacher']), '--format', 'mxnet', '--out',
                          str(tmp_path / 'ok')], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert 'verified' in res.stdout and 'mxnet-symbol' in res.stdout


def test_detect_draws_known_boxes(tmp_path):
    """A detector whose detections are known: all predictor weights zero, the background
    logit 10 everywhere and class 'b' 30 on anchor 0 of the fourth map (one cell at 64 px):
    exactly one detection, class 'b', score ~1, box = that anchor (zero offsets)."""
    from PIL import Image
    from gluon_distill.models.student import feature_shapes
    classes = ['a', 'b']
    arch = resolve_arch('tiny', SIZE, width=8)
    net = build_ssd(arch, classes)
    initialize(net, [mx.cpu()])
    anchors = anchors_of(net, SIZE).asnumpy()[0]
    for cp, bp in zip(net.class_predictors, net.box_predictors):
        for p in (cp.predictor.weight, cp.predictor.bias, bp.predictor.weight,
                  bp.predictor.bias):
            p.set_data(mx.nd.zeros(p.shape))
        bias = np.zeros(cp.predictor.bias.shape, np.float32)
        bias[0::3] = 10.0                           # background wins everywhere ...
        cp.predictor.bias.set_data(mx.nd.array(bias))
    shapes = feature_shapes(net.features, SIZE, mx.cpu())
    per_cell = [cp.predictor.bias.shape[0] // 3 for cp in net.class_predictors]
    k = 3
    assert shapes[k][1:] == (1, 1)
    bias = net.class_predictors[k].predictor.bias.data().asnumpy()
    bias[0 * 3 + 2] = 30.0                          # ... except class 'b' on one anchor
    net.class_predictors[k].predictor.bias.set_data(mx.nd.array(bias))
    index = sum(h * w * a for (_, h, w), a in zip(shapes[:k], per_cell[:k]))
    cx, cy, w, h = anchors[index]
    out = tmp_path / 'model'
    out.mkdir()
    net.save_parameters(str(out / 'm.params'))
    write_model_json(str(out), model_spec(arch, classes, [0.5] * 3, [0.25] * 3, {}))
    img = np.full((96, 128, 3), 128, np.uint8)       # original 128 x 96: boxes scale 2, 1.5
    Image.fromarray(img).save(str(tmp_path / 'grey.jpg'))
    expected = np.array([(cx - w / 2) * 2, (cy - h / 2) * 1.5, (cx + w / 2) * 2,
                         (cy + h / 2) * 1.5])
    res = subprocess.run([sys.executable, str(REPO / 'tools' / 'detect.py'), '--params',
                          str(out / 'm.params'), str(tmp_path / 'grey.jpg'), '--out',
                          str(tmp_path / 'det'), '--thresh', '0.5'],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.strip().splitlines()
    assert ': 1 detection ->' in lines[0], res.stdout
    cls, score, x1, y1, x2, y2 = lines[1].split()
    assert cls == 'b' and float(score) > 0.99
    got = np.array([float(v) for v in (x1, y1, x2, y2)])
    np.testing.assert_allclose(got, expected, atol=0.1)
    assert 0 < expected[0] and expected[2] < 128 and 0 < expected[1] and expected[3] < 96
    drawn = np.asarray(Image.open(str(tmp_path / 'det' / 'grey.png')).convert('RGB'))
    assert drawn.shape[:2] == img.shape[:2]
    changed = np.abs(drawn.astype(int) - 128).sum(axis=2) > 60
    # the box outline: coloured pixels along its left and right edges, none far outside it
    rows = slice(int(expected[1]) + 25, int(expected[3]) - 2)   # below the label
    for edge in (expected[0], expected[2]):
        cols = slice(max(int(edge) - 3, 0), int(edge) + 4)
        assert changed[rows, cols].any(axis=1).mean() > 0.9, edge
    ys, xs = np.nonzero(changed[int(expected[1]) + 20:])     # below the label's text box
    assert xs.min() >= expected[0] - 4 and xs.max() <= expected[2] + 4
    assert ys.max() + int(expected[1]) + 20 <= expected[3] + 4
