"""Wiring of a training run from a :class:`~gluon_distill.config.Config`.

``tools/train_ssd.py`` is argument parsing plus :func:`train_detector`; the distillation tool
reuses :func:`prepare_run`, :func:`standard_hooks` and :func:`run_loop` with its own step.
"""
import dataclasses
import json
import logging
import os
import random
import sys
from dataclasses import dataclass

import numpy as np

import mxnet as mx

from .data.datasets import build_datasets
from .data.loader import TrainLoader
from .engine.checkpoint import load_checkpoint, CheckpointError
from .io_utils import atomic_write_json
from .engine import rundir
from .engine.devices import parse_ctx
from .engine.hooks import (setup_logging, JsonlWriter, LRScheduleHook, NonFiniteGuard,
                           MetricsLogger, EvalHook, CheckpointHook, PlotHook,
                           truncate_metrics)
from .engine.bn_sync import SyncDeviceStatistics
from .engine.divergence import DivergenceStop
from .engine.loop import TrainLoop
from .engine.steps import DetectionStep, make_trainer, prepare_trainers
from .evaluation.inference import evaluate_detector, prepare_for_inference, prepare_for_training
from .models.io import (dataset_fingerprint, model_spec, provenance, write_model_json,
                        MODEL_JSON)
from .models.ssd import resolve_arch, build_ssd, initialize, anchors_of, ModelError


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    mx.random.seed(seed)


@dataclass
class RunContext:
    """What every training run shares: config, devices, data, output folder, logger."""
    cfg: object
    ctx: list
    data: object
    out: str
    logger: logging.Logger
    argv: list


def check_batch_size(batch_size, num_devices):
    """The global batch must split evenly over the devices: uneven shards would change the
    BatchNorm statistics and the loss normalisation of a run by its device count."""
    if batch_size >= num_devices and batch_size % num_devices == 0:
        return
    below = batch_size // num_devices * num_devices
    above = below + num_devices
    sizes = ' or '.join(str(b) for b in (below, above) if b > 0)
    raise ValueError('--batch-size {} does not split evenly over {} devices (uneven shards '
                     'change BatchNorm statistics and the loss normalisation): use {}'.format(
                         batch_size, num_devices, sizes))


def _saved_config(out):
    from .config import yaml_load
    path = os.path.join(out, 'config.yaml')
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return yaml_load(f) or {}


def check_resume_config(out, cfg):
    """Refuse a ``--resume`` whose configuration changes what the checkpoint holds (network,
    classes, data, distillation set-up), naming the keys; returns the other changed keys."""
    old = _saved_config(out)
    if old is None:
        return []
    diffs = rundir.config_differences(old, cfg.to_dict())
    # a key the saved config lacks comes from a newer version of the package: not a change
    bad = [d for d in diffs if rundir.is_resume_key(d[0]) and d[1] != '<unset>']
    if bad:
        raise CheckpointError('--resume: this run differs from the one in {} in {}: resume with '
                              'the same settings, or use another --out'.format(
                                  out, rundir.format_differences(bad)))
    return diffs


def prepare_run(cfg, argv=None):
    """Devices, the output folder (locked; an existing run refused unless resumed or
    ``--overwrite``), logging and the validated datasets, in that order, before any network.
    A refused ``--resume`` leaves ``config.yaml`` untouched."""
    t = cfg.train
    ctx = parse_ctx(t.ctx)
    check_batch_size(t.batch_size, len(ctx))
    out = os.path.abspath(os.path.expanduser(t.out))
    moved_to = rundir.open_run_folder(out, resume=t.resume, overwrite=t.overwrite)
    try:
        changed = check_resume_config(out, cfg) if t.resume else []
        logger = setup_logging(out)
        if moved_to:
            logger.info('--overwrite: the previous run in %s was moved to %s', out, moved_to)
        if changed:
            logger.info('resuming with changed settings: %s', rundir.format_differences(changed))
        logger.info('devices: %s; output: %s', ctx, out)
        # progress bars only on a terminal: a redirected log gets the summary lines alone
        data = build_datasets(cfg.data, logger, progress=t.progress and sys.stderr.isatty())
        logger.info('classes (%d): %s; %d training and %d validation images', len(data.classes),
                    ', '.join(data.classes), len(data.train), len(data.val))
        if t.resume:
            check_resume_classes(out, data.classes)
        cfg.dump(os.path.join(out, 'config.yaml'))
    except BaseException:
        rundir.release_lock(out)
        raise
    return RunContext(cfg, ctx, data, out, logger, list(argv or []))


def build_detector(cfg, classes, ctx):
    """The SSD of ``cfg.model``, initialised on ``ctx`` (and loaded from ``model.params``)."""
    arch = resolve_arch(cfg.model.network, cfg.model.data_shape, cfg.model.width,
                        cfg.model.blocks)
    net = build_ssd(arch, classes, pretrained_base=cfg.model.pretrained_base)
    initialize(net, ctx)
    if cfg.model.params:
        load_start_params(net, cfg.model.params, ctx)
    return net, arch


def load_start_params(net, path, ctx):
    if not os.path.exists(path):
        raise ModelError('model.params: no file at {}'.format(path))
    try:
        net.load_parameters(path, ctx=ctx)
    except (AssertionError, mx.base.MXNetError, ValueError) as e:
        raise ModelError('model.params {} does not fit {}: {}'.format(
            path, type(net).__name__, str(e).splitlines()[0][:300]))


def make_evaluate(run, net, detector_shape, mean, std):
    """The per-epoch validation callable of the EvalHook."""
    ev = run.cfg.eval

    def evaluate():
        prepare_for_inference(net, ev.nms_thresh, ev.nms_topk, ev.post_nms)
        try:
            result, _ = evaluate_detector(net, run.data.val, detector_shape, mean, std, run.ctx,
                                          run.data.classes, batch_size=ev.batch_size,
                                          iou_thresh=ev.iou_thresh)
        finally:
            prepare_for_training(net)
        return result
    return evaluate


def data_record(data_cfg):
    """The data a model was trained on, saved in model.json so eval can default to it."""
    d = dataclasses.asdict(data_cfg)
    d.pop('num_workers', None)
    return d


def _old_model_json(out):
    path = os.path.join(out, MODEL_JSON)
    if not os.path.exists(path):
        return None, path
    with open(path) as f:
        return json.load(f), path


def check_resume_classes(out, classes):
    old, path = _old_model_json(out)
    if old is not None and old.get('classes') != list(classes):
        raise CheckpointError('--resume: the classes of {} ({}) are not this data\'s ({}): use '
                              'the same data, or another --out'.format(
                                  path, ', '.join(old.get('classes') or []), ', '.join(classes)))


def check_resume_compatible(out, spec):
    """Refuse a ``--resume`` whose network differs from the ``model.json`` of ``out``, naming
    the differing keys (``arch.width 8 -> 16``)."""
    old, path = _old_model_json(out)
    if old is None:
        return
    diffs = rundir.config_differences({k: old.get(k) for k in ('kind', 'arch', 'classes')},
                                      {k: spec.get(k) for k in ('kind', 'arch', 'classes')})
    if diffs:
        raise CheckpointError('--resume: this run\'s network differs from {} in {}; use '
                              'another --out'.format(path, rundir.format_differences(diffs)))


def standard_hooks(run, step, evaluate, lr_trainers, start_best=-1.0):
    """LR schedule, NaN guard, metrics logging, device statistics sync, validation and
    checkpoints, in that order."""
    t = run.cfg.train
    writer = JsonlWriter(os.path.join(run.out, 'metrics.jsonl'))
    lr_hook = LRScheduleHook(lr_trainers, t.lr_steps, t.lr_decay, t.warmup_iters)
    return [
        lr_hook,
        NonFiniteGuard(t.max_nonfinite, run.logger),
        MetricsLogger(writer, t.log_interval, lr_hook, run.logger, t.progress),
        SyncDeviceStatistics(step.blocks),
        EvalHook(evaluate, writer, t.val_interval, run.logger),
        CheckpointHook(run.out, step, meta={'seed': t.seed}, best=start_best,
                       logger=run.logger),
        PlotHook(run.out, run.logger),
    ]


def resume_from_checkpoint(run, step, checkpoint_hook):
    """Restore ``step`` from ``last.ckpt``, or from ``prev.ckpt`` when ``last.ckpt`` is
    unreadable (truncated); drop what ``metrics.jsonl`` logged after that checkpoint.
    Returns the checkpoint's meta."""
    last, prev = checkpoint_hook.last_path, checkpoint_hook.prev_path
    try:
        meta = load_checkpoint(last, step.blocks(), step.trainers())
        source = last
    except CheckpointError as e:
        if not os.path.exists(prev):
            raise CheckpointError('--resume: {} (no earlier checkpoint {} to fall back '
                                  'to)'.format(e, os.path.basename(prev)))
        try:
            meta = load_checkpoint(prev, step.blocks(), step.trainers())
        except CheckpointError as e2:
            raise CheckpointError('--resume: {}; the previous checkpoint is unusable too: '
                                  '{}'.format(e, e2))
        source = prev
        run.logger.warning('%s; resuming from the previous checkpoint %s (epoch %d) instead',
                           e, prev, meta['epoch'])
    dropped = truncate_metrics(os.path.join(run.out, 'metrics.jsonl'), meta['epoch'])
    if dropped:
        run.logger.info('metrics.jsonl: dropped %d record(s) logged after epoch %d (they are '
                        'logged again now)', dropped, meta['epoch'])
    checkpoint_hook.restore(meta)
    if checkpoint_hook.best_epoch is None and checkpoint_hook.best > -1:
        checkpoint_hook.best_epoch = _best_json_epoch(run.out)
    run.logger.info('resumed from %s: epoch %d done, continuing at epoch %d', source,
                    meta['epoch'], meta['epoch'] + 1)
    return meta


def _best_json_epoch(out):
    try:
        with open(os.path.join(out, 'best.json')) as f:
            return json.load(f).get('epoch')
    except (OSError, ValueError):
        return None


def run_loop(run, step, loader, hooks):
    """Resume if asked, run the loop, return a summary dict."""
    t = run.cfg.train
    start_epoch, start_iter = 0, 0
    checkpoint_hook = [h for h in hooks if isinstance(h, CheckpointHook)][0]
    if t.resume:
        meta = resume_from_checkpoint(run, step, checkpoint_hook)
        start_epoch, start_iter = meta['epoch'] + 1, meta['iteration']
    prepare_trainers(step.trainers().values())
    loop = TrainLoop(step, loader, t.epochs, hooks, start_epoch, start_iter)
    try:
        loop.train()
    except KeyboardInterrupt:
        run.logger.warning('interrupted at epoch %d iteration %d; %s holds the last finished '
                           'epoch: --resume continues from it', loop.epoch, loop.iteration,
                           checkpoint_hook.last_path)
        raise
    c = checkpoint_hook
    return {'out': run.out, 'epochs': t.epochs, 'best_mAP': c.best, 'best_epoch': c.best_epoch,
            'last_mAP': c.last_mAP, 'last_epoch': c.last_epoch, 'iterations': loop.iteration,
            'outputs': {'best.params': {'epoch': c.best_epoch, 'mAP': c.best},
                        'last.params': {'epoch': c.last_epoch, 'mAP': c.last_mAP}}}


def describe_outputs(summary, names=None):
    """The final line of a training tool: which file holds which epoch, and its validation mAP
    (what ``tools/eval.py`` on that file reproduces), e.g.
    ``best.params = epoch 7, mAP 0.6851; last.params = epoch 9, mAP 0.6420``.

    ``summary['outputs']`` maps file name -> ``{'epoch', 'mAP'}``; ``names`` picks and orders
    them (default: all, in order). Epochs count from 0, as in ``train.log`` and
    ``metrics.jsonl``.
    """
    outputs = summary.get('outputs', {})
    parts = []
    for name in names or list(outputs):
        entry = outputs.get(name) or {}
        epoch, value = entry.get('epoch'), entry.get('mAP')
        if epoch is None:
            parts.append('{} = not written'.format(name))
            continue
        mAP = ('mAP {:.4f}'.format(value) if isinstance(value, (int, float)) and value >= 0
               else 'not validated')
        parts.append('{} = epoch {}, {}'.format(name, epoch, mAP))
    return '; '.join(parts)


def write_summary(run, summary):
    """``summary.json``, written last: its presence means the run finished. Releases the
    output folder's lock."""
    atomic_write_json(os.path.join(run.out, 'summary.json'), summary)
    rundir.release_lock(run.out)
    return summary


def train_detector(cfg, argv=None):
    """Train a plain SSD (a teacher, or a student with no teacher) as ``cfg`` says."""
    run = prepare_run(cfg, argv)
    t, m = cfg.train, cfg.model
    seed_everything(t.seed)
    net, arch = build_detector(cfg, run.data.classes, run.ctx)
    spec = model_spec(arch, run.data.classes, m.mean, m.std,
                      provenance(t.seed, dataset_fingerprint(run.data.train.records,
                                                             run.data.classes), argv),
                      extra={'data': data_record(cfg.data)})
    if t.resume:
        check_resume_compatible(run.out, spec)
    write_model_json(run.out, spec)
    if t.hybridize:
        net.hybridize(static_alloc=True, static_shape=True)
    anchors = anchors_of(net, arch.data_shape, run.ctx[0])
    loader = TrainLoader(run.data.train, arch.data_shape, anchors, t.batch_size, m.mean, m.std,
                         run.ctx, seed=t.seed, num_workers=cfg.data.num_workers,
                         pipeline=cfg.data.pipeline)
    # a list in structural order: Gluon's Trainer sorts a ParameterDict by name, and names carry
    # per-process counters (see GANDistiller's trainer)
    trainer = make_trainer(list(net.collect_params().values()), t.optimizer, t.lr, t.momentum, t.wd,
                           t.kvstore if len(run.ctx) > 1 else None)
    step = DetectionStep(net, run.ctx, trainer, prepare=loader.prepare)
    evaluate = make_evaluate(run, net, arch.data_shape, m.mean, m.std)
    hooks = standard_hooks(run, step, evaluate, {'net': (trainer, t.lr)})
    if t.divergence_stop:  # the SSD-loss rule only (no critics)
        hooks.insert(0, DivergenceStop(min(t.log_interval, 10), 0.0, out_dir=run.out))
    run.logger.info('training %s (%s, %d px) for %d epochs, %d iterations each, batch %d on %d '
                    'device(s)', arch.network, 'from ' + m.params if m.params else 'new',
                    arch.data_shape, t.epochs, len(loader), t.batch_size, len(run.ctx))
    return write_summary(run, run_loop(run, step, loader, hooks))
