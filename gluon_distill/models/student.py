"""The distilled student: student backbone -> adapters -> the teacher's SSD head.

The composed student *is* a GluonCV :class:`~gluoncv.model_zoo.ssd.SSD` whose ``features``
block is :class:`StudentFeatures` (backbone + adapters) and whose predictors and anchors are
built from the teacher's architecture and initialised from the teacher's weights. It answers
exactly like any GluonCV SSD (training: ``cls_preds, box_preds, anchors``; inference: ``ids,
scores, boxes``), so the loss, evaluation and export code need no special case.
"""
import mxnet as mx
from mxnet.gluon import nn
from gluoncv.model_zoo.ssd import SSD

from .ssd import arch_from_dict, build_ssd, initialize, ModelError


class ChannelAdapters(nn.HybridBlock):
    """Per-scale 1x1 convolutions (no bias, no activation) lifting student channels to the
    teacher's; identity where they already agree.

    Being linear and bias-free, each adapter folds exactly into the following 3x3 predictor
    convolution (zero padding commutes with a per-pixel linear map): see :func:`fold`.

    Input: list of K maps ``(B, s_k, H_k, W_k)``; output: list of ``(B, t_k, H_k, W_k)``.
    """

    def __init__(self, student_channels, teacher_channels, **kwargs):
        super(ChannelAdapters, self).__init__(**kwargs)
        if len(student_channels) != len(teacher_channels):
            raise ModelError('adapters: {} student maps but {} teacher maps'.format(
                len(student_channels), len(teacher_channels)))
        self.student_channels = list(student_channels)
        self.teacher_channels = list(teacher_channels)
        self.convs = []
        with self.name_scope():
            for k, (s, t) in enumerate(zip(student_channels, teacher_channels)):
                if s == t:
                    self.convs.append(None)
                    continue
                conv = nn.Conv2D(t, 1, use_bias=False, in_channels=s, prefix='adapter%d_' % k,
                                 weight_initializer=mx.init.Xavier(magnitude=1))
                self.register_child(conv, 'adapter%d' % k)
                self.convs.append(conv)

    def hybrid_forward(self, F, *maps):
        return [x if conv is None else conv(x) for x, conv in zip(maps, self.convs)]


class StudentFeatures(nn.HybridBlock):
    """Student backbone followed (optionally) by adapters: the ``features`` of the student SSD.

    Input ``(B, 3, S, S)``; output the list of K maps the head consumes.
    """

    def __init__(self, backbone, adapters=None, **kwargs):
        super(StudentFeatures, self).__init__(**kwargs)
        self.backbone = backbone
        self.adapters = adapters
        self.register_child(backbone, 'backbone')
        if adapters is not None:
            self.register_child(adapters, 'adapters')

    def hybrid_forward(self, F, x):
        maps = self.backbone(x)
        return self.adapters(*maps) if self.adapters is not None else maps


def compose_student(backbone, adapters, head_arch, classes):
    """A GluonCV SSD over ``StudentFeatures(backbone, adapters)`` with ``head_arch``'s anchors
    and predictors (parameters of the head not yet initialised)."""
    features = StudentFeatures(backbone, adapters)
    return SSD(None, head_arch.data_shape, lambda **kwargs: features, None, head_arch.sizes,
               head_arch.ratios, head_arch.steps, classes=list(classes))


def copy_head(source, target):
    """Copy the class and box predictors of SSD ``source`` into SSD ``target``."""
    for group in ('class_predictors', 'box_predictors'):
        for src, dst in zip(getattr(source, group), getattr(target, group)):
            for (_, p_src), (_, p_dst) in zip(sorted(src.collect_params().items()),
                                              sorted(dst.collect_params().items())):
                if p_dst.shape and 0 not in p_dst.shape and p_dst.shape != p_src.shape:
                    raise ModelError('head copy: {} has shape {}, {} expects {}'.format(
                        p_src.name, p_src.shape, p_dst.name, p_dst.shape))
                p_dst.set_data(p_src.data(p_src.list_ctx()[0]))


def fold(student, ctx=None):
    """An equivalent student without adapters: each 1x1 adapter ``A`` (t x s) is multiplied
    into the predictor weights ``W`` (o x t x 3 x 3) that read its output, giving
    ``W' = W . A`` (o x s x 3 x 3); biases are unchanged. Raw predictions agree to float
    rounding and the deployed network costs what a plain student SSD costs."""
    ctx = ctx or student.class_predictors[0].predictor.weight.list_ctx()
    adapters = student.features.adapters
    if adapters is None:
        return student
    head_arch = student.head_arch
    folded = compose_student(student.features.backbone, None, head_arch, student.classes)
    folded.head_arch = head_arch
    folded.student_arch = student.student_arch
    folded.adapter_channels = (adapters.student_channels, adapters.teacher_channels)
    initialize(folded, ctx)
    with mx.autograd.train_mode():  # resolve the predictors' deferred input channels
        folded(mx.nd.zeros((1, 3, head_arch.data_shape, head_arch.data_shape), ctx=ctx[0]))
    for group in ('class_predictors', 'box_predictors'):
        for k, (src, dst) in enumerate(zip(getattr(student, group), getattr(folded, group))):
            weight = src.predictor.weight.data(ctx[0])
            conv = adapters.convs[k]
            if conv is not None:
                a = conv.weight.data(ctx[0]).reshape((0, -1))           # (t, s)
                o, t, kh, kw = weight.shape
                w = weight.transpose((0, 2, 3, 1)).reshape((-1, t))     # (o*kh*kw, t)
                weight = mx.nd.dot(w, a).reshape((o, kh, kw, -1)).transpose((0, 3, 1, 2))
            dst.predictor.weight.set_data(weight)
            dst.predictor.bias.set_data(src.predictor.bias.data(ctx[0]))
    return folded


def feature_shapes(block, data_shape, ctx):
    """``[(C, H, W), ...]`` of the maps ``block`` returns for one ``data_shape`` image."""
    with mx.autograd.predict_mode():
        maps = block(mx.nd.zeros((1, 3, data_shape, data_shape), ctx=ctx))
    return [tuple(m.shape[1:]) for m in maps]


def build_student_from_spec(spec):
    """The (uninitialised) distilled student described by a ``model.json`` spec."""
    student_arch = arch_from_dict(spec['student_arch'])
    head_arch = arch_from_dict(spec['arch'])
    classes = spec['classes']
    backbone = build_ssd(student_arch, classes).features
    adapters = None
    info = spec['adapters']
    if not info['folded'] and info['student_channels'] != info['teacher_channels']:
        adapters = ChannelAdapters(info['student_channels'], info['teacher_channels'])
    net = compose_student(backbone, adapters, head_arch, classes)
    net.head_arch = head_arch
    net.student_arch = student_arch
    return net
