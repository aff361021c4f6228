"""Wiring of a training run from a :class:`~gluon_distill.config.Config`.

``tools/train_ssd.py`` is argument parsing plus :func:`train_detector`; the distillation tool
reuses :func:`prepare_run`, :func:`standard_hooks` and :func:`run_loop` with its own step.
"""
import dataclasses
import json
import logging
import os
import random
from dataclasses import dataclass

import numpy as np

from . import _compat  # noqa: F401
import mxnet as mx

from .data.datasets import build_datasets
from .data.loader import TrainLoader
from .engine.checkpoint import atomic_write_text, load_checkpoint, CheckpointError
from .engine.devices import parse_ctx
from .engine.hooks import (setup_logging, JsonlWriter, LRScheduleHook, NonFiniteGuard,
                           MetricsLogger, EvalHook, CheckpointHook)
from .engine.loop import TrainLoop
from .engine.steps import DetectionStep, make_trainer
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


def prepare_run(cfg, argv=None):
    """Output folder, logging, devices and the validated datasets (before any network)."""
    out = os.path.abspath(os.path.expanduser(cfg.train.out))
    os.makedirs(out, exist_ok=True)
    logger = setup_logging(out)
    ctx = parse_ctx(cfg.train.ctx)
    if cfg.train.batch_size < len(ctx):
        raise ValueError('train.batch_size {} is smaller than the number of devices {}'.format(
            cfg.train.batch_size, len(ctx)))
    if cfg.train.resume and not os.path.exists(os.path.join(out, 'last.ckpt')):
        raise CheckpointError('--resume: no checkpoint at {}'.format(
            os.path.join(out, 'last.ckpt')))
    logger.info('devices: %s; output: %s', ctx, out)
    data = build_datasets(cfg.data, logger, progress=cfg.train.progress)
    logger.info('classes (%d): %s; %d training and %d validation images', len(data.classes),
                ', '.join(data.classes), len(data.train), len(data.val))
    cfg.dump(os.path.join(out, 'config.yaml'))
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


def check_resume_compatible(out, spec):
    path = os.path.join(out, MODEL_JSON)
    if not os.path.exists(path):
        return
    with open(path) as f:
        old = json.load(f)
    for key in ('kind', 'arch', 'classes'):
        if old.get(key) != spec.get(key):
            raise CheckpointError('--resume: {} in {} differs from this run\'s ({} vs {}); use '
                                  'another --out'.format(key, path, old.get(key),
                                                         spec.get(key)))


def standard_hooks(run, step, evaluate, lr_trainers, start_best=-1.0):
    """LR schedule, NaN guard, metrics logging, validation and checkpoints, in that order."""
    t = run.cfg.train
    writer = JsonlWriter(os.path.join(run.out, 'metrics.jsonl'))
    lr_hook = LRScheduleHook(lr_trainers, t.lr_steps, t.lr_decay, t.warmup_iters)
    return [
        lr_hook,
        NonFiniteGuard(t.max_nonfinite, run.logger),
        MetricsLogger(writer, t.log_interval, lr_hook, run.logger, t.progress),
        EvalHook(evaluate, writer, t.val_interval, run.logger),
        CheckpointHook(run.out, step, meta={'seed': t.seed}, best=start_best,
                       logger=run.logger),
    ]


def run_loop(run, step, loader, hooks):
    """Resume if asked, run the loop, return a summary dict."""
    t = run.cfg.train
    start_epoch, start_iter = 0, 0
    checkpoint_hook = [h for h in hooks if isinstance(h, CheckpointHook)][0]
    if t.resume:
        meta = load_checkpoint(checkpoint_hook.last_path, step.blocks(), step.trainers())
        start_epoch, start_iter = meta['epoch'] + 1, meta['iteration']
        checkpoint_hook.best = meta.get('best_mAP', -1.0)
        run.logger.info('resumed from %s: epoch %d done, continuing at epoch %d',
                        checkpoint_hook.last_path, meta['epoch'], start_epoch)
    loop = TrainLoop(step, loader, t.epochs, hooks, start_epoch, start_iter)
    try:
        loop.train()
    except KeyboardInterrupt:
        run.logger.warning('interrupted at epoch %d iteration %d; %s holds the last finished '
                           'epoch: --resume continues from it', loop.epoch, loop.iteration,
                           checkpoint_hook.last_path)
        raise
    return {'out': run.out, 'epochs': t.epochs, 'best_mAP': checkpoint_hook.best,
            'last_mAP': loop.metrics.get('mAP') if loop.metrics else None,
            'iterations': loop.iteration}


def write_summary(run, summary):
    """``summary.json``, written last: its presence means the run finished."""
    atomic_write_text(os.path.join(run.out, 'summary.json'), json.dumps(summary, indent=2))
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
    trainer = make_trainer(net.collect_params(), t.optimizer, t.lr, t.momentum, t.wd,
                           t.kvstore if len(run.ctx) > 1 else None)
    step = DetectionStep(net, run.ctx, trainer, prepare=loader.prepare)
    evaluate = make_evaluate(run, net, arch.data_shape, m.mean, m.std)
    hooks = standard_hooks(run, step, evaluate, {'net': (trainer, t.lr)})
    run.logger.info('training %s (%s, %d px) for %d epochs, %d iterations each, batch %d on %d '
                    'device(s)', arch.network, 'from ' + m.params if m.params else 'new',
                    arch.data_shape, t.epochs, len(loader), t.batch_size, len(run.ctx))
    return write_summary(run, run_loop(run, step, loader, hooks))
