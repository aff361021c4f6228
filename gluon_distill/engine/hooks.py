"""The hooks of a training run: LR schedule, logging, validation, checkpoints, NaN guard."""
import json
import logging
import math
import os
import sys
import time

from tqdm import tqdm

from ..io_utils import atomic_write_all, text_writer
from ..progress import progress_bar
from . import distributed as D
from .checkpoint import checkpoint_writer, write_error
from .loop import HookBase

LOGGER_NAME = 'gluon_distill'


class _TqdmHandler(logging.StreamHandler):
    """Console log lines that do not tear an active progress bar."""

    def emit(self, record):
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging must never kill training
            self.handleError(record)


class _LogFileHandler(logging.FileHandler):
    """``train.log``; if it cannot be written (full disk) it says so once on stderr and stops,
    instead of printing a traceback for every later line (the console still gets them)."""

    quiet = False  # set while writing the error that ends a run: the console has it already

    def handleError(self, record):
        if getattr(self, 'failed', False):
            return
        self.failed = True
        if self.quiet:
            return
        error = sys.exc_info()[1]
        print('warning: {}; train.log stops here, the console log goes on'.format(
            write_error(self.baseFilename, error) if isinstance(error, OSError) else error),
            file=sys.stderr)

    def emit(self, record):
        if not getattr(self, 'failed', False):
            super().emit(record)


def setup_logging(out_dir=None, level=logging.INFO, console_level=None, prefix=''):
    """The package logger, to the console and (when given) ``out_dir/train.log``.

    ``console_level`` (default ``level``) and ``prefix`` (put before each console message)
    quieten the console of the workers of a distributed job that do not write the run's log.
    """
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    fmt = logging.Formatter('%(asctime)s %(levelname)s %(message)s', '%Y-%m-%d %H:%M:%S')
    console = _TqdmHandler()
    console.setLevel(console_level or level)
    console.setFormatter(logging.Formatter('%(asctime)s %(levelname)s ' + prefix.replace(
        '%', '%%') + '%(message)s', '%Y-%m-%d %H:%M:%S') if prefix else fmt)
    logger.addHandler(console)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        to_file = _LogFileHandler(os.path.join(out_dir, 'train.log'))
        to_file.setFormatter(fmt)
        logger.addHandler(to_file)
    logger.propagate = False
    return logger


def log_files():
    """The ``train.log`` handlers of the package logger (:func:`setup_logging`) now."""
    return [h for h in logging.getLogger(LOGGER_NAME).handlers
            if isinstance(h, _LogFileHandler)]


def log_error_to_files(text, handlers):
    """Append ``text`` (the error that ends a run, as the console shows it) to each
    ``train.log`` of ``handlers`` as one ERROR record, without a console line (the tool prints
    it). A log that cannot be written (a full disk) is left as it is, quietly."""
    record = logging.LogRecord(LOGGER_NAME, logging.ERROR, __file__, 0, '%s', (text,), None)
    for handler in handlers:
        handler.quiet = True
        try:
            handler.handle(record)
        finally:
            handler.quiet = False


class TrainingDiverged(RuntimeError):
    """Too many consecutive non-finite losses."""


class JsonlWriter:
    """Appends one JSON object per line to ``path`` (metrics.jsonl). A line that cannot be
    written whole (full disk) is taken back and raises :class:`~.checkpoint.WriteError`.
    With ``path`` None nothing is written (the workers of a distributed job but rank 0)."""

    def __init__(self, path):
        self.path = path

    def write(self, record):
        if self.path is None:
            return
        line = json.dumps(record, allow_nan=False, default=_json_default) + '\n'
        size = os.path.getsize(self.path) if os.path.exists(self.path) else 0
        try:
            with open(self.path, 'a') as f:
                f.write(line)
                f.flush()
        except OSError as e:
            try:
                os.truncate(self.path, size)  # no half line for the next reader
            except OSError:
                pass
            raise write_error(self.path, e) from None


def truncate_metrics(path, last_epoch):
    """Drop the records of epochs after ``last_epoch`` from ``metrics.jsonl`` (and a torn last
    line): what a run logged after its last checkpoint before it was killed or failed, and
    will log again when resumed. Truncates in place, so it works on a full disk too.

    Returns the number of records dropped.
    """
    if not os.path.exists(path):
        return 0
    keep_bytes, dropped = 0, 0
    with open(path, 'rb') as f:
        lines = f.readlines()
    for i, raw in enumerate(lines):
        try:
            record = json.loads(raw.decode('utf-8'))
            epoch = int(record.get('epoch', -1))
        except (ValueError, AttributeError, TypeError):
            record, epoch = None, None
        if record is None or epoch > last_epoch or not raw.endswith(b'\n'):
            dropped = len(lines) - i
            break
        keep_bytes += len(raw)
    if dropped:
        os.truncate(path, keep_bytes)
    return dropped


def _json_default(value):
    if hasattr(value, 'item'):
        return value.item()
    raise TypeError(repr(value))


def _finite_or_none(value):
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


class LRScheduleHook(HookBase):
    """Step decay at epoch boundaries (``lr * decay ** #passed steps``), optional linear warm-up
    over the first ``warmup_iters`` iterations. Sets the rate of every trainer in ``trainers``
    (name -> (Trainer, base_lr), or (Trainer, base_lr, steps) for a trainer with decay epochs
    of its own, e.g. the GAN's critics with ``distill.gan.lr_steps``; None: the run's
    ``steps``) before each step."""

    def __init__(self, trainers, steps, decay=0.1, warmup_iters=0):
        self.trainers = trainers
        self.steps = sorted(steps)
        self.decay = decay
        self.warmup_iters = warmup_iters
        self.current = {}

    def factor(self, epoch, iteration, steps=None):
        """The rate's multiplier at ``epoch``/``iteration``; ``steps``: a trainer's own decay
        epochs instead of the run's."""
        steps = self.steps if steps is None else steps
        f = self.decay ** sum(1 for s in steps if epoch >= s)
        if self.warmup_iters and iteration < self.warmup_iters:
            f *= (iteration + 1) / float(self.warmup_iters)
        return f

    def before_step(self):
        for name, entry in self.trainers.items():
            trainer, base_lr = entry[0], entry[1]
            steps = entry[2] if len(entry) > 2 else None
            lr = base_lr * self.factor(self.loop.epoch, self.loop.iteration, steps)
            trainer.set_learning_rate(lr)
            self.current[name] = lr


class NonFiniteGuard(HookBase):
    """Counts steps whose loss was not finite (the step skipped their update) and stops the run
    after ``max_consecutive`` in a row; the last checkpoint on disk is untouched."""

    def __init__(self, max_consecutive=10, logger=None):
        self.max_consecutive = max_consecutive
        self.consecutive = 0
        self.total = 0
        self.logger = logger or logging.getLogger(LOGGER_NAME)

    def after_step(self):
        if self.loop.outputs.get('finite', True):
            self.consecutive = 0
            return
        self.consecutive += 1
        self.total += 1
        self.logger.warning('non-finite loss at epoch %d iteration %d (%s): update skipped '
                            '(%d in a row, %d in all)', self.loop.epoch, self.loop.iteration,
                            {k: v for k, v in self.loop.outputs.items()
                             if isinstance(v, float)}, self.consecutive, self.total)
        if self.consecutive >= self.max_consecutive:
            raise TrainingDiverged(
                '{} consecutive non-finite losses at epoch {} iteration {}: stopping. The last '
                'good checkpoint is intact; lower the learning rate and --resume.'.format(
                    self.consecutive, self.loop.epoch, self.loop.iteration))


class MetricsLogger(HookBase):
    """Per logging window: mean of every loss, lr, samples/s and the share of time spent
    waiting for data, to ``metrics.jsonl``, the log and a tqdm progress bar."""

    def __init__(self, writer, interval=20, lr_hook=None, logger=None, progress=True):
        self.writer = writer
        self.interval = interval
        self.lr_hook = lr_hook
        self.logger = logger or logging.getLogger(LOGGER_NAME)
        self.progress = progress
        self.bar = None
        self.workers = D.world()[1]
        self._reset_window()

    def _reset_window(self):
        self.sums = {}
        self.counts = {}  # a value some steps do not give (a periodic measurement, a late loss)
        self.count = 0
        self.samples = 0
        self.data_time = 0.0
        self.started = time.perf_counter()

    def before_epoch(self):
        self._reset_window()
        self.bar = progress_bar(None, self.progress, total=len(self.loop.loader),
                                desc='epoch {}'.format(self.loop.epoch), leave=False,
                                dynamic_ncols=True)

    def after_step(self):
        out = self.loop.outputs
        self.count += 1
        # every worker of a distributed job runs a step on its own share of the global batch
        self.samples += out.get('batch_size', 0) * self.workers
        self.data_time += self.loop.data_time
        for key, value in out.items():
            if isinstance(value, float) and math.isfinite(value):
                self.sums[key] = self.sums.get(key, 0.0) + value
                self.counts[key] = self.counts.get(key, 0) + 1
        if self.bar is not None:
            self.bar.update(1)
        if self.count >= self.interval:
            self.flush()

    def flush(self):
        if not self.count:
            return
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        record = {'type': 'train', 'epoch': self.loop.epoch, 'iteration': self.loop.iteration}
        means = {k: v / self.counts[k] for k, v in self.sums.items()}
        record.update(means)
        if self.lr_hook is not None:
            record.update({('lr' if name == 'net' else 'lr_' + name): lr
                           for name, lr in self.lr_hook.current.items()})
        record['samples_per_sec'] = self.samples / elapsed
        record['data_wait'] = min(self.data_time / elapsed, 1.0)
        self.writer.write(record)
        losses = ' '.join('{}={:.4f}'.format(k, v) for k, v in means.items())
        self.logger.info('[epoch %d iter %d] %s %.1f samples/s, data wait %.0f%%',
                         self.loop.epoch, self.loop.iteration, losses,
                         record['samples_per_sec'], 100 * record['data_wait'])
        if self.bar is not None:
            self.bar.set_postfix_str(losses)
        self._reset_window()

    def after_epoch(self):
        self.flush()
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def after_train(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class EvalHook(HookBase):
    """Every ``interval`` epochs (and after the last) runs ``evaluate() -> dict`` (must hold
    ``mAP``), stores it in ``loop.metrics`` and ``metrics.jsonl``."""

    def __init__(self, evaluate, writer, interval=1, logger=None):
        self.evaluate = evaluate
        self.writer = writer
        self.interval = max(1, interval)
        self.logger = logger or logging.getLogger(LOGGER_NAME)

    def after_epoch(self):
        loop = self.loop
        loop.metrics = {}
        last = loop.epoch == loop.num_epochs - 1
        if (loop.epoch + 1) % self.interval and not last:
            return
        started = time.perf_counter()
        result = self.evaluate()
        loop.metrics = result
        record = {'type': 'val', 'epoch': loop.epoch, 'iteration': loop.iteration,
                  'mAP': _finite_or_none(result['mAP']),
                  'AP': {k: _finite_or_none(v) for k, v in result.get('AP', {}).items()},
                  'eval_seconds': time.perf_counter() - started}
        if result.get('metric'):
            record['metric'] = result['metric']  # what 'mAP' holds (coco: AP@[.5:.95])
        self.writer.write(record)
        self.logger.info('[epoch %d] validation %s=%.4f (%.1f s)', loop.epoch,
                         'AP' if result.get('metric') == 'coco' else 'mAP', result['mAP'],
                         record['eval_seconds'])


class CheckpointHook(HookBase):
    """After every epoch: ``last.ckpt`` (every group, optimizer state, epoch, best metric;
    what ``--resume`` reads; the one it replaces becomes ``prev.ckpt``), ``last.params`` (the
    deployable detector) and, when validation mAP improved, ``best.params`` and ``best.json``
    (its epoch and mAP).

    The files of an epoch are written as one (:func:`~gluon_distill.io_utils.atomic_write_all`):
    each to a temporary file first (``last.ckpt`` first), then all renamed, ``last.ckpt``
    last. A write that fails (a full disk) leaves every file of the previous epoch as it was,
    so ``last.params`` and ``last.ckpt`` (and ``best.params`` and ``best.json``) always hold
    the same epoch; a crash between the renames can only leave ``.params`` files one epoch
    ahead of ``last.ckpt``, which ``--resume`` trains again (the same weights: runs are seeded
    per epoch).

    ``best`` / ``best_epoch`` and ``last_epoch`` / ``last_mAP`` say which epoch each ``.params``
    file holds and its validation mAP. With ``write=False`` (the workers of a distributed job
    but rank 0) nothing is written, the record is kept.
    """

    def __init__(self, out_dir, step, meta=None, best=-1.0, logger=None, write=True):
        self.out_dir = out_dir
        self.write = write
        self.step = step
        self.meta = dict(meta or {})
        self.best = best
        self.best_epoch = None
        self.last_epoch = None
        self.last_mAP = None
        self.logger = logger or logging.getLogger(LOGGER_NAME)

    @property
    def last_path(self):
        return os.path.join(self.out_dir, 'last.ckpt')

    @property
    def prev_path(self):
        return os.path.join(self.out_dir, 'prev.ckpt')

    def restore(self, meta):
        """Continue the record of a resumed run from its checkpoint's ``meta``."""
        self.best = meta.get('best_mAP', -1.0)
        self.best_epoch = meta.get('best_epoch')
        self.last_epoch = meta.get('epoch')
        self.last_mAP = meta.get('last_mAP')

    def after_epoch(self):
        loop = self.loop
        metric = loop.metrics.get('mAP') if loop.metrics else None
        improved = metric is not None and math.isfinite(metric) and metric > self.best
        best, best_epoch = (metric, loop.epoch) if improved else (self.best, self.best_epoch)
        meta = dict(self.meta, epoch=loop.epoch, iteration=loop.iteration, best_mAP=best,
                    best_epoch=best_epoch, last_mAP=_finite_or_none(metric))
        if not self.write:  # a distributed job's workers but rank 0 keep the record only
            self.last_epoch, self.last_mAP = loop.epoch, _finite_or_none(metric)
            if improved:
                self.best, self.best_epoch = best, best_epoch
            return
        detector = self.step.detector
        # last.ckpt first: written first, renamed last (once it names this epoch, every file
        # below holds it)
        writes = [(self.last_path, checkpoint_writer(self.step.blocks(), self.step.trainers(),
                                                     meta), self.prev_path),
                  (os.path.join(self.out_dir, 'last.params'), detector.save_parameters)]
        if improved:
            writes += [
                (os.path.join(self.out_dir, 'best.params'), detector.save_parameters),
                (os.path.join(self.out_dir, 'best.json'), text_writer(json.dumps(
                    {'file': 'best.params', 'epoch': loop.epoch, 'iteration': loop.iteration,
                     'mAP': metric}) + '\n'))]
        atomic_write_all(writes)
        self.last_epoch, self.last_mAP = loop.epoch, _finite_or_none(metric)
        if improved:
            self.best, self.best_epoch = best, best_epoch
            self.logger.info('[epoch %d] new best mAP %.4f -> best.params', loop.epoch, metric)


class PlotHook(HookBase):
    """When training ends (finished, interrupted or stopped by an error): ``OUT/curves.png``
    from the run's whole ``metrics.jsonl`` (a resumed run's too). A plot that fails is a
    warning, never the run's end."""

    def __init__(self, out_dir, logger=None):
        self.out_dir = out_dir
        self.logger = logger or logging.getLogger(LOGGER_NAME)

    def after_train(self):
        if not os.path.exists(os.path.join(self.out_dir, 'metrics.jsonl')):
            return
        try:
            from ..viz import plot_run_folder
            path = plot_run_folder(self.out_dir)
        except Exception as e:  # noqa: BLE001 (a plot must not mask the run's own outcome)
            self.logger.warning('could not plot %s: %s', os.path.join(self.out_dir, 'curves.png'),
                                str(e).splitlines()[0] if str(e) else type(e).__name__)
            return
        self.logger.info('curves: %s', path)
