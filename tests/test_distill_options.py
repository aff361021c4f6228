"""Critic and student optimiser options: spectral normalisation, a separate adversarial Adam."""
import numpy as np
import pytest

import gluon_distill  # noqa: F401
import mxnet as mx
from mxnet import autograd

from conftest import tiny_config
from gluon_distill.distill.critics import SpectralNormConv2D, CriticSet
from gluon_distill.distill.run import train_distilled
from gluon_distill.engine.checkpoint import read_checkpoint
from gluon_distill.training import train_detector


def test_spectral_conv_divides_by_the_largest_singular_value():
    ctx = [mx.cpu(0), mx.cpu(1)]
    mx.random.seed(0)
    conv = SpectralNormConv2D(8, 3, strides=2, padding=1, in_channels=4)
    conv.initialize(mx.init.Normal(0.5), ctx=ctx)
    conv.hybridize()
    for _ in range(50):
        conv.update_u(ctx)
    w = conv.weight.data(ctx[0]).asnumpy()
    sigma = np.linalg.svd(w.reshape(8, -1), compute_uv=False)[0]
    assert sigma > 1.5  # the raw weight is far from 1-Lipschitz: normalisation must act
    x = mx.nd.random.uniform(shape=(2, 4, 8, 8), ctx=ctx[0])
    exact = mx.nd.Convolution(x, mx.nd.array(w / sigma, ctx=ctx[0]), conv.bias.data(ctx[0]),
                              kernel=(3, 3), stride=(2, 2), pad=(1, 1), num_filter=8)
    np.testing.assert_allclose(conv(x).asnumpy(), exact.asnumpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(conv.u.data(ctx[0]).asnumpy(), conv.u.data(ctx[1]).asnumpy())
    with autograd.record():
        loss = conv(x).sum()
    loss.backward()
    assert np.isfinite(conv.weight.grad(ctx[0]).asnumpy()).all()
    assert conv.u.grad_req == 'null'


def test_spectral_critics_have_no_clipping_and_bounded_scores():
    critics = CriticSet([4, 2], width=8, channels=[3, 3], kind='spectral')
    critics.initialize(mx.init.Normal(1.0))
    for _ in range(30):
        critics.update_spectral_state([mx.cpu()])
    x = [mx.nd.random.normal(shape=(4, 3, 4, 4)), mx.nd.random.normal(shape=(4, 3, 2, 2))]
    scores = critics(*x)
    # a 1-Lipschitz critic moves by at most |dx| (times the spatial averaging, <= 1)
    dx = [xi * 0 + 0.1 for xi in x]
    moved = critics(*[a + b for a, b in zip(x, dx)])
    for s, m, d in zip(scores, moved, dx):
        per_image = np.sqrt((d.asnumpy() ** 2).reshape(4, -1).sum(axis=1))
        assert (np.abs((m - s).asnumpy()) <= per_image * 1.05 + 1e-5).all()


@pytest.fixture(scope='module')
def teacher_params(synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp('options') / 'teacher'
    train_detector(tiny_config(synthetic_root, out))
    return str(out / 'best.params')


def test_separate_adversarial_adam_trains_checkpoints_and_resumes(synthetic_root, tmp_path,
                                                                  teacher_params):
    sets = {'teacher.params': teacher_params, 'distill.critic_width': 16,
            'distill.adv_optimizer': 'adam', 'train.epochs': 1}
    summary = train_distilled(tiny_config(synthetic_root, tmp_path / 'adam', **sets))
    params, optim, meta = read_checkpoint(str(tmp_path / 'adam' / 'last.ckpt'))
    assert set(optim) == {'student', 'critics', 'adversarial'}
    assert meta['epoch'] == 0 and summary['iterations'] > 0
    sets.update({'train.epochs': 2, 'train.resume': True})
    train_distilled(tiny_config(synthetic_root, tmp_path / 'adam', **sets))
    assert read_checkpoint(str(tmp_path / 'adam' / 'last.ckpt'))[2]['epoch'] == 1


def test_spectral_run_writes_critics_with_power_iteration_state(synthetic_root, tmp_path,
                                                                teacher_params):
    sets = {'teacher.params': teacher_params, 'distill.critic_width': 16,
            'distill.critic': 'spectral', 'train.epochs': 1}
    train_distilled(tiny_config(synthetic_root, tmp_path / 'sn', **sets))
    params, _, _ = read_checkpoint(str(tmp_path / 'sn' / 'last.ckpt'))
    u = [k for k in params['critics'] if k.endswith('u')]
    weights = [v for k, v in params['critics'].items() if k.endswith('weight')]
    assert u, 'no power-iteration vectors saved'
    # not clipped: spectral normalisation replaces clipping
    assert max(float(np.abs(w.asnumpy()).max()) for w in weights) > 0.03


def test_unknown_options_are_errors(synthetic_root, tmp_path, teacher_params):
    from gluon_distill.config import ConfigError
    from gluon_distill.models.ssd import ModelError
    with pytest.raises(ConfigError, match='adv_optimizer: expected one of shared, adam'):
        train_distilled(tiny_config(synthetic_root, tmp_path / 'x', **{
            'teacher.params': teacher_params, 'distill.adv_optimizer': 'rmsprop'}))
    with pytest.raises(ModelError, match='critic_norm.*replaced by distill.critic'):
        train_distilled(tiny_config(synthetic_root, tmp_path / 'y', **{
            'teacher.params': teacher_params, 'distill.critic_norm': 'weird'}))
    with pytest.raises(ConfigError, match='distill.critic: expected one of dcgan, bn, plain, spectral'):
        train_distilled(tiny_config(synthetic_root, tmp_path / 'z', **{
            'teacher.params': teacher_params, 'distill.critic': 'batchnorm'}))


def test_former_critic_norm_key_still_selects_its_critic(synthetic_root, tmp_path,
                                                         teacher_params):
    """``critic_norm: clip`` was the un-normalised clipped critic: it is read as ``plain``
    (no BatchNorm parameters in the checkpoint), and the resolved key is what config.yaml
    records."""
    sets = {'teacher.params': teacher_params, 'distill.critic_width': 8,
            'distill.critic_norm': 'clip', 'train.epochs': 1}
    train_distilled(tiny_config(synthetic_root, tmp_path / 'legacy', **sets))
    params, _, _ = read_checkpoint(str(tmp_path / 'legacy' / 'last.ckpt'))
    assert params['critics'] and not [k for k in params['critics'] if 'running_' in k]
    text = (tmp_path / 'legacy' / 'config.yaml').read_text()
    assert 'critic: plain' in text


def test_critic_watch_warns_once_when_scores_run_away():
    import logging
    from gluon_distill.distill.run import CriticWatch

    class Loop:
        iteration = 7
        outputs = {}

    records = []

    class Handler(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = logging.getLogger('test_critic_watch')
    logger.addHandler(Handler())
    watch = CriticWatch(logger, threshold=50.0)
    watch.loop = Loop()
    for value in (-3.0, 20.0, -49.0):
        Loop.outputs = {'Loss_D': value}
        watch.after_step()
    assert records == []
    for value in (-80.0, -500.0):
        Loop.outputs = {'Loss_D': value}
        watch.after_step()
    assert len(records) == 1 and '80.0' in records[0] and 'distill.gan.critic=bn' in records[0]


@pytest.mark.parametrize('network, expected', [
    ('resnet50_v1', 'ssd_512_resnet50_v1_voc'),
    ('ssd_512_resnet50_v1_coco', 'ssd_512_resnet50_v1_coco'),
])
def test_pretrained_teacher_offline_names_the_zoo_file_of_its_dataset(tmp_path, monkeypatch,
                                                                        network, expected):
    """--teacher-pretrained fetches the zoo weights of the named preset (COCO for a ``_coco``
    name, whose anchors differ); offline, the error names that file and where to put it."""
    from gluon_distill.config import config_from
    from gluon_distill.models.teacher import load_teacher
    from gluon_distill.models.ssd import ModelError
    monkeypatch.setenv('MXNET_HOME', str(tmp_path / 'mxnet_home'))
    cfg = config_from({'teacher.network': network, 'teacher.pretrained': True,
                       'model.data_shape': 512})
    with pytest.raises(ModelError, match='could not download the zoo teacher {}'.format(
            expected)):
        load_teacher(cfg.teacher, cfg.model, ['a'] * 80, [mx.cpu()])
