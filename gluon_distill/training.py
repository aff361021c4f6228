"""Wiring of a training run from a :class:`~gluon_distill.config.Config`.

``tools/train_ssd.py`` is argument parsing plus :func:`train_detector`; the distillation tool
reuses :func:`prepare_run`, :func:`standard_hooks` and :func:`run_loop` with its own step.
"""
import atexit
import dataclasses
import json
import logging
import os
import random
import shutil
import tempfile
from dataclasses import dataclass

import numpy as np

import mxnet as mx

from .data.datasets import build_datasets
from .engine.checkpoint import load_checkpoint, read_checkpoint, CheckpointError
from .engine import distributed as D
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
from .families import get_family
from .models.io import dataset_fingerprint, provenance, write_model_json, MODEL_JSON


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


def check_batch_size(batch_size, num_devices, num_workers=1):
    """The global batch must split evenly over the workers and their devices: uneven shards
    would change the BatchNorm statistics and the loss normalisation of a run by its device
    count."""
    num_devices *= num_workers
    if batch_size >= num_devices and batch_size % num_devices == 0:
        return
    below = batch_size // num_devices * num_devices
    above = below + num_devices
    sizes = ' or '.join(str(b) for b in (below, above) if b > 0)
    over = '{} devices'.format(num_devices) if num_workers == 1 else \
        '{} workers x {} devices'.format(num_workers, num_devices // num_workers)
    raise ValueError('--batch-size {} does not split evenly over {} (uneven shards change '
                     'BatchNorm statistics and the loss normalisation): use {}'.format(
                         batch_size, over, sizes))


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
    # unset data.category_ids are filled from the COCO JSON as the data is read: not a change
    diffs = [d for d in diffs if not (d[0] == 'data.category_ids' and d[2] is None)]
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
    if t.horovod and len(ctx) > 1:
        raise D.DistributedError('--horovod runs one device per process (got --ctx {}): start '
                                 'one process per device with horovodrun'.format(t.ctx))
    check_batch_size(t.batch_size, len(ctx), D.launched_workers())
    rank, workers = D.setup(t.kvstore, t.horovod)
    check_batch_size(t.batch_size, len(ctx), workers)
    out = os.path.abspath(os.path.expanduser(t.out))
    if rank > 0:
        return _prepare_other_worker(cfg, ctx, out, rank, workers, argv)
    moved_to = rundir.open_run_folder(out, resume=t.resume, overwrite=t.overwrite)
    try:
        changed = check_resume_config(out, cfg) if t.resume else []
        logger = setup_logging(out)
        if moved_to:
            logger.info('--overwrite: the previous run in %s was moved to %s', out, moved_to)
        if changed:
            logger.info('resuming with changed settings: %s', rundir.format_differences(changed))
        logger.info('devices: %s; output: %s', ctx, out)
        if workers > 1:
            logger.info('distributed: %d workers (%s), each a batch of %d on %d device(s); '
                        'this is rank 0, the one that writes %s', workers,
                        'horovod' if t.horovod else t.kvstore, t.batch_size // workers,
                        len(ctx), out)
        # progress bars only on a terminal (gluon_distill.progress): a redirected log gets
        # the summary lines alone
        data = build_datasets(cfg.data, logger, progress=t.progress)
        logger.info('classes (%d): %s; %d training and %d validation images', len(data.classes),
                    ', '.join(data.classes), len(data.train), len(data.val))
        if t.resume:
            check_resume_classes(out, data.classes)
        cfg.dump(os.path.join(out, 'config.yaml'))
        D.barrier()  # the other workers read the data now (a generated set is complete)
    except BaseException:
        rundir.release_lock(out)
        raise
    return RunContext(cfg, ctx, data, out, logger, list(argv or []))


def _prepare_other_worker(cfg, ctx, out, rank, workers, argv):
    """A distributed job's worker other than rank 0: it writes nothing to ``out``. Files the
    run's code writes go to a private scratch folder (removed at exit); the console gets
    warnings and errors only, prefixed with the rank."""
    scratch = tempfile.mkdtemp(prefix='gluon_distill-rank{}-'.format(rank))
    atexit.register(shutil.rmtree, scratch, True)
    logger = setup_logging(None, console_level=logging.WARNING,
                           prefix='[rank {}/{}] '.format(rank, workers))
    D.barrier()  # rank 0 has checked the run folder and read (or generated) the data
    data = build_datasets(cfg.data, logger, progress=False)
    run = RunContext(cfg, ctx, data, scratch, logger, list(argv or []))
    run.run_out = out
    return run


def build_detector(cfg, classes, ctx):
    """The detector of ``cfg.model`` (its family's), initialised on ``ctx`` (and loaded from
    ``model.params``)."""
    return get_family(cfg.model.family).build(cfg.model, classes, ctx)


def make_evaluate(run, net, family=None):
    """The per-epoch validation callable of the EvalHook: the family's prediction on the
    validation set at ``cfg.model``'s input size and normalisation, scored by VOC07, or by
    COCO AP@[.5:.95] on COCO data (``eval.metric``; the result's ``mAP`` is then COCO AP)."""
    from .evaluation.coco import validation_evaluator
    family = family or get_family(run.cfg.model.family)
    m = run.cfg.model
    inputs = {'data_shape': m.data_shape, 'mean': m.mean, 'std': m.std}
    evaluator = validation_evaluator(run.cfg.eval, run.cfg.data, run.data.root,
                                     run.data.category_ids, run.data.classes)

    def evaluate():
        if D.is_distributed():
            # every worker predicts its shard; every worker gets the whole set's result
            result, _ = D.evaluate_sharded(family, net, run.data.val, inputs, run.ctx,
                                           run.cfg.eval, run.data.classes, evaluator)
            return result
        result, _ = family.evaluate(net, run.data.val, inputs, run.ctx, run.cfg.eval,
                                    run.data.classes, evaluator=evaluator)
        return result
    return evaluate


def data_record(data_cfg):
    """The data a model was trained on, saved in model.json so eval can default to it."""
    d = dataclasses.asdict(data_cfg)
    d.pop('num_workers', None)
    return d


#: the evaluation settings model.json records: tools/eval.py and tools/export.py use them
#: unless given on their command line
EVAL_KEYS = ('iou_thresh', 'nms_thresh', 'nms_topk', 'post_nms')


def eval_record(eval_cfg):
    """The validation settings of a run (NMS, IoU), saved in model.json so that evaluating
    the saved file reproduces the logged mAP by default."""
    return {k: getattr(eval_cfg, k) for k in EVAL_KEYS}


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
    writes = D.is_writer()  # a distributed job: rank 0 alone logs, checkpoints and plots
    writer = JsonlWriter(os.path.join(run.out, 'metrics.jsonl') if writes else None)
    lr_hook = LRScheduleHook(lr_trainers, t.lr_steps, t.lr_decay, t.warmup_iters)
    return [
        lr_hook,
        NonFiniteGuard(t.max_nonfinite, run.logger),
        MetricsLogger(writer, t.log_interval, lr_hook, run.logger, t.progress and writes),
        SyncDeviceStatistics(step.blocks),
        EvalHook(evaluate, writer, t.val_interval, run.logger),
        CheckpointHook(run.out, step, meta={'seed': t.seed}, best=start_best,
                       logger=run.logger, write=writes),
    ] + ([PlotHook(run.out, run.logger)] if writes else [])


def resume_from_checkpoint(run, step, checkpoint_hook):
    """Restore ``step`` from ``last.ckpt``, or from ``prev.ckpt`` when ``last.ckpt`` is
    unreadable (truncated); drop what ``metrics.jsonl`` logged after that checkpoint.
    Returns the checkpoint's meta."""
    if D.is_distributed():
        return _resume_distributed(run, step, checkpoint_hook)
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


def _readable_checkpoint(run, checkpoint_hook):
    """``last.ckpt``, or ``prev.ckpt`` when ``last.ckpt`` is unreadable (as
    :func:`resume_from_checkpoint` falls back)."""
    last, prev = checkpoint_hook.last_path, checkpoint_hook.prev_path
    try:
        read_checkpoint(last)
        return last
    except CheckpointError as e:
        if not os.path.exists(prev):
            raise CheckpointError('--resume: {} (no earlier checkpoint {} to fall back '
                                  'to)'.format(e, os.path.basename(prev)))
        try:
            meta = read_checkpoint(prev)[2]
        except CheckpointError as e2:
            raise CheckpointError('--resume: {}; the previous checkpoint is unusable too: '
                                  '{}'.format(e, e2))
        run.logger.warning('%s; resuming from the previous checkpoint %s (epoch %d) instead',
                           e, prev, meta['epoch'])
        return prev


def _resume_distributed(run, step, checkpoint_hook):
    """Every worker restores the checkpoint rank 0 reads (its bytes are broadcast: the
    other workers need no shared filesystem); rank 0 alone truncates ``metrics.jsonl``."""
    data = None
    if D.is_writer():
        source = _readable_checkpoint(run, checkpoint_hook)
        with open(source, 'rb') as f:
            data = f.read()
    data = D.broadcast_object(data)
    if not D.is_writer():
        source = os.path.join(run.out, 'resumed.ckpt')  # this worker's scratch folder
        with open(source, 'wb') as f:
            f.write(data)
    meta = load_checkpoint(source, step.blocks(), step.trainers())
    checkpoint_hook.restore(meta)
    if D.is_writer():
        dropped = truncate_metrics(os.path.join(run.out, 'metrics.jsonl'), meta['epoch'])
        if dropped:
            run.logger.info('metrics.jsonl: dropped %d record(s) logged after epoch %d (they '
                            'are logged again now)', dropped, meta['epoch'])
        if checkpoint_hook.best_epoch is None and checkpoint_hook.best > -1:
            checkpoint_hook.best_epoch = _best_json_epoch(run.out)
    run.logger.info('resumed every worker from %s: epoch %d done, continuing at epoch %d',
                    source, meta['epoch'], meta['epoch'] + 1)
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
    if hasattr(run, 'run_out'):  # a worker other than rank 0: name the run's folder
        summary['out'] = run.run_out
    return summary


@dataclass
class TrainingJob:
    """What a kind of run (plain, distillation) adds to :func:`run_training`.

    ``net`` is trained, validated and saved (the deployable detector), ``spec`` its
    ``model.json``; ``params`` (structural order: Gluon's Trainer sorts a ParameterDict by
    name, and names carry per-process counters) go to the run's trainer; ``make_step(trainer,
    loader)`` builds the step; ``lr_trainers`` are further ``{name: (trainer, base lr)}`` on
    the LR schedule; ``hooks`` run before the standard ones; ``adv_weight`` is the
    divergence stop's weight of the critic scores (0: the detection loss rule only).
    """
    net: object
    spec: dict
    params: list
    make_step: object
    lr_trainers: dict = dataclasses.field(default_factory=dict)
    hooks: list = dataclasses.field(default_factory=list)
    adv_weight: float = 0.0
    update_on_kvstore: object = None
    description: str = ''


def run_training(run, family, job):
    """The one run builder of every training tool: ``model.json`` (checked against the run
    being resumed), trainer, the family's loader, the step, hooks, loop. Returns the loop's
    summary (:func:`run_loop`)."""
    t = run.cfg.train
    if t.resume:
        check_resume_compatible(run.out, job.spec)
    job.spec.setdefault('eval', eval_record(run.cfg.eval))
    write_model_json(run.out, job.spec)
    kv = t.kvstore if len(run.ctx) > 1 else None
    trainer = make_trainer(job.params, t.optimizer, t.lr, t.momentum, t.wd, kv,
                           update_on_kvstore=job.update_on_kvstore)
    if t.hybridize:
        # before the loader's first forward pass: a network whose parameters are still
        # deferred is initialised through the hybridized graph, in the order seeded runs of
        # earlier versions used (the result depends on it)
        job.net.hybridize(**family.hybridize_flags())  # static memory or not: the family says
    loader = family.train_loader(run.data.train, job.net, run.cfg, run.ctx)
    step = job.make_step(trainer, loader)
    if t.hybridize:
        step.hybridize(**family.hybridize_flags())
    hooks = list(job.hooks)
    if t.divergence_stop:
        # windows of at most 10 iterations: a short run that explodes at once is still stopped
        hooks.append(DivergenceStop(min(t.log_interval, 10), job.adv_weight, out_dir=run.out))
    lr_trainers = {'net': (trainer, t.lr)}
    lr_trainers.update(job.lr_trainers)
    hooks += standard_hooks(run, step, make_evaluate(run, job.net, family), lr_trainers)
    workers = D.world()[1]
    run.logger.info('%s for %d epochs, %d iterations each, batch %d on %d device(s)%s',
                    job.description, t.epochs, len(loader), t.batch_size, len(run.ctx),
                    ' x {} workers'.format(workers) if workers > 1 else '')
    return run_loop(run, step, loader, hooks)


def run_provenance(run, argv):
    """Seed, package version and commit, command line and dataset fingerprint of a run."""
    return provenance(run.cfg.train.seed,
                      dataset_fingerprint(run.data.train.records, run.data.classes), argv)


def train_detector(cfg, argv=None):
    """Train a plain detector (a teacher, or a student with no teacher) as ``cfg`` says."""
    family = get_family(cfg.model.family)
    run = prepare_run(cfg, argv)
    m = cfg.model
    seed_everything(cfg.train.seed)
    net, arch = family.build(m, run.data.classes, run.ctx)
    spec = family.spec(arch, run.data.classes, m, run_provenance(run, argv),
                       extra={'data': data_record(cfg.data)})

    def make_step(trainer, loader):
        return DetectionStep(net, run.ctx, trainer, loss=family.loss(), prepare=loader.prepare,
                             forward=family.training_forward(net))
    job = TrainingJob(net, spec, list(net.collect_params().values()), make_step,
                      description='training {} ({}, {} px, {})'.format(
                          arch.network, family.name, m.data_shape,
                          'from ' + m.params if m.params else 'new'))
    return write_summary(run, run_training(run, family, job))
