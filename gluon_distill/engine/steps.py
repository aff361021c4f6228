"""The plain detection step (GluonCV's SSD recipe) and the trainer factory steps share."""
import numpy as np

import mxnet as mx
from mxnet import autograd, gluon
from ..data.loader import DevicePrepare
from .loss import MultiBoxLoss


def make_trainer(params, optimizer='sgd', lr=1e-3, momentum=0.9, wd=5e-4, kvstore='device',
                 beta1=0.9, update_on_kvstore=None):
    """A Gluon Trainer for ``params`` with the recipe's optimizer settings.

    ``kvstore`` is a name (``device``, ``local``, ``dist_sync``...) or a KVStore object.
    """
    if optimizer == 'sgd':
        opt_args = {'learning_rate': lr, 'wd': wd, 'momentum': momentum}
    elif optimizer == 'adam':
        opt_args = {'learning_rate': lr, 'wd': wd, 'beta1': beta1}
    else:
        raise ValueError('train.optimizer: expected sgd or adam, got {!r}'.format(optimizer))
    return gluon.Trainer(params, optimizer, opt_args, kvstore=kvstore,
                         update_on_kvstore=update_on_kvstore)


def prepare_trainers(trainers):
    """Set up every trainer's KVStore now, before the first step, and wait for it.

    A Gluon Trainer creates its KVStore lazily at its first ``step`` and then copies device 0's
    value of every parameter it holds to the other devices, BatchNorm running statistics
    included. Done there, that copy races with the statistics update of the step's own backward
    pass (a hybridized block with ``static_alloc`` writes them outside the engine's ordering):
    measured, two identical seeded runs on two devices then kept different statistics. Done
    here, before any forward pass, it only copies values that are identical anyway.
    """
    for trainer in trainers:
        if not trainer._kv_initialized:
            trainer._init_kvstore()
        if trainer._params_to_init:
            trainer._init_params()
    mx.nd.waitall()


def host_values(arrays):
    """Sum each list of per-device arrays and bring all sums to the host in one transfer."""
    ctx = arrays[0][0].context
    sums = [mx.nd.add_n(*[a.sum().as_in_context(ctx) for a in group]) for group in arrays]
    return mx.nd.stack(*sums).asnumpy()


class DetectionStep:
    """One SGD step of an SSD on its own targets, over a list of devices.

    ``run_step(batch)`` puts the batch on the devices with ``prepare`` (default: a batch of
    ``(images, cls_targets, box_targets)`` split over ``ctx_list``),
    computes the SSD multibox loss (:class:`~gluon_distill.engine.loss.MultiBoxLoss`, GluonCV's
    SSDMultiBoxLoss math: softmax cross-entropy with 3:1 hard negative mining, smooth L1;
    normalised by the positives of the whole batch, counted on the devices), back-propagates,
    and applies the update unless a loss is not finite. One host synchronisation per step
    (the logged losses, which also decide the non-finite guard). Returns host floats ``CrossEntropy``, ``SmoothL1``,
    ``loss`` and ``finite``, ``batch_size``.
    """

    def __init__(self, net, ctx_list, trainer, loss=None, prepare=None):
        self.net = net
        self.ctx_list = list(ctx_list)
        self.trainer = trainer
        self.loss = loss or MultiBoxLoss()
        self.prepare = prepare or DevicePrepare(ctx_list)

    @property
    def detector(self):
        """The network a user deploys."""
        return self.net

    def blocks(self):
        return {'net': self.net}

    def trainers(self):
        return {'net': self.trainer}

    def forward_backward(self, images, cls_targets, box_targets):
        """Per-device losses ``(sum, cls, box)`` lists, gradients accumulated on every device."""
        with autograd.record():
            cls_preds, box_preds = [], []
            for x in images:
                cls_pred, box_pred, _ = self.net(x)
                cls_preds.append(cls_pred)
                box_preds.append(box_pred)
            sum_loss, cls_loss, box_loss = self.loss(cls_preds, box_preds, cls_targets,
                                                     box_targets)
            autograd.backward(sum_loss)
        return sum_loss, cls_loss, box_loss

    def run_step(self, batch):
        images, cls_targets, box_targets = self.prepare(batch)
        _, cls_loss, box_loss = self.forward_backward(images, cls_targets, box_targets)
        ce, l1 = host_values([cls_loss, box_loss])
        finite = bool(np.isfinite(ce) and np.isfinite(l1))
        if finite:
            self.trainer.step(1)
        return {'CrossEntropy': float(ce), 'SmoothL1': float(l1), 'loss': float(ce + l1),
                'finite': finite, 'batch_size': int(batch[0].shape[0])}
