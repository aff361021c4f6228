"""Stop a run whose losses explode while staying finite.

The non-finite guard (:class:`~gluon_distill.engine.hooks.NonFiniteGuard`) only sees NaN and
inf. A GAN-distillation run can diverge with finite numbers: the reported ResNet50 -> MobileNet
run had critic gaps ``W0`` = 2.3e15 and ``CrossEntropy`` = 2.8e27 at the end of its first epoch,
validated at mAP 0 and finished "normally". :class:`DivergenceStop` watches windows of
``window`` iterations and stops the run when, for ``patience`` consecutive windows, either

* **the detection loss** (the step's ``loss``: for SSD ``CrossEntropy + SmoothL1``; window mean)
  is above ``loss_factor`` (10) times
  its reference, the lowest of the first ``reference_windows`` (3) windows' means (of those
  seen so far, during the first windows). SSD training
  (and a distillation that starts from the teacher's head) lowers this loss; ten times its
  early level means the detector is being destroyed, not learning slowly. Or
* **the critics' pull** ``adv_weight * sum_k |W_k|`` (window mean of the per-scale Wasserstein
  estimates) is above ``critic_factor`` (20) times that reference SSD loss. The authors' SSD
  log has ``|Loss_D|`` <= 14.08 against SSD losses of the same order (a ratio of about 2 at its
  first window, 0.01 later); our ``bn`` critics stay near 0.01. The clipped ``plain`` critic
  whose students never learned (mini-reproduction, width 64, mAP <= 0.02 at every epoch) held
  40x to 120x for most of its windows (stopped at 114x); the reported real-photo run reached
  80x at iteration 2 and 1e14x later. 20 leaves a margin of 10 over the authors' largest value.

A single spike is not enough (``patience`` windows in a row, 3 by default). On a stop it raises
:class:`Diverged` (a :class:`~gluon_distill.engine.hooks.TrainingDiverged`: the tools exit 2
with its one-line message naming the scale and the loss). The checkpoint hook only writes at
epoch ends, so the files on disk are those of the last finished epoch; the message names it.
"""
import math

from .hooks import TrainingDiverged
from .loop import HookBase


class Diverged(TrainingDiverged):
    """The losses exploded while staying finite (see :class:`DivergenceStop`)."""


def _w_values(outputs):
    return {k: v for k, v in outputs.items()
            if k.startswith('W') and k[1:].isdigit() and isinstance(v, float)}


class DivergenceStop(HookBase):
    """Raises :class:`Diverged` when the SSD loss or the critics' pull explodes (module doc).

    Parameters
    ----------
    window : int
        Iterations per window (the runs use ``train.log_interval``).
    adv_weight : float
        Weight of the adversarial term (scales the critics' pull).
    loss_factor, critic_factor : float
        Bounds relative to the reference SSD loss.
    patience : int
        Consecutive windows over a bound before stopping.
    reference_windows : int
        Windows whose lowest mean SSD loss is the reference.
    out_dir : str, optional
        Named in the message (where the last good checkpoint is).
    """

    def __init__(self, window=20, adv_weight=1.0, loss_factor=10.0, critic_factor=20.0,
                 patience=3, reference_windows=3, out_dir=None):
        self.window = max(int(window), 1)
        self.adv_weight = abs(adv_weight)
        self.loss_factor = loss_factor
        self.critic_factor = critic_factor
        self.patience = patience
        self.reference_windows = reference_windows
        self.out_dir = out_dir
        self.early = []
        self.reference = None
        self.streak = 0
        self.streak_start = None
        self.last_saved_epoch = None
        self._reset()

    def _reset(self):
        self.losses = []
        self.w = {}

    def before_train(self):
        self.last_saved_epoch = self.loop.start_epoch - 1

    def after_epoch(self):
        self.last_saved_epoch = self.loop.epoch

    def after_step(self):
        out = self.loop.outputs
        loss = out.get('loss')
        if loss is None or not math.isfinite(loss):
            return  # the non-finite guard's business
        self.losses.append(loss)
        for k, v in _w_values(out).items():
            if math.isfinite(v):
                self.w.setdefault(k, []).append(v)
        if len(self.losses) >= self.window:
            self.check_window()
            self._reset()

    def check_window(self):
        loss = sum(self.losses) / len(self.losses)
        w = {k: sum(v) / len(v) for k, v in self.w.items()}
        reference = self.reference
        if reference is None:
            # until ``reference_windows`` windows exist, the lowest of those seen so far: a run
            # that explodes from its first iterations (the reported one: |Loss_D| = 779 at
            # iteration 2) is judged from its first window on, and its exploding windows do
            # not raise its own reference
            self.early.append(loss)
            reference = max(min(self.early), 1e-6)
            if len(self.early) >= self.reference_windows:
                self.reference = reference
        pull = self.adv_weight * sum(abs(v) for v in w.values())
        reasons = []
        if loss > self.loss_factor * reference:
            reasons.append('detection loss {:.4g} is {:.3g}x its early '
                           'level {:.4g} (bound {:g}x)'.format(
                               loss, loss / reference, reference, self.loss_factor))
        if pull > self.critic_factor * reference:
            worst = max(w, key=lambda k: abs(w[k]))
            reasons.append('critic scores adv_weight * sum|W| = {:.4g}, {:.3g}x the early SSD '
                           'loss {:.4g} (bound {:g}x); largest at scale {}: {} = {:.4g}'.format(
                               pull, pull / reference, reference, self.critic_factor,
                               worst[1:], worst, w[worst]))
        if not reasons:
            self.streak = 0
            self.streak_start = None
            return
        self.streak += 1
        if self.streak_start is None:
            self.streak_start = (self.loop.epoch, self.loop.iteration)
        if self.streak >= self.patience:
            raise Diverged(self.message(reasons))

    def message(self, reasons):
        loop = self.loop
        if self.last_saved_epoch is None or self.last_saved_epoch < 0:
            kept = 'No epoch finished, nothing was saved'
        else:
            kept = 'The files on disk ({}last.ckpt, last.params, best.params) are those of ' \
                   'epoch {}'.format(self.out_dir + '/' if self.out_dir else '',
                                     self.last_saved_epoch)
            if self.streak_start and self.streak_start[0] <= self.last_saved_epoch:
                kept += ' (the divergence began in it, at iteration {})'.format(
                    self.streak_start[1])
        return ('training diverged at epoch {} iteration {}: {} for {} consecutive windows of {} '
                'iterations; stopped. {}. With GAN distillation, the default critic '
                '(distill.gan.critic=bn) or a lower distill.gan.adv_weight keeps the critics\' scale '
                'bounded (docs/method-notes.md).'.format(
                    loop.epoch, loop.iteration, '; '.join(reasons), self.streak, self.window,
                    kept))
