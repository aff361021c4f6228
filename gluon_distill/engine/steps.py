"""The plain detection step (any detector family) and the trainer factory steps share."""
import numpy as np

import mxnet as mx
from mxnet import autograd, gluon
from ..data.loader import DevicePrepare, as_device_batch
from . import distributed as D


def make_trainer(params, optimizer='sgd', lr=1e-3, momentum=0.9, wd=5e-4, kvstore='device',
                 beta1=0.9, update_on_kvstore=None):
    """A Gluon Trainer for ``params`` with the recipe's optimizer settings.

    ``kvstore`` is a name (``device``, ``local``...) or a KVStore object. In a process of a
    distributed job (:func:`~gluon_distill.engine.distributed.setup`) every trainer
    averages its gradients over the workers whatever ``kvstore`` says
    (:func:`~gluon_distill.engine.distributed.distributed_trainer`).
    """
    if optimizer == 'sgd':
        opt_args = {'learning_rate': lr, 'wd': wd, 'momentum': momentum}
    elif optimizer == 'adam':
        opt_args = {'learning_rate': lr, 'wd': wd, 'beta1': beta1}
    else:
        raise ValueError('train.optimizer: expected sgd or adam, got {!r}'.format(optimizer))
    if D.is_distributed():
        return D.distributed_trainer(params, optimizer, opt_args, update_on_kvstore)
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
    trainers = list(trainers)
    for trainer in trainers:
        if not trainer._kv_initialized:
            trainer._init_kvstore()
        if trainer._params_to_init:
            trainer._init_params()
    D.broadcast_trainer_parameters(trainers)
    mx.nd.waitall()


def host_values(arrays):
    """Sum each list of per-device arrays and bring all sums to the host in one transfer
    (in a distributed job: their means over workers, the values one process would get)."""
    ctx = arrays[0][0].context
    sums = [mx.nd.add_n(*[a.sum().as_in_context(ctx) for a in group]) for group in arrays]
    return worker_mean_host(mx.nd.stack(*sums))


def worker_mean_host(values):
    """A step's logged values (one NDArray) on the host, averaged over the workers of a
    distributed job: every worker then logs the same numbers and takes the same non-finite
    decision (a worker skipping an update the others make would wait for them forever)."""
    return D.worker_mean(values, 'step_values').asnumpy()


class DetectionStep:
    """One SGD step of a detector on its own targets, over a list of devices.

    ``run_step(batch)`` puts the batch on the devices with ``prepare`` (default: a batch of
    ``(images, cls_targets, box_targets)`` split over ``ctx_list``; any
    :class:`~gluon_distill.data.loader.DeviceBatch`), runs ``forward`` (default: ``net``) on
    every device, computes the family's ``loss`` (:meth:`DetectorFamily.loss
    <gluon_distill.families.base.DetectorFamily.loss>`: SSD's is
    :class:`~gluon_distill.families.ssd.SSDLoss`, the multibox loss), back-propagates, and
    applies the update unless a loss is not finite. One host synchronisation per step (the
    logged losses, which also decide the non-finite guard).
    Returns host floats: each loss part (SSD: ``CrossEntropy``, ``SmoothL1``), their sum
    ``loss``, and ``finite``, ``batch_size``.
    """

    def __init__(self, net, ctx_list, trainer, loss, prepare=None, forward=None):
        self.net = net
        self.ctx_list = list(ctx_list)
        self.trainer = trainer
        self.loss = loss
        self.prepare = prepare or DevicePrepare(ctx_list)
        self.forward = forward or net

    @property
    def detector(self):
        """The network a user deploys."""
        return self.net

    def blocks(self):
        return {'net': self.net}

    def hybridize(self, **kwargs):
        self.forward.hybridize(**kwargs)

    def trainers(self):
        return {'net': self.trainer}

    def forward_backward(self, batch):
        """Per-device ``(totals, parts)`` of a :class:`DeviceBatch`, gradients accumulated on
        every device."""
        with autograd.record():
            outputs = [self.forward(x, *inputs) for x, inputs in
                       zip(batch.images, zip(*batch.inputs) if batch.inputs else
                           [()] * len(batch.images))]
            totals, parts = self.loss(outputs, batch.targets)
            autograd.backward(totals)
        return totals, parts

    def run_step(self, batch):
        device_batch = as_device_batch(self.prepare(batch))
        _, parts = self.forward_backward(device_batch)
        host = host_values(list(parts.values()))
        finite = bool(np.isfinite(host).all())
        if finite:
            self.trainer.step(1)
        values = {name: float(v) for name, v in zip(parts, host)}
        values.update({'loss': float(host.sum()), 'finite': finite,
                       'batch_size': int(batch[0].shape[0])})
        return values
