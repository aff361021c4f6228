"""SSD (GluonCV's ``SSD``): the one-stage family, and the first :class:`DetectorFamily`."""
import numpy as np

import mxnet as mx
from mxnet.gluon import nn

from ..data.loader import TrainLoader
from ..engine.distributed import world
from ..engine.loss import MultiBoxLoss
from ..evaluation.inference import predict, prepare_for_inference, prepare_for_training
from ..models.io import model_spec, load_start_params
from ..models.ssd import resolve_arch, build_ssd, initialize, anchors_of, ssd_head
from .base import DetectorFamily


class SSDLoss:
    """The SSD multibox loss in the family form: ``(head outputs, (cls_targets, box_targets))``
    per device -> ``(totals, {'CrossEntropy': ..., 'SmoothL1': ...})``.

    ``multibox``: any callable with ``gluoncv.loss.SSDMultiBoxLoss``'s signature (default
    :class:`~gluon_distill.engine.loss.MultiBoxLoss`, the same math without a host wait).
    """

    def __init__(self, multibox=None):
        self.multibox = multibox or MultiBoxLoss()

    def __call__(self, outputs, targets):
        cls_targets, box_targets = targets
        sums, cls_loss, box_loss = self.multibox([o[0] for o in outputs], [o[1] for o in outputs],
                                                 cls_targets, box_targets)
        return sums, {'CrossEntropy': cls_loss, 'SmoothL1': box_loss}


class SSDFeatureForward(nn.HybridBlock):
    """The SSD's maps and raw predictions from one backbone pass.

    GluonCV's ``SSD.__call__`` never returns features, so this composes the SSD's own parts
    (:func:`~gluon_distill.models.ssd.ssd_head`): ``features`` -> (pair adapters) -> maps
    for the distillers, and the SSD's predictors over the head's input maps. Output: ``K``
    maps, then ``cls_preds (B, N, C+1)``, ``box_preds (B, N, 4)``.
    """
    num_head_outputs = 2

    def __init__(self, ssd, critic_adapters=None, **kwargs):
        super(SSDFeatureForward, self).__init__(**kwargs)
        self.ssd = ssd
        self.register_child(ssd, 'ssd')
        self.critic_adapters = critic_adapters
        if critic_adapters is not None:
            self.register_child(critic_adapters, 'critic_adapters')

    def hybrid_forward(self, F, x):
        maps = self.ssd.features(x)
        cls_preds, box_preds = ssd_head(F, self.ssd, maps)
        critic_maps = maps if self.critic_adapters is None else self.critic_adapters(*maps)
        return list(critic_maps) + [cls_preds, box_preds]


def decode_box_targets(cls_targets, box_targets, anchors, box_norm=(0.1, 0.1, 0.2, 0.2)):
    """The ground-truth corners of one image from its SSD targets.

    ``cls_targets (N,)`` (0 background), ``box_targets (N, 4)`` (GluonCV's encoding over
    ``box_norm``), ``anchors (N, 4)`` centre format. Each box is matched by at least one
    anchor; the decoded copies are merged (rounded to 1e-3 px).
    """
    pos = np.asarray(cls_targets).reshape(-1) > 0
    if not pos.any():
        return np.zeros((0, 4))
    t = np.asarray(box_targets, np.float64).reshape((-1, 4))[pos]
    a = np.asarray(anchors, np.float64).reshape((-1, 4))[pos]
    n = np.asarray(box_norm, np.float64)
    cx = t[:, 0] * n[0] * a[:, 2] + a[:, 0]
    cy = t[:, 1] * n[1] * a[:, 3] + a[:, 1]
    w = np.exp(t[:, 2] * n[2]) * a[:, 2]
    h = np.exp(t[:, 3] * n[3]) * a[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    return np.unique(np.round(boxes, 3), axis=0)


class TargetGroundTruth:
    """Reads each image's ground truth back from a batch's SSD targets (the loader encodes
    the boxes in its workers; decoding them is exact up to 1e-3 px). ``anchors (N, 4)``."""

    def __init__(self, anchors):
        self.anchors = np.asarray(anchors).reshape((-1, 4))

    def __call__(self, batch):
        cls_targets, box_targets = batch[1].asnumpy(), batch[2].asnumpy()
        return [decode_box_targets(c, b, self.anchors) for c, b in zip(cls_targets, box_targets)]


def scale_anchors(ssd, data_shape, ctx):
    """Per map of ``ssd.features``, its anchors ``(H, W, A, 4)`` (NumPy, input pixels)."""
    with mx.autograd.predict_mode():
        maps = ssd.features(mx.nd.zeros((1, 3, data_shape, data_shape), ctx=ctx))
    out = []
    for m, generator in zip(maps, ssd.anchor_generators):
        h, w = m.shape[2:]
        out.append(generator(m).asnumpy().reshape((h, w, -1, 4)))
    return out


class SSDFamily(DetectorFamily):
    """GluonCV's SSD: zoo backbones by name (``model.network``), one input size
    (``model.data_shape``), targets encoded in the loader's workers against the net's anchors,
    multibox loss, VOC07 validation on the NMS outputs."""
    name = 'ssd'
    loss_names = ('CrossEntropy', 'SmoothL1')

    def build(self, model_cfg, classes, ctx):
        m = model_cfg
        arch = resolve_arch(m.network, m.data_shape, m.width, m.blocks)
        net = build_ssd(arch, classes, pretrained_base=m.pretrained_base)
        initialize(net, ctx)
        if m.params:
            load_start_params(net, m.params, ctx)
        return net, arch

    def spec(self, arch, classes, model_cfg, prov, extra=None):
        return model_spec(arch, classes, model_cfg.mean, model_cfg.std, prov, 'ssd', extra)

    def train_loader(self, dataset, net, cfg, ctx):
        m, t = cfg.model, cfg.train
        anchors = anchors_of(net, m.data_shape, ctx[0])
        return TrainLoader(dataset, m.data_shape, anchors, t.batch_size, m.mean, m.std, ctx,
                           seed=t.seed, num_workers=cfg.data.num_workers,
                           pipeline=cfg.data.pipeline, world=world())

    def training_forward(self, net):
        return net  # training mode: (cls_preds, box_preds, anchors)

    def feature_forward(self, net, adapters=None):
        return SSDFeatureForward(net, adapters)

    def loss(self, multibox=None):
        return SSDLoss(multibox)

    def predictions(self, net, dataset, inputs, ctx, eval_cfg, num_workers=0, progress=None):
        ev = eval_cfg
        prepare_for_inference(net, ev.nms_thresh, ev.nms_topk, ev.post_nms)
        try:
            yield from predict(net, dataset, inputs['data_shape'], inputs['mean'],
                               inputs['std'], ctx, ev.batch_size, num_workers, progress)
        finally:
            prepare_for_training(net)

    def ground_truth_reader(self, net, data_shape, ctx):
        """Per image of a loader batch, its boxes (input pixels), read from the SSD targets."""
        return TargetGroundTruth(anchors_of(net, data_shape, ctx).asnumpy())

    def scale_anchors(self, net, data_shape, ctx):
        return scale_anchors(net, data_shape, ctx)

    def distillation_plan(self, cfg, classes, ctx):
        from ..models.teacher import load_teacher, check_teacher, plan_student
        teacher = load_teacher(cfg.teacher, cfg.model, classes, ctx)
        check_teacher(teacher, classes, cfg.model)
        plan = plan_student(teacher, cfg.model, classes, ctx, cfg.distill.init_head_from_teacher)
        return teacher, plan

    def describe_plan(self, teacher, plan):
        from ..models.teacher import describe_layout
        return 'teacher {} ({}); {}'.format(teacher.source, teacher.arch.network,
                                            describe_layout(plan))

    def teacher_forward(self, teacher):
        return teacher.net.features

    def student_spec(self, plan, classes, model_cfg, prov, extra=None, folded=False):
        extra = dict(extra or {})
        if plan.head == 'own':
            return model_spec(plan.arch, classes, model_cfg.mean, model_cfg.std, prov, 'ssd',
                              extra)
        extra.update({'student_arch': plan.arch.to_dict(),
                      'adapters': {'student_channels': plan.student_channels,
                                   'teacher_channels': plan.teacher_channels,
                                   'folded': folded}})
        return model_spec(plan.net.head_arch, classes, model_cfg.mean, model_cfg.std, prov,
                          'distilled_ssd', extra)

    def fold(self, plan, ctx):
        if plan.head != 'teacher':
            return None
        from ..models.student import fold
        return fold(plan.net, ctx)
