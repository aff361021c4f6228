"""The shipped detector on its own: gluon_distill.runtime, detect/eval --model, INT8.

* the runtime runs an export folder (ONNX with MXNet absent too; MXNet symbol) in a process
  where GluonCV and gluon_distill's training code cannot be imported, and ``tools/detect.py
  --model DIR`` gives the detections of ``tools/detect.py --params``;
* ``tools/eval.py --model DIR`` prints the ``.params``' mAP, within 0.001 (the stated
  tolerance; measured: equal), on generated data and on the raccoon photos for a distilled SSD
  student (ONNX and MXNet symbol) and for a Faster R-CNN through its symbol export (devkit
  files identical); COCO AP on COCO-format data;
* ``tools/export.py --quantize int8`` calibrates on the source named (a folder of images, a VOC
  or COCO root, the recorded training split), writes a QDQ model whose post-processing stays
  float, records its calibration and mAP verification, and removes it when the drop is too
  large;
* the runtime's preprocessing is the evaluation's (GluonCV's SSD and Faster R-CNN transforms);
* the tools' refusals.

Tests on the photos skip when /work/shared/data/raccoon is absent.
"""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import gluon_distill  # noqa: F401
import mxnet as mx

from conftest import REPO, SHARED_RACCOON, detect_output, tiny_config, tool

BLOCKED = ('gluoncv', 'gluon_distill.training', 'gluon_distill.engine', 'gluon_distill.models',
           'gluon_distill.distill', 'gluon_distill.families', 'gluon_distill.data',
           'gluon_distill.evaluation', 'gluon_distill.export')
#: |mAP(export) - mAP(.params)| allowed for the float files (docs/deploy.md, "The runtime")
MAP_TOL = 1e-3


def need_raccoon():
    if not SHARED_RACCOON.is_dir():
        pytest.skip('raccoon data not found at {}'.format(SHARED_RACCOON))


def last_metric(text):
    """The value of the last ``mAP=`` / ``AP=`` line of a tool's output."""
    found = re.findall(r'^(?:mAP|AP)=([0-9.]+|nan)$', text, re.M)
    assert found, text[-2000:]
    return float(found[-1])


def same_detections(a, b, score_tol=1e-3, box_tol=0.15):
    assert set(a) == set(b)
    for path in a:
        assert len(a[path]) == len(b[path]), path
        for (c1, s1, b1), (c2, s2, b2) in zip(sorted(a[path], key=lambda d: -d[1]),
                                              sorted(b[path], key=lambda d: -d[1])):
            assert c1 == c2 and abs(s1 - s2) <= score_tol, (path, c1, s1, c2, s2)
            assert np.abs(b1 - b2).max() <= box_tol, (path, b1, b2)


def run_eval(args, capsys):
    capsys.readouterr()
    assert tool('eval')(args) == 0
    return last_metric(capsys.readouterr().out)


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope='module')
def synthetic_export(synthetic_root, tmp_path_factory):
    """A tiny SSD trained one epoch on the generated data, exported in both formats."""
    pytest.importorskip('onnxruntime')
    from gluon_distill.export import export_detector
    from gluon_distill.training import train_detector
    out = tmp_path_factory.mktemp('rt_train')
    train_detector(tiny_config(synthetic_root, out, **{'model.width': 16, 'train.epochs': 10,
                                                       'train.lr': 0.005}))
    export = tmp_path_factory.mktemp('rt_export')
    export_detector(str(out / 'last.params'), str(export), ['mxnet', 'onnx'])
    images = sorted((os.path.join(synthetic_root, 'JPEGImages', n)
                     for n in os.listdir(os.path.join(synthetic_root, 'JPEGImages'))))[:3]
    return {'params': out / 'last.params', 'export': export, 'images': images}


@pytest.fixture(scope='module')
def raccoon_student(tmp_path_factory):
    """A tiny SSD teacher trained 4 epochs on the raccoon photos at 128 px and a head-only
    distilled student (2 epochs) of half its width: a real, if weak, detector."""
    need_raccoon()
    pytest.importorskip('onnxruntime')
    base = tmp_path_factory.mktemp('rt_raccoon')
    common = ['--network', 'tiny', '--data-root', str(SHARED_RACCOON), '--data-shape', '128',
              '--no-pretrained-base', '--set', 'model.blocks=1', '--batch-size', '16',
              '--lr', '0.002', '--set', 'train.optimizer=adam', '--num-workers', '0',
              '--set', 'train.progress=false', '--seed', '0']
    assert tool('train_ssd')(common + ['--set', 'model.width=16', '--epochs', '4',
                                       '--set', 'train.val_interval=4',
                                       '--out', str(base / 'teacher')]) == 0
    assert tool('train_distill')(common + [
        '--set', 'model.width=8', '--epochs', '2', '--set', 'train.val_interval=2',
        '--teacher-params', str(base / 'teacher' / 'best.params'),
        '--set', 'distill.method=head_only', '--out', str(base / 'student')]) == 0
    return base / 'student' / 'student.params'


# ----------------------------------------------------------------------------- the runtime

_BLOCKER = ('import sys\n'
            'for name in {blocked!r}:\n'
            '    sys.modules[name] = None      # import NAME raises ImportError\n'
            'sys.path.insert(0, {repo!r})\n')


def run_blocked(code, extra_blocked=(), cwd=None):
    """``code`` in a fresh interpreter where :data:`BLOCKED` (and ``extra_blocked``) cannot be
    imported; returns the completed process."""
    script = _BLOCKER.format(blocked=BLOCKED + tuple(extra_blocked), repo=str(REPO)) + code
    return subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=dict(os.environ, OMP_NUM_THREADS='1'))


@pytest.mark.parametrize('fmt, blocked', [('onnx', ('mxnet',)), ('mxnet', ())])
def test_detect_model_runs_with_the_runtime_alone(synthetic_export, fmt, blocked, tmp_path,
                                                  capsys):
    images = synthetic_export['images']
    capsys.readouterr()
    assert tool('detect')(['--params', str(synthetic_export['params']), '--thresh', '0.05',
                           '--out', str(tmp_path / 'ref')] + images) == 0
    reference = detect_output(capsys.readouterr().out)
    assert sum(len(d) for d in reference.values()) > 0
    code = ('from gluon_distill.commands.detect import main\n'
            'status = main({args!r})\n'
            'import gluon_distill.runtime as rt\n'
            'det = rt.Detector({model!r}, {fmt!r})\n'
            'found = det.detect([rt.read_image(p) for p in {images!r}])\n'
            'assert len(found) == {n} and det.format == {fmt!r}\n'
            'loaded = sorted(m for m in sys.modules if sys.modules[m] is not None and '
            'm.split(".")[0] in ("gluoncv", "mxnet", "gluon_distill"))\n'
            'print("LOADED", " ".join(loaded))\n'
            'sys.exit(status)\n').format(
                args=['--model', str(synthetic_export['export']), '--format', fmt, '--thresh',
                      '0.05', '--out', str(tmp_path / 'out')] + images,
                model=str(synthetic_export['export']), fmt=fmt, images=images, n=len(images))
    res = run_blocked(code, blocked)
    assert res.returncode == 0, res.stderr[-3000:]
    loaded = [line for line in res.stdout.splitlines() if line.startswith('LOADED')][0].split()[1:]
    assert not [m for m in loaded if m.startswith('gluoncv')]
    assert ('mxnet' in loaded) == (fmt == 'mxnet')
    allowed = ('gluon_distill', 'gluon_distill._compat', 'gluon_distill.cli',
               'gluon_distill.commands', 'gluon_distill.commands.detect',
               'gluon_distill.io_utils', 'gluon_distill.progress', 'gluon_distill.config')
    assert all(m in allowed or m.startswith('gluon_distill.runtime') or m.startswith('mxnet')
               for m in loaded), loaded
    same_detections(reference, detect_output(res.stdout))
    for path in images:
        name = os.path.splitext(os.path.basename(path))[0] + '.png'
        assert (tmp_path / 'out' / name).is_file()


def test_runtime_errors_name_the_fix(synthetic_export, tmp_path, capsys):
    folder = str(synthetic_export['export'])
    capsys.readouterr()
    assert tool('detect')(['--model', folder, '--format', 'int8', '--out', str(tmp_path / 'a'),
                           synthetic_export['images'][0]]) == 2
    assert '--quantize int8' in capsys.readouterr().err
    assert tool('detect')(['--model', str(tmp_path), '--out', str(tmp_path / 'b'),
                           synthetic_export['images'][0]]) == 2
    assert 'no deploy.json' in capsys.readouterr().err
    for argv in (['--params', 'x.params', '--model', folder, 'img.jpg'], ['img.jpg'],
                 ['--params', 'x.params', '--format', 'onnx', 'img.jpg']):
        with pytest.raises(SystemExit) as e:
            tool('detect')(argv)
        assert e.value.code == 2
    for argv in (['--model', folder, '--nms-thresh', '0.5'], ['--params', 'a', '--model', 'b']):
        with pytest.raises(SystemExit) as e:
            tool('eval')(argv)
        assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        tool('export')(['--params', 'x.params', '--format', 'mxnet', '--quantize', 'int8',
                        '--out', str(tmp_path / 'c')])
    assert e.value.code == 2
    assert '--format onnx' in capsys.readouterr().err


def test_eval_model_prints_the_params_map_on_generated_data(synthetic_export, capsys):
    params = str(synthetic_export['params'])
    ref = run_eval(['--params', params], capsys)
    assert ref > 0
    for fmt in ('onnx', 'mxnet'):
        got = run_eval(['--model', str(synthetic_export['export']), '--format', fmt], capsys)
        assert abs(got - ref) <= MAP_TOL, (fmt, got, ref)


def test_eval_model_prints_the_params_coco_ap(synthetic_export, tmp_path, capsys):
    """On COCO-format data (a COCO JSON given with --set) the export prints the .params' COCO
    AP, and --out writes the same COCO results file."""
    from gluon_distill.data.synthetic_coco import make_synthetic_coco
    root = make_synthetic_coco(str(tmp_path / 'coco'), num_train=4, num_val=12,
                               size_range=(96, 128), seed=5)
    sets = ['--set', 'data.format=coco',
            '--set', 'data.annotations=' + os.path.join(root, 'annotations', 'instances_val.json'),
            '--set', 'data.images=' + os.path.join(root, 'JPEGImages')]
    ref = run_eval(['--params', str(synthetic_export['params']), '--out', str(tmp_path / 'a')]
                   + sets, capsys)
    assert ref > 0
    got = run_eval(['--model', str(synthetic_export['export']), '--out', str(tmp_path / 'b')]
                   + sets, capsys)
    assert abs(got - ref) <= MAP_TOL, (got, ref)
    a, b = (json.loads((tmp_path / d / 'results.json').read_text()) for d in 'ab')
    assert len(a) == len(b) > 0
    assert [(r['image_id'], r['category_id']) for r in a] == \
        [(r['image_id'], r['category_id']) for r in b]


def test_preprocessing_is_the_evaluations():
    """Square (SSD) and short-side (Faster R-CNN) inputs as GluonCV's transforms make them:
    equal where OpenCV's area and bilinear resizing are used, within one grey level where it
    enlarges bicubically (cv2 and MXNet's bundled OpenCV round differently)."""
    from gluoncv.data.transforms.presets.rcnn import FasterRCNNDefaultValTransform
    from gluoncv.data.transforms.presets.ssd import SSDDefaultValTransform
    from gluon_distill.runtime import preprocess
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    rng = np.random.RandomState(0)
    for h, w, exact in ((200, 300, True), (100, 150, True), (80, 100, False)):
        small = rng.randint(0, 256, (h // 4 + 1, w // 4 + 1, 3)).astype(np.float32)
        img = np.clip(np.kron(small, np.ones((4, 4, 1)))[:h, :w] +
                      rng.randn(h, w, 3) * 8, 0, 255).astype(np.uint8)
        ref = SSDDefaultValTransform(128, 128, mean, std)(mx.nd.array(img, dtype='uint8'),
                                                           np.zeros((0, 6)))[0].asnumpy()
        x, scale = preprocess(img, {'resize': 'square', 'size': 128}, mean, std)
        assert x.shape == (1, 3, 128, 128) and x.dtype == np.float32
        np.testing.assert_allclose(scale, [w / 128.0, h / 128.0] * 2, rtol=1e-6)
        tol = 0 if exact else 1.01 / 255 / min(std)
        assert np.abs(x[0] - ref).max() <= tol + 1e-6, (h, w)
        ref, _, im_scale = FasterRCNNDefaultValTransform(128, 192, mean, std)(
            mx.nd.array(img, dtype='uint8'), np.zeros((0, 6)))
        x, scale = preprocess(img, {'resize': 'short_within', 'short': 128, 'max_size': 192,
                                    'interpolation': 'linear'}, mean, std)
        assert x.shape[1:] == ref.shape
        assert np.abs(x[0] - ref.asnumpy()).max() <= 1e-6
        assert scale[0] == np.float32(im_scale.asscalar())


# ----------------------------------------------------------------------------- real photos

def test_eval_model_prints_the_params_map_for_a_distilled_student(raccoon_student, tmp_path,
                                                                  capsys):
    out = tmp_path / 'export'
    assert tool('export')(['--params', str(raccoon_student), '--out', str(out)]) == 0
    info = json.loads((out / 'deploy.json').read_text())
    assert info['adapters_folded'] and info['data']['root'] == str(SHARED_RACCOON)
    assert info['preprocess']['resize'] == 'square'
    ref = run_eval(['--params', str(raccoon_student)], capsys)
    assert ref > 0.01
    for fmt in ('onnx', 'mxnet'):
        got = run_eval(['--model', str(out), '--format', fmt], capsys)
        assert abs(got - ref) <= MAP_TOL, (fmt, got, ref)
    # another split, given as for the .params
    ref = run_eval(['--params', str(raccoon_student), '--split', 'all'], capsys)
    assert abs(run_eval(['--model', str(out), '--split', 'all'], capsys) - ref) <= MAP_TOL


def test_eval_model_of_a_faster_rcnn_symbol_export(tmp_path, capsys):
    """A tiny Faster R-CNN (random weights, its run's data recorded): the symbol export's
    devkit files are those of the .params, line for line."""
    need_raccoon()
    from gluon_distill.config import ModelConfig
    from gluon_distill.families.faster_rcnn import FasterRCNNFamily
    from gluon_distill.models.faster_rcnn import build_faster_rcnn, resolve_arch
    from gluon_distill.models.io import write_model_json
    mx.random.seed(2)
    cfg = ModelConfig(family='faster_rcnn', network='tiny', data_shape=128, max_size=192,
                      width=32, pretrained_base=False)
    arch = resolve_arch(cfg)
    net = build_faster_rcnn(arch, ['raccoon'], False, [mx.cpu()])
    net.save_parameters(str(tmp_path / 'm.params'))
    write_model_json(str(tmp_path), FasterRCNNFamily().spec(arch, ['raccoon'], cfg, {}, {
        'eval': {'iou_thresh': 0.5, 'nms_thresh': 0.3, 'nms_topk': 400, 'post_nms': 100},
        'data': {'root': str(SHARED_RACCOON), 'train_split': 'train', 'val_split': 'val'}}))
    params, out = str(tmp_path / 'm.params'), tmp_path / 'export'
    assert tool('export')(['--params', params, '--out', str(out)]) == 0
    info = json.loads((out / 'deploy.json').read_text())
    assert info['preprocess'] == dict(info['preprocess'], resize='short_within', short=128,
                                      max_size=192)
    ref = run_eval(['--params', params, '--out', str(tmp_path / 'a')], capsys)
    got = run_eval(['--model', str(out), '--out', str(tmp_path / 'b')], capsys)
    assert got == ref
    name = 'comp4_det_val_raccoon.txt'
    a = (tmp_path / 'a' / 'results' / name).read_text()
    assert a and a == (tmp_path / 'b' / 'results' / name).read_text()
    # the runtime picks the symbol files: a Faster R-CNN has no ONNX
    from gluon_distill.runtime import Detector
    assert Detector(str(out)).format == 'mxnet'


def test_calibration_images_come_from_the_source_named(synthetic_root, tmp_path):
    """--calibration DIR: a folder of images (searched recursively), a VOC root or a COCO root
    (the images of its training split); without it, the training split recorded in
    model.json; a seeded sample of --calibration-images of them, the source described."""
    import shutil
    from gluon_distill.data.synthetic_coco import make_synthetic_coco
    from gluon_distill.data.voc import load_voc_records
    from gluon_distill.export.quantize import calibration_images
    records, classes, _ = load_voc_records(synthetic_root, 'train')
    train = {r.image_path for r in records}
    info = {'classes': classes, 'data': {'root': synthetic_root, 'train_split': 'train',
                                         'val_split': 'val'}}
    paths, what = calibration_images(info, None, 10)
    assert len(paths) == 10 and set(paths) <= train and paths == sorted(paths)
    assert what.startswith('10 of {} images'.format(len(train))) and "split 'train'" in what
    assert calibration_images(info, None, 10) == (paths, what)           # seeded
    paths, what = calibration_images({}, synthetic_root, 1000)
    assert set(paths) == train and 'training split of the VOC root' in what
    made = make_synthetic_coco(str(tmp_path / 'made'), num_train=6, num_val=4,
                               size_range=(64, 80), seed=1)
    coco = tmp_path / 'coco'                       # only the COCO layout: annotations/*.json
    shutil.copytree(os.path.join(made, 'annotations'), str(coco / 'annotations'))
    shutil.copytree(os.path.join(made, 'JPEGImages'), str(coco / 'JPEGImages'))
    paths, what = calibration_images({}, str(coco), 100)
    assert len(paths) == 6 and 'training split of the COCO root' in what, what
    photos = tmp_path / 'photos'
    (photos / 'sub').mkdir(parents=True)
    shutil.copy(paths[0], str(photos / 'a.jpg'))
    shutil.copy(paths[1], str(photos / 'sub' / 'b.png'))
    (photos / 'notes.txt').write_text('not an image')
    paths, what = calibration_images({}, str(photos), 100)
    assert paths == [str(photos / 'a.jpg'), str(photos / 'sub' / 'b.png')]
    assert 'the images in' in what
    with pytest.raises(ValueError, match='no such folder'):
        calibration_images({}, str(tmp_path / 'missing'), 10)
    with pytest.raises(ValueError, match='--calibration DIR'):
        calibration_images({'classes': classes}, None, 10)


def test_int8_export_is_calibrated_verified_and_evaluated(raccoon_student, tmp_path, capsys):
    onnx = pytest.importorskip('onnx')
    photos = tmp_path / 'photos'
    photos.mkdir()
    for i in range(1, 21):
        name = 'raccoon-{}.jpg'.format(i)
        os.symlink(str(SHARED_RACCOON / 'JPEGImages' / name), str(photos / name))
    out = tmp_path / 'int8'
    capsys.readouterr()
    status = tool('export')(['--params', str(raccoon_student), '--format', 'onnx',
                             '--quantize', 'int8', '--calibration', str(photos),
                             '--calibration-images', '16', '--int8-max-drop', '100',
                             '--out', str(out)])
    text = capsys.readouterr().out
    assert status == 0, text
    assert 'verified: the INT8 model' in text
    info = json.loads((out / 'deploy.json').read_text())
    q = info['int8']
    assert info['files']['onnx_int8'] == 'model-int8.onnx' == q['file']
    assert q['calibration']['images'] == 16 and str(photos) in q['calibration']['source']
    v = q['verification']
    assert v['metric'] == 'mAP' and v['images'] == 40 and v['ok']
    assert v['drop_points'] == pytest.approx(100 * (v['float'] - v['int8']))
    # QDQ around the network's convolutions; softmax, decoding and NMS stay float
    model = onnx.load(str(out / 'model-int8.onnx'))
    producer = {o: n.op_type for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type == 'Conv']
    assert convs and all(producer.get(n.input[1]) == 'DequantizeLinear' for n in convs)
    assert all(producer.get(n.input[0]) == 'DequantizeLinear' for n in convs)
    for n in model.graph.node:
        if n.op_type in ('Softmax', 'NonMaxSuppression', 'TopK', 'Exp'):
            assert all(producer.get(i) != 'DequantizeLinear' for i in n.input), n.op_type
    assert q['predictors'] == 10
    # eval --model --format int8 prints the verification's number, the float one the .params'
    assert abs(run_eval(['--model', str(out), '--format', 'int8'], capsys) - v['int8']) < 1e-4
    assert abs(run_eval(['--model', str(out)], capsys) - v['float']) < 1e-4
    # an impossible tolerance: refused, the INT8 file removed, the float export kept
    bad = tmp_path / 'bad'
    capsys.readouterr()
    assert tool('export')(['--params', str(raccoon_student), '--format', 'onnx',
                           '--quantize', 'int8', '--calibration', str(photos),
                           '--calibration-images', '4', '--int8-max-drop', '-1000',
                           '--out', str(bad)]) == 2
    assert 'was removed' in capsys.readouterr().err
    assert not (bad / 'model-int8.onnx').exists() and (bad / 'model.onnx').is_file()
    assert 'int8' not in json.loads((bad / 'deploy.json').read_text())
