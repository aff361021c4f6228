"""Wasserstein critics, one per feature scale (the paper's "D Net", Fig. 2)."""
import math

from .. import _compat  # noqa: F401
import mxnet as mx
from mxnet.gluon import nn


class Critic(nn.HybridBlock):
    """Down-sampling convolutions to one scalar per image; no BatchNorm (a WGAN critic must
    not couple the samples of a batch), LeakyReLU(0.2).

    A 1x1 convolution brings the map to ``width`` channels, then ``ceil(log2(size))`` 3x3
    stride-2 convolutions take ``size x size`` down to 1 x 1 (16 -> 8 -> 4 -> 2 -> 1 as in the
    paper's drawing), and a 1x1 convolution gives the score.

    Input ``(B, C, size, size)``; output ``(B,)``. With ``in_channels`` (C) every parameter
    has its shape at ``initialize`` (none deferred to the first forward pass), so a trainer
    can load saved optimizer state (``--resume``) before any forward pass.
    """

    def __init__(self, size, width=512, in_channels=0, **kwargs):
        super(Critic, self).__init__(**kwargs)
        self.size = size
        with self.name_scope():
            self.body = nn.HybridSequential(prefix='')
            self.body.add(nn.Conv2D(width, 1, in_channels=in_channels), nn.LeakyReLU(0.2))
            for _ in range(int(math.ceil(math.log2(max(size, 1))))):
                self.body.add(nn.Conv2D(width, 3, strides=2, padding=1, in_channels=width),
                              nn.LeakyReLU(0.2))
            self.body.add(nn.Conv2D(1, 1, in_channels=width))

    def hybrid_forward(self, F, x):
        return F.mean(self.body(x), axis=(1, 2, 3))


class CriticSet(nn.HybridBlock):
    """One :class:`Critic` per paired scale. Input: K maps; output: list of K ``(B,)`` scores."""

    def __init__(self, sizes, width=512, channels=None, **kwargs):
        super(CriticSet, self).__init__(**kwargs)
        channels = channels or [0] * len(sizes)
        self.critics = nn.HybridSequential(prefix='')
        with self.name_scope():
            for size, c in zip(sizes, channels):
                self.critics.add(Critic(size, width, c))

    def hybrid_forward(self, F, *maps):
        return [critic(x) for critic, x in zip(self.critics, maps)]


def clip_weights(params, clip, ctx_list):
    """WGAN weight clipping, in place on every device copy (no KVStore round trip).

    With ``update_on_kvstore=False`` each device holds its own copy, updated identically;
    clipping each copy keeps them identical without asking the KVStore to re-broadcast.
    """
    for param in params.values():
        for ctx in ctx_list:
            data = param.data(ctx)
            mx.nd.clip(data, -clip, clip, out=data)
