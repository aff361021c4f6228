"""Faster R-CNN as the second detector family (issue 11, the paper's Table 3): GluonCV's
network, transform, batchify and losses through the shared loop, evaluator and distillers."""
import json
import os

import mxnet as mx
import numpy as np
import pytest

from conftest import REPO, spy_distillation_plan, teacher_unchanged, tiny_config, tool
from gluon_distill import config as config_module
from gluon_distill.config import ConfigError, config_from, load_config
from gluon_distill.distill.fgfi import imitation_mask
from gluon_distill.distill.run import train_distilled
from gluon_distill.families import FAMILIES, family_of_spec, get_family
from gluon_distill.families.faster_rcnn import FasterRCNNFamily
from gluon_distill.models.faster_rcnn import RCNNLoss, resolve_arch
from gluon_distill.models.ssd import ModelError
from gluon_distill.training import train_detector

EXPERIMENTS = REPO / 'experiments' / 'voc07_rcnn'
# the paper's Table 3 (VOC07 test mAP, trained on VOC07 trainval)
TABLE3 = {
    'teacher_faster_rcnn_resnet101_v1d': 0.748,
    'baseline_faster_rcnn_resnet50_v1b_roipool': 0.670,
    'faster_rcnn_resnet101_v1d_to_resnet50_v1b_roipool_cosine': 0.738,
    'baseline_faster_rcnn_resnet50_v1b_roialign': 0.717,
    'faster_rcnn_resnet101_v1d_to_resnet50_v1b_roialign_cosine': 0.740,
    # the same GAN rows without (our reading of) cosine attention: ablations, no number
    'faster_rcnn_resnet101_v1d_to_resnet50_v1b_roipool': None,
    'faster_rcnn_resnet101_v1d_to_resnet50_v1b_roialign': None,
    'faster_rcnn_resnet101_v1d_to_resnet50_v1b_fgfi': 0.720,
}
# RPN settings scaled for 128 px inputs (8x8 C4 map): zoo nets at test size
SMALL_RPN = {'model.data_shape': 128, 'model.max_size': 160, 'model.rpn_train_pre_nms': 512,
             'model.rpn_train_post_nms': 128, 'model.rpn_test_pre_nms': 512,
             'model.rpn_test_post_nms': 64, 'model.rcnn_num_sample': 32,
             'model.pretrained_base': False}


def rcnn_config(root, out, **overrides):
    """A tiny Faster R-CNN (width 32, 128 px short side) on two CPU devices."""
    sets = {'model.family': 'faster_rcnn', 'model.data_shape': 128, 'model.max_size': 192,
            'model.width': 32, 'train.ctx': 'cpu:0,1', 'train.batch_size': 4,
            'eval.nms_thresh': 0.3}
    sets.update(overrides)
    return tiny_config(root, out, **sets)


def records(out, kind='train'):
    return [r for r in map(json.loads, open(os.path.join(out, 'metrics.jsonl')))
            if r['type'] == kind]


@pytest.fixture(scope='module')
def teacher(synthetic_root, tmp_path_factory):
    """A tiny Faster R-CNN trained by tools/train_rcnn.py for 3 epochs on cpu:0,1."""
    out = tmp_path_factory.mktemp('rcnn') / 'teacher'
    code = tool('train_rcnn')([
        '--network', 'tiny', '--data-shape', '128', '--max-size', '192', '--data-root',
        synthetic_root, '--train-split', 'train', '--val-split', 'val', '--no-pretrained-base',
        '--ctx', 'cpu:0,1', '--batch-size', '4', '--epochs', '3', '--num-workers', '0',
        '--out', str(out), '--lr-decay-epoch', '2', '--set', 'train.optimizer=adam',
        '--set', 'model.width=32', '--set', 'train.progress=false',
        '--set', 'train.log_interval=2'])
    assert code == 0
    return out


def test_family_is_registered_with_its_config_keys():
    assert isinstance(get_family('faster_rcnn'), FasterRCNNFamily)
    assert set(config_module.CHOICES['model.family']) == set(FAMILIES)
    assert isinstance(family_of_spec({'kind': 'faster_rcnn'}), FasterRCNNFamily)
    with pytest.raises(ConfigError, match=r"model.roi_mode: expected one of align, pool"):
        config_from({'model.roi_mode': 'crop'})


def test_rpn_settings_that_exceed_the_anchors_are_refused():
    """GluonCV's 2000 training proposals at 128 px ("Invalid end" inside MXNet) is a
    configuration error naming the key and the bound."""
    cfg = config_from({'model.family': 'faster_rcnn', 'model.network': 'resnet50_v1b',
                       'model.data_shape': 128, 'model.max_size': 160})
    with pytest.raises(ModelError, match=r'model.rpn_train_post_nms 2000 exceeds the 960 RPN '
                                         r'anchors of a 128 px input.*at most 960'):
        resolve_arch(cfg.model)
    with pytest.raises(ModelError, match='model.network: a Faster R-CNN backbone is one of'):
        resolve_arch(config_from({'model.family': 'faster_rcnn',
                                  'model.network': 'mobilenet1.0'}).model)


def test_training_on_two_devices_and_eval_of_the_saved_file(teacher, capsys):
    """The real transform, batchify and losses on cpu:0,1: GluonCV's four loss parts are
    logged and fall; tools/eval.py on last.params prints the mAP validation logged."""
    train = records(teacher)
    names = ('RPN_Conf', 'RPN_SmoothL1', 'RCNN_CrossEntropy', 'RCNN_SmoothL1')
    assert all(all(n in r for n in names) for r in train)
    assert all(abs(r['loss'] - sum(r[n] for n in names)) < 1e-4 for r in train)
    assert train[-1]['loss'] < 0.7 * train[0]['loss']
    spec = json.load(open(teacher / 'model.json'))
    assert spec['kind'] == 'faster_rcnn' and spec['arch']['network'] == 'tiny'
    assert spec['data_shape'] == 128 and spec['max_size'] == 192
    logged = records(teacher, 'val')[-1]['mAP']
    assert logged > 0
    # the run's validation settings are recorded, and eval uses them without flags
    assert spec['eval'] == {'iou_thresh': 0.5, 'nms_thresh': 0.3, 'nms_topk': 400,
                            'post_nms': 100}
    capsys.readouterr()
    assert tool('eval')(['--params', str(teacher / 'last.params')]) == 0
    out, err = capsys.readouterr()
    assert out.strip().splitlines()[-1] == 'mAP={:.4f}'.format(logged)
    assert 'NMS 0.3 (top 400 before, 100 after), IoU 0.5' in err
    # an explicit flag wins
    assert tool('eval')(['--params', str(teacher / 'last.params'), '--nms-thresh', '0.6']) == 0
    assert 'NMS 0.6 (top 400' in capsys.readouterr().err


def test_resume_continues_the_run(teacher, synthetic_root, tmp_path):
    out = tmp_path / 'resumed'
    train_detector(rcnn_config(synthetic_root, out))
    summary = train_detector(rcnn_config(synthetic_root, out, **{'train.epochs': 2,
                                                                 'train.resume': True}))
    assert summary['last_epoch'] == 1
    assert [r['epoch'] for r in records(out, 'val')] == [0, 1]


@pytest.fixture
def spy_plan(monkeypatch):
    """The (teacher, plan) of each distillation run, the teacher's weights at load and the
    student's RPN at its start."""
    return spy_distillation_plan(monkeypatch, 'faster_rcnn', lambda t, p: {
        'rpn_at_start': [v.data().copy() for v in p.net.rpn.collect_params().values()]})


def test_gan_distillation_stops_after_gan_epochs(teacher, synthetic_root, tmp_path, spy_plan):
    out = tmp_path / 'gan'
    summary = train_distilled(rcnn_config(synthetic_root, out, **{
        'teacher.params': str(teacher / 'last.params'), 'distill.method': 'gan',
        'distill.gan.critic_width': 16, 'distill.gan.epochs': 1, 'train.epochs': 2}))
    train = records(out)
    assert all('Loss_D' in r and 'RPN_Conf' in r for r in train if r['epoch'] == 0)
    assert all('Loss_D' not in r and 'RCNN_SmoothL1' in r for r in train if r['epoch'] == 1)
    assert teacher_unchanged(spy_plan)
    # student heads started as the teacher's (distill.init_head_from_teacher), then trained
    teacher_rpn = [v.data() for v in spy_plan['teacher'].net.rpn.collect_params().values()]
    assert all(np.array_equal(a.asnumpy(), b.asnumpy())
               for a, b in zip(spy_plan['rpn_at_start'], teacher_rpn))
    assert summary['student'].endswith('student.params')
    assert json.load(open(out / 'model.json'))['kind'] == 'faster_rcnn'


@pytest.mark.parametrize('method', ['fgfi', 'mimic', 'head_only'])
def test_each_method_runs_one_epoch(method, teacher, synthetic_root, tmp_path, spy_plan,
                                    capsys):
    """A narrower student (16 channels vs the teacher's 32, a 1x1 adapter for the distillers,
    heads of its own) for fgfi and mimic; head_only starts from the teacher's heads."""
    out = tmp_path / method
    narrow = method != 'head_only'
    sets = {'teacher.params': str(teacher / 'last.params'), 'distill.method': method,
            'distill.fgfi.warmup_iters': 0}
    if narrow:
        sets.update({'model.width': 16, 'distill.init_head_from_teacher': False})
    summary = train_distilled(rcnn_config(synthetic_root, out, **sets))
    train = records(out)
    loss = {'fgfi': 'Loss_fgfi', 'mimic': 'Loss_mimic'}.get(method)
    if loss:
        assert all(r[loss] > 0 for r in train)
    else:
        assert not any(k.startswith('Loss_') for r in train for k in r)
    assert (spy_plan['plan'].critic_adapters is not None) == narrow
    assert teacher_unchanged(spy_plan)
    capsys.readouterr()
    assert tool('eval')(['--params', str(out / 'student.params')]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == \
        'mAP={:.4f}'.format(summary['last_mAP'])


def test_heads_from_a_teacher_with_other_channels_is_a_clear_error(teacher, synthetic_root,
                                                                   tmp_path):
    with pytest.raises(ModelError, match='init_head_from_teacher=false'):
        train_distilled(rcnn_config(synthetic_root, tmp_path / 's', **{
            'teacher.params': str(teacher / 'last.params'), 'distill.method': 'mimic',
            'model.width': 16}))


def test_fgfi_mask_from_rpn_anchors(teacher):
    """A box equal to one RPN anchor (127 x 127 px, the largest square) at row 3, column 2:
    with psi 0.5 the mask holds every location whose same-shaped anchor overlaps it by IoU >
    0.5 (hand-computed: shifts of 16 px in x and y give (127 - 16|a|)(127 - 16|b|) / (2 *
    127^2 - that) > 0.5 for the 13 shifts below) and nothing farther than 3 cells."""
    from gluon_distill.models.io import load_detector
    net, _ = load_detector(str(teacher / 'last.params'))
    (anchors,) = get_family('faster_rcnn').scale_anchors(net, 128, mx.cpu())
    side = int(np.ceil(192 / 16.0)) + 1
    assert anchors.shape == (side, side, 12, 4)     # 3 ratios x 4 scales, the max_size grid
    cx, cy, w, h = anchors[3, 2, 7]
    assert (cx, cy, w, h) == (2 * 16 + 7.5, 3 * 16 + 7.5, 127, 127)
    box = np.array([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]])
    mask = imitation_mask(box, anchors, 0.5)
    shifts = [(a, b) for a in range(-2, 3) for b in range(-2, 3) if abs(a) + abs(b) <= 2]
    assert len(shifts) == 13 and all(mask[3 + a, 2 + b] == 1 for a, b in shifts)
    ys, xs = np.nonzero(mask)
    assert np.abs(ys - 3).max() <= 3 and np.abs(xs - 2).max() <= 3
    assert not imitation_mask(np.zeros((0, 4)), anchors).any()


def test_table3_configs_load_and_compose(tmp_path):
    """Every Table 3 cell has a config with the published number, trains on VOC07 trainval
    only, and its networks compose (random weights, 128 px, scaled RPN): a ResNet101
    teacher trains one iteration, a GAN student distils one iteration from it (FGFI, mimic and
    head_only run through the same wiring on tiny nets above), the baselines build."""
    from gluon_distill.data.synthetic import make_synthetic_voc
    paths = sorted(EXPERIMENTS.glob('*.yaml'))
    assert {p.stem for p in paths} == set(TABLE3)
    root = make_synthetic_voc(str(tmp_path / 'voc'), num_train=2, num_val=1, seed=1)
    small = dict(SMALL_RPN, **{
        'data.root': root, 'data.train_split': 'train', 'data.val_split': 'val',
        'data.num_workers': 0, 'train.epochs': 1, 'train.batch_size': 2, 'train.ctx': 'cpu',
        'train.progress': False})
    cfgs = {p.stem: load_config(str(p)) for p in paths}
    for name, cfg in cfgs.items():
        assert cfg.experiment.published_mAP == TABLE3[name]
        assert 'Table 3' in cfg.experiment.paper_table
        assert cfg.data.train_split == '2007_trainval' and cfg.model.family == 'faster_rcnn'
    assert cfgs['baseline_faster_rcnn_resnet50_v1b_roipool'].model.roi_mode == 'pool'
    for roi in ('roipool', 'roialign'):
        cell = cfgs['faster_rcnn_resnet101_v1d_to_resnet50_v1b_{}_cosine'.format(roi)]
        assert cell.distill.method == 'gan+cosine' and 'cosine attention' in \
            cell.experiment.paper_table
        assert cfgs['faster_rcnn_resnet101_v1d_to_resnet50_v1b_' + roi].distill.method == 'gan'
        # the authors' log: GAN_epochs=26 (its epochs 0..26), train_D_eopch=2
        assert (cell.distill.gan.epochs, cell.distill.gan.critic_warmup_epochs) == (27, 2)
    teacher_name = 'teacher_faster_rcnn_resnet101_v1d'
    teacher_out = tmp_path / 'teacher'
    train_detector(config_from(dict(small, **{'train.out': str(teacher_out)}),
                               cfgs[teacher_name]))
    for name in ('faster_rcnn_resnet101_v1d_to_resnet50_v1b_roipool_cosine',):
        out = tmp_path / name
        train_distilled(config_from(dict(small, **{
            'train.out': str(out), 'teacher.params': str(teacher_out / 'last.params'),
            'distill.gan.critic_width': 16, 'distill.fgfi.warmup_iters': 0}), cfgs[name]))
        (record,) = records(out)
        assert ('Loss_D' in record) == ('gan' in cfgs[name].distill.method)
        assert ('Loss_fgfi' in record) == ('fgfi' in cfgs[name].distill.method)
        assert ('cosine_length' in record) == ('cosine' in cfgs[name].distill.method)
    for name in ('baseline_faster_rcnn_resnet50_v1b_roipool',
                 'baseline_faster_rcnn_resnet50_v1b_roialign',
                 'faster_rcnn_resnet101_v1d_to_resnet50_v1b_fgfi'):
        net, arch = get_family('faster_rcnn').build(
            config_from(small, cfgs[name]).model, ['a', 'b'], [mx.cpu()])
        assert arch.roi_mode == cfgs[name].model.roi_mode and net._roi_mode == arch.roi_mode


def test_zoo_weights_offline_is_a_clear_error(monkeypatch):
    import gluoncv.model_zoo.model_store as store

    def offline(name, **kwargs):
        raise OSError('Network is unreachable')
    monkeypatch.setattr(store, 'get_model_file', offline)
    cfg = config_from(dict(SMALL_RPN, **{'model.family': 'faster_rcnn',
                                         'model.network': 'resnet101_v1d',
                                         'model.pretrained_base': True}))
    with pytest.raises(ModelError, match=r"ImageNet weights for 'resnet101_v1d'.*place the file "
                                         r"at .*resnet101_v1d-.*\.params, or pass "
                                         r"--no-pretrained-base"):
        get_family('faster_rcnn').build(cfg.model, ['a'], [mx.cpu()])


def rcnn_run_args(data_dir, out, ctx, extra=()):
    """A tiny seeded Faster R-CNN run: 16 generated images of 96-160 px (sizes differ, so
    padding does), global batch 4, one epoch."""
    args = ['--network', 'tiny', '--data-shape', '128', '--max-size', '192',
            '--no-pretrained-base', '--data-root', 'synthetic', '--batch-size', '4',
            '--epochs', '1', '--seed', '3', '--ctx', ctx, '--out', str(out)]
    for kv in ('data.synthetic.dir={}'.format(data_dir), 'data.synthetic.num_train=16',
               'data.synthetic.num_val=8', 'data.train_split=train', 'data.val_split=val',
               'data.num_workers=0', 'model.width=16', 'train.optimizer=adam',
               'train.log_interval=2', 'train.progress=false'):
        args += ['--set', kv]
    return args + list(extra)


def test_two_workers_train_like_one_process(tmp_path):
    """2 workers with --ctx cpu (dist_sync, loopback) end with the parameters and logged
    losses of one process with --ctx cpu:0,1: each device pads to its own images, and the
    RoI sampler's draws come per image from the seeded loader, not from MXNet's one CPU
    random stream (whose draws a second device of one process and a second worker get in a
    different order)."""
    from test_distributed import max_difference, one_process, two_workers
    one, dist = tmp_path / 'one', tmp_path / 'dist'
    one_process('train_rcnn.py', rcnn_run_args(tmp_path / 'data', one, 'cpu:0,1'), tmp_path)
    two_workers('train_rcnn.py', rcnn_run_args(tmp_path / 'data', dist, 'cpu'), tmp_path)
    assert max_difference(dist / 'last.params', one / 'last.params') <= 1e-5
    want, got = records(one), records(dist)
    assert len(got) == len(want) == 2
    for a, b in zip(got, want):
        for name in RCNNLoss.names:
            assert a[name] == pytest.approx(b[name], rel=1e-5, abs=1e-7)
    assert records(dist, 'val')[0]['mAP'] == pytest.approx(records(one, 'val')[0]['mAP'],
                                                           abs=1e-6)


def test_export_mxnet_symbol_gives_the_gluon_detections(teacher, synthetic_root, tmp_path,
                                                         capsys):
    """tools/export.py on a Faster R-CNN: the MXNet symbol reloads without gluon_distill and
    gives the Gluon network's detections on a real image (one image per call); ONNX is
    refused before converting, with the converter's reason."""
    import glob
    import mxnet as mx
    from mxnet import gluon
    from gluon_distill.export.rcnn import rcnn_input
    from gluon_distill.export.verify import detections_agree
    from gluon_distill.models.io import load_detector
    image = sorted(glob.glob(os.path.join(synthetic_root, '**', '*.jpg'), recursive=True))[0]
    out = tmp_path / 'deploy'
    capsys.readouterr()
    assert tool('export')(['--params', str(teacher / 'last.params'), '--out', str(out),
                           '--verify-image', image]) == 0
    printed = capsys.readouterr().out
    assert 'verified: exported outputs match the original' in printed
    info = json.load(open(out / 'deploy.json'))
    assert info['kind'] == 'faster_rcnn' and info['nms']['thresh'] == 0.3  # the run's NMS
    assert sorted(info['files'].values()) == ['model-0000.params', 'model-symbol.json']
    net, spec = load_detector(str(teacher / 'last.params'))
    net.set_nms(0.3, 400, post_nms=100)
    x = rcnn_input(spec, [image])
    assert x.shape[2] == 128  # the short side of the run
    ref = [o.asnumpy() for o in net(mx.nd.array(x))]
    block = gluon.SymbolBlock.imports(str(out / 'model-symbol.json'), ['data'],
                                      str(out / 'model-0000.params'))
    got = [o.asnumpy() for o in block(mx.nd.array(x))]
    assert (ref[0] >= 0).sum() > 0
    assert detections_agree(ref, got) == (True, '')
    assert tool('export')(['--params', str(teacher / 'last.params'), '--out',
                           str(tmp_path / 'onnx'), '--format', 'onnx']) == 2
    err = capsys.readouterr().err
    assert 'ONNX export of a Faster R-CNN is not supported' in err and '--format mxnet' in err
    assert not (tmp_path / 'onnx').exists()       # refused before anything was written


def test_numpy_rpn_targets_equal_gluoncv(synthetic_root):
    """The loader's transform (RPN targets in NumPy, bench/rpn_targets.py) gives GluonCV's
    FasterRCNNDefaultTrainTransform output exactly: image, boxes, the same sampled anchors."""
    from gluoncv.data.transforms.presets.rcnn import FasterRCNNDefaultTrainTransform
    from gluon_distill.data.datasets import load_split
    from gluon_distill.data.rcnn_targets import RCNNTrainTransform
    from gluon_distill.data.voc import DetectionDataset
    cfg = config_from({'model.family': 'faster_rcnn', 'model.network': 'tiny',
                       'model.data_shape': 128, 'model.max_size': 192, 'model.width': 16})
    records, classes, _ = load_split(synthetic_root, 'train', None, cfg.data, False)
    dataset = DetectionDataset(records[:12], classes)
    net, _ = get_family('faster_rcnn').build(cfg.model, classes, [mx.cpu()])
    m = cfg.model
    theirs = FasterRCNNDefaultTrainTransform(128, 192, net, mean=tuple(m.mean),
                                             std=tuple(m.std), ashape=net.ashape)
    ours = RCNNTrainTransform(128, 192, net, m.mean, m.std, net.ashape)
    positives = 0
    for i in range(len(dataset)):
        img, label = dataset[i]
        np.random.seed(i)
        a = theirs(img, label)
        np.random.seed(i)
        b = ours(img, label)
        assert np.array_equal(a[0].asnumpy(), b[0].asnumpy())
        assert np.array_equal(a[1], b[1])
        for k in (2, 3, 4):
            assert np.asarray(a[k][0]).shape == b[k][0].shape
            assert np.allclose(np.asarray(a[k][0]), b[k][0], atol=1e-5)
        positives += int((b[2][0] == 1).sum())
    assert positives > 0


def test_zoo_teacher_weights(monkeypatch, tmp_path):
    """teacher.pretrained loads GluonCV's faster_rcnn_resnet50_v1b_voc file (here one saved
    from GluonCV's own zoo constructor, random weights) into the teacher at the student's
    input size; offline it is an error naming the file; resnet101_v1d has no VOC weights."""
    import gluoncv.model_zoo.model_store as store
    from gluoncv.model_zoo import faster_rcnn_resnet50_v1b_voc
    from gluon_distill.families.faster_rcnn import load_teacher
    zoo = faster_rcnn_resnet50_v1b_voc(pretrained=False, pretrained_base=False)
    zoo.initialize()
    zoo(mx.nd.zeros((1, 3, 320, 320)))
    path = str(tmp_path / 'faster_rcnn_resnet50_v1b_voc-447328d8.params')
    zoo.save_parameters(path)
    monkeypatch.setattr(store, 'get_model_file', lambda name, **kw: path)
    cfg = config_from(dict(SMALL_RPN, **{'model.family': 'faster_rcnn',
                                         'model.network': 'resnet50_v1b',
                                         'teacher.pretrained': True,
                                         'teacher.network': 'faster_rcnn_resnet50_v1b_voc'}))
    teacher = load_teacher(cfg.teacher, [mx.cpu()], cfg.model)
    assert teacher.source == path and len(teacher.classes) == 20
    assert teacher.arch.data_shape == 128 and teacher.arch.rpn_test_post_nms == 64
    # every zoo parameter landed in the teacher, by structure
    want = zoo._collect_params_with_prefix()
    got = teacher.net._collect_params_with_prefix()
    assert set(want) == set(got)
    assert all(np.array_equal(want[k].data().asnumpy(), got[k].data().asnumpy())
               for k in want)
    assert all(p.grad_req == 'null' for p in teacher.net.collect_params().values())

    def offline(name, **kwargs):
        raise OSError('Network is unreachable')
    monkeypatch.setattr(store, 'get_model_file', offline)
    with pytest.raises(ModelError, match=r'zoo teacher faster_rcnn_resnet50_v1b_voc .*place the '
                                         r'file at .*faster_rcnn_resnet50_v1b_voc-.*\.params'):
        load_teacher(cfg.teacher, [mx.cpu()], cfg.model)
    cfg.teacher.network = 'resnet101_v1d'
    with pytest.raises(ModelError, match="VOC Faster R-CNN weights for resnet50_v1b only"):
        load_teacher(cfg.teacher, [mx.cpu()], cfg.model)


def test_mini_reproduction_rcnn_arms():
    """The Faster R-CNN arms of bench/mini_repro.py: their own teacher (twice the student's
    depth, same width: heads from the teacher), every setting explicit; SSD arms unchanged."""
    from gluon_distill import mini
    teacher = mini.teacher_config('/tmp/m', 24, family='faster_rcnn')
    assert teacher.train.out == '/tmp/m/rcnn_teacher' and teacher.model.family == 'faster_rcnn'
    assert (teacher.model.width, teacher.model.blocks, teacher.eval.nms_thresh) == (32, 2, 0.3)
    for arm in ('rcnn_baseline', 'rcnn_head_only', 'rcnn_mimic', 'rcnn_fgfi', 'rcnn_gan',
                'rcnn_cosine', 'rcnn_gan_cosine'):
        cfg = mini.arm_config(arm, 1, '/tmp/m', 24, '/tmp/m/rcnn_teacher/best.params')
        assert cfg.model.family == 'faster_rcnn' and (cfg.model.width, cfg.model.blocks) == \
            (32, 1)
        assert cfg.train.out == '/tmp/m/{}_seed1'.format(arm) and cfg.train.lr_steps == [19]
        if arm != 'rcnn_baseline':
            assert cfg.teacher.params == '/tmp/m/rcnn_teacher/best.params'
            assert cfg.distill.init_head_from_teacher
    gan = mini.arm_config('rcnn_gan', 0, '/tmp/m', 24, 't').distill
    assert (gan.method, gan.gan.critic, gan.gan.critic_width, gan.gan.clip) == \
        ('gan', 'dcgan', 64, 0.03)
    ssd = mini.arm_config('gan', 0, '/tmp/m', 40, 't')
    assert ssd.model.family == 'ssd' and (ssd.model.width, ssd.model.blocks) == (16, 1)


def test_gan_gradient_reaches_the_student_backbone_and_not_the_teacher(teacher, synthetic_root,
                                                                       tmp_path):
    """One GAN step with the detection loss zeroed: the adversarial term alone moves the
    student's C4 backbone (the paired map), not its layer4 or heads, and never the teacher."""
    import logging
    import mxnet as mx
    from gluon_distill.data.datasets import build_datasets
    from gluon_distill.distill.methods import build_distillers
    from gluon_distill.distill.step import DistillStep
    from gluon_distill.engine.steps import make_trainer
    ctx = [mx.cpu()]
    cfg = rcnn_config(synthetic_root, tmp_path / 's', **{
        'teacher.params': str(teacher / 'last.params'), 'distill.method': 'gan',
        'distill.gan.critic_width': 16, 'train.ctx': 'cpu', 'train.batch_size': 2})
    family = get_family('faster_rcnn')
    data = build_datasets(cfg.data, logging.getLogger('test'), progress=False)
    t, plan = family.distillation_plan(cfg, data.classes, ctx)
    distillers, params = build_distillers(cfg.distill, plan, ctx, None,
                                          list(plan.net.collect_params().values()),
                                          cfg.model.data_shape, family)
    detection_loss = family.loss()

    def zero_detection_loss(outputs, targets):
        totals, parts = detection_loss(outputs, targets)
        return [0 * total for total in totals], parts
    loader = family.train_loader(data.train, plan.net, cfg, ctx)
    step = DistillStep(plan.net, family.teacher_forward(t), ctx,
                       make_trainer(params, 'sgd', lr=0.1, momentum=0.0, wd=0.0, kvstore=None),
                       distillers, plan.critic_adapters, loss=zero_detection_loss,
                       prepare=loader.prepare,
                       forward=family.feature_forward(plan.net, plan.critic_adapters))

    def values(block):
        return {k: p.data().asnumpy().copy() for k, p in block.collect_params().items()
                if p.grad_req != 'null'}
    before = {name: values(block) for name, block in [
        ('backbone', plan.net.features), ('layer4', plan.net.top_features),
        ('rpn', plan.net.rpn)]}
    teacher_before = {k: p.data().asnumpy().copy()
                      for k, p in t.net.collect_params().items()}
    batches = iter(loader.epoch(0))
    for _ in range(2):
        out = step.run_step(next(batches))
        assert out['finite']
    moved = {name: sum(not np.array_equal(v, values(block)[k]) for k, v in before[name].items())
             for name, block in [('backbone', plan.net.features),
                                 ('layer4', plan.net.top_features), ('rpn', plan.net.rpn)]}
    assert moved['backbone'] > 0, moved
    assert moved['layer4'] == 0 and moved['rpn'] == 0, moved
    for k, p in t.net.collect_params().items():
        np.testing.assert_array_equal(p.data().asnumpy(), teacher_before[k], err_msg=k)


def test_validation_builds_no_static_graph_beside_the_training_graph(synthetic_root, tmp_path,
                                                                     monkeypatch):
    """Faster R-CNN inputs change size with every image: a training run hybridizes without
    static memory (GluonCV's default), so the inference graph validation builds does not keep
    a memory plan of its own beside the training graph's (a peak of 2x GluonCV's,
    bench/rcnn_memory.py); SSD keeps static memory."""
    built = []
    build_cache = mx.gluon.HybridBlock._build_cache

    def spy(block, *args):
        built.append((type(block).__name__, dict(block._flags)))
        return build_cache(block, *args)
    monkeypatch.setattr(mx.gluon.HybridBlock, '_build_cache', spy)
    train_detector(rcnn_config(synthetic_root, tmp_path / 'run', **{
        'train.ctx': 'cpu', 'train.batch_size': 16, 'model.width': 8}))
    graphs = {name for name, _ in built}
    assert {'RCNNTrainForward', 'FasterRCNN'} <= graphs, built  # trained, then validated
    static = [(name, flags) for name, flags in built
              if flags.get('static_alloc') or flags.get('static_shape')]
    assert not static, static
    assert get_family('ssd').hybridize_flags() == {'static_alloc': True, 'static_shape': True}
