"""YOLOv3 as the third detector family: GluonCV's network, targets and loss through the shared
loop, evaluator, distillers and export (tiny networks, 96-160 px)."""
import glob
import json
import os

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from conftest import (REPO, SHARED_RACCOON, spy_distillation_plan, teacher_unchanged,
                      tiny_config, tool)
from test_runtime import MAP_TOL, last_metric
from gluon_distill import config as config_module
from gluon_distill.config import ConfigError, config_from, load_config
from gluon_distill.distill.run import train_distilled
from gluon_distill.families import FAMILIES, family_of_spec, get_family
from gluon_distill.families.yolo3 import YOLO3Family
from gluon_distill.models.ssd import ModelError
from gluon_distill.models.yolo3 import (YOLO3Loss, YOLOTrainForward, anchors_per_scale,
                                        map_sizes, resolve_arch, stage_blocks)
from gluon_distill.training import train_detector

EXPERIMENTS = REPO / 'experiments' / 'voc_yolo3'
SIZES = [96, 128, 160]
# GluonCV's published VOC07 test mAPs of its YOLOv3 zoo models (at 416 px): the anchors of
# the configs; None: no published number (a student of ours, a distillation)
GLUONCV_MAP = {
    'teacher_yolo3_darknet53': 0.815,
    'baseline_yolo3_mobilenet1.0': 0.758,
    'baseline_yolo3_mobilenet0.25': None,
}


def yolo_sets(**overrides):
    sets = {'model.family': 'yolo3', 'model.network': 'tiny', 'model.data_shape': 128,
            'model.width': 8, 'model.random_shapes': SIZES, 'model.random_shape_interval': 2,
            'model.pretrained_base': False, 'train.optimizer': 'adam', 'train.lr': 0.001}
    sets.update(overrides)
    return sets


def yolo_config(root, out, **overrides):
    return tiny_config(root, out, **yolo_sets(**overrides))


def records(out, kind='train'):
    return [r for r in map(json.loads, open(os.path.join(out, 'metrics.jsonl')))
            if r['type'] == kind]


def photos_root():
    """The raccoon photos (a VOC root, split 80/20 by the seeded rule), or None."""
    return str(SHARED_RACCOON) if SHARED_RACCOON.is_dir() else None


@pytest.fixture(scope='module')
def data_root(synthetic_root):
    return photos_root() or synthetic_root


@pytest.fixture(scope='module')
def teacher(data_root, tmp_path_factory):
    """A tiny YOLOv3 (width 16) trained by tools/train_yolo3.py for 4 epochs on cpu:0,1, on the
    raccoon photos when present (else the generated shapes), multi-scale 96/128/160 px: the
    first 4 epochs of docs/yolo3.md's 6-epoch command (its best epoch is the fourth)."""
    out = tmp_path_factory.mktemp('yolo3') / 'teacher'
    code = tool('train_yolo3')([
        '--network', 'tiny', '--data-shape', '128', '--data-root', data_root,
        '--train-split', 'train', '--val-split', 'val', '--no-pretrained-base',
        '--ctx', 'cpu:0,1', '--batch-size', '16', '--epochs', '4', '--num-workers', '1',
        '--lr-decay-epoch', '5', '--out', str(out),
        '--set', 'model.random_shapes=[96,128,160]', '--set', 'model.random_shape_interval=1',
        '--set', 'train.optimizer=adam', '--set', 'model.width=16',
        '--set', 'train.progress=false', '--set', 'train.log_interval=5'])
    assert code == 0
    return out


def gluoncv_net(net):
    """GluonCV's own ``YOLOV3`` class with ``net``'s architecture and weights."""
    from gluoncv.model_zoo.yolo.yolo3 import YOLOV3
    arch = net.arch
    theirs = YOLOV3(stage_blocks(arch), list(arch.channels), [list(a) for a in arch.anchors],
                    list(arch.strides), list(net.classes))
    theirs.initialize()
    with autograd.predict_mode():
        theirs(mx.nd.zeros((1, 3, arch.data_shape, arch.data_shape)))
    src = net._collect_params_with_prefix()
    for name, p in theirs._collect_params_with_prefix().items():
        p.set_data(src[name].data())
    return theirs


def exported_map(args, capsys):
    """The mAP tools/eval.py prints for ``args`` (``--params FILE`` or ``--model DIR``)."""
    capsys.readouterr()
    assert tool('eval')(args) == 0
    return last_metric(capsys.readouterr().out)


def tiny_net(width=8, classes=('a', 'b', 'c')):
    cfg = config_from(yolo_sets(**{'model.width': width}))
    return get_family('yolo3').build(cfg.model, list(classes), [mx.cpu()])[0]


# --------------------------------------------------------------------------- the family

def test_family_is_registered_with_its_config_keys():
    assert isinstance(get_family('yolo3'), YOLO3Family)
    assert set(config_module.CHOICES['model.family']) == set(FAMILIES)
    assert isinstance(family_of_spec({'kind': 'yolo3'}), YOLO3Family)
    zoo = {'darknet53': [512, 256, 128], 'yolo3_mobilenet1.0_voc': [512, 256, 128],
           'yolo3_mobilenet0.25_coco': [256, 128, 128]}
    for name, channels in zoo.items():
        arch = resolve_arch(config_from({'model.family': 'yolo3', 'model.network': name,
                                         'model.data_shape': 416}).model)
        assert arch.channels == channels and arch.anchors[2] == [116, 90, 156, 198, 373, 326]
    with pytest.raises(ModelError, match='model.data_shape: YOLOv3 input sizes are multiples'):
        resolve_arch(config_from(yolo_sets(**{'model.data_shape': 100})).model)
    with pytest.raises(ModelError, match='model.random_shapes'):
        resolve_arch(config_from(yolo_sets(**{'model.random_shapes': [96, 120]})).model)
    with pytest.raises(ModelError, match='a YOLOv3 backbone is one of'):
        resolve_arch(config_from(yolo_sets(**{'model.network': 'resnet50_v1'})).model)
    with pytest.raises(ConfigError, match='train.mixup: expected true/false'):
        config_from({'train.mixup': 'yes'})


def test_network_is_gluoncvs_yolov3():
    """Same parameter names and shapes as GluonCV's zoo constructor (zoo weights load by
    structure), and the same outputs as GluonCV's own forward on the same weights."""
    from gluoncv.model_zoo import yolo3_mobilenet0_25_voc
    from gluon_distill.data.voc import VOC_CLASSES
    zoo = yolo3_mobilenet0_25_voc(pretrained_base=False)
    zoo.initialize()
    with autograd.predict_mode():
        zoo(mx.nd.zeros((1, 3, 64, 64)))
    ours = get_family('yolo3').build(config_from({
        'model.family': 'yolo3', 'model.network': 'yolo3_mobilenet0.25_voc',
        'model.data_shape': 64, 'model.pretrained_base': False}).model, VOC_CLASSES,
        [mx.cpu()])[0]
    want = {k: v.shape for k, v in zoo._collect_params_with_prefix().items()}
    assert want == {k: v.shape for k, v in ours._collect_params_with_prefix().items()}
    net = tiny_net()
    theirs = gluoncv_net(net)
    x = mx.nd.random.uniform(shape=(2, 3, 96, 96))
    with autograd.predict_mode():
        for a, b in zip(net(x), theirs(x)):
            assert np.array_equal(a.asnumpy(), b.asnumpy())


def _gluoncv_layout(theirs, size):
    """GluonCV's anchors, offsets and (fake) feature maps of a ``size`` input, as its
    ``YOLO3DefaultTrainTransform`` gets them."""
    with autograd.train_mode():
        _, anchors, offsets, feat_maps, _, _, _, _ = theirs(mx.nd.zeros((1, 3, size, size)))
    return anchors, offsets, feat_maps


def test_targets_equal_gluoncv_generator(synthetic_root):
    """The NumPy targets equal GluonCV's YOLOV3PrefetchTargetGenerator's on the same boxes:
    augmented generated images at three sizes (GluonCV's augmentation draws), random boxes
    with mixup ratios, boxes smaller than a pixel, and padding rows."""
    from gluoncv.model_zoo.yolo.yolo_target import YOLOV3PrefetchTargetGenerator
    from gluon_distill.data.augment import SSDTrainAugment
    from gluon_distill.data.datasets import load_split
    from gluon_distill.data.loader import NumpyImages
    from gluon_distill.data.voc import DetectionDataset
    from gluon_distill.data.yolo_targets import YOLO3TargetGenerator
    net = tiny_net(classes=('circle', 'cross', 'square', 'star', 'triangle'))
    theirs = gluoncv_net(net)
    generator = YOLOV3PrefetchTargetGenerator(num_class=5)
    ours = YOLO3TargetGenerator(5, list(reversed(anchors_per_scale(net.arch))))
    records, classes, _ = load_split(synthetic_root, 'train', None,
                                     config_from({}).data, False)
    images = NumpyImages(DetectionDataset(records[:8], classes))
    rng = np.random.RandomState(0)
    positives = 0
    for case in range(24):
        size = SIZES[case % 3]
        if case < 8:
            np.random.seed(case)
            _, label = SSDTrainAugment(size)(*images[case])
            boxes, ids, ratio = label[:, :4], label[:, 4], None
        else:
            n = rng.randint(1, 6)
            xy = rng.uniform(-2, size - 4, (n, 2))
            wh = rng.uniform(0.2, size * 0.9, (n, 2)) * (rng.uniform(size=(n, 1)) > 0.2)
            boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
            boxes[:, :2] = np.maximum(boxes[:, :2], 0) if case % 2 else boxes[:, :2]
            ids = rng.randint(0, 5, n)
            ratio = rng.uniform(size=n).astype(np.float32) if case % 4 == 1 else None
            if case % 5 == 0:   # padding rows: GluonCV stops at the first
                boxes = np.concatenate([boxes, -np.ones((2, 4), np.float32), boxes[:1]])
                ids = np.concatenate([ids, [-1, -1], ids[:1]])
                ratio = None if ratio is None else np.concatenate([ratio, [1, 1], ratio[:1]])
        anchors, offsets, feat_maps = _gluoncv_layout(theirs, size)
        want = generator(mx.nd.zeros((1, 3, size, size)), feat_maps, anchors, offsets,
                         mx.nd.array(boxes[None]), mx.nd.array(np.asarray(ids)[None, :, None]),
                         None if ratio is None else mx.nd.array(ratio[None, :, None]))
        got = ours(list(reversed(map_sizes(net, size))), (size, size), boxes, ids, ratio)
        for name, a, b in zip(('objectness', 'centers', 'scales', 'weights', 'classes'),
                              want, got):
            assert np.array_equal(a[0].asnumpy(), b), (case, name)
        positives += int((got[0] > 0).sum())
    assert positives > 40


def test_training_transform_equals_gluoncvs(synthetic_root):
    """With ``data.pipeline: gluoncv`` a training sample (image, five targets, boxes) equals
    GluonCV's YOLO3DefaultTrainTransform(size, size, net) on the same seed, mixup included."""
    import random
    from gluoncv.data.transforms.presets.yolo import YOLO3DefaultTrainTransform
    from gluon_distill.data.datasets import load_split
    from gluon_distill.data.voc import DetectionDataset
    from gluon_distill.data.yolo_targets import MixupSource, YOLO3TrainTransform
    net = tiny_net(classes=('circle', 'cross', 'square', 'star', 'triangle'))
    theirs_net = gluoncv_net(net)
    records, classes, _ = load_split(synthetic_root, 'train', None,
                                     config_from({}).data, False)
    dataset = DetectionDataset(records[:6], classes)
    m = config_from({}).model
    from gluoncv.data import MixupDetection
    theirs_mix = MixupDetection(dataset, np.random.beta, 1.5, 1.5)
    for i in range(len(dataset)):     # GluonCV's mixup draws, images and labels
        np.random.seed(i)
        a = theirs_mix[i]
        np.random.seed(i)
        b = MixupSource(dataset, True).get(i, True)
        assert np.array_equal(a[0].asnumpy(), b[0].asnumpy()) and np.array_equal(a[1], b[1])
    for mixup in (False, True):
        source = MixupSource(dataset, mixup)
        ours = YOLO3TrainTransform(5, list(reversed(anchors_per_scale(net.arch))),
                                   {s: list(reversed(map_sizes(net, s))) for s in SIZES},
                                   m.mean, m.std, 'gluoncv', mixup)
        for i in range(len(dataset)):
            size = SIZES[i % 3]
            theirs = YOLO3DefaultTrainTransform(size, size, theirs_net, mixup=mixup)
            np.random.seed(i)
            random.seed(i)
            a = theirs(*source.get(i, True))
            np.random.seed(i)
            random.seed(i)
            b = ours(*source.get(i, True), size)
            assert len(a) == len(b) == 7
            for k, (x, y) in enumerate(zip(a, b)):
                assert np.array_equal(x.asnumpy(), y), (mixup, i, k)


@pytest.mark.parametrize('label_smooth', [False, True])
def test_loss_equals_gluoncvs(label_smooth):
    """The training forward + family loss on two devices' worth of images equal GluonCV's
    own YOLOV3 training call (its target merger and YOLOV3Loss, divided by the batch as its
    trainer.step(batch_size)), with and without label smoothing; gradients flow to every
    trained parameter."""
    from gluon_distill.data.yolo_targets import YOLO3TargetGenerator
    net = tiny_net()
    theirs = gluoncv_net(net)
    theirs._target_generator._label_smooth = label_smooth
    size, batch = 128, 4
    rng = np.random.RandomState(1)
    generator = YOLO3TargetGenerator(3, list(reversed(anchors_per_scale(net.arch))))
    maps = list(reversed(map_sizes(net, size)))
    gts, targets = [], []
    for _ in range(batch):
        xy = rng.uniform(0, 80, (3, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(8, 48, (3, 2))], 1).astype(np.float32)
        gts.append(boxes)
        targets.append(generator(maps, (size, size), boxes, rng.randint(0, 3, 3)))
    gt = mx.nd.array(np.stack(gts))
    fixed = [mx.nd.array(np.stack([t[k] for t in targets])) for k in range(5)]
    x = mx.nd.random.uniform(-1, 1, shape=(batch, 3, size, size))
    halves = [slice(0, 2), slice(2, 4)]      # two devices' shards (BatchNorm: per shard)
    want = np.zeros(4)
    with autograd.record():
        for h in halves:
            want += [l.sum().asscalar() / batch for l in theirs(x[h], gt[h],
                                                                *[f[h] for f in fixed])]
    want = want.tolist()
    loss = YOLO3Loss(3, label_smooth=label_smooth)
    forward = YOLOTrainForward(net)
    with autograd.record():
        outputs = [forward(x[h]) for h in halves]
        totals, parts = loss(outputs, [[gt[h] for h in halves]] +
                             [[f[h] for h in halves] for f in fixed])
    autograd.backward(totals)
    got = [sum(v.asscalar() for v in parts[name]) for name in YOLO3Loss.names]
    assert got == pytest.approx(want, rel=1e-5)
    assert sum(t.asscalar() for t in totals) == pytest.approx(sum(want), rel=1e-5)
    grads = [p for p in net.collect_params().values() if p.grad_req != 'null']
    assert all(float(np.abs(p.grad().asnumpy()).sum()) > 0 for p in grads)


def test_loader_draws_one_size_per_interval(synthetic_root, tmp_path):
    """Every batch has one of model.random_shapes, a new draw every interval batches, the same
    sizes in a rerun of the epoch (seeded by seed, epoch and batch number)."""
    import logging
    from gluon_distill.data.datasets import build_datasets
    cfg = yolo_config(synthetic_root, tmp_path / 'x', **{'train.batch_size': 4,
                                                         'model.random_shape_interval': 3})
    data = build_datasets(cfg.data, logging.getLogger('test'), progress=False)
    net = tiny_net(classes=data.classes)
    family = get_family('yolo3')
    loader = family.train_loader(data.train, net, cfg, [mx.cpu(0), mx.cpu(1)])
    sizes = [b[0].shape[2] for b in loader.epoch(0)]
    assert set(sizes) <= set(SIZES) and len(set(sizes)) > 1
    assert all(sizes[k] == sizes[k - k % 3] for k in range(len(sizes)))
    assert sizes == [b[0].shape[2] for b in loader.epoch(0)]
    batch = next(iter(loader.epoch(1)))
    prepared = loader.prepare(batch)
    assert [x.shape[0] for x in prepared.images] == [2, 2] and prepared.inputs == ()
    n = sum(h * w * 3 for h, w in map_sizes(net, batch[0].shape[2]))
    assert [t[0].shape[1] for t in prepared.targets[1:]] == [n] * 5
    boxes = family.ground_truth_reader(net, 128, mx.cpu())(batch)
    assert len(boxes) == 4 and all(len(b) and (b >= 0).all() for b in boxes)
    # mixup (GluonCV's --mixup) on every epoch but the last train.no_mixup_epochs
    cfg = yolo_config(synthetic_root, tmp_path / 'x', **{
        'train.batch_size': 4, 'train.mixup': True, 'train.epochs': 3,
        'train.no_mixup_epochs': 1})
    loader = family.train_loader(data.train, net, cfg, [mx.cpu()])
    mixed = []
    for epoch in range(3):
        loader.batches.epoch = epoch
        mixed.append({mix for batch in loader.batches for _, _, mix in batch})
    assert mixed == [{True}, {True}, {False}]
    batch = next(iter(loader.epoch(0)))
    assert batch[1].asnumpy().max() <= 1 and 0 < batch[1].asnumpy().max()


# ------------------------------------------------------------------- training, eval, resume

def test_teacher_learns_on_two_devices_and_eval_reproduces_its_best(teacher, capsys):
    """The real loader, targets and loss on cpu:0,1: GluonCV's four loss parts are logged and
    fall; on the photos the best validation mAP passes 0.2; tools/eval.py on best.params
    prints the best mAP validation logged."""
    train = records(teacher)
    assert all(all(n in r for n in YOLO3Loss.names) for r in train)
    assert all(abs(r['loss'] - sum(r[n] for n in YOLO3Loss.names)) < 1e-2 * r['loss']
               for r in train)

    def epoch_loss(e):
        values = [r['loss'] for r in train if r['epoch'] == e]
        return sum(values) / len(values)
    last = max(r['epoch'] for r in train)
    if photos_root():       # 48 generated images in 4 epochs teach it nothing (measured)
        assert epoch_loss(last) < 0.75 * epoch_loss(0)
    spec = json.load(open(teacher / 'model.json'))
    assert spec['kind'] == 'yolo3' and spec['arch']['network'] == 'tiny'
    assert spec['eval'] == {'iou_thresh': 0.5, 'nms_thresh': 0.45, 'nms_topk': 400,
                            'post_nms': 100}
    best = json.load(open(teacher / 'best.json'))
    logged = max(r['mAP'] for r in records(teacher, 'val'))
    assert best['mAP'] == logged and (logged > 0.2 or not photos_root())
    capsys.readouterr()
    assert tool('eval')(['--params', str(teacher / 'best.params')]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == 'mAP={:.4f}'.format(logged)


def test_resume_continues_the_run_exactly(synthetic_root, tmp_path):
    """One epoch, then --resume to two: the same parameters and logged losses as two epochs
    at once (the size draws, augmentation and optimizer state all come back)."""
    from test_distributed import max_difference
    straight, resumed = tmp_path / 'straight', tmp_path / 'resumed'
    train_detector(yolo_config(synthetic_root, straight, **{'train.epochs': 2}))
    train_detector(yolo_config(synthetic_root, resumed))
    summary = train_detector(yolo_config(synthetic_root, resumed, **{'train.epochs': 2,
                                                                     'train.resume': True}))
    assert summary['last_epoch'] == 1
    assert [r['epoch'] for r in records(resumed, 'val')] == [0, 1]
    assert max_difference(straight / 'last.params', resumed / 'last.params') <= 1e-5
    for a, b in zip(records(straight), records(resumed)):
        assert a['loss'] == pytest.approx(b['loss'], rel=1e-5)


def yolo_run_args(data_dir, out, ctx):
    """A tiny seeded YOLOv3 run: 16 generated images, global batch 4, one epoch, sizes
    96/128/160 drawn every batch."""
    args = ['--network', 'tiny', '--data-shape', '128', '--no-pretrained-base',
            '--data-root', 'synthetic', '--batch-size', '4', '--epochs', '1', '--seed', '3',
            '--ctx', ctx, '--out', str(out)]
    for kv in ('data.synthetic.dir={}'.format(data_dir), 'data.synthetic.num_train=16',
               'data.synthetic.num_val=8', 'data.train_split=train', 'data.val_split=val',
               'data.num_workers=0', 'model.width=8', 'train.optimizer=adam',
               'model.random_shapes=[96,128,160]', 'model.random_shape_interval=1',
               'train.log_interval=2', 'train.progress=false'):
        args += ['--set', kv]
    return args


def test_two_workers_train_like_one_process(tmp_path):
    """2 workers with --ctx cpu (dist_sync, loopback) end with the parameters and logged
    losses of one process with --ctx cpu:0,1: both workers draw the same size per batch."""
    from test_distributed import max_difference, one_process, two_workers
    one, dist = tmp_path / 'one', tmp_path / 'dist'
    one_process('train_yolo3.py', yolo_run_args(tmp_path / 'data', one, 'cpu:0,1'), tmp_path)
    two_workers('train_yolo3.py', yolo_run_args(tmp_path / 'data', dist, 'cpu'), tmp_path)
    assert max_difference(dist / 'last.params', one / 'last.params') <= 1e-5
    want, got = records(one), records(dist)
    assert len(got) == len(want) == 2
    for a, b in zip(got, want):
        for name in YOLO3Loss.names:
            assert a[name] == pytest.approx(b[name], rel=1e-5, abs=1e-6)


# ------------------------------------------------------------------------------ distillation

@pytest.fixture
def spy_plan(monkeypatch):
    """The (teacher, plan) of each distillation run and the teacher's weights at load."""
    return spy_distillation_plan(monkeypatch, 'yolo3')


def distill_config(data_root, out, teacher, method, **overrides):
    sets = {'data.root': data_root, 'teacher.params': str(teacher / 'best.params'),
            'distill.method': method, 'distill.gan.critic_width': 16,
            'distill.fgfi.warmup_iters': 0, 'train.ctx': 'cpu:0,1', 'train.batch_size': 16,
            'model.random_shape_interval': 1}
    sets.update(overrides)
    return yolo_config(data_root, out, **sets)


def test_gan_student_with_adapters_distils_and_exports(teacher, data_root, tmp_path, spy_plan,
                                                       capsys):
    """A width-8 student (16/32/64 channels) of the width-16 teacher (32/64/128): 1x1
    adapters feed the teacher's head; the critics train on cpu:0,1 through the unchanged
    loop for two epochs; tools/eval.py on its best.params (on cpu:0,1) prints the best mAP
    its validation logged; the student is a plain YOLOv3 model.json with its adapters,
    folded on export: the MXNet symbol reloads without gluon_distill and gives the Gluon
    detections on a photo, and tools/eval.py --model on the export folder prints the mAP of
    the .params."""
    from gluon_distill.models.io import load_detector
    out = tmp_path / 'gan'
    summary = train_distilled(distill_config(data_root, out, teacher, 'gan', **{
        'distill.fold_adapters': True, 'train.epochs': 2}))
    plan = spy_plan['plan']
    assert plan.net.adapters is not None and plan.pairs == [(0, 0), (1, 1), (2, 2)]
    assert (plan.student_channels, plan.teacher_channels) == ([16, 32, 64], [32, 64, 128])
    assert plan.sizes == [12, 6, 3]         # the critics' maps at the smallest size, 96 px
    train = records(out)
    assert all('Loss_D' in r and 'W2' in r and 'ObjLoss' in r for r in train)
    assert teacher_unchanged(spy_plan)
    spec = json.load(open(out / 'model.json'))
    assert spec['kind'] == 'yolo3' and spec['adapters'] == {
        'student_channels': [16, 32, 64], 'teacher_channels': [32, 64, 128], 'folded': False}
    assert json.load(open(out / 'folded' / 'model.json'))['adapters']['folded']
    # the unfolded student at its best epoch, on two CPU devices, prints the logged best; the
    # folded one at the last epoch the last
    logged = [r['mAP'] for r in records(out, 'val')]
    best = json.load(open(out / 'best.json'))
    assert len(logged) == 2 and best['mAP'] == max(logged)
    assert max(logged) > 0.2 or not photos_root()
    capsys.readouterr()
    for args, mAP in ((['--params', str(out / 'best.params'), '--ctx', 'cpu:0,1'], max(logged)),
                      (['--params', str(out / 'folded' / 'student.params')],
                       summary['last_mAP'])):
        assert tool('eval')(args) == 0
        assert capsys.readouterr().out.strip().splitlines()[-1] == 'mAP={:.4f}'.format(mAP)
    photo = (str(SHARED_RACCOON / 'JPEGImages' / 'raccoon-1.jpg') if photos_root() else
             sorted(glob.glob(os.path.join(data_root, '**', '*.jpg'), recursive=True))[0])
    deploy = tmp_path / 'deploy'
    assert tool('export')(['--params', str(out / 'best.params'), '--out', str(deploy),
                           '--format', 'mxnet', '--verify-image', photo]) == 0
    printed = capsys.readouterr().out
    assert 'adapters folded into the head' in printed
    assert 'verified: exported outputs match the original' in printed
    info = json.load(open(deploy / 'deploy.json'))
    assert info['kind'] == 'yolo3' and info['adapters_folded']
    from gluon_distill.export import image_input
    net, spec = load_detector(str(out / 'best.params'))
    net.set_nms(0.45, 400, 100)
    x = mx.nd.array(image_input([photo], 128, spec['mean'], spec['std']))
    with autograd.predict_mode():
        ref = [o.asnumpy() for o in net(x)]
    block = mx.gluon.SymbolBlock.imports(str(deploy / 'model-symbol.json'), ['data'],
                                         str(deploy / 'model-0000.params'))
    got = [o.asnumpy() for o in block(x)]
    np.testing.assert_allclose(got[1], ref[1], atol=1e-4)
    np.testing.assert_allclose(got[2], ref[2], atol=1e-2)
    # the folded export run by gluon_distill.runtime scores as the unfolded best.params
    assert exported_map(['--model', str(deploy)], capsys) == pytest.approx(max(logged),
                                                                          abs=MAP_TOL)


@pytest.mark.parametrize('method', ['fgfi', 'mimic', 'cosine', 'head_only'])
def test_each_method_runs_one_epoch(method, teacher, data_root, tmp_path, spy_plan, capsys):
    """Every other distiller through the unchanged step on the three adapted maps (FGFI's
    masks from YOLO's anchors of the largest training size, cropped to each batch's maps);
    the student evaluates without its teacher."""
    out = tmp_path / method
    summary = train_distilled(distill_config(data_root, out, teacher, method))
    train = records(out)
    loss = {'fgfi': 'Loss_fgfi', 'mimic': 'Loss_mimic', 'cosine': 'Loss_cosine'}.get(method)
    if loss:
        assert all(r[loss] > 0 for r in train)
    else:
        assert not any(k.startswith('Loss_') for r in train for k in r)
    assert teacher_unchanged(spy_plan)
    capsys.readouterr()
    assert tool('eval')(['--params', str(out / 'student.params')]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == \
        'mAP={:.4f}'.format(summary['last_mAP'])


def test_teacher_exports_to_mxnet_and_onnx_verified(teacher, data_root, tmp_path, capsys):
    """Both formats: MXNet 1.9.1's converter takes YOLOv3's pre-NMS graph; the per-class NMS
    is appended in ONNX ops; both verified against the Gluon network."""
    pytest.importorskip('onnxruntime')
    out = tmp_path / 'deploy'
    capsys.readouterr()
    assert tool('export')(['--params', str(teacher / 'best.params'), '--out', str(out)]) == 0
    assert 'verified: exported outputs match the original' in capsys.readouterr().out
    info = json.load(open(out / 'deploy.json'))
    assert sorted(info['files'].values()) == ['model-0000.params', 'model-raw-symbol.json',
                                              'model-symbol.json', 'model.onnx']
    assert [r['runtime'] for r in info['verification']] == ['mxnet-symbol', 'onnxruntime']
    assert all(r['detections_agree'] for r in info['verification'])
    assert info['preprocess']['resize'] == 'square' and info['preprocess']['size'] == 128
    # tools/eval.py --model and tools/detect.py --model run the exported files through
    # gluon_distill.runtime and give what they give for the .params
    # (tools/eval.py on best.params prints the logged best: test_teacher_learns_...)
    want = json.load(open(teacher / 'best.json'))['mAP']
    for fmt in ('onnx', 'mxnet'):
        assert exported_map(['--model', str(out), '--format', fmt], capsys) == \
            pytest.approx(want, abs=MAP_TOL), fmt
    images = sorted(glob.glob(os.path.join(data_root, '**', '*.jpg'), recursive=True))[:2]
    printed = {}
    for source in (['--params', str(teacher / 'best.params')], ['--model', str(out)]):
        capsys.readouterr()
        assert tool('detect')(source + images + ['--out', str(tmp_path / 'det'),
                                                 '--thresh', '0.05']) == 0
        printed[source[0]] = [l.split() for l in capsys.readouterr().out.splitlines()
                              if l.startswith('  ')]
    want, got = printed['--params'], printed['--model']
    assert (want or not photos_root()) and len(want) == len(got)
    assert [w[0] for w in want] == [g[0] for g in got]
    np.testing.assert_allclose(np.array([g[1:] for g in got], float),
                               np.array([w[1:] for w in want], float), atol=0.11)


def test_runtime_input_is_gluoncvs_yolo_val_transform():
    """deploy.json's square input, made by gluon_distill.runtime, is GluonCV's
    YOLO3DefaultValTransform's (what tools/eval.py --params feeds the network)."""
    from gluoncv.data.transforms.presets.yolo import YOLO3DefaultValTransform
    from gluon_distill.export.run import square_preprocess
    from gluon_distill.runtime import preprocess, read_image
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    img = (read_image(SHARED_RACCOON / 'JPEGImages' / 'raccoon-1.jpg') if photos_root() else
           np.random.RandomState(0).randint(0, 256, (200, 300, 3)).astype(np.uint8))
    ref = YOLO3DefaultValTransform(128, 128, mean, std)(mx.nd.array(img, dtype='uint8'),
                                                         np.zeros((0, 6)))[0].asnumpy()
    x, _ = preprocess(img, square_preprocess(128), mean, std)
    assert np.abs(x[0] - ref).max() <= 1e-6


# -------------------------------------------------------------------- zoo networks and configs

def test_zoo_weights_offline_are_clear_errors(monkeypatch):
    import gluoncv.model_zoo.model_store as store

    def offline(name, **kwargs):
        raise OSError('Network is unreachable')
    monkeypatch.setattr(store, 'get_model_file', offline)
    cfg = config_from({'model.family': 'yolo3', 'model.network': 'darknet53',
                       'model.data_shape': 64, 'model.pretrained_base': True})
    with pytest.raises(ModelError, match=r"ImageNet weights for 'darknet53'.*place the file at "
                                         r".*darknet53-.*\.params, or pass --no-pretrained-base"):
        get_family('yolo3').build(cfg.model, ['a'], [mx.cpu()])
    from gluon_distill.families.yolo3 import load_teacher
    cfg = config_from({'model.family': 'yolo3', 'model.data_shape': 64,
                       'teacher.pretrained': True, 'teacher.network': 'yolo3_darknet53_voc'})
    with pytest.raises(ModelError, match=r'zoo teacher yolo3_darknet53_voc .*place the file at '
                                         r'.*yolo3_darknet53_voc-.*\.params'):
        load_teacher(cfg.teacher, [mx.cpu()], cfg.model)
    cfg.teacher.network = 'mobilenet0.25'
    with pytest.raises(ModelError, match='VOC YOLOv3 weights for darknet53, mobilenet1.0 only'):
        load_teacher(cfg.teacher, [mx.cpu()], cfg.model)


def test_configs_load_and_darknet53_pairs_with_mobilenets(monkeypatch):
    """Every experiments/voc_yolo3 config loads with its GluonCV number; the Darknet53
    teacher (random weights, 64 px) pairs with MobileNet 1.0 (same channels: no adapter) and
    0.25 (64/128/256 -> 256/512/1024: adapters), and a 0.25 student's feature forward and
    loss run through the teacher's head."""
    from gluon_distill.models.teacher import Teacher
    from gluon_distill.families import yolo3 as family_module
    paths = sorted(EXPERIMENTS.glob('*.yaml'))
    cfgs = {p.stem: load_config(str(p)) for p in paths}
    methods = {c.distill.method for c in cfgs.values() if c.teacher.params}
    assert {'gan', 'mimic', 'fgfi', 'cosine', 'head_only'} <= methods
    for name, cfg in cfgs.items():
        assert cfg.model.family == 'yolo3' and cfg.data.train_split == \
            '2007_trainval+2012_trainval'
        assert cfg.experiment.published_mAP == GLUONCV_MAP.get(name)
        assert 'GluonCV' in cfg.experiment.notes or cfg.teacher.params
        assert cfg.model.random_shapes == list(range(320, 609, 32))
        if cfg.teacher.params:
            assert cfg.teacher.params == \
                'runs/voc_yolo3/teacher_yolo3_darknet53/best.params'
    from gluon_distill.data.voc import VOC_CLASSES
    small = {'model.data_shape': 64, 'model.random_shapes': [64],
             'model.pretrained_base': False}
    teacher_cfg = config_from(small, cfgs['teacher_yolo3_darknet53'])
    t_net, t_arch = get_family('yolo3').build(teacher_cfg.model, VOC_CLASSES, [mx.cpu()])
    teacher = Teacher(t_net, t_arch, list(VOC_CLASSES), teacher_cfg.model.mean,
                      teacher_cfg.model.std, 'random darknet53')
    monkeypatch.setattr(family_module, 'load_teacher', lambda *a, **k: teacher)
    family = get_family('yolo3')
    for student, adapters in (('mobilenet1.0', False), ('mobilenet0.25', True)):
        cfg = config_from(small, cfgs['yolo3_darknet53_to_{}'.format(student)])
        _, plan = family.distillation_plan(cfg, VOC_CLASSES, [mx.cpu()])
        assert (plan.net.adapters is not None) == adapters
        assert plan.teacher_channels == [256, 512, 1024] and plan.arch.channels == \
            [512, 256, 128]
    assert plan.student_channels == [64, 128, 256]
    forward = family.feature_forward(plan.net)
    x = mx.nd.random.uniform(shape=(2, 3, 64, 64))
    with autograd.record():
        out = forward(x)
    assert [m.shape[1] for m in out[:3]] == [256, 512, 1024]
    maps = family.teacher_forward(teacher)(x)
    assert [m.shape for m in maps] == [m.shape for m in out[:3]]


def test_mini_reproduction_yolo_arms():
    """The YOLOv3 arms of bench/mini_repro.py: their own teacher (yolo_teacher, twice the
    student's width and depth: adapters), every setting written out; the other arms are
    unchanged."""
    from gluon_distill import mini
    teacher = mini.teacher_config('/tmp/m', 24, family='yolo3')
    assert teacher.train.out == '/tmp/m/yolo_teacher' and teacher.model.family == 'yolo3'
    assert (teacher.model.width, teacher.model.blocks) == (16, 2)
    for arm in ('yolo_baseline', 'yolo_head_only', 'yolo_gan'):
        cfg = mini.arm_config(arm, 1, '/tmp/m', 24, '/tmp/m/yolo_teacher/best.params')
        assert cfg.model.family == 'yolo3' and (cfg.model.width, cfg.model.blocks) == (8, 1)
        assert cfg.model.random_shapes == [96, 128, 160] and cfg.model.data_shape == 128
        assert cfg.train.out == '/tmp/m/{}_seed1'.format(arm) and cfg.train.lr_steps == [19]
        if arm != 'yolo_baseline':
            assert cfg.teacher.params == '/tmp/m/yolo_teacher/best.params'
            assert cfg.distill.init_head_from_teacher
    gan = mini.arm_config('yolo_gan', 0, '/tmp/m', 24, 't').distill
    assert (gan.method, gan.gan.critic, gan.gan.critic_width, gan.gan.clip) == \
        ('gan', 'dcgan', 64, 0.03)
    assert mini.ARMS['yolo_gan'] == mini.ARMS['gan']
    assert mini._reference_arm('yolo_gan') == 'yolo_head_only'
    assert mini._reference_arm('yolo_head_only') == 'yolo_baseline'
    ssd = mini.arm_config('gan', 0, '/tmp/m', 40, 't')
    assert ssd.model.family == 'ssd' and (ssd.model.width, ssd.model.blocks) == (16, 1)
