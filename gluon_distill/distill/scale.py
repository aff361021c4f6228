"""How hard the critics pull: the numbers to check before a long GAN-distillation run.

Eq. 1 has no weight on the adversarial term, so the critics' scale alone sets how strongly it
pulls against the SSD loss (docs/method-notes.md). :func:`critic_scale` trains the critics of
a :class:`~gluon_distill.distill.step.DistillStep` for a few steps on one batch (student and
teacher frozen) and reports, per scale, the Wasserstein estimate ``W_k`` and the ratio of the
adversarial gradient's norm to the SSD loss gradient's norm on the student's feature extractor
(backbone + adapters), both as the training step computes them.
"""
import math

import mxnet as mx
from mxnet import autograd

from ..data.loader import as_device_batch


def _grad_norm(params):
    total = 0.0
    for p in params:
        for g in p.list_grad():
            total += float((g.astype('float64') ** 2).sum().asscalar())
    return math.sqrt(total)


def _backward_norm(losses, params):
    for p in params:
        p.zero_grad()
    autograd.backward(losses)
    return _grad_norm(params)


def critic_scale(step, batch, critic_steps=10):
    """Critic updates on one batch, then the critics' scale.

    Parameters
    ----------
    step : DistillStep
        With its distiller (critics and their trainer); the student is not updated.
    batch : tuple
        ``(images, cls_targets, box_targets)`` as the loader yields them.
    critic_steps : int
        Critic updates before measuring.

    Returns
    -------
    dict
        ``W`` (list, per scale, after the updates), ``W_history`` (the summed ``W`` before
        each update), ``adv_grad``, ``ssd_grad`` (L2 norms on the student's features) and
        ``ratio`` (``adv_grad / ssd_grad``).
    """
    d = step.distiller
    device_batch = as_device_batch(step.prepare(batch))
    images = device_batch.images
    heads = step.forward.num_head_outputs
    batch_total = int(batch[0].shape[0])
    teacher = step.teacher_maps(images)
    with autograd.record():   # training-mode student maps, as the step's critics see them
        maps = [step.forward(x)[:-heads] for x in images]
    pairs = [d.select(s, t) for s, t in zip(maps, teacher)]
    detached = [[m.detach() for m in s] for s, _ in pairs]
    teacher_paired = [t for _, t in pairs]
    history = []
    for i in range(critic_steps + 1):
        scores = d.critic_forward_backward(teacher_paired, detached, batch_total)
        real = sum(r.asnumpy() for r, _ in scores)
        fake = sum(f.asnumpy() for _, f in scores)
        w = [float(v) for v in (fake - real) / batch_total]
        history.append(sum(w))
        if i < critic_steps:
            d.critic_step()
    params = [p for p in step.student.features.collect_params().values()
              if p.grad_req != 'null']
    with autograd.record():
        outputs = [step.forward(x) for x in images]
        adv = [d.adversarial_loss([o[s] for s, _ in d.pairs], batch_total, t)
               for o, t in zip(outputs, teacher_paired)]
    adv_grad = _backward_norm(adv, params)
    with autograd.record():
        outputs = [step.forward(x) for x in images]
        sum_loss, _ = step.loss([o[-heads:] for o in outputs], device_batch.targets)
        totals = [s.sum() for s in sum_loss]
    ssd_grad = _backward_norm(totals, params)
    for p in params:
        p.zero_grad()
    return {'W': w, 'W_history': history, 'adv_grad': adv_grad, 'ssd_grad': ssd_grad,
            'ratio': adv_grad / ssd_grad if ssd_grad > 0 else float('inf')}


def describe(result):
    """One line: W per scale and the gradient ratio."""
    return 'W per scale [{}]; |grad adv| / |grad SSD| = {:.3g} / {:.3g} = {:.3g}'.format(
        ', '.join('{:.3g}'.format(w) for w in result['W']), result['adv_grad'],
        result['ssd_grad'], result['ratio'])


def random_pair(teacher_net, student_net, size, classes, ctx, seed=0):
    """A zoo (teacher, plan) pair with random weights at ``size`` px (no download)."""
    import numpy as np
    from ..config import ModelConfig, IMAGENET_MEAN, IMAGENET_STD
    from ..models.ssd import anchors_of, build_ssd, initialize, resolve_arch
    from ..models.teacher import Teacher, plan_student
    mx.random.seed(seed)
    np.random.seed(seed)
    arch = resolve_arch(teacher_net, size)
    net = build_ssd(arch, classes, pretrained_base=False)
    initialize(net, ctx)
    anchors_of(net, size, ctx[0])
    teacher = Teacher(net, arch, list(classes), list(IMAGENET_MEAN), list(IMAGENET_STD),
                      'random ' + teacher_net)
    plan = plan_student(teacher, ModelConfig(network=student_net, data_shape=size,
                                             pretrained_base=False), classes, ctx)
    anchors_of(plan.net, size, ctx[0])
    return teacher, plan


def random_batch(num_anchors, size, num_classes, batch=2, seed=0, positives=4):
    """Random images with ``positives`` random positive anchors per image."""
    import numpy as np
    rng = np.random.RandomState(seed)
    images = mx.nd.array(rng.normal(size=(batch, 3, size, size)).astype('float32'))
    cls_targets = np.zeros((batch, num_anchors), 'float32')
    box_targets = np.zeros((batch, num_anchors, 4), 'float32')
    for i in range(batch):
        pos = rng.choice(num_anchors, positives, replace=False)
        cls_targets[i, pos] = rng.randint(1, num_classes + 1, size=positives)
        box_targets[i, pos] = rng.normal(scale=0.5, size=(positives, 4))
    return images, mx.nd.array(cls_targets), mx.nd.array(box_targets)


def pair_step(teacher, plan, ctx, gan_cfg):
    """The DistillStep ``train_distilled`` wires for a pair, with the critics of ``gan_cfg``
    (a ``distill.gan`` section)."""
    from ..engine.steps import make_trainer
    from .gan import GANDistiller
    from .step import DistillStep
    g = gan_cfg
    distiller = GANDistiller(plan.pairs, plan.sizes, ctx, g.critic_width, g.clip, g.critic_lr,
                             g.critic_beta1, g.n_critic, g.adv_weight, g.epochs,
                             channels=[plan.teacher_channels[t] for _, t in plan.pairs],
                             critic=g.critic, critic_batch=g.critic_batch)
    params = plan.net.collect_params()
    if plan.critic_adapters is not None:
        params.update(plan.critic_adapters.collect_params())
    return DistillStep(plan.net, teacher.net.features, ctx, make_trainer(params), distiller,
                       plan.critic_adapters)
