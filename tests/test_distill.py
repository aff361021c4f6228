"""GAN knowledge distillation: the mechanism on demo-sized (64 px, tiny) networks.

Teacher frozen, critics clipped and learning to separate, the student learning to fool them,
gradients where they belong, multi-device equivalence, save/reload/fold of the deployable
student, the teacher/student compatibility checks and the distillation run's checkpoints.
"""
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import gluon_distill  # noqa: F401
import mxnet as mx
from mxnet import autograd
from mxnet.gluon import nn

from conftest import REPO, tiny_config
from gluon_distill.data.datasets import build_datasets
from gluon_distill.data.loader import TrainLoader, split_batch
from gluon_distill.families.ssd import SSDLoss
from gluon_distill.models.teacher import Teacher, check_teacher, plan_student
from gluon_distill.distill.gan import GANDistiller
from gluon_distill.distill.step import DistillStep
from gluon_distill.distill.run import EpochToStep, train_distilled
from gluon_distill.models.student import fold
from gluon_distill.engine.checkpoint import read_checkpoint
from gluon_distill.engine.loop import HookBase, TrainLoop
from gluon_distill.engine.steps import make_trainer
from gluon_distill.models.io import load_detector
from gluon_distill.models.ssd import ModelError, anchors_of, build_ssd, initialize, resolve_arch
from gluon_distill.models.tiny import TinyBackbone
from gluon_distill.training import train_detector

SIZE = 64
TEACHER_WIDTH = 16      # teacher maps: 32, 64, 64, 32, 32 channels
STUDENT_WIDTH = 8       # student maps: 16, 32, 32, 16, 16 channels (adapters lift them)
CRITIC_WIDTH = 16


# ----------------------------------------------------------------------------- helpers

@pytest.fixture(scope='module')
def data(synthetic_root, tmp_path_factory):
    cfg = tiny_config(synthetic_root, tmp_path_factory.mktemp('cfg'))
    return cfg, build_datasets(cfg.data, progress=False)


def _teacher(classes, cfg, ctx, seed=11):
    """A randomly initialised tiny SSD teacher (one forward pass finishes its head's init)."""
    mx.random.seed(seed)
    arch = resolve_arch('tiny', SIZE, width=TEACHER_WIDTH)
    net = build_ssd(arch, classes)
    initialize(net, ctx)
    anchors_of(net, SIZE, ctx[0])
    return Teacher(net, arch, list(classes), list(cfg.model.mean), list(cfg.model.std),
                   'random-teacher')


def _setup(data, ctx, lr=1e-3, optimizer='adam', seed=5, clip=0.03, critic_lr=5e-4,
           adv_weight=1.0, gan_epochs=-1, teacher=None):
    """Teacher, plan, distiller and DistillStep, all on ``ctx``."""
    cfg, ds = data
    teacher = teacher or _teacher(ds.classes, cfg, ctx)
    mx.random.seed(seed)
    plan = plan_student(teacher, cfg.model, ds.classes, ctx)
    anchors_of(plan.net, SIZE, ctx[0])   # as train_distilled: finishes deferred shapes
    params = plan.net.collect_params()
    if plan.critic_adapters is not None:
        params.update(plan.critic_adapters.collect_params())
    kv = 'device' if len(ctx) > 1 else None
    trainer = make_trainer(params, optimizer, lr=lr, wd=0.0, kvstore=kv)
    distiller = GANDistiller(plan.pairs, plan.sizes, ctx, width=CRITIC_WIDTH, clip=clip,
                             lr=critic_lr, adv_weight=adv_weight, gan_epochs=gan_epochs,
                             channels=[plan.teacher_channels[t] for _, t in plan.pairs])
    step = DistillStep(plan.net, teacher.net.features, ctx, trainer, distiller,
                       plan.critic_adapters)
    return teacher, plan, distiller, step


_BATCHES = {}


def _batch(data, batch_size=8, index=0):
    """A fixed training batch (targets from the tiny SSD's anchors, which depend only on
    the architecture)."""
    key = (batch_size, index)
    if key not in _BATCHES:
        cfg, ds = data
        net = build_ssd(resolve_arch('tiny', SIZE, width=STUDENT_WIDTH), ds.classes)
        initialize(net, [mx.cpu()])
        loader = TrainLoader(ds.train, SIZE, anchors_of(net, SIZE), batch_size, cfg.model.mean,
                             cfg.model.std, seed=1)
        for i, batch in enumerate(loader.epoch(0)):
            if i == index:
                _BATCHES[key] = batch
                break
    return _BATCHES[key]


def _snapshot(params, ctx=None):
    return {name: p.data(ctx or p.list_ctx()[0]).asnumpy().copy()
            for name, p in params.items()}


def _materialise_critics(distiller, step, batch):
    """Run the critics once so their deferred parameters get shapes and values."""
    images = split_batch(batch, step.ctx_list)[0]
    for x in images:
        with autograd.predict_mode():
            maps = step.forward(x)[:-2]
        distiller.critic_scores(distiller.select(maps, maps)[0])


def _critic_gap(distiller, teacher_maps, student_maps):
    """W = mean D(student) - mean D(teacher), summed over scales (the critics' objective), as
    training computes it: training mode, real and fake as separate batches (the default bn
    critic normalises each by its own statistics)."""
    with autograd.train_mode():
        fake = distiller.critic_scores(student_maps)
        real = distiller.critic_scores(teacher_maps)
    return float(sum(f.mean().asscalar() - r.mean().asscalar() for f, r in zip(fake, real)))


# ------------------------------------------------------------------- 1. frozen teacher

def test_teacher_bit_identical_after_distillation_steps(data):
    """Weights *and* BatchNorm running statistics of the teacher do not move (a random
    teacher has running mean 0 / var 1; MXNet moves them when a recorded train-mode pass is
    back-propagated), and the maps the critics see are the teacher's inference-mode maps
    (running statistics, not the batch's)."""
    ctx = [mx.cpu(0)]
    teacher, _, _, step = _setup(data, ctx)
    step.hybridize(static_alloc=True, static_shape=True)   # as train_distilled does
    before = _snapshot(teacher.net.collect_params())
    assert any('running_mean' in n for n in before) and any('running_var' in n for n in before)
    seen = []
    teacher_maps = step.teacher_maps
    step.teacher_maps = lambda images: seen.append(teacher_maps(images)) or seen[-1]
    for i in range(3):
        out = step.run_step(_batch(data, index=i))
        assert out['finite'] and 'Loss_D' in out
    after = _snapshot(teacher.net.collect_params())
    for name in before:
        assert np.array_equal(before[name], after[name]), name
    # the maps the critics saw are inference-mode maps (running statistics, not batch ones)
    assert len(seen) == 3
    with autograd.predict_mode():
        expected = teacher.net.features(_batch(data, index=2)[0].as_in_context(ctx[0]))
    for got, want in zip(seen[-1][0], expected):
        np.testing.assert_allclose(got.asnumpy(), want.asnumpy(), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------- 2. clipping

def test_critic_weights_clipped_after_every_update(data):
    """clip=0.01 is below the critics' N(0, 0.02) initial weights, so clipping is active
    (some weight sits on the bound) and an unclipped update would leave weights outside."""
    ctx = [mx.cpu(0), mx.cpu(1)]
    clip = 0.01
    _, _, distiller, step = _setup(data, ctx, clip=clip)
    params = distiller.critics.collect_params()
    for i in range(3):
        step.run_step(_batch(data, index=i))
        at_bound = 0
        for name, p in params.items():
            if p.grad_req == 'null':
                continue  # BatchNorm running statistics of the default bn critic: not weights
            for c in ctx:
                w = p.data(c).asnumpy()
                assert np.abs(w).max() <= clip + 1e-9, (i, name, c, np.abs(w).max())
                at_bound += int(np.sum(np.isclose(np.abs(w), clip)))
        assert at_bound > 0


# ------------------------------------------------------------------- 3. critics learn

def test_critic_gap_widens_with_student_frozen(data):
    """Critic updates alone (fixed teacher and student maps) raise W = mean D(student) -
    mean D(teacher): the critics learn to score teacher maps low and student maps high."""
    ctx = [mx.cpu(0)]
    _, _, d, step = _setup(data, ctx)
    batch = _batch(data)
    x = batch[0].as_in_context(ctx[0])
    with autograd.predict_mode():
        student_maps = [m.detach() for m in step.forward(x)[:-2]]
    teacher_maps = step.teacher_maps([x])[0]
    s_maps, t_maps = d.select(student_maps, teacher_maps)
    student_before = _snapshot(step.student.collect_params())
    d.critic_scores(s_maps)
    gaps = [_critic_gap(d, t_maps, s_maps)]
    for _ in range(8):
        d.critic_forward_backward([t_maps], [s_maps], int(x.shape[0]))
        d.critic_step()
        gaps.append(_critic_gap(d, t_maps, s_maps))
    assert gaps[-1] > gaps[0], gaps
    assert sum(b > a for a, b in zip(gaps, gaps[1:])) >= 6, gaps   # a steady climb
    for name, value in _snapshot(step.student.collect_params()).items():
        assert np.array_equal(value, student_before[name]), name


# ------------------------------------------------------------------- 4. student fools critics

class _ZeroSSDLoss:
    """Stands in for SSDMultiBoxLoss: zero (but recorded) SSD loss, so a DistillStep updates
    the student on the adversarial term alone."""

    def __call__(self, cls_preds, box_preds, cls_targets, box_targets):
        zeros = [0 * c.sum(axis=(1, 2)) + 0 * b.sum(axis=(1, 2))
                 for c, b in zip(cls_preds, box_preds)]
        return zeros, zeros, zeros


def _mean_student_score(step, d, x):
    with autograd.train_mode():   # the BatchNorm mode the student is trained in
        maps = step.forward(x)[:-2]
        scores = d.critic_scores(d.select(maps, maps)[0])
    return float(sum(s.mean().asscalar() for s in scores))


def test_student_steps_lower_adversarial_loss_with_critics_frozen(data):
    """Five student-only updates through ``DistillStep.run_step`` (critic update disabled, SSD
    loss zeroed) must lower mean D(student).

    Critic weights are clipped to 0.03, so scores are ~1e-3 and their gradients tiny: SGD with
    lr 1 and adv_weight 100 makes a step move the score by a measurable amount. The whole
    computation is deterministic (same batch, same weights; a control run with lr 0 gives
    bit-identical scores, checked below), so any drop is the student's doing; we demand a drop
    of at least 20% of the initial |mean D(student)| -- several times the change float
    rounding could cause (< 1e-6 relative), and well short of the drop seen (> 50%).
    """
    ctx = [mx.cpu(0)]
    batch = _batch(data)
    x = batch[0].as_in_context(ctx[0])
    results = {}
    for lr in (0.0, 1.0):
        _, _, d, step = _setup(data, ctx, lr=lr, optimizer='sgd', adv_weight=100.0)
        step.loss = SSDLoss(_ZeroSSDLoss())
        _materialise_critics(d, step, batch)
        # critics' clipped init, then frozen: no critic update inside the step
        d.critic_step = lambda: None
        # trainable critic parameters (not the bn critic's running statistics, which every
        # training-mode pass updates and no score here uses)
        weights = {n: p for n, p in d.critics.collect_params().items() if p.grad_req != 'null'}
        for p in weights.values():
            p.set_data(mx.nd.clip(p.data(), -0.03, 0.03))
        critics_before = _snapshot(weights)
        before = _mean_student_score(step, d, x)
        for _ in range(5):
            assert step.run_step(batch)['finite']
        after = _mean_student_score(step, d, x)
        for name, value in _snapshot(weights).items():
            assert np.array_equal(value, critics_before[name]), name
        results[lr] = (before, after)
    assert results[0.0][0] == results[0.0][1] == results[1.0][0], results
    before, after = results[1.0]
    assert after < before - 0.2 * abs(before), results


# ------------------------------------------------------------------- 5. gradient flow

def _positive_everywhere(batch, student, sizes):
    """``batch`` with one positive anchor per scale and image added: the synthetic shapes are
    too small to match the largest anchors, and a scale without positives leaves its box
    predictor without SSD gradient (the adversarial term reaches only the maps)."""
    images, cls_targets, box_targets = batch
    cls = cls_targets.asnumpy()
    start = 0
    for pred, size in zip(student.class_predictors, sizes):
        per_cell = pred.predictor.weight.shape[0] // (student.num_classes + 1)
        cls[:, start] = 1 + np.arange(cls.shape[0]) % student.num_classes
        start += per_cell * size * size
    assert start == cls.shape[1]
    return images, mx.nd.array(cls), box_targets


def test_gradients_reach_student_not_teacher(data):
    ctx = [mx.cpu(0)]
    teacher, plan, d, step = _setup(data, ctx)
    assert plan.head == 'teacher'
    student = plan.net
    step.run_step(_positive_everywhere(_batch(data), student, plan.sizes))
    groups = {'backbone': student.features.backbone.collect_params(),
              'adapters': student.features.adapters.collect_params(),
              'head': student.class_predictors.collect_params()}
    groups['head'].update(student.box_predictors.collect_params())
    assert len(list(groups["adapters"].keys())) == 5       # every map needs lifting (8 -> 16 width)
    for group, params in groups.items():
        trained = [p for p in params.values() if p.grad_req != 'null']
        assert trained, group
        for p in trained:
            assert float(mx.nd.abs(p.grad()).sum().asscalar()) > 0, (group, p.name)
    # critics got their gradient too (the adversarial backward leaves it in place)
    for p in d.critics.collect_params().values():
        if p.grad_req == 'null':
            continue  # the bn critic's running statistics
        assert float(mx.nd.abs(p.grad()).sum().asscalar()) > 0, p.name
    for p in teacher.net.collect_params().values():
        if p.grad_req == 'null':
            continue
        assert float(mx.nd.abs(p.grad()).sum().asscalar()) == 0, p.name


def test_adversarial_gradient_alone_reaches_backbone_and_adapters(data):
    """With the SSD loss zeroed, only the adversarial term can reach backbone and adapters."""
    ctx = [mx.cpu(0)]
    _, plan, _, step = _setup(data, ctx)
    step.loss = SSDLoss(_ZeroSSDLoss())
    step.run_step(_batch(data))
    features = plan.net.features.collect_params()
    trained = [p for p in features.values() if p.grad_req != 'null']
    nonzero = [p.name for p in trained if float(mx.nd.abs(p.grad()).sum().asscalar()) > 0]
    assert len(nonzero) == len(trained), set(p.name for p in trained) - set(nonzero)


# ------------------------------------------------------------------- 6. two devices

class _Recorder:
    """Wraps the step's loss and the distiller's critic/adversarial computations to keep the
    per-device values."""

    def __init__(self, step):
        self.values = {}
        loss, d = step.loss.multibox, step.distiller
        cfb, adv = d.critic_forward_backward, d.adversarial_loss

        def rec_loss(*args):
            out = loss(*args)
            self.values['ssd'] = [[a.asnumpy() for a in group] for group in out]
            return out

        def rec_cfb(*args):
            out = cfb(*args)
            self.values.setdefault('critic', []).append(
                [(r.asnumpy(), f.asnumpy()) for r, f in out])
            return out

        def rec_adv(*args):
            out = adv(*args)
            self.values.setdefault('adv', []).append(out.asnumpy())
            return out
        step.loss.multibox, d.critic_forward_backward, d.adversarial_loss = (rec_loss, rec_cfb,
                                                                             rec_adv)


def test_two_cpu_contexts_match_one_context(data):
    """Per-device SSD, critic and adversarial losses on two CPU contexts equal those of one
    context fed the same two shards; after the update the device copies agree."""
    two, one = [mx.cpu(0), mx.cpu(1)], [mx.cpu(0)]
    batch = _batch(data)
    teacher2 = _teacher(data[1].classes, data[0], two)
    teacher1 = _teacher(data[1].classes, data[0], one)
    _, plan2, d2, step2 = _setup(data, two, optimizer='sgd', lr=0.1, teacher=teacher2)
    _, plan1, d1, step1 = _setup(data, one, optimizer='sgd', lr=0.1, teacher=teacher1)
    _materialise_critics(d2, step2, batch)
    _materialise_critics(d1, step1, batch)
    for a, b in ((teacher1.net, teacher2.net), (plan1.net, plan2.net),
                 (d1.critics, d2.critics)):
        pa, pb = a.collect_params(), b.collect_params()
        assert list(pa.keys()) and len(list(pa.keys())) == len(list(pb.keys()))
        for p1, p2 in zip(pa.values(), pb.values()):
            p1.set_data(p2.data(mx.cpu(0)))
    # the one-context run: the same two shards, both on cpu(0)
    step1.ctx_list = [mx.cpu(0), mx.cpu(0)]
    step1.prepare = lambda b: split_batch(b, step1.ctx_list)
    rec2, rec1 = _Recorder(step2), _Recorder(step1)
    out2 = step2.run_step(batch)
    out1 = step1.run_step(batch)
    assert out2['finite'] and out1['finite']
    for key in ('ssd', 'critic', 'adv'):
        flat2 = _flatten(rec2.values[key])
        flat1 = _flatten(rec1.values[key])
        assert len(flat2) == len(flat1) > 0, key
        for a, b in zip(flat2, flat1):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7, err_msg=key)
    for k in ('CrossEntropy', 'SmoothL1', 'Loss_D'):
        np.testing.assert_allclose(out2[k], out1[k], rtol=1e-5, atol=1e-7)

    for block2, block1 in ((plan2.net, plan1.net), (d2.critics, d1.critics)):
        changed = 0
        params1 = list(block1.collect_params().values())
        for p2, p1 in zip(block2.collect_params().values(), params1):
            if p2.grad_req == 'null':      # BatchNorm running statistics are per device
                continue
            copies = [p2.data(c).asnumpy() for c in two]
            np.testing.assert_array_equal(copies[0], copies[1], err_msg=p2.name)
            np.testing.assert_allclose(copies[0], p1.data().asnumpy(), rtol=1e-4, atol=1e-5,
                                       err_msg=p2.name)
            changed += 1
        assert changed > 10


def _flatten(values):
    out = []
    if isinstance(values, np.ndarray):
        return [values]
    for v in values:
        out.extend(_flatten(v))
    return out


# ------------------------------------------------------------------- 8a. folding

def test_fold_gives_same_raw_predictions_without_adapters(data):
    ctx = [mx.cpu(0)]
    _, plan, _, step = _setup(data, ctx)
    step.run_step(_batch(data))                  # trained a little: not the init values
    student = plan.net
    folded = fold(student)
    x = _batch(data)[0].as_in_context(ctx[0])
    with autograd.train_mode():
        cls_a, box_a, _ = student(x)
        cls_b, box_b, _ = folded(x)
    np.testing.assert_allclose(cls_b.asnumpy(), cls_a.asnumpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(box_b.asnumpy(), box_a.asnumpy(), rtol=1e-4, atol=1e-4)
    assert float(mx.nd.abs(cls_a).max().asscalar()) > 1e-2     # not trivially zero
    assert folded.features.adapters is None
    assert not [n for n in folded.collect_params() if 'adapter' in n]
    for k, c in enumerate(plan.student_channels):
        assert folded.class_predictors[k].predictor.weight.shape[1] == c
        assert folded.box_predictors[k].predictor.weight.shape[1] == c
        assert student.class_predictors[k].predictor.weight.shape[1] == \
            plan.teacher_channels[k] != c


# ------------------------------------------------------------------- 9. errors and layouts

def test_check_teacher_names_both_sides(data):
    cfg, ds = data
    classes = ds.classes
    teacher = _teacher(classes, cfg, [mx.cpu()])
    check_teacher(teacher, classes, cfg.model)           # a matching teacher passes
    cases = [
        ('classes', dict(classes=list(classes[:-1]) + ['dog']), ['dog', classes[-1]]),
        ('classes', dict(classes=list(reversed(classes))),
         [str(list(reversed(classes))), str(list(classes))]),
        ('input size', dict(arch=resolve_arch('tiny', 128, width=TEACHER_WIDTH)),
         ['128 px', '64 px']),
        ('mean', dict(mean=[0.5, 0.5, 0.5]), ['0.5', str(cfg.model.mean[0])]),
        ('std', dict(std=[1.0, 1.0, 1.0]), ['1.0', str(cfg.model.std[0])]),
    ]
    for what, change, sides in cases:
        other = Teacher(**dict(teacher.__dict__, **change))
        with pytest.raises(ModelError) as err:
            check_teacher(other, classes, cfg.model)
        msg = str(err.value)
        assert what in msg, msg
        for side in sides:
            assert side in msg, (side, msg)


class _Net:
    """Just enough of an SSD for plan_student: a ``features`` block."""

    def __init__(self, features):
        self.features = features


class _FirstMaps(nn.HybridBlock):
    """A tiny backbone returning only its first ``n`` maps."""

    def __init__(self, n, **kwargs):
        super(_FirstMaps, self).__init__(**kwargs)
        self.n = n
        with self.name_scope():
            self.body = TinyBackbone(width=TEACHER_WIDTH)

    def hybrid_forward(self, F, x):
        return self.body(x)[:self.n]


class _OddSizes(nn.HybridBlock):
    """Maps of 12 x 12 and 3 x 3 at 64 px input: no tiny student map has those sizes."""

    def hybrid_forward(self, F, x):
        a = F.Pooling(x, kernel=(5, 5), stride=(5, 5), pool_type='avg')
        return [a, F.Pooling(a, kernel=(4, 4), stride=(4, 4), pool_type='avg')]


def _fake_teacher(cfg, classes, features):
    features.initialize(ctx=[mx.cpu()])
    return Teacher(_Net(features), resolve_arch('tiny', SIZE, width=TEACHER_WIDTH),
                   list(classes), list(cfg.model.mean), list(cfg.model.std), 'fake')


def test_plan_student_without_common_sizes_is_an_error(data):
    cfg, ds = data
    teacher = _fake_teacher(cfg, ds.classes, _OddSizes())
    with pytest.raises(ModelError) as err:
        plan_student(teacher, cfg.model, ds.classes, [mx.cpu()])
    msg = str(err.value)
    assert 'share no spatial size' in msg
    assert '3x12x12' in msg and '16x8x8' in msg, msg       # both sides' maps named


def test_other_map_count_keeps_own_head_and_pairs_equal_sizes(data):
    """A 4-map teacher against the 5-map tiny student: own head, critics on equal sizes;
    the step trains, also past gan_epochs (the critic-only adapters then get no gradient)."""
    cfg, ds = data
    ctx = [mx.cpu()]
    teacher = _fake_teacher(cfg, ds.classes, _FirstMaps(4))
    _, plan, d, step = _setup(data, ctx, teacher=teacher, gan_epochs=1)
    assert plan.head == 'own'
    # student maps 8, 4, 2, 1, 1; teacher maps 8, 4, 2, 1
    assert plan.pairs == [(0, 0), (1, 1), (2, 2), (3, 3), (4, 3)]
    assert plan.sizes == [8, 4, 2, 1, 1]
    assert plan.critic_adapters is not None
    assert plan.net.features.__class__.__name__ == 'TinyBackbone'   # no adapters in the head
    assert plan.net.class_predictors[0].predictor.weight.shape[1] == 2 * STUDENT_WIDTH
    out = step.run_step(_batch(data))
    assert out['finite'] and len([k for k in out if re.match(r'^W\d$', k)]) == 5
    step.epoch = 1
    out = step.run_step(_batch(data))          # adversarial term off
    assert out['finite'] and 'Loss_D' not in out


# ------------------------------------------------------------------- 10. gan_epochs

class _CriticWatch(HookBase):
    def __init__(self, critics):
        self.critics = critics
        self.records = []

    def after_step(self):
        self.records.append((self.loop.epoch, dict(self.loop.outputs),
                             _snapshot(self.critics.collect_params())))


def test_gan_epochs_switches_adversarial_term_off(data):
    cfg, ds = data
    ctx = [mx.cpu()]
    _, plan, d, step = _setup(data, ctx, gan_epochs=1)
    loader = TrainLoader(ds.train, SIZE, anchors_of(plan.net, SIZE), 16, cfg.model.mean,
                         cfg.model.std, seed=1)
    watch = _CriticWatch(d.critics)
    TrainLoop(step, loader, 2, [EpochToStep(), watch]).train()
    first = [r for r in watch.records if r[0] == 0]
    second = [r for r in watch.records if r[0] == 1]
    assert len(first) == len(second) == 3
    for _, out, _ in first:
        assert 'Loss_D' in out and out['finite']
    # critics moved during epoch 0
    assert any(not np.array_equal(first[0][2][n], first[-1][2][n]) for n in first[0][2])
    for _, out, weights in second:
        assert out['finite']
        assert not any(k.startswith('Loss_D') or re.match(r'^W\d$', k) for k in out), out
        for name, value in weights.items():
            assert np.array_equal(value, first[-1][2][name]), name


# ------------------------------------------------------------------- non-finite guard

def test_non_finite_critic_skips_the_student_update(data):
    """NaN in a critic (the authors' resumed run went NaN) must not reach the student."""
    ctx = [mx.cpu()]
    _, plan, d, step = _setup(data, ctx)
    batch = _batch(data)
    step.run_step(batch)
    p = list(d.critics.collect_params().values())[0]
    p.set_data(p.data() * np.nan)
    before = _snapshot(plan.net.collect_params())
    out = step.run_step(batch)
    assert not out['finite']
    for name, p in plan.net.collect_params().items():
        if p.grad_req != 'null':
            assert np.array_equal(p.data().asnumpy(), before[name]), name


# ------------------------------------------------------------------- runs on disk

@pytest.fixture(scope='module')
def teacher_dir(synthetic_root, tmp_path_factory):
    """A tiny teacher (width 16) trained for one epoch with train_detector."""
    out = tmp_path_factory.mktemp('teacher')
    cfg = tiny_config(synthetic_root, out, **{'model.width': TEACHER_WIDTH})
    train_detector(cfg)
    return out


def _distill_config(root, teacher_params, out, **overrides):
    sets = {'teacher.params': str(teacher_params), 'distill.critic_width': CRITIC_WIDTH}
    sets.update(overrides)
    return tiny_config(root, out, **sets)


def test_saved_student_reloads_and_evaluates_without_teacher(synthetic_root, teacher_dir,
                                                             tmp_path, monkeypatch):
    import gluon_distill.models.teacher as build_module
    from gluon_distill.evaluation.inference import prepare_for_inference
    plans = []

    def keep_plan(*args, **kwargs):
        plans.append(plan_student(*args, **kwargs))
        return plans[-1]
    monkeypatch.setattr(build_module, 'plan_student', keep_plan)  # the SSD family's planner

    # a private copy of the teacher, deleted before the student is loaded and evaluated
    tdir = tmp_path / 'teacher'
    shutil.copytree(teacher_dir, tdir)
    out = tmp_path / 'student'
    cfg = _distill_config(synthetic_root, tdir / 'last.params', out,
                          **{'distill.fold_adapters': True})
    summary = train_distilled(cfg)
    assert summary['student'] == str(out / 'student.params')
    spec = json.load(open(out / 'model.json'))
    assert spec['kind'] == 'distilled_ssd' and not spec['adapters']['folded']
    shutil.rmtree(tdir)

    x = mx.nd.array(np.random.RandomState(0).randn(4, 3, SIZE, SIZE).astype(np.float32))
    trained = plans[0].net                      # the in-memory student of the run
    prepare_for_inference(trained)
    net, loaded_spec = load_detector(str(out / 'student.params'))
    assert loaded_spec['kind'] == 'distilled_ssd'
    assert net.features.adapters is not None
    ids, scores, boxes = [a.asnumpy() for a in net(x)]
    ids0, scores0, boxes0 = [a.asnumpy() for a in trained(x)]
    assert (ids >= 0).any()
    np.testing.assert_array_equal(ids, ids0)
    np.testing.assert_allclose(scores, scores0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(boxes, boxes0, rtol=1e-5, atol=1e-4)

    # folded export (8b): loads alone, no adapters, same raw predictions as the unfolded one
    folded, fspec = load_detector(str(out / 'folded' / 'student.params'))
    assert fspec['adapters']['folded'] is True
    assert folded.features.adapters is None
    assert not [n for n in folded.collect_params() if 'adapter' in n]
    with autograd.train_mode():
        cls_a, box_a, _ = net(x)
        cls_b, box_b, _ = folded(x)
    np.testing.assert_allclose(cls_b.asnumpy(), cls_a.asnumpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(box_b.asnumpy(), box_a.asnumpy(), rtol=1e-4, atol=1e-4)

    res = subprocess.run([sys.executable, str(REPO / 'tools' / 'eval.py'), '--params',
                          str(out / 'student.params')], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    last = res.stdout.strip().splitlines()[-1]
    assert re.match(r'^mAP=\d\.\d{4}$', last), res.stdout[-500:]


def test_head_only_ablation_has_no_critics(synthetic_root, teacher_dir, tmp_path):
    out = tmp_path / 'head_only'
    cfg = _distill_config(synthetic_root, teacher_dir / 'last.params', out,
                          **{'distill.method': 'head_only'})
    train_distilled(cfg)
    assert (out / 'student.params').exists()
    params, optim, meta = read_checkpoint(str(out / 'last.ckpt'))
    assert 'critics' not in params and 'critics' not in optim
    assert meta['epoch'] == 0
    net, spec = load_detector(str(out / 'student.params'))
    assert spec['kind'] == 'distilled_ssd'


def test_gan_checkpoint_groups_and_resume(synthetic_root, teacher_dir, tmp_path):
    out = tmp_path / 'gan'
    cfg = _distill_config(synthetic_root, teacher_dir / 'last.params', out,
                          **{'train.epochs': 2})
    train_distilled(cfg)
    params, optim, meta = read_checkpoint(str(out / 'last.ckpt'))
    assert {'student', 'critics'} <= set(params)
    assert {'student', 'critics'} <= set(optim)
    assert meta['epoch'] == 1
    critics_2 = {k: v.asnumpy() for k, v in params['critics'].items()}

    cfg = _distill_config(synthetic_root, teacher_dir / 'last.params', out,
                          **{'train.epochs': 3, 'train.resume': True})
    summary = train_distilled(cfg)
    params, optim, meta = read_checkpoint(str(out / 'last.ckpt'))
    assert meta['epoch'] == 2
    assert 'continuing at epoch 2' in (out / 'train.log').read_text()
    records = [json.loads(l) for l in open(out / 'metrics.jsonl')]
    assert sorted({r['epoch'] for r in records if r['type'] == 'val'}) == [0, 1, 2]
    assert any('Loss_D' in r for r in records if r['type'] == 'train' and r['epoch'] == 2)
    assert any(not np.array_equal(critics_2[k], params['critics'][k].asnumpy())
               for k in critics_2)
    assert summary['iterations'] == 3 * 6
