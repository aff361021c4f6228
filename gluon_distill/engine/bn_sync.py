"""One set of BatchNorm statistics per network, whatever the number of devices.

With several devices every device keeps its own copy of each parameter. Trainable weights stay
identical (the KVStore reduces gradients and every copy takes the same update), but BatchNorm's
running mean and variance are updated by each device from its own shard of the batch and drift
apart. Validation then spreads images over copies that disagree, while ``save_parameters``
writes their average (``Parameter._reduce``): the logged mAP is not the saved file's.

Our choice: at every epoch end, before validation and before anything is saved, every copy of
every non-trainable parameter (``grad_req == 'null'``: BatchNorm running statistics, spectral
normalisation vectors) is set to the average of the copies. That average is exactly what
``save_parameters`` and our checkpoints write, so validation, ``best.params``/``last.params``
and a ``--resume`` from ``last.ckpt`` all see the same numbers. Within an epoch the statistics
stay per device, like GluonCV's multi-GPU training (SyncBatchNorm would synchronise every
step; it hung on CPU contexts, see method.md).

The hook first waits for every pending operation (``mx.nd.waitall``). A hybridized network
with ``static_alloc`` updates its running statistics (in BatchNorm's backward pass) without the
engine ordering later reads of those arrays after the update: measured here, reading them right
after a step could return the values from before it, so two identical seeded runs validated and
saved different statistics. Waiting once per epoch costs nothing measurable.
"""
import mxnet as mx

from . import distributed as D
from .loop import HookBase


def average_device_copies(block):
    """Set every device copy of each non-trainable parameter of ``block`` to their mean.

    Returns the number of parameters whose copies were averaged (0 on one device).
    """
    count = 0
    for param in block.collect_params().values():
        if param.grad_req != 'null' or param._data is None:
            continue
        copies = param.list_data()
        if len(copies) < 2:
            continue
        home = copies[0].context
        mean = mx.nd.add_n(*[c.as_in_context(home) for c in copies]) / len(copies)
        for copy in copies:
            mean.copyto(copy)
        count += 1
    return count


class SyncDeviceStatistics(HookBase):
    """Epoch-end averaging of non-trainable parameters over devices (see module docstring).

    In a distributed job the statistics are then averaged over the workers too
(:func:`~gluon_distill.engine.distributed.average_worker_statistics`). Must come before the
validation and checkpoint hooks. ``blocks`` is a callable returning
    name -> Block (a step's ``blocks``), so every group a checkpoint holds is synchronised.
    """

    def __init__(self, blocks):
        self.blocks = blocks

    def after_epoch(self):
        mx.nd.waitall()
        for block in self.blocks().values():
            average_device_copies(block)
            D.average_worker_statistics(block)
