"""Wiring of a distillation run: the plain run's builder (:func:`~gluon_distill.training.
run_training`) with the distillation step, for any detector family."""
import json
import math
import os

from ..engine.checkpoint import save_params
from ..engine.loop import HookBase
from ..config import check_choices, distill_key
from ..engine.steps import DetectionStep
from ..families import get_family
from ..models.io import write_model_json
from ..models.ssd import ModelError
from ..training import (prepare_run, seed_everything, run_training, run_provenance,
                        TrainingJob, data_record, eval_record, write_summary)
from .critics import CRITICS
from .methods import build_distillers, parse_methods
from .step import DistillStep


class EpochToStep(HookBase):
    """Tells the step which epoch and iteration run (the GAN term stops after
    ``distill.gan.epochs`` and reaches the student after ``distill.gan.critic_warmup_epochs``,
    FGFI starts after ``distill.fgfi.warmup_iters``)."""

    def before_epoch(self):
        self.loop.step.epoch = self.loop.epoch

    def before_step(self):
        self.loop.step.iteration = self.loop.iteration


class CriticWatch(HookBase):
    """Warns once when the critics' scores run away (``|Loss_D| > threshold``): the
    adversarial term then outweighs the SSD loss. With the paper's clipped critics this is
    what happened in our mini-reproduction, and the students collapsed."""

    def __init__(self, logger, threshold=50.0):
        self.logger = logger
        self.threshold = threshold
        self.warned = False

    def after_step(self):
        loss_d = self.loop.outputs.get('Loss_D')
        if self.warned or loss_d is None or abs(loss_d) <= self.threshold:
            return
        self.warned = True
        self.logger.warning(
            'critic scores are running away (|Loss_D| = %.1f at iteration %d): the adversarial '
            'term may drown the SSD loss. If the validation mAP falls, use the reference WGAN '
            'critic --set distill.gan.critic=bn, or --set distill.gan.critic=spectral --set '
            'distill.gan.adv_weight=0.01 (see docs/method-notes.md).', abs(loss_d),
            self.loop.iteration)


def student_spec(plan, classes, model_cfg, prov, data, folded=False):
    """``model.json`` of the deployable SSD student (no teacher needed to load it)."""
    return get_family('ssd').student_spec(plan, classes, model_cfg, prov, {'data': data}, folded)


# the former ``distill.critic_norm`` values and the ``distill.critic`` they mean
LEGACY_CRITIC_NORM = {'clip': 'plain', 'spectral': 'spectral'}


def check_distill_options(d):
    """Fail on a bad ``distill`` section before any data or network is loaded.

    The former key ``critic_norm`` (``clip`` | ``spectral``) still works and is rewritten into
    ``gan.critic`` (``clip`` was the un-normalised clipped critic, now ``plain``); returns the
    notes to log about it.
    """
    notes = []
    g = d.gan
    if g.critic_norm:
        if g.critic_norm not in LEGACY_CRITIC_NORM:
            raise ModelError('distill.critic_norm: {!r} is not a critic; the key is replaced by '
                             'distill.critic (distill.gan.critic): one of {}'.format(
                                 g.critic_norm, ', '.join(CRITICS)))
        notes.append('distill.critic_norm={} is deprecated: read as distill.gan.critic={} (the '
                     'default is now bn)'.format(g.critic_norm,
                                                 LEGACY_CRITIC_NORM[g.critic_norm]))
        g.critic = LEGACY_CRITIC_NORM[g.critic_norm]
        g.critic_norm = ''
    check_choices(d, 'distill')
    if d.grad_ratio_interval < 0:
        raise ModelError('distill.grad_ratio_interval: expected 0 (never) or a number of '
                         'iterations, got {!r}'.format(d.grad_ratio_interval))
    f = d.fgfi
    if not 0 <= f.psi <= 1:
        raise ModelError('{}: expected a fraction in [0, 1], got {!r}'.format(
            distill_key(d, 'fgfi.psi'), f.psi))
    for key in ('fgfi.weight', 'mimic.weight', 'gan.adv_weight', 'cosine.weight'):
        section, name = key.split('.')
        if getattr(getattr(d, section), name) < 0:
            raise ModelError('{}: a loss weight cannot be negative'.format(distill_key(d, key)))
    if g.critic_warmup_epochs < 0:
        raise ModelError('distill.gan.critic_warmup_epochs: expected 0 (none) or a number of '
                         'epochs, got {!r}'.format(g.critic_warmup_epochs))
    if g.lr_steps is not None and any(s < 0 for s in g.lr_steps):
        raise ModelError('distill.gan.lr_steps: expected epochs (>= 0), got {!r}'.format(
            g.lr_steps))
    return notes


def _teacher_reference_map(teacher_source):
    """The teacher's validation mAP from ``best.json`` beside its weights, if there is one."""
    path = os.path.join(os.path.dirname(os.path.abspath(teacher_source)), 'best.json')
    if not os.path.isfile(teacher_source) or not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            value = json.load(f).get('mAP')
    except (OSError, ValueError):
        return None
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


# a last-epoch mAP below this fraction of the run's best (a collapse), or of the teacher's
# mAP (a student that never learned), is not a usable detector
COLLAPSE_FRACTION = 0.1


def deliverables(out, summary, teacher_map=None):
    """Which file holds which epoch with which validation mAP, and whether the run collapsed.

    Adds ``files`` (name -> {epoch, mAP}) and ``collapsed`` (None or the reason) to
    ``summary``; returns the final line the tool prints.
    """
    best = None
    path = os.path.join(out, 'best.json')
    if os.path.exists(path):
        with open(path) as f:
            best = json.load(f)
    last_epoch = summary['epochs'] - 1
    last_map = summary.get('last_mAP')
    files = {'last.params': {'epoch': last_epoch, 'mAP': last_map},
             'student.params': {'epoch': last_epoch, 'mAP': last_map}}
    if best is not None:
        files['best.params'] = {'epoch': best['epoch'], 'mAP': best['mAP']}
    summary['files'] = files
    collapsed = None
    if best is not None and last_map is not None and best['mAP'] >= 0.05 and \
            last_map < COLLAPSE_FRACTION * best['mAP']:
        collapsed = 'validation mAP COLLAPSED from {:.4f} (epoch {}) to {:.4f}'.format(
            best['mAP'], best['epoch'], last_map)
    elif teacher_map is not None and last_map is not None and teacher_map >= 0.05 and \
            last_map < COLLAPSE_FRACTION * teacher_map:
        collapsed = "last-epoch validation mAP {:.4f} is below {:g} x the teacher's " \
            "{:.4f}".format(last_map, COLLAPSE_FRACTION, teacher_map)
    summary['collapsed'] = collapsed

    def fmt(v):
        return 'n/a' if v is None else '{:.4f}'.format(v)
    where = os.path.join(out, '')
    parts = []
    if best is not None:
        parts.append('best.params = epoch {} (validation mAP {}, the best epoch)'.format(
            best['epoch'], fmt(best['mAP'])))
    parts.append('last.params = student.params = epoch {} (validation mAP {}, the last '
                 'epoch)'.format(last_epoch, fmt(last_map)))
    files_line = '; '.join(parts)
    if collapsed:
        return ('{}: not a usable detector (with GAN distillation, check the critic scores '
                'W0..Wk in {}metrics.jsonl). Files in {}: {}'.format(
                    collapsed, where, where, files_line))
    return 'student (standalone with {}model.json, no teacher needed): {}'.format(
        where, files_line)


def train_distilled(cfg, argv=None):
    """Distil ``cfg.teacher`` into the student ``cfg.model`` as ``cfg.distill`` says."""
    d, t, m = cfg.distill, cfg.train, cfg.model
    family = get_family(m.family)
    notes = check_distill_options(d)
    run = prepare_run(cfg, argv)
    for note in notes:
        run.logger.warning(note)
    seed_everything(t.seed)
    classes = run.data.classes
    teacher, plan = family.distillation_plan(cfg, classes, run.ctx)
    run.logger.info(family.describe_plan(teacher, plan))
    prov = run_provenance(run, argv)
    prov['teacher'] = {'source': os.path.abspath(teacher.source),
                       'network': teacher.arch.network}
    extra = {'data': data_record(cfg.data), 'eval': eval_record(cfg.eval)}
    student = plan.net
    kv = t.kvstore if len(run.ctx) > 1 else None
    names = parse_methods(d.method)
    params = list(student.collect_params().values())
    if plan.critic_adapters is not None and names:
        # the pair-only adapters: nothing but the distillation losses gives them a gradient
        params += list(plan.critic_adapters.collect_params().values())
    distillers, params = build_distillers(d, plan, run.ctx, kv, params, m.data_shape, family)
    # two trainers share the student's weights only if neither keeps them on the KVStore
    separate = any(x.loss_trainer is not None for x in distillers)
    lr_trainers = {}
    for x in distillers:
        lr_trainers.update(x.lr_trainers())

    def make_step(trainer, loader):
        if not distillers:
            return DetectionStep(student, run.ctx, trainer, loss=family.loss(),
                                 prepare=loader.prepare,
                                 forward=family.training_forward(student))
        return DistillStep(student, family.teacher_forward(teacher), run.ctx, trainer,
                           distillers, plan.critic_adapters, loss=family.loss(),
                           prepare=loader.prepare,
                           forward=family.feature_forward(student, plan.critic_adapters),
                           grad_ratio_every=d.grad_ratio_interval)
    for x in distillers:
        run.logger.info(x.describe())
    job = TrainingJob(student, family.student_spec(plan, classes, m, prov, extra), params,
                      make_step, lr_trainers, hooks=[EpochToStep(), CriticWatch(run.logger)],
                      adv_weight=d.gan.adv_weight if 'gan' in names else 0.0,
                      update_on_kvstore=False if separate else None,
                      description='distilling ({}) into {}'.format(d.method, plan.arch.network))
    summary = run_training(run, family, job)
    save_params(os.path.join(run.out, 'student.params'), student)
    summary['student'] = os.path.join(run.out, 'student.params')
    summary['final_line'] = deliverables(run.out, summary, _teacher_reference_map(teacher.source))
    if summary['collapsed']:
        run.logger.warning(summary['final_line'])
    folded = family.fold(plan, run.ctx) if d.fold_adapters else None
    if folded is not None:
        folded_dir = os.path.join(run.out, 'folded')
        save_params(os.path.join(folded_dir, 'student.params'), folded)
        write_model_json(folded_dir, family.student_spec(plan, classes, m, prov, extra,
                                                         folded=True))
        summary['folded'] = os.path.join(folded_dir, 'student.params')
    return write_summary(run, summary)
