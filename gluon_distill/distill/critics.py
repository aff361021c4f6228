"""Wasserstein critics, one per feature scale (the paper's "D Net", Fig. 2)."""
import math

import mxnet as mx
from mxnet.gluon import nn


class SpectralNormConv2D(nn.HybridBlock):
    """A convolution whose weight is divided by its largest singular value (spectral
    normalisation, Miyato et al. 2018): a 1-Lipschitz layer, an alternative to WGAN weight
    clipping (WGAN-GP's gradient penalty is not available: MXNet 1.9 cannot differentiate a
    convolution twice).

    The singular value is estimated with one power iteration per forward pass from a
    persistent vector ``u`` (not trained); :meth:`update_u` advances ``u`` on every device
    after each critic update. Input/output as ``nn.Conv2D``.
    """

    def __init__(self, channels, kernel, strides=1, padding=0, in_channels=0, **kwargs):
        super(SpectralNormConv2D, self).__init__(**kwargs)
        self._conv = dict(kernel=(kernel, kernel), stride=(strides, strides),
                          pad=(padding, padding), num_filter=channels)
        with self.name_scope():
            self.weight = self.params.get('weight', shape=(channels, in_channels, kernel,
                                                           kernel), allow_deferred_init=True)
            self.bias = self.params.get('bias', shape=(channels,), init='zeros')
            self.u = self.params.get('u', shape=(1, channels), init=mx.init.Normal(1.0),
                                     grad_req='null', differentiable=False)

    @staticmethod
    def _power_iteration(F, w, u):
        v = F.L2Normalization(F.dot(u, w))                          # (1, I*k*k)
        u_new = F.L2Normalization(F.dot(v, w, transpose_b=True))    # (1, O)
        return v, u_new

    def hybrid_forward(self, F, x, weight, bias, u):
        w = F.reshape(weight, (0, -1))
        v, u_new = self._power_iteration(F, w, F.BlockGrad(u))
        sigma = F.sum(F.dot(F.BlockGrad(u_new), w) * F.BlockGrad(v))
        return F.Convolution(x, F.broadcast_div(weight, F.reshape(sigma, (1, 1, 1, 1))), bias,
                             **self._conv)

    def update_u(self, ctx_list):
        for ctx in ctx_list:
            w = self.weight.data(ctx).reshape((0, -1))
            _, u_new = self._power_iteration(mx.nd, w, self.u.data(ctx))
            self.u.data(ctx)[:] = u_new


CRITICS = ('dcgan', 'bn', 'plain', 'spectral')
# how teacher and student maps meet in a critic's BatchNorm: one batch, or one batch each
CRITIC_BATCHES = ('joint', 'separate')


class Critic(nn.HybridBlock):
    """Down-sampling convolutions to one scalar per image, LeakyReLU(0.2).

    A 1x1 convolution brings the map to ``width`` channels, then ``ceil(log2(size))`` 3x3
    stride-2 convolutions take ``size x size`` down to 1 x 1 (16 -> 8 -> 4 -> 2 -> 1 as in the
    paper's drawing), and a 1x1 convolution gives the score.

    ``kind`` (``distill.critic``):

    * ``bn``: the reference WGAN critic (Arjovsky et al., ``DCGAN_D``): BatchNorm after every
      stride-2 convolution (for a 1 x 1 map, which has none, after the first convolution).
      Used with weight clipping of every trainable parameter (gamma and beta included,
      running statistics never; see :func:`clip_weights`), real and fake maps as separate
      batches, so each batch is normalised by its own statistics. The scores are
      batch statistics of training mode; the running statistics are kept only for the
      checkpoint (with several devices, per device within an epoch, averaged at epoch end
      with the other networks' statistics).
    * ``plain``: the same convolutions without normalisation, clipped only.
    * ``spectral``: :class:`SpectralNormConv2D` layers, no normalisation, no clipping.

    Input ``(B, C, size, size)``; output ``(B,)``. With ``in_channels`` (C) every parameter
    has its shape at ``initialize`` (none deferred to the first forward pass), so a trainer
    can load saved optimizer state (``--resume``) before any forward pass.
    """

    def __init__(self, size, width=512, in_channels=0, kind='plain', **kwargs):
        super(Critic, self).__init__(**kwargs)
        if kind not in CRITICS:
            raise ValueError('distill.critic: expected one of {}, got {!r}'.format(
                ', '.join(CRITICS), kind))
        self.size = size
        conv = SpectralNormConv2D if kind == 'spectral' else nn.Conv2D
        with self.name_scope():
            self.body = nn.HybridSequential(prefix='')
            downs = int(math.ceil(math.log2(max(size, 1))))
            self.body.add(conv(width, 1, in_channels=in_channels))
            if kind == 'bn' and downs == 0:
                # a 1x1 map has no down-sampling convolution to normalise: without this its
                # critic would be the only one whose scale follows its input's
                self.body.add(nn.BatchNorm(in_channels=width))
            self.body.add(nn.LeakyReLU(0.2))
            for _ in range(downs):
                self.body.add(conv(width, 3, strides=2, padding=1, in_channels=width))
                if kind == 'bn':
                    self.body.add(nn.BatchNorm(in_channels=width))
                self.body.add(nn.LeakyReLU(0.2))
            self.body.add(conv(1, 1, in_channels=width))

    def hybrid_forward(self, F, x):
        return F.mean(self.body(x), axis=(1, 2, 3))


class DCGANCritic(nn.HybridBlock):
    """The reference WGAN critic, ``DCGAN_D`` of Arjovsky et al.'s code, on one feature map.

    4x4 stride-2 convolutions with padding 1 and no bias, the width doubling at every step
    from ``base_width``, BatchNorm after every convolution but the first, LeakyReLU 0.2, and
    a final valid convolution the size of what is left (4x4 for power-of-two inputs) to one
    score. Every trainable parameter is clipped by :func:`clip_weights` (gamma and beta
    included, as the reference clamps all of ``netD.parameters()``).

    Maps smaller than ``min_size`` (SSD's 8, 4, 2 and 1 px maps; the reference takes 16 px at
    the least) are resized bilinearly to ``min_size`` first (our reading): every critic then
    has at least one BatchNorm layer, so none has a gain set by its input's scale alone (a
    critic without one reaches scores in the hundreds within 100 steps, docs/method-notes.md).

    The scale of the scores comes from the last layer: clipped weights over a fan-in of
    ``16 x final width`` after a BatchNorm whose gamma and beta are clipped too.

    Input ``(B, C, size, size)``; output ``(B,)``. Maps of ``min_size`` px and more may be
    larger than ``size`` (Faster R-CNN's C4 maps vary with the image): the final convolution
    then gives several scores per image, averaged. With ``in_channels`` (C) nothing is
    deferred (see :class:`Critic`).
    """

    def __init__(self, size, base_width=64, in_channels=0, min_size=16, **kwargs):
        super(DCGANCritic, self).__init__(**kwargs)
        self.size = size
        self.input_size = max(size, min_size)
        csize = self.input_size // 2
        width = base_width
        with self.name_scope():
            self.body = nn.HybridSequential(prefix='')
            self.body.add(nn.Conv2D(width, 4, 2, 1, use_bias=False, in_channels=in_channels))
            self.body.add(nn.LeakyReLU(0.2))
            while csize > 4:
                self.body.add(nn.Conv2D(width * 2, 4, 2, 1, use_bias=False, in_channels=width))
                self.body.add(nn.BatchNorm(in_channels=width * 2))
                self.body.add(nn.LeakyReLU(0.2))
                width *= 2
                csize //= 2
            self.body.add(nn.Conv2D(1, csize, 1, 0, use_bias=False, in_channels=width))
        self.final_width = width

    def hybrid_forward(self, F, x):
        if self.input_size != self.size:
            x = F.contrib.BilinearResize2D(x, height=self.input_size, width=self.input_size)
        # one score per image for a size x size map; a larger map (a two-stage detector's
        # maps vary with the image) leaves several, averaged
        return F.mean(self.body(x), axis=(1, 2, 3))


class CriticSet(nn.HybridBlock):
    """One critic per paired scale (:class:`DCGANCritic` for ``kind`` ``dcgan``, with its
    ``min_size``; else :class:`Critic`). Input: K maps; output: list of K ``(B,)`` scores."""

    def __init__(self, sizes, width=512, channels=None, kind='plain', min_size=16, **kwargs):
        super(CriticSet, self).__init__(**kwargs)
        channels = channels or [0] * len(sizes)
        self.critics = nn.HybridSequential(prefix='')
        with self.name_scope():
            for size, c in zip(sizes, channels):
                self.critics.add(DCGANCritic(size, width, c, min_size) if kind == 'dcgan'
                                 else Critic(size, width, c, kind))

    def hybrid_forward(self, F, *maps):
        return [critic(x) for critic, x in zip(self.critics, maps)]

    def update_spectral_state(self, ctx_list):
        """Advance the power iteration of every spectrally normalised layer."""
        for critic in self.critics:
            for layer in critic.body:
                if isinstance(layer, SpectralNormConv2D):
                    layer.update_u(ctx_list)


def clip_weights(params, clip, ctx_list):
    """WGAN weight clipping, in place on every device copy (no KVStore round trip).

    Every trainable parameter is clipped, BatchNorm's gamma and beta included (as the
    reference WGAN code clamps all of ``netD.parameters()``); parameters without a gradient
    (BatchNorm running mean and variance) are statistics, not weights, and are left alone.
    With ``update_on_kvstore=False`` each device holds its own copy, updated identically;
    clipping each copy keeps them identical without asking the KVStore to re-broadcast.
    """
    for param in params.values():
        if param.grad_req == 'null':
            continue
        for ctx in ctx_list:
            data = param.data(ctx)
            mx.nd.clip(data, -clip, clip, out=data)
