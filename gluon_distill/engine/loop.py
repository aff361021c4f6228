"""One small training loop; the step is swappable, everything else is a hook.

The loop only iterates: epochs over a loader, ``step.run_step(batch)`` per batch, hooks
around both. A plain SSD run and a distillation run are the same loop with a different step.
Logging, LR schedule, validation, checkpointing and the non-finite-loss guard are hooks.
"""
import time


class HookBase:
    """Override any of the six moments; ``self.loop`` is set before ``before_train``."""
    loop = None

    def before_train(self):
        pass

    def before_epoch(self):
        pass

    def before_step(self):
        pass

    def after_step(self):
        pass

    def after_epoch(self):
        pass

    def after_train(self):
        pass


class TrainLoop:
    """Runs ``step`` over ``loader.epoch(e)`` for epochs ``start_epoch .. num_epochs - 1``.

    Parameters
    ----------
    step : object
        Has ``run_step(batch) -> dict`` returning host floats (losses) plus ``finite`` (bool,
        False when the update was skipped) and ``batch_size`` (int).
    loader : object
        Has ``epoch(e)`` returning an iterator over batches and ``len()``.
    hooks : list of HookBase
        Called in order at every moment.

    State the hooks read: ``epoch``, ``iteration`` (global step count), ``epoch_iteration``,
    ``outputs`` (the last step's dict), ``data_time`` (seconds spent waiting for the batch),
    ``step_time``, ``metrics`` (dict filled by evaluation hooks), ``stop_reason``.
    """

    def __init__(self, step, loader, num_epochs, hooks=(), start_epoch=0, start_iteration=0):
        self.step = step
        self.loader = loader
        self.num_epochs = num_epochs
        self.hooks = list(hooks)
        self.start_epoch = start_epoch
        self.epoch = start_epoch
        self.iteration = start_iteration
        self.epoch_iteration = 0
        self.outputs = {}
        self.data_time = 0.0
        self.step_time = 0.0
        self.metrics = {}
        self.stop_reason = None

    def _call(self, moment):
        for hook in self.hooks:
            getattr(hook, moment)()

    def train(self):
        for hook in self.hooks:
            hook.loop = self
        self._call('before_train')
        try:
            for epoch in range(self.start_epoch, self.num_epochs):
                self.epoch = epoch
                self.epoch_iteration = 0
                self._call('before_epoch')
                batches = self.loader.epoch(epoch)
                tick = time.perf_counter()
                for batch in batches:
                    started = time.perf_counter()
                    self.data_time = started - tick
                    self._call('before_step')
                    self.outputs = self.step.run_step(batch)
                    self.step_time = time.perf_counter() - started
                    self.iteration += 1
                    self.epoch_iteration += 1
                    self._call('after_step')
                    tick = time.perf_counter()
                self._call('after_epoch')
            self.stop_reason = 'completed'
        finally:
            if self.stop_reason is None:
                self.stop_reason = 'interrupted'
            self._call('after_train')
