"""Faster R-CNN as the second detector family (issue 11, the paper's Table 3): GluonCV's
network, transform, batchify and losses through the shared loop, evaluator and distillers."""
import json
import os

import mxnet as mx
import numpy as np
import pytest

from conftest import REPO, tiny_config, tool
from gluon_distill import config as config_module
from gluon_distill.config import ConfigError, config_from, load_config
from gluon_distill.distill.fgfi import imitation_mask
from gluon_distill.distill.run import train_distilled
from gluon_distill.families import FAMILIES, family_of_spec, get_family
from gluon_distill.families.faster_rcnn import FasterRCNNFamily
from gluon_distill.models.faster_rcnn import resolve_arch
from gluon_distill.models.ssd import ModelError
from gluon_distill.training import train_detector

EXPERIMENTS = REPO / 'experiments' / 'voc07_rcnn'
# the paper's Table 3 (VOC07 test mAP, trained on VOC07 trainval)
TABLE3 = {
    'teacher_faster_rcnn_resnet101_v1d': 0.748,
    'baseline_faster_rcnn_resnet50_v1b_roipool': 0.670,
    'faster_rcnn_resnet101_v1d_to_resnet50_v1b_roipool': 0.738,
    'baseline_faster_rcnn_resnet50_v1b_roialign': 0.717,
    'faster_rcnn_resnet101_v1d_to_resnet50_v1b_roialign': 0.740,
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
    capsys.readouterr()
    assert tool('eval')(['--params', str(teacher / 'last.params'), '--nms-thresh', '0.3']) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == 'mAP={:.4f}'.format(logged)


def test_resume_continues_the_run(teacher, synthetic_root, tmp_path):
    out = tmp_path / 'resumed'
    train_detector(rcnn_config(synthetic_root, out))
    summary = train_detector(rcnn_config(synthetic_root, out, **{'train.epochs': 2,
                                                                 'train.resume': True}))
    assert summary['last_epoch'] == 1
    assert [r['epoch'] for r in records(out, 'val')] == [0, 1]


@pytest.fixture
def spy_plan(monkeypatch):
    """The (teacher, plan) of each distillation run, and the teacher's weights at load."""
    family = get_family('faster_rcnn')
    original = family.distillation_plan
    seen = {}

    def plan(cfg, classes, ctx):
        t, p = original(cfg, classes, ctx)
        seen['teacher'], seen['plan'] = t, p
        seen['teacher_at_load'] = {k: v.data().copy() for k, v in
                                   t.net.collect_params().items()}
        seen['rpn_at_start'] = [v.data().copy() for v in
                                p.net.rpn.collect_params().values()]
        return t, p
    monkeypatch.setattr(family, 'distillation_plan', plan)
    return seen


def _teacher_unchanged(seen):
    now = seen['teacher'].net.collect_params()
    return all(np.array_equal(now[k].data().asnumpy(), v.asnumpy())
               for k, v in seen['teacher_at_load'].items())


def test_gan_distillation_stops_after_gan_epochs(teacher, synthetic_root, tmp_path, spy_plan):
    out = tmp_path / 'gan'
    summary = train_distilled(rcnn_config(synthetic_root, out, **{
        'teacher.params': str(teacher / 'last.params'), 'distill.method': 'gan',
        'distill.gan.critic_width': 16, 'distill.gan.epochs': 1, 'train.epochs': 2}))
    train = records(out)
    assert all('Loss_D' in r and 'RPN_Conf' in r for r in train if r['epoch'] == 0)
    assert all('Loss_D' not in r and 'RCNN_SmoothL1' in r for r in train if r['epoch'] == 1)
    assert _teacher_unchanged(spy_plan)
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
    assert _teacher_unchanged(spy_plan)
    capsys.readouterr()
    assert tool('eval')(['--params', str(out / 'student.params'), '--nms-thresh', '0.3']) == 0
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
    assert cfgs['faster_rcnn_resnet101_v1d_to_resnet50_v1b_roialign'].distill.gan.epochs == 26
    teacher_name = 'teacher_faster_rcnn_resnet101_v1d'
    teacher_out = tmp_path / 'teacher'
    train_detector(config_from(dict(small, **{'train.out': str(teacher_out)}),
                               cfgs[teacher_name]))
    for name in ('faster_rcnn_resnet101_v1d_to_resnet50_v1b_roipool',):
        out = tmp_path / name
        train_distilled(config_from(dict(small, **{
            'train.out': str(out), 'teacher.params': str(teacher_out / 'last.params'),
            'distill.gan.critic_width': 16, 'distill.fgfi.warmup_iters': 0}), cfgs[name]))
        (record,) = records(out)
        assert ('Loss_D' in record) == ('gan' in cfgs[name].distill.method)
        assert ('Loss_fgfi' in record) == ('fgfi' in cfgs[name].distill.method)
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
