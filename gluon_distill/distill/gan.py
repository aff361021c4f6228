"""GAN knowledge distillation (Hong & Yu 2019): per-scale Wasserstein critics.

The method, as a module the training step plugs in:

* what is recorded: the teacher's SSD feature maps and the student's (after its adapters),
  paired by scale (:attr:`GANDistiller.pairs`);
* how they are connected: the student's adapters (owned by the student, see
  :mod:`gluon_distill.distill.student`);
* what loss is applied: Eq. 1 of the paper, a WGAN objective. The critic lowers its score on
  teacher maps: ``Loss_D = mean D(teacher) - mean D(student)``; the student lowers
  ``Loss_G_adv = mean D(student)``. The critic gap ``W = mean D(student) - mean D(teacher) =
  -Loss_D`` grows as the critics learn. The critics' scores over scales are summed.

:class:`DistillStep` is the engine step: teacher features once per batch outside autograd, the
critic update on detached student maps, then one student update on SSD loss + adversarial loss.
"""
import numpy as np

from .. import _compat  # noqa: F401
import mxnet as mx
from mxnet import autograd
from mxnet.gluon import nn
from ..data.loader import DevicePrepare
from ..engine.loss import MultiBoxLoss
from ..engine.steps import make_trainer
from ..models.ssd import ssd_head
from .critics import CRITICS, CriticSet, clip_weights


class GANDistiller:
    """Critics, their optimizer and the adversarial objective.

    Parameters
    ----------
    pairs : list of (int, int)
        ``(student map index, teacher map index)`` of equal spatial size, one critic each.
    sizes : list of int
        Spatial size of each pair's maps.
    channels : list of int, optional
        Channels of each pair's maps (the teacher's). Without them the critics' parameters
        are deferred to the first forward pass, and a checkpoint's optimizer state cannot be
        loaded before it.
    ctx_list : list of Context
    width : int
        Channels of the critics' convolutions (the paper draws 512).
    clip : float
        WGAN weight clipping bound (the authors' logs: 0.03). 0 disables clipping.
    lr, beta1 : float
        Adam settings of the critics (the authors' logs: 5e-4, 0.5).
    n_critic : int
        Critic updates per student update, on the same batch.
    adv_weight : float
        Weight of the adversarial term in the student's loss (Eq. 1: 1).
    gan_epochs : int
        After this many epochs the adversarial term and critic updates stop (-1: never).
    critic : str
        ``bn`` (the reference WGAN critic: BatchNorm after each stride-2 convolution, every
        trainable parameter clipped, gamma/beta included), ``plain`` (no normalisation,
        clipped) or ``spectral`` (spectral normalisation of every layer; ``clip`` is then
        ignored). See :class:`~gluon_distill.distill.critics.Critic`.
    """

    def __init__(self, pairs, sizes, ctx_list, width=512, clip=0.03, lr=5e-4, beta1=0.5,
                 n_critic=1, adv_weight=1.0, gan_epochs=-1, kvstore='device', channels=None,
                 critic='bn'):
        if critic not in CRITICS:
            raise ValueError('distill.critic: expected one of {}, got {!r}'.format(
                ', '.join(CRITICS), critic))
        self.pairs = list(pairs)
        self.ctx_list = list(ctx_list)
        self.kind = critic
        self.spectral = critic == 'spectral'
        self.clip = 0.0 if self.spectral else clip
        self.n_critic = n_critic
        self.adv_weight = adv_weight
        self.gan_epochs = gan_epochs
        self.critics = CriticSet(sizes, width, channels, kind=critic)
        self.critics.initialize(mx.init.Normal(0.02), ctx=self.ctx_list)
        # update_on_kvstore=False: each device updates its own copy, which clip_weights can
        # then clip in place (a kvstore-held weight would be re-broadcast over the clipped one)
        # a list, not the ParameterDict: Gluon's Trainer sorts a dict by parameter name, and
        # names carry per-process counters ('criticset9_' sorts after 'criticset10_'), so a
        # checkpoint's optimizer state, stored by index, could meet another order on resume
        self.trainer = make_trainer(list(self.critics.collect_params().values()), 'adam',
                                    lr=lr, wd=0.0,
                                    beta1=beta1, kvstore=kvstore if len(ctx_list) > 1 else None,
                                    update_on_kvstore=False)

    def active(self, epoch):
        return self.gan_epochs < 0 or epoch < self.gan_epochs

    def select(self, student_maps, teacher_maps):
        """The paired maps: two lists of len(pairs)."""
        return ([student_maps[s] for s, _ in self.pairs],
                [teacher_maps[t] for _, t in self.pairs])

    def critic_scores(self, maps):
        return self.critics(*maps)

    def critic_forward_backward(self, teacher_maps, student_maps, batch_total):
        """One critic gradient on every device. ``*_maps``: per device, the paired maps
        (student maps detached). Teacher and student maps go through the critics as two
        separate batches (with the ``bn`` critic each is normalised by its own statistics, as
        in the reference WGAN code). Returns per device ``(real (K,), fake (K,))`` score sums."""
        out = []
        with autograd.record():
            losses = []
            for t_maps, s_maps in zip(teacher_maps, student_maps):
                real = self.critic_scores(t_maps)
                fake = self.critic_scores(s_maps)
                real_sum = mx.nd.stack(*[r.sum() for r in real])
                fake_sum = mx.nd.stack(*[f.sum() for f in fake])
                losses.append((real_sum.sum() - fake_sum.sum()) / batch_total)
                out.append((real_sum, fake_sum))
        autograd.backward(losses)
        return out

    def critic_step(self):
        self.trainer.step(1)
        if self.spectral:
            self.critics.update_spectral_state(self.ctx_list)
        elif self.clip > 0:
            clip_weights(self.critics.collect_params(), self.clip, self.ctx_list)

    def adversarial_loss(self, student_maps, batch_total):
        """Per-device ``adv_weight * sum_k sum_i D_k(student_i) / batch_total`` (recorded)."""
        scores = self.critic_scores(student_maps)
        return self.adv_weight * mx.nd.add_n(*[s.sum() for s in scores]) / batch_total


class StudentForward(nn.HybridBlock):
    """The student SSD's maps and raw predictions from one backbone pass.

    GluonCV's ``SSD.__call__`` never returns features, so this composes the SSD's own parts
    (:func:`~gluon_distill.models.ssd.ssd_head`): ``features`` -> (critic adapters) -> maps
    for the critics, and the SSD's predictors over the head's input maps. Output: ``K`` maps,
    then ``cls_preds (B, N, C+1)``, ``box_preds (B, N, 4)``.
    """

    def __init__(self, ssd, critic_adapters=None, **kwargs):
        super(StudentForward, self).__init__(**kwargs)
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


class DistillStep:
    """One iteration of GAN distillation over a list of devices.

    Per batch: teacher maps once, outside autograd (inference mode: the teacher's BatchNorm
    statistics never move); one student forward; ``n_critic`` critic updates on the detached
    student maps; one update of student backbone, adapters and head on SSD loss +
    adversarial loss. One host synchronisation per iteration carries every logged value and
    decides the non-finite guard: a non-finite critic loss skips the critic update and the
    student update (its adversarial term uses the same critics), a non-finite SSD loss skips
    the student update.

    ``distiller=None`` (or after ``gan_epochs``) trains on the SSD loss alone: the head-only
    ablation. With ``adv_trainer`` (``distill.adv_optimizer: adam``) the student's trainer
    applies the SSD-loss gradient and ``adv_trainer`` (Adam, the authors' ``lrG``/``beta1``)
    the adversarial gradient, both taken at the same weights; by default one trainer applies
    their sum.
    """

    def __init__(self, student, teacher_features, ctx_list, trainer, distiller=None,
                 critic_adapters=None, loss=None, prepare=None, adv_trainer=None):
        self.student = student
        self.forward = StudentForward(student, critic_adapters)
        self.teacher_features = teacher_features
        self.ctx_list = list(ctx_list)
        self.trainer = trainer
        self.distiller = distiller
        self.critic_adapters = critic_adapters
        self.loss = loss or MultiBoxLoss()
        self.prepare = prepare or DevicePrepare(ctx_list)
        self.adv_trainer = adv_trainer
        self.epoch = 0
        self._pending_adv = None

    @property
    def detector(self):
        return self.student

    def blocks(self):
        blocks = {'student': self.student}
        if self.critic_adapters is not None:
            blocks['critic_adapters'] = self.critic_adapters
        if self.distiller is not None:
            blocks['critics'] = self.distiller.critics
        return blocks

    def trainers(self):
        trainers = {'student': self.trainer}
        if self.distiller is not None:
            trainers['critics'] = self.distiller.trainer
        if self.adv_trainer is not None:
            trainers['adversarial'] = self.adv_trainer
        return trainers

    def hybridize(self, **kwargs):
        self.forward.hybridize(**kwargs)
        self.teacher_features.hybridize(**kwargs)
        if self.distiller is not None:
            self.distiller.critics.hybridize(**kwargs)

    def _student_params(self):
        return [p for p in self.adv_trainer._params if p.grad_req != 'null']

    def _copy_grads(self):
        return [[g.copy() for g in p.list_grad()] for p in self._student_params()]

    def _set_grads(self, grads):
        for p, saved in zip(self._student_params(), grads):
            for g, value in zip(p.list_grad(), saved):
                value.copyto(g)
            for data in p.list_data():
                data._fresh_grad = True  # written by us, not by backward: tell the Trainer

    def teacher_maps(self, images):
        """Per device, the teacher's maps (no autograd, inference-mode BatchNorm)."""
        return [self.teacher_features(x) for x in images]

    def run_step(self, batch):
        images, cls_targets, box_targets = self.prepare(batch)
        batch_total = int(batch[0].shape[0])
        gan = self.distiller is not None and self.distiller.active(self.epoch)
        if gan:
            teacher = self.teacher_maps(images)
        with autograd.record():
            outputs = [self.forward(x) for x in images]
        student_maps = [o[:-2] for o in outputs]
        cls_preds = [o[-2] for o in outputs]
        box_preds = [o[-1] for o in outputs]

        values = {}
        to_host = []
        if gan:
            d = self.distiller
            pairs = [d.select(s, t) for s, t in zip(student_maps, teacher)]
            detached = [[m.detach() for m in s] for s, _ in pairs]
            teacher_paired = [t for _, t in pairs]
            scores = d.critic_forward_backward(teacher_paired, detached, batch_total)
            real = mx.nd.add_n(*[r.as_in_context(self.ctx_list[0]) for r, _ in scores])
            fake = mx.nd.add_n(*[f.as_in_context(self.ctx_list[0]) for _, f in scores])
            to_host += [real / batch_total, fake / batch_total]
        with autograd.record():
            sum_loss, cls_loss, box_loss = self.loss(cls_preds, box_preds, cls_targets,
                                                     box_targets)
        ctx0 = self.ctx_list[0]
        ssd_vals = mx.nd.stack(*[mx.nd.add_n(*[l.sum().as_in_context(ctx0) for l in group])
                                 for group in (cls_loss, box_loss)])
        to_host.append(ssd_vals)
        if self._pending_adv is not None:
            to_host.append(self._pending_adv.reshape((1,)))
        host = mx.nd.concat(*[a.reshape((-1,)) for a in to_host], dim=0).asnumpy()  # the sync

        k = len(self.distiller.pairs) if gan else 0
        real_k, fake_k = host[:k], host[k:2 * k]
        ce, l1 = host[2 * k], host[2 * k + 1]
        if self._pending_adv is not None:
            values['Loss_G_adv'] = float(host[2 * k + 2])
            self._pending_adv = None
        critic_finite = bool(np.all(np.isfinite(host[:2 * k])))
        ssd_finite = bool(np.isfinite(ce) and np.isfinite(l1))
        if gan:
            values['Loss_D_real'] = float(real_k.sum())
            values['Loss_D_fake'] = float(fake_k.sum())
            values['Loss_D'] = float(real_k.sum() - fake_k.sum())
            for i, w in enumerate(fake_k - real_k):
                values['W%d' % i] = float(w)
            if critic_finite:
                d.critic_step()
                for _ in range(d.n_critic - 1):
                    d.critic_forward_backward(teacher_paired, detached, batch_total)
                    d.critic_step()

        with autograd.record():
            totals = []
            adv_parts = []
            for i, s_loss in enumerate(sum_loss):
                total = s_loss.sum()
                if gan:
                    s_paired, _ = pairs[i]
                    adv = self.distiller.adversarial_loss(s_paired, batch_total)
                    adv_parts.append(adv)
                    if self.adv_trainer is None:
                        total = total + adv
                totals.append(total)
        adv_grads = None
        if gan and self.adv_trainer is not None:
            # separate optimizer for the adversarial term: its gradient is taken first and set
            # aside, so both gradients are evaluated at the same weights
            for p in self._student_params():
                p.zero_grad()  # the head gets no adversarial gradient: keep it zero
            autograd.backward(adv_parts, retain_graph=True)
            adv_grads = self._copy_grads()
        autograd.backward(totals)
        if gan:
            # logged with the next iteration's synchronisation (no extra host round trip)
            self._pending_adv = mx.nd.add_n(*[a.as_in_context(ctx0) for a in adv_parts])
        finite = ssd_finite and (critic_finite or not gan)
        # a non-finite critic score makes the adversarial term (same critics, same student
        # maps) non-finite too: stepping the student then would poison it with NaN
        if finite:
            # own-head students: the critic-only adapters get no gradient once the
            # adversarial term is off (after gan_epochs)
            self.trainer.step(1, ignore_stale_grad=not gan and self.critic_adapters is not None)
            if adv_grads is not None:
                self._set_grads(adv_grads)
                self.adv_trainer.step(1)
        values.update({'CrossEntropy': float(ce), 'SmoothL1': float(l1), 'finite': finite,
                       'batch_size': batch_total})
        return values
