"""The default critic (``distill.gan.critic: dcgan``): the WGAN reference critic ``DCGAN_D``
(4x4 stride-2 convolutions without bias, width doubling, BatchNorm after every convolution
but the first, a final valid convolution to one score), our rule for maps below 16 px, and
teacher and student maps normalised together (``critic_batch: joint``), which lets the critic
see a difference of scale that separate batches divide out."""
import numpy as np
import pytest

import gluon_distill  # noqa: F401
import mxnet as mx
from mxnet import autograd
from mxnet.gluon import nn

from gluon_distill.distill.critics import DCGANCritic, CriticSet, clip_weights
from gluon_distill.distill.gan import GANDistiller


def _layers(critic, kind):
    return [layer for layer in critic.body if isinstance(layer, kind)]


@pytest.mark.parametrize('size, convs, widths, final_kernel', [
    (64, 5, [8, 16, 32, 64], 4),   # 64 -> 32 -> 16 -> 8 -> 4, then 4x4 valid: DCGAN_D at 64
    (32, 4, [8, 16, 32], 4),
    (16, 3, [8, 16], 4),
    (8, 3, [8, 16], 4),            # below 16 px: resized to 16, the same critic as for 16
    (1, 3, [8, 16], 4),
    (38, 4, [8, 16, 32], 4),       # SSD300's 38 px: 19 -> 9 -> 4
    (20, 4, [8, 16, 32], 2),       # 20 -> 10 -> 5 -> 2 (the reference halves while > 4), then
                                   # a final convolution the size of what is left
])
def test_dcgan_critic_layers(size, convs, widths, final_kernel):
    critic = DCGANCritic(size, base_width=8, in_channels=3)
    conv = _layers(critic, nn.Conv2D)
    assert len(conv) == convs
    assert [c._channels for c in conv[:-1]] == widths
    assert all(c._kwargs['kernel'] == (4, 4) and c._kwargs['stride'] == (2, 2) and
               c._kwargs['pad'] == (1, 1) for c in conv[:-1])
    assert conv[-1]._kwargs['kernel'] == (final_kernel, final_kernel)
    assert conv[-1]._kwargs['pad'] == (0, 0) and conv[-1]._channels == 1
    assert all(c.bias is None for c in conv)
    # BatchNorm after every convolution but the first and the last
    assert len(_layers(critic, nn.BatchNorm)) == convs - 2
    assert isinstance(critic.body[1], nn.LeakyReLU) and critic.body[1]._alpha == 0.2
    critic.initialize(mx.init.Normal(0.02))
    with autograd.record():
        out = critic(mx.nd.random.normal(shape=(5, 3, size, size)))
    assert out.shape == (5,)


def test_small_maps_are_resized_and_every_critic_has_a_batchnorm():
    """The reference takes 16 px at the least; a 1 px map resized to 16 px is a constant map,
    and its score does not follow the input's scale (the BatchNorm divides it out)."""
    critic = DCGANCritic(1, base_width=8, in_channels=4)
    critic.initialize(mx.init.Normal(0.02))
    x = mx.nd.random.normal(shape=(6, 4, 1, 1))
    with autograd.record():
        small = critic(x * 100).asnumpy()   # (at x1 BatchNorm's epsilon still shows: 2%)
        large = critic(x * 1000).asnumpy()
    np.testing.assert_allclose(small, large, rtol=1e-4, atol=1e-6)
    assert len(_layers(critic, nn.BatchNorm)) == 1


def test_clipping_covers_every_weight_and_gamma_beta():
    critics = CriticSet([16, 4], width=8, channels=[4, 4], kind='dcgan')
    critics.initialize(mx.init.Normal(0.5))
    params = critics.collect_params()
    clip_weights(params, 0.03, [mx.cpu()])
    trainable = [p for p in params.values() if p.grad_req != 'null']
    assert any(n.endswith('gamma') for n in params.keys())
    for p in trainable:
        assert np.abs(p.data().asnumpy()).max() <= 0.03 + 1e-7, p.name


def _gap_after(critic_batch, scale=3.0, steps=60, size=16, channels=32, batch=8):
    """W = mean D(student) - mean D(teacher) after ``steps`` critic updates at the paper's
    settings, the student's maps being the teacher's times ``scale``."""
    mx.random.seed(0)
    d = GANDistiller([(0, 0)], [size], [mx.cpu()], width=16, clip=0.03, lr=5e-4,
                     channels=[channels], critic='dcgan', critic_batch=critic_batch)
    teacher = mx.nd.relu(mx.nd.random.normal(shape=(batch, channels, size, size)))
    student = teacher * scale
    for _ in range(steps):
        (real, fake), = d.critic_forward_backward([[teacher]], [[student]], batch)
        d.critic_step()
    (real, fake), = d.critic_forward_backward([[teacher]], [[student]], batch)
    return float((fake - real).asnumpy()[0]) / batch


def test_joint_batch_sees_a_difference_of_scale_that_separate_batches_cannot():
    """Convolution and LeakyReLU are positively homogeneous: with each batch normalised by its
    own statistics, a student map 3x the teacher's scores like it (up to BatchNorm's epsilon,
    which the critic slowly learns to exploit). Normalised together, the critic separates them."""
    separate, joint = _gap_after('separate'), _gap_after('joint')
    assert abs(separate) < 0.1
    assert joint > 0.3 and joint > 5 * abs(separate)


def test_joint_scores_are_one_pass_over_teacher_and_student():
    mx.random.seed(2)
    d = GANDistiller([(0, 0)], [8], [mx.cpu()], width=8, clip=0.03, channels=[4],
                     critic='dcgan', critic_batch='joint')
    teacher = mx.nd.random.normal(1.0, 1.0, shape=(3, 4, 8, 8))
    student = mx.nd.random.normal(0.0, 2.0, shape=(3, 4, 8, 8))
    (real, fake), = d.critic_forward_backward([[teacher]], [[student]], 3)
    with autograd.record():
        joint = d.critic_scores([mx.nd.concat(teacher, student, dim=0)])[0]
        adversarial = d.adversarial_loss([student], 3, [teacher])
        alone = d.critic_scores([student])[0]
    np.testing.assert_allclose(real.asnumpy()[0], joint[:3].sum().asscalar(), rtol=1e-5)
    np.testing.assert_allclose(fake.asnumpy()[0], joint[3:].sum().asscalar(), rtol=1e-5)
    # the student's adversarial term is its half of the joint pass, not a pass of its own
    np.testing.assert_allclose(adversarial.asscalar(), joint[3:].sum().asscalar() / 3,
                               rtol=1e-5)
    assert abs(adversarial.asscalar() - alone.sum().asscalar() / 3) > 1e-4


def test_unknown_critic_batch_is_an_error():
    with pytest.raises(ValueError, match='critic_batch: expected one of joint, separate'):
        GANDistiller([(0, 0)], [8], [mx.cpu()], channels=[4], critic_batch='both')


def test_maps_larger_than_the_critic_size_average_their_final_scores():
    """Faster R-CNN's C4 maps vary with the image: a critic built for 32 px maps scores a
    32 x 48 map by the mean of its final positions, and one below 16 px resizes any map."""
    critic = DCGANCritic(32, base_width=4, in_channels=3)
    critic.initialize(mx.init.Normal(0.02))
    x = mx.nd.random.normal(shape=(2, 3, 32, 48))
    with autograd.record():
        score = critic(x)
        positions = critic.body(x)
    assert positions.shape == (2, 1, 1, 3) and score.shape == (2,)
    np.testing.assert_allclose(score.asnumpy(), positions.asnumpy().mean(axis=(1, 2, 3)),
                               rtol=1e-5)
    small = DCGANCritic(8, base_width=4, in_channels=3)
    small.initialize(mx.init.Normal(0.02))
    with autograd.record():
        assert small(mx.nd.random.normal(shape=(2, 3, 8, 12))).shape == (2,)
