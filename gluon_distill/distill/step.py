"""The generic distillation step and the interface a distillation method implements.

A method is a :class:`Distiller`: it names the maps it compares (``pairs``: student map index,
teacher map index, of equal spatial size), may make an auxiliary update per batch (the GAN's
critics), adds a loss to the student's detection loss, and owns blocks and trainers (saved in
checkpoints, set up for every device) and per-window metrics. :class:`DistillStep` drives any
list of them; it alone does the forward passes, the host synchronisation, the non-finite
guard and the student's update. Methods are listed in one dict,
:data:`gluon_distill.distill.methods.METHODS`.
"""
import numpy as np

import mxnet as mx
from mxnet import autograd
from ..data.loader import DevicePrepare, as_device_batch
from ..engine.steps import worker_mean_host  # the sync (averaged over distributed workers)
from ..families.ssd import SSDFeatureForward, SSDLoss


class Distiller:
    """What a distillation method tells :class:`DistillStep`. Override what the method uses.

    Attributes
    ----------
    name : str
        The method's name (``gan``, ``mimic``, ``fgfi``).
    pairs : list of (int, int)
        ``(student map index, teacher map index)`` the method compares.
    loss_name : str
        The metric under which the step logs the method's loss (``Loss_G_adv`` for GAN).
    late_loss : bool
        The loss depends on the auxiliary update (GAN: on the updated critics), so it is
        computed after the host synchronisation and logged with the next one. Otherwise it
        is computed before, its value is checked by the non-finite guard and logged at once.
    loss_trainer : Trainer or None
        A trainer over the student's parameters that applies this method's loss gradient on
        its own (GAN's ``adv_optimizer: adam``); None: the student's trainer applies the sum.
    """
    name = ''
    pairs = ()
    loss_name = 'Loss_distill'
    late_loss = False
    loss_trainer = None

    def active(self, epoch, iteration):
        """Whether the method acts on this iteration (warm-up, ``gan.epochs``)."""
        return True

    def loss_active(self, epoch, iteration):
        """Whether an active method's loss reaches the student on this iteration; False: only
        its auxiliary update runs (the GAN's critics training alone,
        ``gan.critic_warmup_epochs``)."""
        return True

    def describe(self):
        """One line for the run's log: the method and its settings."""
        return self.name

    def blocks(self):
        """``{name: Block}`` saved in checkpoints, hybridized with the step, statistics synced."""
        return {}

    def trainers(self):
        """``{name: Trainer}`` saved in checkpoints and set up before the first step."""
        return {}

    def lr_trainers(self):
        """``{name: (Trainer, base lr)}`` that follow the run's LR schedule."""
        return {}

    def student_params(self):
        """Parameters that train with the student's optimizer but are not part of the
        deployable student (adaptation layers)."""
        return []

    def select(self, student_maps, teacher_maps):
        """The paired maps of one device: two lists of ``len(pairs)``."""
        return ([student_maps[s] for s, _ in self.pairs],
                [teacher_maps[t] for _, t in self.pairs])

    def begin(self, batch, ctx_list):
        """Host-side inputs of this batch from the loader's (CPU) arrays; no device sync."""

    def auxiliary(self, teacher_maps, student_maps, batch_total):
        """The auxiliary update's forward/backward, before the host synchronisation.

        ``teacher_maps``, ``student_maps``: per device, all maps (student maps recorded; detach
        them). Returns arrays on the first device whose values the step brings to the host in
        its one synchronisation and hands to :meth:`after_sync`."""
        return []

    def after_sync(self, host):
        """``host``: the values of :meth:`auxiliary`'s arrays, flattened. Applies the
        auxiliary update; returns ``(metrics dict, ok)``: ``ok`` False skips the student's
        update (a non-finite auxiliary value)."""
        return {}, True

    def loss(self, index, teacher_maps, student_maps, batch_total):
        """The method's loss on device ``index`` (recorded by the step), already weighted and
        divided so that the sum over devices is the batch's loss; None for no loss."""
        return None

    def loss_metrics(self):
        """``{name: scalar array}`` computed along with this batch's :meth:`loss` calls (summed
        over the devices), logged beside the loss with the same host synchronisation (a late
        loss's with the next one): e.g. the unweighted ``cosine_length``."""
        return {}


class DistillStep:
    """One distillation iteration over a list of devices, for any list of distillers.

    Per batch: each active distiller's :meth:`~Distiller.begin`; teacher maps once, outside
    autograd (inference mode: the teacher's BatchNorm statistics never move); one student
    forward; each distiller's auxiliary forward/backward (GAN: critics on the detached
    student maps); the detection loss and the early (not ``late_loss``) distillation losses; **one
    host synchronisation** carrying every logged value, which decides the non-finite guard;
    the auxiliary updates; the late losses; one update of the student (backbone, adapters,
    head, the distillers' adaptation layers) on detection loss + distillation losses. A non-finite
    detection loss, early loss or auxiliary value skips the student's update.

    With no distiller active (none given, or all after their ``epochs`` / before their
    warm-up) it trains on the detection loss alone. A distiller active but whose
    :meth:`~Distiller.loss_active` is False (the GAN's critic warm-up) makes its auxiliary
    update only.

    Parameters
    ----------
    student : Block
        The deployable student.
    teacher_features : Block
        The teacher's frozen feature extractor.
    trainer : Trainer
        The student's trainer; it also holds ``critic_adapters`` and every distiller's
        :meth:`~Distiller.student_params`.
    distillers : Distiller or list of Distiller
    critic_adapters : Block, optional
        Own-head students: adapters lifting the student maps to the teacher's channels for
        the distillers only (not deployed).
    loss : callable, optional
        The detector family's loss (:meth:`DetectorFamily.loss`); default the SSD's.
    forward : HybridBlock, optional
        The family's feature forward (:meth:`DetectorFamily.feature_forward`) of ``student``
        with ``critic_adapters``; default the SSD's.
    adv_trainer : Trainer, optional
        Former argument: the first distiller's ``loss_trainer``.
    grad_ratio_every : int
        Every this many iterations (0: never), log ``grad_ratio``: the L2 norm of the
        distillation losses' gradient over the norm of the detection loss's gradient, on the
        student's parameters the distillation losses reach (two extra backward passes that
        leave the update unchanged).
    """

    def __init__(self, student, teacher_features, ctx_list, trainer, distillers=None,
                 critic_adapters=None, loss=None, prepare=None, adv_trainer=None, forward=None,
                 grad_ratio_every=0):
        if distillers is None:
            distillers = []
        elif isinstance(distillers, Distiller):
            distillers = [distillers]
        self.distillers = list(distillers)
        if adv_trainer is not None:
            self.distillers[0].loss_trainer = adv_trainer
        if sum(d.loss_trainer is not None for d in self.distillers) > 1:
            raise ValueError('only one distillation method can have its own optimizer')
        names = {}
        for d in self.distillers:
            for kind in ('blocks', 'trainers'):
                for key in getattr(d, kind)():
                    if key in ('student', 'critic_adapters') or (kind, key) in names:
                        raise ValueError('distillers {} and {} both name a checkpoint group '
                                         '{!r}'.format(names.get((kind, key), 'student'),
                                                       d.name, key))
                    names[(kind, key)] = d.name
        self.student = student
        self.forward = forward or SSDFeatureForward(student, critic_adapters)
        self.teacher_features = teacher_features
        self.ctx_list = list(ctx_list)
        self.trainer = trainer
        self.critic_adapters = critic_adapters
        self.loss = loss or SSDLoss()
        self.prepare = prepare or DevicePrepare(ctx_list)
        self.grad_ratio_every = grad_ratio_every
        self.epoch = 0
        self.iteration = 0
        self._pending = []

    @property
    def distiller(self):
        """The first distiller (None without any)."""
        return self.distillers[0] if self.distillers else None

    @property
    def adv_trainer(self):
        return next((d.loss_trainer for d in self.distillers if d.loss_trainer is not None),
                    None)

    @property
    def detector(self):
        return self.student

    @property
    def _pending_adv(self):
        """The adversarial term of the last iteration (read with the next synchronisation)."""
        return next((v for name, v in self._pending if name == 'Loss_G_adv'), None)

    def blocks(self):
        blocks = {'student': self.student}
        if self.critic_adapters is not None:
            blocks['critic_adapters'] = self.critic_adapters
        for d in self.distillers:
            blocks.update(d.blocks())
        return blocks

    def trainers(self):
        trainers = {'student': self.trainer}
        for d in self.distillers:
            trainers.update(d.trainers())
        return trainers

    def hybridize(self, **kwargs):
        self.forward.hybridize(**kwargs)
        self.teacher_features.hybridize(**kwargs)
        for d in self.distillers:
            for block in d.blocks().values():
                block.hybridize(**kwargs)

    def _copy_grads(self, params):
        return [[g.copy() for g in p.list_grad()] for p in params]

    def _set_grads(self, params, grads):
        for p, saved in zip(params, grads):
            for g, value in zip(p.list_grad(), saved):
                value.copyto(g)
            for data in p.list_data():
                data._fresh_grad = True  # written by us, not by backward: tell the Trainer

    def _grad_ratio(self, distill_losses, detection_losses):
        """|gradient of the distillation losses| / |gradient of the detection loss| over the
        student's parameters the former reach. Leaves every gradient zero and not fresh, so
        that the step's own backward passes decide what its trainers see."""
        params = [p for p in self.trainer._params if p.grad_req != 'null']
        # MXNet's BatchNorm moves its running statistics in the backward pass: keep them
        statistics = [p for block in self.blocks().values()
                      for p in block.collect_params().values() if p.grad_req == 'null']
        kept = [[data.copy() for data in p.list_data()] for p in statistics]

        def squares_then_zero():
            out = [sum(float((g.astype('float64') ** 2).sum().asscalar())
                       for g in p.list_grad()) for p in params]
            for p in params:
                p.zero_grad()
            return out
        for p in params:
            p.zero_grad()
        autograd.backward(distill_losses, retain_graph=True)
        distill = squares_then_zero()
        autograd.backward(detection_losses, retain_graph=True)
        detection = squares_then_zero()
        for p in params:
            for data in p.list_data():
                data._fresh_grad = False
        for p, values in zip(statistics, kept):
            for data, value in zip(p.list_data(), values):
                value.copyto(data)
        reached = [i for i, v in enumerate(distill) if v > 0]
        num = sum(distill[i] for i in reached) ** 0.5
        den = sum(detection[i] for i in reached) ** 0.5
        return num / den if den > 0 else float('inf')

    def teacher_maps(self, images):
        """Per device, the teacher's maps (no autograd, inference-mode BatchNorm)."""
        return [self.teacher_features(x) for x in images]

    def _device_losses(self, distillers, teacher, student_maps, batch_total):
        """Per distiller, its per-device recorded losses (None entries dropped)."""
        out = []
        with autograd.record():
            for d in distillers:
                parts = [d.loss(i, teacher[i], student_maps[i], batch_total)
                         for i in range(len(student_maps))]
                out.append((d, [p for p in parts if p is not None]))
        return [(d, parts) for d, parts in out if parts]

    def run_step(self, batch):
        device_batch = as_device_batch(self.prepare(batch))
        images = device_batch.images
        inputs = list(zip(*device_batch.inputs)) if device_batch.inputs else [()] * len(images)
        batch_total = int(batch[0].shape[0])
        ctx0 = self.ctx_list[0]
        active = [d for d in self.distillers if d.active(self.epoch, self.iteration)]
        # the active methods whose loss reaches the student now (the others: auxiliary only)
        losing = [d for d in active if d.loss_active(self.epoch, self.iteration)]
        for d in active:
            d.begin(batch, self.ctx_list)
        teacher = self.teacher_maps(images) if active else None
        with autograd.record():
            outputs = [self.forward(x, *extra) for x, extra in zip(images, inputs)]
        heads = self.forward.num_head_outputs
        student_maps = [o[:-heads] for o in outputs]
        head_outputs = [o[-heads:] for o in outputs]

        to_host, spans = [], []
        for d in active:
            arrays = [a.reshape((-1,)) for a in d.auxiliary(teacher, student_maps, batch_total)]
            spans.append(sum(int(a.size) for a in arrays))
            to_host += arrays
        with autograd.record():
            sum_loss, detection_parts = self.loss(head_outputs, device_batch.targets)
        early = self._device_losses([d for d in losing if not d.late_loss], teacher,
                                    student_maps, batch_total)
        early_metrics = [(name, value) for d, _ in early
                         for name, value in d.loss_metrics().items()]
        to_host.append(mx.nd.stack(*[mx.nd.add_n(*[l.sum().as_in_context(ctx0) for l in group])
                                     for group in detection_parts.values()]))
        for _, parts in early:
            to_host.append(mx.nd.add_n(*[p.as_in_context(ctx0) for p in parts]).reshape((1,)))
        for _, value in early_metrics:
            to_host.append(value.as_in_context(ctx0).reshape((1,)))
        for _, value in self._pending:
            to_host.append(value.reshape((1,)))
        host = worker_mean_host(mx.nd.concat(*[a.reshape((-1,)) for a in to_host], dim=0))

        values = {}
        aux_ok = True
        start = 0
        for d, span in zip(active, spans):
            metrics, ok = d.after_sync(host[start:start + span])
            values.update(metrics)
            aux_ok = aux_ok and ok
            start += span
        detection = {name: host[start + k] for k, name in enumerate(detection_parts)}
        start += len(detection_parts)
        early_finite = True
        for d, _ in early:
            values[d.loss_name] = float(host[start])
            early_finite = early_finite and bool(np.isfinite(host[start]))
            start += 1
        for name, _ in early_metrics:
            values[name] = float(host[start])
            start += 1
        for name, _ in self._pending:
            values[name] = float(host[start])
            start += 1
        self._pending = []
        detection_finite = bool(np.isfinite(list(detection.values())).all())

        late = self._device_losses([d for d in losing if d.late_loss], teacher, student_maps,
                                   batch_total)
        separate = [(d, parts) for d, parts in early + late if d.loss_trainer is not None]
        with autograd.record():
            totals = []
            for i, s_loss in enumerate(sum_loss):
                total = s_loss.sum()
                for d, parts in early + late:
                    if d.loss_trainer is None:
                        total = total + parts[i]
                totals.append(total)
        if (self.grad_ratio_every and self.iteration % self.grad_ratio_every == 0 and
                early + late):
            with autograd.record():
                detection_totals = [s.sum() for s in sum_loss]
            values['grad_ratio'] = self._grad_ratio(
                [p for _, parts in early + late for p in parts], detection_totals)
        own_grads = None
        if separate:
            # a method with its own optimizer: its gradient is taken first and set aside, so
            # both gradients are evaluated at the same weights
            d, parts = separate[0]
            own_params = [p for p in d.loss_trainer._params if p.grad_req != 'null']
            for p in own_params:
                p.zero_grad()  # parameters its loss does not reach keep a zero gradient
            autograd.backward(parts, retain_graph=True)
            own_grads = self._copy_grads(own_params)
        autograd.backward(totals)
        for d, parts in late:
            # logged with the next iteration's synchronisation (no extra host round trip)
            self._pending.append((d.loss_name,
                                  mx.nd.add_n(*[p.as_in_context(ctx0) for p in parts])))
            self._pending += [(name, value.as_in_context(ctx0))
                              for name, value in d.loss_metrics().items()]
        # a non-finite auxiliary value (GAN: critic scores) makes the late loss (same critics,
        # same student maps) non-finite too: stepping the student then would poison it
        finite = detection_finite and aux_ok and early_finite
        if finite:
            # parameters only a distiller's loss reaches get no gradient while it is off
            stale = (not losing or len(losing) < len(self.distillers)) and (
                self.critic_adapters is not None or
                any(d.student_params() for d in self.distillers))
            self.trainer.step(1, ignore_stale_grad=stale)
            if own_grads is not None:
                self._set_grads(own_params, own_grads)
                separate[0][0].loss_trainer.step(1)
        values.update({name: float(v) for name, v in detection.items()})
        values.update({'loss': float(np.sum(list(detection.values()), dtype=np.float32)),
                       'finite': finite, 'batch_size': batch_total})
        return values
