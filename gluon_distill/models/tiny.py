"""A demo-sized multi-scale backbone for CPU runs of minutes, not days.

The zoo backbones cannot learn from scratch on a 2-core CPU in the demo's time budget, so the
demo and the tests plug this block into GluonCV's own :class:`~gluoncv.model_zoo.ssd.SSD`
(``network=None``, ``features=`` a multi-output block). Everything downstream (head, anchors,
targets, loss, distillation) is the code path the zoo networks use.
"""
from mxnet.gluon import nn

#: Output strides of the five feature maps (16, 8, 4, 2, 1 cells at a 128 px input).
TINY_STRIDES = (8, 16, 32, 64, 128)


def tiny_channels(width):
    """Channels of the five maps for a given ``width``."""
    return (2 * width, 4 * width, 4 * width, 2 * width, 2 * width)


def _conv_bn_relu(channels, stride, norm_layer, norm_kwargs):
    block = nn.HybridSequential(prefix='')
    block.add(nn.Conv2D(channels, 3, strides=stride, padding=1, use_bias=False))
    block.add(norm_layer(**(norm_kwargs or {})))
    block.add(nn.Activation('relu'))
    return block


class TinyBackbone(nn.HybridBlock):
    """Plain conv-BN-ReLU stages returning five feature maps.

    Parameters
    ----------
    width : int
        Channel unit; the maps have ``tiny_channels(width)`` channels.
    blocks : int
        Extra stride-1 3x3 convolutions per stage (depth).

    Input ``(B, 3, H, W)``; outputs a list of five maps ``(B, C_k, H / s_k, W / s_k)`` with
    ``s_k`` in :data:`TINY_STRIDES` (sizes rounded up: every stride-2 convolution pads by 1).
    Extra keyword arguments GluonCV's SSD passes to feature builders (``pretrained``, ``ctx``,
    ``root``) are accepted and ignored: this network has no pretrained weights.
    """

    def __init__(self, width=32, blocks=1, norm_layer=nn.BatchNorm, norm_kwargs=None,
                 pretrained=False, ctx=None, root=None, **kwargs):
        super(TinyBackbone, self).__init__(**kwargs)
        self.width = width
        self.blocks = blocks
        with self.name_scope():
            self.stem = nn.HybridSequential(prefix='stem_')
            with self.stem.name_scope():
                self.stem.add(_conv_bn_relu(width // 2, 2, norm_layer, norm_kwargs))
                self.stem.add(_conv_bn_relu(width, 2, norm_layer, norm_kwargs))
            self.stages = nn.HybridSequential(prefix='stage_')
            with self.stages.name_scope():
                for channels in tiny_channels(width):
                    stage = nn.HybridSequential(prefix='')
                    stage.add(_conv_bn_relu(channels, 2, norm_layer, norm_kwargs))
                    for _ in range(blocks):
                        stage.add(_conv_bn_relu(channels, 1, norm_layer, norm_kwargs))
                    self.stages.add(stage)

    def hybrid_forward(self, F, x):
        x = self.stem(x)
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs
