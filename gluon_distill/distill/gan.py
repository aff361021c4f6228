"""GAN knowledge distillation (Hong & Yu 2019): per-scale Wasserstein critics.

The method, as a module the training step plugs in:

* what is recorded: the teacher's SSD feature maps and the student's (after its adapters),
  paired by scale (:attr:`GANDistiller.pairs`);
* how they are connected: the student's adapters (owned by the student, see
  :mod:`gluon_distill.models.student`);
* the auxiliary update per batch: ``n_critic`` critic updates on the detached student maps;
* what loss is applied: Eq. 1 of the paper, a WGAN objective. The critic lowers its score on
  teacher maps: ``Loss_D = mean D(teacher) - mean D(student)``; the student lowers
  ``Loss_G_adv = mean D(student)``. The critic gap ``W = mean D(student) - mean D(teacher) =
  -Loss_D`` grows as the critics learn. The critics' scores over scales are summed.

The generic :class:`~gluon_distill.distill.step.DistillStep` drives it (teacher features once
per batch outside autograd, the critic update on detached student maps, then one student update
on SSD loss + adversarial loss). Built from ``distill.gan.*`` by :func:`build`.
"""
import numpy as np

import mxnet as mx
from mxnet import autograd
from ..engine.steps import make_trainer
from .critics import CRITIC_BATCHES, CRITICS, CriticSet, clip_weights
from .step import Distiller


class GANDistiller(Distiller):
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
        ``dcgan``: the first convolution's width, doubled at every layer; the other critics:
        their constant width (the paper draws 512).
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
        ``dcgan`` (the WGAN reference critic, :class:`~gluon_distill.distill.critics.
        DCGANCritic`), ``bn`` (3x3 convolutions at a constant width with BatchNorm, a 1x1
        score layer), ``plain`` (``bn`` without normalisation, clipped) or ``spectral``
        (spectral normalisation of every layer; ``clip`` is then ignored). Every trainable
        parameter of a clipped critic is clipped, gamma/beta included.
    adv_trainer : Trainer, optional
        ``adv_optimizer: adam``: an Adam over the student's parameters applying the
        adversarial gradient (the step's ``loss_trainer``).
    critic_batch : str
        ``joint``: each device's teacher and student maps go through a critic as one batch
        (its BatchNorm normalises them together), in the critic update and in the
        adversarial term; ``separate``: as two batches.
    critic_min_size : int
        ``dcgan``: maps below this size are resized to it (1: never; a 1 px map then fails).
    critic_warmup_epochs : int
        The first this many epochs the critics train alone: the adversarial term does not
        reach the student, which learns from the detection loss only.
    lr_steps : list of int, optional
        The critics' and the adversarial Adam's own decay epochs (None: the run's).
    """
    name = 'gan'
    loss_name = 'Loss_G_adv'
    late_loss = True   # the adversarial term uses the critics updated on this batch

    def __init__(self, pairs, sizes, ctx_list, width=512, clip=0.03, lr=5e-4, beta1=0.5,
                 n_critic=1, adv_weight=1.0, gan_epochs=-1, kvstore='device', channels=None,
                 critic='dcgan', adv_trainer=None, critic_batch='joint', critic_min_size=16,
                 critic_warmup_epochs=0, lr_steps=None):
        if critic not in CRITICS:
            raise ValueError('distill.critic: expected one of {}, got {!r}'.format(
                ', '.join(CRITICS), critic))
        if critic_batch not in CRITIC_BATCHES:
            raise ValueError('distill.gan.critic_batch: expected one of {}, got {!r}'.format(
                ', '.join(CRITIC_BATCHES), critic_batch))
        self.joint = critic_batch == 'joint'
        self.pairs = list(pairs)
        self.ctx_list = list(ctx_list)
        self.kind = critic
        self.width = width
        self.spectral = critic == 'spectral'
        self.clip = 0.0 if self.spectral else clip
        self.n_critic = n_critic
        self.adv_weight = adv_weight
        self.gan_epochs = gan_epochs
        self.critics = CriticSet(sizes, width, channels, kind=critic, min_size=critic_min_size)
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
        self.loss_trainer = adv_trainer
        self.lr = lr
        self.adv_lr = None
        self._paired = None
        self.critic_warmup_epochs = critic_warmup_epochs
        self.lr_steps = None if lr_steps is None else sorted(lr_steps)

    def active(self, epoch, iteration=0):
        return self.gan_epochs < 0 or epoch < self.gan_epochs

    def loss_active(self, epoch, iteration=0):
        # critic warm-up: the critics train on every batch, the student on detection loss only
        return epoch >= self.critic_warmup_epochs

    def describe(self):
        text = 'critics: {}, width {}, clip {:g}, adversarial weight {:g}'.format(
            self.kind, self.width, self.clip, self.adv_weight)
        if self.critic_warmup_epochs:
            text += ', critics alone for the first {} epoch(s)'.format(self.critic_warmup_epochs)
        if self.lr_steps is not None:
            text += ', critic lr steps {}'.format(self.lr_steps or 'none')
        return text

    def blocks(self):
        return {'critics': self.critics}

    def trainers(self):
        trainers = {'critics': self.trainer}
        if self.loss_trainer is not None:
            trainers['adversarial'] = self.loss_trainer
        return trainers

    def lr_trainers(self):
        out = {'critics': (self.trainer, self.lr)}
        if self.loss_trainer is not None:
            out['adversarial'] = (self.loss_trainer, self.adv_lr)
        if self.lr_steps is not None:  # their own decay epochs (distill.gan.lr_steps)
            out = {name: entry + (self.lr_steps,) for name, entry in out.items()}
        return out

    def auxiliary(self, teacher_maps, student_maps, batch_total):
        """The first critic gradient; the per-scale real and fake score means go to the host."""
        pairs = [self.select(s, t) for s, t in zip(student_maps, teacher_maps)]
        detached = [[m.detach() for m in s] for s, _ in pairs]
        teacher_paired = [t for _, t in pairs]
        self._paired = (pairs, teacher_paired, detached, batch_total)
        scores = self.critic_forward_backward(teacher_paired, detached, batch_total)
        ctx0 = self.ctx_list[0]
        real = mx.nd.add_n(*[r.as_in_context(ctx0) for r, _ in scores])
        fake = mx.nd.add_n(*[f.as_in_context(ctx0) for _, f in scores])
        return [real / batch_total, fake / batch_total]

    def after_sync(self, host):
        """Logs ``Loss_D*`` and ``W_k``; updates the critics (``n_critic`` times) if finite."""
        k = len(self.pairs)
        real_k, fake_k = host[:k], host[k:2 * k]
        values = {'Loss_D_real': float(real_k.sum()), 'Loss_D_fake': float(fake_k.sum()),
                  'Loss_D': float(real_k.sum() - fake_k.sum())}
        for i, w in enumerate(fake_k - real_k):
            values['W%d' % i] = float(w)
        finite = bool(np.all(np.isfinite(host[:2 * k])))
        if finite:
            _, teacher_paired, detached, batch_total = self._paired
            self.critic_step()
            for _ in range(self.n_critic - 1):
                self.critic_forward_backward(teacher_paired, detached, batch_total)
                self.critic_step()
        return values, finite

    def loss(self, index, teacher_maps, student_maps, batch_total):
        student, teacher = self._paired[0][index]
        return self.adversarial_loss(student, batch_total, teacher)

    def critic_scores(self, maps):
        return self.critics(*maps)

    def paired_scores(self, teacher_maps, student_maps):
        """Per scale, ``(D(teacher), D(student))`` of one device's paired maps: one critic
        pass over both (``critic_batch: joint``, BatchNorm statistics shared) or two."""
        if not self.joint:
            return list(zip(self.critic_scores(teacher_maps), self.critic_scores(student_maps)))
        n = teacher_maps[0].shape[0]
        scores = self.critic_scores([mx.nd.concat(t, s, dim=0)
                                     for t, s in zip(teacher_maps, student_maps)])
        return [(x[:n], x[n:]) for x in scores]

    def critic_forward_backward(self, teacher_maps, student_maps, batch_total):
        """One critic gradient on every device. ``*_maps``: per device, the paired maps
        (student maps detached), scored by :meth:`paired_scores`. Returns per device
        ``(real (K,), fake (K,))`` score sums."""
        out = []
        with autograd.record():
            losses = []
            for t_maps, s_maps in zip(teacher_maps, student_maps):
                scores = self.paired_scores(t_maps, s_maps)
                real_sum = mx.nd.stack(*[r.sum() for r, _ in scores])
                fake_sum = mx.nd.stack(*[f.sum() for _, f in scores])
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

    def adversarial_loss(self, student_maps, batch_total, teacher_maps=None):
        """Per-device ``adv_weight * sum_k sum_i D_k(student_i) / batch_total`` (recorded).
        With ``critic_batch: joint`` the student's scores are taken beside the device's
        ``teacher_maps``, as the critics were trained."""
        if self.joint:
            scores = [f for _, f in self.paired_scores(teacher_maps, student_maps)]
        else:
            scores = self.critic_scores(student_maps)
        return self.adv_weight * mx.nd.add_n(*[s.sum() for s in scores]) / batch_total


def adversarial_params(plan, student_params):
    """Of ``student_params``, those the adversarial term reaches: the student's feature
    extractor (``plan.net.features``: backbone and adapters) and the critics' adapters. The
    heads never get an adversarial gradient; leaving them out of its Adam saves copying and
    updating them every step (their update would be zero)."""
    reached = set(plan.net.features.collect_params().values())
    if plan.critic_adapters is not None:
        reached |= set(plan.critic_adapters.collect_params().values())
    return [p for p in student_params if p in reached]


def build(g, plan, ctx, kv, student_params, data_shape=None, family=None):
    """The GAN distiller of config section ``distill.gan`` (``g``) for ``plan``.

    ``student_params``: the parameters the student's trainer holds; with ``adv_optimizer:
    adam`` a second trainer over those the adversarial term reaches
    (:func:`adversarial_params`) applies its gradient (then the student's trainer must not
    keep them on the KVStore either)."""
    distiller = GANDistiller(plan.pairs, plan.sizes, ctx, g.critic_width, g.clip, g.critic_lr,
                             g.critic_beta1, g.n_critic, g.adv_weight, g.epochs,
                             kv or 'device',
                             channels=[plan.teacher_channels[j] for _, j in plan.pairs],
                             critic=g.critic, critic_batch=g.critic_batch,
                             critic_warmup_epochs=g.critic_warmup_epochs, lr_steps=g.lr_steps)
    if g.adv_optimizer == 'adam':
        distiller.loss_trainer = make_trainer(adversarial_params(plan, student_params), 'adam',
                                              g.adv_lr, wd=0.0, beta1=g.adv_beta1, kvstore=kv,
                                              update_on_kvstore=False)
        distiller.adv_lr = g.adv_lr
    return distiller
