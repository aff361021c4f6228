"""A mini-reproduction of Table 1 on the CPU: does GAN distillation beat the baselines?

One teacher (shared by every seed), then for each seed three students on the same schedule:
``baseline`` (its own head, no teacher), ``head_only`` (adapters + teacher-initialised head,
SSD loss only) and ``gan`` (the paper's method). Each (arm, seed) run writes its own folder
and ``summary.json``: a cut-off run is resumed from its last checkpoint, a finished one is
skipped. ``results.json`` and ``results.md`` hold mean and standard deviation of the
students' final and best validation mAP.
"""
import json
import math
import os
import time

from . import _compat  # noqa: F401
from .config import set_key
from .demo import demo_config

ARMS = ('baseline', 'head_only', 'gan')
ARM_ROLE = {'baseline': 'student', 'head_only': 'distilled', 'gan': 'distilled'}


def arm_config(arm, seed, out_root, epochs, teacher_params, workers=1, overrides=()):
    """The config of one (arm, seed) run: the demo's student settings, a longer schedule."""
    cfg = demo_config(ARM_ROLE[arm], out_root, workers=workers)
    set_key(cfg, 'train.out', os.path.join(out_root, '{}_seed{}'.format(arm, seed)))
    set_key(cfg, 'train.seed', seed)
    set_key(cfg, 'train.epochs', epochs)
    set_key(cfg, 'train.lr_steps', [int(epochs * 0.8)])
    set_key(cfg, 'train.progress', False)
    set_key(cfg, 'experiment.name', 'mini_{}_seed{}'.format(arm, seed))
    if arm != 'baseline':
        set_key(cfg, 'teacher.params', teacher_params)
        set_key(cfg, 'distill.method', 'gan' if arm == 'gan' else 'head_only')
        set_key(cfg, 'distill.fold_adapters', False)
    for item in overrides:
        key, value = item
        set_key(cfg, key, value)
    return cfg


def teacher_config(out_root, epochs, workers=1):
    cfg = demo_config('teacher', out_root, workers=workers)
    set_key(cfg, 'train.epochs', epochs)
    set_key(cfg, 'train.lr_steps', [int(epochs * 0.8)])
    set_key(cfg, 'train.progress', False)
    set_key(cfg, 'experiment.name', 'mini_teacher')
    return cfg


def _run(cfg, train, logger):
    """Train unless finished; resume a cut-off run. Returns its summary."""
    out = cfg.train.out
    summary_path = os.path.join(out, 'summary.json')
    if os.path.exists(summary_path):
        with open(summary_path) as f:
            return json.load(f)
    if os.path.exists(os.path.join(out, 'last.ckpt')):
        set_key(cfg, 'train.resume', True)
        logger.info('resuming %s', out)
    started = time.time()
    summary = train(cfg, argv=['gluon_distill.mini', cfg.experiment.name])
    summary['seconds'] = time.time() - started
    with open(summary_path, 'w') as f:
        json.dump(summary, f, indent=2)
    return summary


def _final_map(out):
    """Validation mAP after the last epoch (from metrics.jsonl)."""
    last = None
    with open(os.path.join(out, 'metrics.jsonl')) as f:
        for line in f:
            record = json.loads(line)
            if record.get('type') == 'val':
                last = record.get('mAP')
    return last


def _mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return float('nan'), float('nan')
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1)
    return mean, math.sqrt(var)


def run_mini_reproduction(out_root='runs/mini', seeds=(0, 1, 2), epochs=60, teacher_epochs=60,
                          arms=ARMS, workers=1, overrides=()):
    from .engine.hooks import setup_logging
    from .training import train_detector
    from .distill.run import train_distilled
    logger = setup_logging()
    out_root = os.path.abspath(out_root)
    teacher = _run(teacher_config(out_root, teacher_epochs, workers), train_detector, logger)
    teacher_params = os.path.join(out_root, 'teacher', 'best.params')
    rows = {arm: [] for arm in arms}
    for seed in seeds:
        for arm in arms:
            cfg = arm_config(arm, seed, out_root, epochs, teacher_params, workers, overrides)
            train = train_detector if arm == 'baseline' else train_distilled
            summary = _run(cfg, train, logger)
            rows[arm].append({'seed': seed, 'final_mAP': _final_map(cfg.train.out),
                              'best_mAP': summary['best_mAP'],
                              'seconds': summary.get('seconds')})
            write_results(out_root, teacher, rows, epochs)
    return write_results(out_root, teacher, rows, epochs)


def write_results(out_root, teacher, rows, epochs):
    results = {'teacher_best_mAP': teacher['best_mAP'], 'epochs': epochs, 'arms': {}}
    lines = ['| arm | seeds | final mAP (mean ± std) | best mAP (mean ± std) |',
             '|---|---:|---:|---:|']
    for arm, runs in rows.items():
        final = _mean_std([r['final_mAP'] for r in runs])
        best = _mean_std([r['best_mAP'] for r in runs])
        results['arms'][arm] = {'runs': runs, 'final_mean': final[0], 'final_std': final[1],
                                'best_mean': best[0], 'best_std': best[1]}
        lines.append('| {} | {} | {:.4f} ± {:.4f} | {:.4f} ± {:.4f} |'.format(
            arm, len(runs), final[0], final[1], best[0], best[1]))
    lines.append('\nteacher best mAP: {:.4f}; students trained {} epochs'.format(
        teacher['best_mAP'], epochs))
    with open(os.path.join(out_root, 'results.json'), 'w') as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(out_root, 'results.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return results
