"""The ``bn`` critic (the reference WGAN critic, ``distill.critic: bn``): BatchNorm after each
stride-2 convolution, clipping of every trainable parameter but never of the running statistics,
real and fake maps as separate batches, and scores that stay bounded where the un-normalised
clipped critic explodes."""
import numpy as np
import pytest

import gluon_distill  # noqa: F401
import mxnet as mx
from mxnet import autograd
from mxnet.gluon import nn

from gluon_distill.distill.critics import Critic, CriticSet, clip_weights
from gluon_distill.distill.gan import GANDistiller


def _bn_layers(critic):
    return [layer for layer in critic.body if isinstance(layer, nn.BatchNorm)]


def test_bn_after_each_stride2_convolution_only():
    # 16 -> 8 -> 4 -> 2 -> 1: four stride-2 convolutions, four BatchNorms; plain has none
    assert len(_bn_layers(Critic(16, 8, 4, kind='bn'))) == 4
    assert len(_bn_layers(Critic(16, 8, 4, kind='plain'))) == 0
    # a 1x1 map (SSD512's last) has no down-sampling: one BatchNorm after its 1x1 convolution
    assert len(_bn_layers(Critic(1, 8, 4, kind='bn'))) == 1
    with pytest.raises(ValueError, match='distill.critic'):
        Critic(16, 8, 4, kind='batchnorm')


def test_clipping_includes_gamma_beta_but_not_running_statistics():
    critics = CriticSet([8], width=8, channels=[4], kind='bn')
    critics.initialize(mx.init.Normal(0.02))
    params = critics.collect_params()
    for name, p in params.items():
        if name.endswith('beta'):
            p.set_data(mx.nd.ones(p.shape) * 0.5)
    with autograd.record():
        score = critics(mx.nd.random.normal(3.0, 50.0, shape=(8, 4, 8, 8)))[0].sum()
    score.backward()
    stats = {}
    for name, p in params.items():
        if 'running_' in name:
            assert p.grad_req == 'null'
            p.set_data(p.data() * 40 + 2)  # statistics of wide maps, far beyond the clip
            stats[name] = p.data().asnumpy().copy()
    assert len(stats) == 6  # running mean and variance of 3 BatchNorms (8 -> 4 -> 2 -> 1)
    clip_weights(params, 0.03, [mx.cpu()])
    for name, p in params.items():
        value = p.data().asnumpy()
        if 'running_' in name:
            np.testing.assert_array_equal(value, stats[name], err_msg=name)
        else:
            assert np.abs(value).max() <= 0.03 + 1e-7, name
    gammas = [p.data().asnumpy() for n, p in params.items() if n.endswith('gamma')]
    betas = [p.data().asnumpy() for n, p in params.items() if n.endswith('beta')]
    assert gammas and betas
    # initialised at 1 and 0.5, clipped to the bound like every other weight
    assert all(np.allclose(g, 0.03) for g in gammas) and all(np.allclose(b, 0.03) for b in betas)


def test_real_and_fake_go_through_the_critic_as_separate_batches():
    """Each batch is normalised by its own statistics: the teacher's score sum equals a
    critic pass over the teacher batch alone, not its share of a joint real+fake batch."""
    mx.random.seed(1)
    size, c, batch = 4, 3, 4
    d = GANDistiller([(0, 0)], [size], [mx.cpu()], width=8, clip=0.03, channels=[c],
                     critic='bn', critic_batch='separate')
    teacher = mx.nd.random.normal(2.0, 1.0, shape=(batch, c, size, size))
    student = mx.nd.random.normal(0.0, 1.0, shape=(batch, c, size, size))
    (real, fake), = d.critic_forward_backward([[teacher]], [[student]], batch)
    with autograd.record():
        alone_real = d.critic_scores([teacher])[0].sum()
        alone_fake = d.critic_scores([student])[0].sum()
        joint = d.critic_scores([mx.nd.concat(teacher, student, dim=0)])[0]
    np.testing.assert_allclose(real.asnumpy()[0], alone_real.asscalar(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(fake.asnumpy()[0], alone_fake.asscalar(), rtol=1e-5, atol=1e-7)
    assert abs(joint[:batch].sum().asscalar() - alone_real.asscalar()) > 1e-4


def _critic_gap_after(kind, steps=30, width=128, size=8, channels=32, batch=8):
    """W = mean D(student) - mean D(teacher) after ``steps`` critic updates at the paper's
    settings (clip 0.03, Adam 5e-4, beta1 0.5) on two well separated map distributions."""
    mx.random.seed(0)
    d = GANDistiller([(0, 0)], [size], [mx.cpu()], width=width, clip=0.03, lr=5e-4,
                     channels=[channels], critic=kind, critic_batch='separate')
    teacher = mx.nd.random.normal(1.0, 1.0, shape=(batch, channels, size, size))
    student = mx.nd.random.normal(0.0, 1.0, shape=(batch, channels, size, size))
    gaps = []
    for _ in range(steps):
        (real, fake), = d.critic_forward_backward([[teacher]], [[student]], batch)
        gaps.append(float((fake - real).asnumpy()[0]) / batch)
        d.critic_step()
    return gaps


def test_bn_scores_stay_bounded_where_the_plain_critic_explodes():
    """Weight clipping alone bounds each weight, not the critic's gain (fan_in x clip per
    layer): the plain width-128 critic's gap passes 100 within 30 steps; BatchNorm rescales
    every layer and the bn critic stays below 1 (the authors' logs: |Loss_D| <= 14)."""
    plain = _critic_gap_after('plain')
    bn = _critic_gap_after('bn')
    assert max(abs(w) for w in plain) > 100
    assert max(abs(w) for w in bn) < 1.0
    assert bn[-1] > 0  # and it still learns to separate: student scored above teacher
