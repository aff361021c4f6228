"""Tests of checkpoints (round trip, atomicity, errors), device parsing and two training hooks."""
import logging
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gluon_distill  # noqa: E402,F401  (numpy shim before mxnet)
import mxnet as mx  # noqa: E402
from mxnet import autograd, gluon  # noqa: E402
from mxnet.gluon import nn  # noqa: E402

from gluon_distill.engine.checkpoint import (  # noqa: E402
    CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint, save_params)
from gluon_distill.engine.devices import parse_ctx  # noqa: E402
from gluon_distill.engine.hooks import (  # noqa: E402
    LRScheduleHook, NonFiniteGuard, TrainingDiverged)


def make_net(hidden=8, out=3, bn=True):
    net = nn.HybridSequential()
    net.add(nn.Dense(hidden, in_units=5, activation='relu'))
    if bn:
        net.add(nn.BatchNorm(in_channels=hidden))
    net.add(nn.Dense(out, in_units=hidden))
    net.initialize(mx.init.Xavier(), ctx=mx.cpu())
    return net


def make_trainer(net, lr=0.1):
    return gluon.Trainer(net.collect_params(), 'sgd',
                         {'learning_rate': lr, 'momentum': 0.9, 'wd': 1e-3},
                         kvstore=None)


def train_step(nets, trainers, x):
    """One SGD step of every (net, trainer) pair on the same batch."""
    for net, trainer in zip(nets, trainers):
        with autograd.record():
            loss = (net(x) ** 2).sum()
        loss.backward()
        trainer.step(x.shape[0])


def param_values(net):
    return {name: p.data().asnumpy().copy()
            for name, p in net._collect_params_with_prefix().items()}


def assert_same_params(a, b):
    va, vb = param_values(a), param_values(b)
    assert sorted(va) == sorted(vb)
    for name in va:
        np.testing.assert_array_equal(va[name], vb[name], err_msg=name)


def batch(seed):
    rng = np.random.RandomState(seed)
    return mx.nd.array(rng.randn(4, 5))


@pytest.fixture
def trained(tmp_path):
    """Two groups (student with BatchNorm, head without) after two steps with momentum."""
    mx.random.seed(1)
    student, head = make_net(8, 3), make_net(6, 2, bn=False)
    trainers = [make_trainer(student), make_trainer(head, lr=0.05)]
    for seed in (0, 1):
        train_step([student, head], trainers, batch(seed))
    path = str(tmp_path / 'last.ckpt')
    meta = {'epoch': 4, 'iteration': 40, 'best_mAP': 0.25, 'seed': 3}
    save_checkpoint(path, {'student': student, 'head': head},
                    {'student': trainers[0], 'head': trainers[1]}, meta)
    return student, head, trainers, path, meta


# --- round trip --------------------------------------------------------------------------------

def test_round_trip_restores_params_optimizer_state_and_meta(trained):
    student, head, trainers, path, meta = trained
    mx.random.seed(99)  # fresh copies start from different weights
    student2, head2 = make_net(8, 3), make_net(6, 2, bn=False)
    trainers2 = [make_trainer(student2), make_trainer(head2, lr=0.05)]
    with pytest.raises(AssertionError):
        assert_same_params(student, student2)

    got = load_checkpoint(path, {'student': student2, 'head': head2},
                          {'student': trainers2[0], 'head': trainers2[1]})
    assert got == meta
    assert_same_params(student, student2)  # includes BatchNorm running statistics
    assert_same_params(head, head2)

    # one identical step from both: equal only if the momentum buffers were restored too
    train_step([student, head], trainers, batch(2))
    train_step([student2, head2], trainers2, batch(2))
    for a, b in ((student, student2), (head, head2)):
        va, vb = param_values(a), param_values(b)
        for name in va:
            np.testing.assert_allclose(vb[name], va[name], rtol=1e-6, atol=1e-7, err_msg=name)


def test_without_optimizer_state_the_next_step_differs(trained):
    """Control for the test above: restoring only the parameters is not enough."""
    student, head, trainers, path, _ = trained
    student2 = make_net(8, 3)
    trainer2 = make_trainer(student2)
    load_checkpoint(path, {'student': student2}, {})
    train_step([student], [trainers[0]], batch(2))
    train_step([student2], [trainer2], batch(2))
    diffs = [np.abs(a - b).max() for a, b in zip(param_values(student).values(),
                                                  param_values(student2).values())]
    assert max(diffs) > 1e-4


def test_read_checkpoint_contents(trained):
    student, head, _, path, meta = trained
    params, optim, got_meta = read_checkpoint(path)
    assert got_meta == meta
    assert sorted(params) == ['head', 'student']
    assert sorted(optim) == ['head', 'student']
    assert all(isinstance(v, bytes) and v for v in optim.values())
    expected = param_values(student)
    assert sorted(params['student']) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(params['student'][name].asnumpy(), value)


def test_resave_replaces_checkpoint(trained):
    student, head, trainers, path, _ = trained
    train_step([student, head], trainers, batch(5))
    save_checkpoint(path, {'student': student}, {}, {'epoch': 5})
    params, optim, meta = read_checkpoint(path)
    assert meta == {'epoch': 5}
    assert sorted(params) == ['student'] and optim == {}
    np.testing.assert_array_equal(params['student']['0.weight'].asnumpy(),
                                  student[0].weight.data().asnumpy())


# --- atomicity ---------------------------------------------------------------------------------

def test_crash_during_write_keeps_previous_checkpoint(trained, monkeypatch):
    student, head, trainers, path, _ = trained
    directory = os.path.dirname(path)
    with open(path, 'rb') as f:
        before = f.read()
    listing = sorted(os.listdir(directory))
    real_save = mx.nd.save

    def crashing_save(fname, data):
        real_save(fname, data)
        size = os.path.getsize(fname)
        with open(fname, 'r+b') as f:
            f.truncate(size // 2)  # half a file on disk, then the process "dies"
        raise KeyboardInterrupt('simulated crash')

    monkeypatch.setattr(mx.nd, 'save', crashing_save)
    train_step([student, head], trainers, batch(7))
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {'student': student, 'head': head},
                        {'student': trainers[0], 'head': trainers[1]}, {'epoch': 5})
    monkeypatch.undo()

    with open(path, 'rb') as f:
        assert f.read() == before
    assert sorted(os.listdir(directory)) == listing  # no temporary file left behind
    assert read_checkpoint(path)[2]['epoch'] == 4


def test_save_params_crash_keeps_previous_file(tmp_path, monkeypatch):
    net = make_net()
    path = str(tmp_path / 'last.params')
    save_params(path, net)
    with open(path, 'rb') as f:
        before = f.read()

    def broken(self, filename, deduplicate=False):
        with open(filename, 'wb') as f:
            f.write(b'\x00' * 10)
        raise OSError('disk full')

    monkeypatch.setattr(nn.HybridSequential, 'save_parameters', broken)
    with pytest.raises(OSError):
        save_params(path, net)
    monkeypatch.undo()
    with open(path, 'rb') as f:
        assert f.read() == before
    assert os.listdir(str(tmp_path)) == ['last.params']


# --- errors ------------------------------------------------------------------------------------

def test_read_missing_checkpoint_names_path(tmp_path):
    path = str(tmp_path / 'nothing.ckpt')
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    assert path in str(info.value)


def test_read_garbage_checkpoint_names_path(tmp_path):
    path = tmp_path / 'garbage.ckpt'
    path.write_bytes(b'this is not an ndarray file' * 10)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(str(path))
    assert str(path) in str(info.value)


def test_read_plain_params_file_is_not_a_checkpoint(tmp_path):
    path = str(tmp_path / 'net.params')
    make_net().save_parameters(path)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    assert path in str(info.value)
    assert 'meta' in str(info.value)


def test_load_into_net_with_other_shape_names_parameter(trained):
    _, _, _, path, _ = trained
    wrong = make_net(8, 4)  # last layer 4 outputs instead of 3
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, {'student': wrong}, {})
    msg = str(info.value)
    assert '2.weight' in msg
    assert path in msg and 'student' in msg


def test_load_into_net_with_other_structure_names_parameters(trained):
    _, _, _, path, _ = trained
    no_bn = make_net(8, 3, bn=False)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, {'student': no_bn}, {})
    assert '1.gamma' in str(info.value)  # the BatchNorm parameter the net lacks


def test_load_missing_group_or_optimizer(trained):
    _, _, _, path, _ = trained
    with pytest.raises(CheckpointError, match='critics'):
        load_checkpoint(path, {'critics': make_net()}, {})
    net = make_net()
    with pytest.raises(CheckpointError, match='adapters'):
        load_checkpoint(path, {}, {'adapters': make_trainer(net)})


# --- parse_ctx ---------------------------------------------------------------------------------

@pytest.mark.parametrize('spec, expected', [
    ('cpu', [mx.cpu(0)]),
    (None, [mx.cpu(0)]),
    ('', [mx.cpu(0)]),
    (' CPU ', [mx.cpu(0)]),
    ('cpu:0', [mx.cpu(0)]),
    ('cpu:0,1', [mx.cpu(0), mx.cpu(1)]),
    ('cpu:1,0', [mx.cpu(1), mx.cpu(0)]),
])
def test_parse_ctx_cpu(spec, expected):
    assert parse_ctx(spec) == expected


@pytest.mark.skipif(mx.context.num_gpus() > 0, reason='this machine has a GPU')
def test_parse_ctx_gpu_without_gpus():
    with pytest.raises(ValueError, match='gpu:0: this machine has no GPU.*--ctx cpu'):
        parse_ctx('gpu:0')


@pytest.mark.parametrize('spec', ['tpu', 'tpu:0', 'cpu:a', 'cpu:0,0', 'gpu0'])
def test_parse_ctx_rejects(spec):
    with pytest.raises(ValueError):
        parse_ctx(spec)


# --- LRScheduleHook ----------------------------------------------------------------------------

class FakeLoop:
    def __init__(self):
        self.epoch = 0
        self.iteration = 0
        self.outputs = {}


class FakeTrainer:
    def __init__(self):
        self.learning_rate = None

    def set_learning_rate(self, lr):
        self.learning_rate = lr


def test_lr_factor_step_decay_at_step_epochs():
    hook = LRScheduleHook({}, steps=[200, 160], decay=0.1)
    assert hook.factor(0, 0) == pytest.approx(1.0)
    assert hook.factor(159, 10 ** 6) == pytest.approx(1.0)
    assert hook.factor(160, 0) == pytest.approx(0.1)
    assert hook.factor(199, 0) == pytest.approx(0.1)
    assert hook.factor(200, 0) == pytest.approx(0.01)
    assert hook.factor(239, 0) == pytest.approx(0.01)


def test_lr_factor_linear_warmup():
    hook = LRScheduleHook({}, steps=[3], decay=0.5, warmup_iters=4)
    assert [hook.factor(0, i) for i in range(6)] == pytest.approx(
        [0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    # warm-up and decay compose (warm-up counted in iterations, decay in epochs)
    assert hook.factor(3, 1) == pytest.approx(0.5 * 0.5)


def test_lr_hook_sets_every_trainer_before_step():
    student, critic = FakeTrainer(), FakeTrainer()
    hook = LRScheduleHook({'net': (student, 0.01), 'critics': (critic, 0.1)},
                          steps=[2], decay=0.1, warmup_iters=2)
    hook.loop = FakeLoop()
    hook.before_step()
    assert student.learning_rate == pytest.approx(0.005)
    assert critic.learning_rate == pytest.approx(0.05)
    hook.loop.epoch, hook.loop.iteration = 2, 30
    hook.before_step()
    assert student.learning_rate == pytest.approx(0.001)
    assert critic.learning_rate == pytest.approx(0.01)
    assert hook.current == pytest.approx({'net': 0.001, 'critics': 0.01})


def test_lr_hook_drives_a_gluon_trainer():
    net = make_net()
    trainer = make_trainer(net, lr=0.2)
    hook = LRScheduleHook({'net': (trainer, 0.2)}, steps=[1], decay=0.1)
    hook.loop = FakeLoop()
    hook.loop.epoch = 1
    hook.before_step()
    assert trainer.learning_rate == pytest.approx(0.02)


# --- NonFiniteGuard ----------------------------------------------------------------------------

def drive(guard, finite_flags):
    guard.loop = FakeLoop()
    for i, finite in enumerate(finite_flags):
        guard.loop.iteration = i + 1
        guard.loop.outputs = {'loss': 1.0 if finite else float('nan'), 'finite': finite}
        guard.after_step()


@pytest.fixture
def quiet_logger():
    logger = logging.getLogger('test_checkpoint.guard')
    logger.disabled = True
    return logger


def test_guard_raises_after_n_consecutive_nonfinite(quiet_logger):
    guard = NonFiniteGuard(max_consecutive=3, logger=quiet_logger)
    drive(guard, [False, False])
    assert guard.consecutive == 2
    with pytest.raises(TrainingDiverged, match='3 consecutive'):
        drive(guard, [False])


def test_guard_resets_on_finite_step(quiet_logger):
    guard = NonFiniteGuard(max_consecutive=3, logger=quiet_logger)
    drive(guard, [False, False, True, False, False, True, False, False])  # never 3 in a row
    assert guard.consecutive == 2
    assert guard.total == 6
    with pytest.raises(TrainingDiverged):
        drive(guard, [False])


def test_guard_counts_missing_flag_as_finite(quiet_logger):
    guard = NonFiniteGuard(max_consecutive=1, logger=quiet_logger)
    guard.loop = FakeLoop()
    guard.loop.outputs = {'loss': 1.0}
    guard.after_step()
    assert guard.consecutive == 0
    guard.loop.outputs = {'finite': False}
    with pytest.raises(TrainingDiverged):
        guard.after_step()


def test_guard_logs_each_skipped_update(caplog):
    logger = logging.getLogger('test_checkpoint.guard_log')
    guard = NonFiniteGuard(max_consecutive=5, logger=logger)
    with caplog.at_level(logging.WARNING, logger='test_checkpoint.guard_log'):
        drive(guard, [False, True, False])
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert 'non-finite' in warnings[0].getMessage()
