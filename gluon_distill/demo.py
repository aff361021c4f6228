"""The embedded demo (``make demo``): teacher, no-teacher student, head-only student and
GAN-distilled student on the generated shapes dataset, on the CPU, then a table and plots.

    python -m gluon_distill.demo            # the full demo (about 15 minutes on 2 cores)
    python -m gluon_distill.demo --quick    # a one-minute version of the same code paths

The zoo backbones cannot learn from scratch in that time on a CPU, so the demo uses
demo-sized networks (:mod:`gluon_distill.models.tiny`) built with GluonCV's SSD builder; the
head composition, distiller, training loop and evaluation are those the zoo pairs use.
Finished stages are reused when the demo is run again (``--fresh`` retrains).
"""
import argparse
import json
import os
import shutil
import sys
import time

from .config import config_from, set_key
from .engine.hooks import setup_logging

# Schedules. The teacher gets 1.5x the students' epochs: at 40 epochs it was only ~0.01-0.06
# mAP above a no-teacher student on some runs (a demo of distillation needs a clearly better
# teacher); at 60 epochs (lr x0.1 at 48) it leaves them well behind (README, "Demo").
FULL = {'epochs': 40, 'lr_steps': [32], 'num_train': 400, 'num_val': 100,
        'teacher_epochs': 60, 'teacher_lr_steps': [48]}
QUICK = {'epochs': 2, 'lr_steps': [2], 'num_train': 64, 'num_val': 32,
         'teacher_epochs': 2, 'teacher_lr_steps': [2]}

TEACHER = {'model.width': 32, 'model.blocks': 2}
STUDENT = {'model.width': 16, 'model.blocks': 1}
# The GAN student uses train_distill.py's defaults (the paper's settings with the WGAN
# reference critic, README "Distil"); only the critics' width is demo-sized (64, below).
DEMO_GAN = {}
# the smallest teacher - no-teacher student gap for a meaningful demo (checked every run)
MIN_TEACHER_MARGIN = 0.05
ROLES = ('teacher', 'student', 'head_only', 'distilled')


def demo_config(role, out_root, quick=False, ctx='cpu', workers=2):
    """The config of one demo stage: ``teacher``, ``student`` (no teacher), ``head_only``
    (adapters + the teacher's head, no critics) or ``distilled`` (GAN)."""
    sched = QUICK if quick else FULL
    values = {
        'experiment.name': 'demo_' + role,
        'data.root': 'synthetic', 'data.train_split': 'train', 'data.val_split': 'val',
        'data.num_workers': workers,
        'data.synthetic.num_train': sched['num_train'], 'data.synthetic.num_val': sched['num_val'],
        'model.network': 'tiny', 'model.data_shape': 128, 'model.pretrained_base': False,
        'train.epochs': sched['teacher_epochs' if role == 'teacher' else 'epochs'],
        'train.lr_steps': sched['teacher_lr_steps' if role == 'teacher' else 'lr_steps'],
        'train.batch_size': 16, 'train.optimizer': 'adam', 'train.lr': 0.002,
        'train.ctx': ctx, 'train.out': os.path.join(out_root, role), 'train.log_interval': 10,
        'distill.gan.critic_width': 64,
    }
    values.update(TEACHER if role == 'teacher' else STUDENT)
    if role in ('head_only', 'distilled'):
        values['teacher.params'] = os.path.join(out_root, 'teacher', 'best.params')
        values['distill.fold_adapters'] = True
        values['distill.method'] = 'gan' if role == 'distilled' else 'head_only'
    if role == 'distilled':
        values.update(DEMO_GAN)
    return config_from(values)


def _finished(out):
    path = os.path.join(out, 'summary.json')
    return os.path.exists(path)


def count_parameters(net):
    return int(sum(p.data().size for p in net.collect_params().values()))


def run_demo(out_root='runs/demo', quick=False, ctx='cpu', fresh=False, workers=2):
    """Train the three models (reusing finished ones), evaluate, plot; returns the rows."""
    from .training import train_detector
    from .distill.run import train_distilled
    from .evaluation.run import evaluate_params
    from .models.io import load_detector
    from .viz import plot_runs

    out_root = os.path.abspath(out_root)
    logger = setup_logging()
    started = time.time()
    stages = [('teacher', train_detector), ('student', train_detector),
              ('head_only', train_distilled), ('distilled', train_distilled)]
    for role, train in stages:
        cfg = demo_config(role, out_root, quick, ctx, workers)
        if _finished(cfg.train.out) and not fresh:
            logger.info('%s: already trained in %s (--fresh retrains)', role, cfg.train.out)
            continue
        if fresh and os.path.isdir(cfg.train.out):
            shutil.rmtree(cfg.train.out)  # --fresh: the user asked to retrain this stage
        elif os.path.exists(os.path.join(cfg.train.out, 'last.ckpt')):
            set_key(cfg, 'train.resume', True)  # cut off earlier: continue where it stopped
            logger.info('%s: resuming the unfinished run in %s', role, cfg.train.out)
        elif os.path.isdir(cfg.train.out) and os.listdir(cfg.train.out):
            set_key(cfg, 'train.overwrite', True)  # no checkpoint: nothing to continue from
        stage_start = time.time()
        train(cfg, argv=['gluon_distill.demo', role])
        logger.info('%s trained in %.0f s', role, time.time() - stage_start)

    rows = []
    # the teacher row is the checkpoint the students learn from; students are compared at
    # their last epoch (no selection on the validation set)
    files = {'teacher': 'best.params', 'student': 'last.params',
             'head_only': 'student.params', 'distilled': 'student.params'}
    labels = {'teacher': 'teacher (wide, deep)', 'student': 'student, no teacher',
              'head_only': 'student, teacher head only', 'distilled': 'student, GAN-distilled'}
    for role, name in files.items():
        params = os.path.join(out_root, role, name)
        result, _ = evaluate_params(params, progress=False)
        net, _ = load_detector(params)
        row = {'model': labels[role], 'params': params, 'parameters': count_parameters(net),
               'mAP': result['mAP']}
        folded = os.path.join(out_root, role, 'folded', 'student.params')
        if os.path.exists(folded):
            row['deployed_parameters'] = count_parameters(load_detector(folded)[0])
        rows.append(row)
    plot = plot_runs({role: os.path.join(out_root, role, 'metrics.jsonl')
                      for role in files}, os.path.join(out_root, 'demo.png'),
                     title='gluon-distill demo')
    with open(os.path.join(out_root, 'demo.json'), 'w') as f:
        json.dump({'rows': rows, 'seconds': time.time() - started, 'quick': quick}, f, indent=2)
    print(format_table(rows))
    margin = rows[0]['mAP'] - rows[1]['mAP']
    if not quick and margin < MIN_TEACHER_MARGIN:
        print('\nWARNING: the teacher is only {:+.4f} mAP above the no-teacher student (the demo '
              'expects at least {}): it demonstrates little. Please report this run.'.format(
                  margin, MIN_TEACHER_MARGIN))
    print('\ncheckpoints and logs: {}/{{{}}} (train.log, metrics.jsonl, *.params, '
          'model.json)'.format(out_root, ','.join(ROLES)))
    print('plots: {}'.format(plot))
    print('wall time: {:.0f} s'.format(time.time() - started))
    return rows


def format_table(rows):
    lines = ['{:<28} {:>12} {:>8}'.format('model', 'parameters', 'mAP')]
    for row in rows:
        params = '{:,}'.format(row.get('deployed_parameters', row['parameters']))
        lines.append('{:<28} {:>12} {:>8.4f}'.format(row['model'], params, row['mAP']))
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true', help='one-minute version')
    parser.add_argument('--out', default='runs/demo', help='output folder')
    parser.add_argument('--ctx', default='cpu', help='cpu, cpu:0,1, gpu:0')
    parser.add_argument('--workers', type=int, default=2, help='data loader processes')
    parser.add_argument('--fresh', action='store_true', help='retrain finished stages')
    args = parser.parse_args(argv)
    from .cli import run_tool
    out = args.out if not args.quick or args.out != 'runs/demo' else 'runs/demo_quick'
    return run_tool(lambda: run_demo(out, args.quick, args.ctx, args.fresh, args.workers))


if __name__ == '__main__':
    sys.exit(main())
