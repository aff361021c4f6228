"""SSD multibox loss with the positive count kept on the devices (no host synchronisation).

Same math as GluonCV's ``SSDMultiBoxLoss``: softmax cross-entropy with hard negative mining
(the ``negative_mining_ratio`` x #positives negatives of highest loss per image, ranked by
the same double argsort), smooth L1 on the positives, both normalised by the number of
positives of the *whole* batch over every device (at least 1). GluonCV reads that count back
to the host (``asscalar`` per device) before it can build the losses, which stalls every
iteration once; here the per-device counts are summed on the first device, copied back to
each device and divided there, so a training step's only synchronisation is the one that
reads its logged values (and decides the non-finite guard).

In a distributed job (the trainers average gradients over workers) the count is the mean
over workers of each worker's batch-wide count
(:func:`~gluon_distill.engine.distributed.worker_mean`): the gradient is then the one a
single process gets on the global batch.

With no positive in the batch GluonCV returns zero losses; so does this (no positives means
no hard negatives, and the ``max(1, .)`` normaliser keeps it finite).
"""
import mxnet as mx
from mxnet.gluon import HybridBlock

from . import distributed as D


class _DeviceMultiBoxLoss(HybridBlock):
    """Per-device losses given the batch-wide positive count ``num_pos (1,)``."""

    def __init__(self, negative_mining_ratio=3, rho=1.0, lambd=1.0, min_hard_negatives=0,
                 **kwargs):
        super(_DeviceMultiBoxLoss, self).__init__(**kwargs)
        self._ratio = max(0, negative_mining_ratio)
        self._rho = rho
        self._lambd = lambd
        self._min_neg = max(0, min_hard_negatives)

    def hybrid_forward(self, F, cls_pred, box_pred, cls_target, box_target, num_pos):
        norm = F.maximum(num_pos, 1.0)                                  # (1,)
        pred = F.log_softmax(cls_pred, axis=-1)
        pos = cls_target > 0
        cls_loss = -F.pick(pred, cls_target, axis=-1, keepdims=False)
        rank = (cls_loss * (pos - 1)).argsort(axis=1).argsort(axis=1)
        hard_negative = F.broadcast_lesser(
            rank, F.maximum(self._min_neg, pos.sum(axis=1) * self._ratio).expand_dims(-1))
        cls_loss = F.where((pos + hard_negative) > 0, cls_loss, F.zeros_like(cls_loss))
        cls_loss = F.broadcast_div(F.sum(cls_loss, axis=0, exclude=True), norm)
        box_pred = F.reshape_like(box_pred, box_target)
        box_loss = F.abs(box_pred - box_target)
        box_loss = F.where(box_loss > self._rho, box_loss - 0.5 * self._rho,
                           (0.5 / self._rho) * F.square(box_loss))
        box_loss = F.broadcast_mul(box_loss, pos.expand_dims(axis=-1))
        box_loss = F.broadcast_div(F.sum(box_loss, axis=0, exclude=True), norm)
        return cls_loss + self._lambd * box_loss, cls_loss, box_loss


class MultiBoxLoss:
    """Drop-in for ``gluoncv.loss.SSDMultiBoxLoss``: called with per-device lists
    ``(cls_preds, box_preds, cls_targets, box_targets)``, returns per-device lists
    ``(sum_losses, cls_losses, box_losses)``, each ``(B_device,)``, and never waits for a
    device."""

    def __init__(self, negative_mining_ratio=3, rho=1.0, lambd=1.0, min_hard_negatives=0,
                 hybridize=True):
        self.block = _DeviceMultiBoxLoss(negative_mining_ratio, rho, lambd, min_hard_negatives)
        if hybridize:
            self.block.hybridize(static_alloc=True, static_shape=True)

    def __call__(self, cls_preds, box_preds, cls_targets, box_targets):
        cls_preds, box_preds, cls_targets, box_targets = [
            x if isinstance(x, (list, tuple)) else [x]
            for x in (cls_preds, box_preds, cls_targets, box_targets)]
        ctx0 = cls_targets[0].context
        counts = [(ct > 0).sum().reshape((1,)) for ct in cls_targets]
        total = mx.nd.add_n(*[c.as_in_context(ctx0) for c in counts]) if len(counts) > 1 \
            else counts[0]
        # a distributed job averages gradients over workers: normalise by the mean count
        total = D.worker_mean(total, 'num_positives')
        sums, clss, boxes = [], [], []
        for cp, bp, ct, bt in zip(cls_preds, box_preds, cls_targets, box_targets):
            s, c, b = self.block(cp, bp, ct, bt, total.as_in_context(ct.context))
            sums.append(s)
            clss.append(c)
            boxes.append(b)
        return sums, clss, boxes
