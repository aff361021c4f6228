"""The embedded demo (``make demo``): a teacher and five students on the generated shapes
dataset, on the CPU, then a table, the students' differences and plots. One student per arm:
no teacher, head only (adapters + the teacher's head, detection loss only), feature mimic,
FGFI and GAN distillation (``distill.method`` ``head_only``, ``mimic``, ``fgfi``, ``gan``).

    python -m gluon_distill.demo            # the full demo (about 20 minutes on 2 cores)
    python -m gluon_distill.demo --quick    # a one-minute version of the same code paths
    python -m gluon_distill.demo --arms no_teacher,head_only,fgfi   # the teacher and these

The zoo backbones cannot learn from scratch in that time on a CPU, so the demo uses
demo-sized networks (:mod:`gluon_distill.models.tiny`) built with GluonCV's SSD builder; the
head composition, distillers, training loop and evaluation are those the zoo pairs use.
Finished stages are reused when the demo is run again (``--fresh`` retrains).
"""
import argparse
import os
import shutil
import sys
import time

from .config import config_from, set_key
from .engine.hooks import setup_logging
from .io_utils import atomic_write_json

# Schedules. The teacher gets 1.5x the students' epochs: at 40 epochs it was only ~0.01-0.06
# mAP above a no-teacher student on some runs (a demo of distillation needs a clearly better
# teacher); at 60 epochs (lr x0.1 at 48) it leaves them well behind (docs/cpu-evidence.md). The
# students run 40 x 25 = 1000 iterations, FGFI's default warm-up (400) included; the quick
# version's 8 iterations keep FGFI off for the first 4 only, so its loss runs there too.
FULL = {'epochs': 40, 'lr_steps': [32], 'num_train': 400, 'num_val': 100,
        'teacher_epochs': 60, 'teacher_lr_steps': [48], 'fgfi_warmup_iters': 400}
QUICK = {'epochs': 2, 'lr_steps': [2], 'num_train': 64, 'num_val': 32,
         'teacher_epochs': 2, 'teacher_lr_steps': [2], 'fgfi_warmup_iters': 4}

TEACHER = {'model.width': 32, 'model.blocks': 2}
STUDENT = {'model.width': 16, 'model.blocks': 1}
# Per distilled role, its method. The GAN student uses train_distill.py's defaults (the paper's
# settings with the WGAN reference critic, docs/distillation.md); demo_config states the
# critics' width (64, the default too) so that a change of default does not change the demo.
# Mimic and FGFI: the mini-reproduction's arms (mini.ARMS), their defaults written out.
METHODS = {
    'head_only': {'distill.method': 'head_only'},
    'mimic': {'distill.method': 'mimic', 'distill.mimic.weight': 1.0},
    'fgfi': {'distill.method': 'fgfi', 'distill.fgfi.weight': 0.01, 'distill.fgfi.psi': 0.5},
    'distilled': {'distill.method': 'gan'},
}
# the smallest teacher - no-teacher student gap for a meaningful demo (checked every run)
MIN_TEACHER_MARGIN = 0.05
# stage folders, in the table's order
ROLES = ('teacher', 'student', 'head_only', 'mimic', 'fgfi', 'distilled')
# training order: the first four as before mimic and FGFI were added, so that a run of all
# arms trains those four exactly as the documented run did
TRAIN_ORDER = ('teacher', 'student', 'head_only', 'distilled', 'mimic', 'fgfi')
# --arms name -> stage folder (the first four demo versions' folder names are kept)
ARMS = {'no_teacher': 'student', 'head_only': 'head_only', 'mimic': 'mimic', 'fgfi': 'fgfi',
        'gan': 'distilled'}
LABELS = {'teacher': 'teacher (wide, deep)', 'student': 'student, no teacher',
          'head_only': 'student, teacher head only', 'mimic': 'student, mimic-distilled',
          'fgfi': 'student, FGFI-distilled', 'distilled': 'student, GAN-distilled'}
# the name of each distilled role in the lines of differences
SHORT = {'head_only': 'head only', 'mimic': 'mimic-distilled', 'fgfi': 'FGFI-distilled',
         'distilled': 'GAN-distilled'}


def demo_config(role, out_root, quick=False, ctx='cpu', workers=2):
    """The config of one demo stage: ``teacher``, ``student`` (no teacher), ``head_only``
    (adapters + the teacher's head, no distillation loss), ``mimic``, ``fgfi`` or
    ``distilled`` (GAN)."""
    if role not in ROLES:
        raise ValueError('unknown demo stage {!r}: expected one of {}'.format(
            role, ', '.join(ROLES)))
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
    if role in METHODS:
        values['teacher.params'] = os.path.join(out_root, 'teacher', 'best.params')
        values['distill.fold_adapters'] = True
        values.update(METHODS[role])
    if role == 'fgfi':
        values['distill.fgfi.warmup_iters'] = sched['fgfi_warmup_iters']
    return config_from(values)


def parse_arms(text):
    """``--arms`` (comma-separated names of :data:`ARMS`, or ``all``) -> arm names in the
    table's order; a clear error otherwise."""
    names = [n.strip() for n in str(text).split(',') if n.strip()]
    if names == ['all']:
        return list(ARMS)
    unknown = [n for n in names if n not in ARMS]
    if unknown or not names:
        raise ValueError('--arms: expected all or some of {} (comma-separated), got {!r}'.format(
            ', '.join(ARMS), text))
    return [a for a in ARMS if a in names]


def _finished(out):
    path = os.path.join(out, 'summary.json')
    return os.path.exists(path)


def count_parameters(net):
    return int(sum(p.data().size for p in net.collect_params().values()))


def _train_stage(role, cfg, train, fresh, logger):
    if _finished(cfg.train.out) and not fresh:
        logger.info('%s: already trained in %s (--fresh retrains)', role, cfg.train.out)
        return
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


def run_demo(out_root='runs/demo', quick=False, ctx='cpu', fresh=False, workers=2,
             arms=None):
    """Train the teacher and the students of ``arms`` (names of :data:`ARMS`, default all;
    finished stages are reused), evaluate, plot, print the table and the differences.
    Returns the table's rows."""
    from .training import train_detector
    from .distill.run import train_distilled
    from .evaluate import evaluate_params
    from .models.io import load_detector
    from .viz import plot_runs

    arms = list(ARMS) if arms is None else parse_arms(','.join(arms))
    roles = ['teacher'] + [ARMS[a] for a in arms]
    out_root = os.path.abspath(out_root)
    logger = setup_logging()
    started = time.time()
    for role in sorted(roles, key=TRAIN_ORDER.index):
        train = train_detector if role in ('teacher', 'student') else train_distilled
        _train_stage(role, demo_config(role, out_root, quick, ctx, workers), train, fresh,
                     logger)

    rows = []
    # the teacher row is the checkpoint the students learn from; students are compared at
    # their last epoch (no selection on the validation set)
    for role in roles:
        name = {'teacher': 'best.params', 'student': 'last.params'}.get(role, 'student.params')
        params = os.path.join(out_root, role, name)
        result, _ = evaluate_params(params, progress=False)
        net, _ = load_detector(params)
        row = {'model': LABELS[role], 'role': role, 'params': params,
               'parameters': count_parameters(net), 'mAP': result['mAP']}
        folded = os.path.join(out_root, role, 'folded', 'student.params')
        if os.path.exists(folded):
            row['deployed_parameters'] = count_parameters(load_detector(folded)[0])
        rows.append(row)
    plot = plot_runs({role: os.path.join(out_root, role, 'metrics.jsonl') for role in roles},
                     os.path.join(out_root, 'demo.png'), title='gluon-distill demo')
    atomic_write_json(os.path.join(out_root, 'demo.json'),
                      {'rows': rows, 'arms': arms, 'seconds': time.time() - started,
                       'quick': quick})
    print(format_table(rows))
    differences = format_differences(rows)
    if differences:
        print('\n' + differences)
    by_role = {row['role']: row for row in rows}
    plain = by_role.get('student')
    if plain is not None:
        margin = by_role['teacher']['mAP'] - plain['mAP']
        if not quick and margin < MIN_TEACHER_MARGIN:
            print('\nWARNING: the teacher is only {:+.4f} mAP above the no-teacher student (the '
                  'demo expects at least {}): it demonstrates little. Please report this '
                  'run.'.format(margin, MIN_TEACHER_MARGIN))
        for row in rows:
            deployed = row.get('deployed_parameters')
            if deployed is not None and deployed != plain['parameters']:
                print('\nWARNING: {} deploys {:,} parameters, the plain student {:,}: folding '
                      'left something behind. Please report this run.'.format(
                          row['model'], deployed, plain['parameters']))
    print('\ncheckpoints and logs: {}/{{{}}} (train.log, metrics.jsonl, *.params, '
          'model.json)'.format(out_root, ','.join(roles)))
    print('plots: {}'.format(plot))
    print('wall time: {:.0f} s'.format(time.time() - started))
    return rows


def format_table(rows):
    lines = ['{:<28} {:>12} {:>8}'.format('model', 'parameters', 'mAP')]
    for row in rows:
        params = '{:,}'.format(row.get('deployed_parameters', row['parameters']))
        lines.append('{:<28} {:>12} {:>8.4f}'.format(row['model'], params, row['mAP']))
    return '\n'.join(lines)


def format_differences(rows):
    """One line per teacher-using student: its mAP minus the no-teacher student's and (for the
    distillation methods) minus the head-only student's, where those rows are present."""
    by_role = {row['role']: row for row in rows}
    references = [(role, name) for role, name in (('student', 'no teacher'),
                                                  ('head_only', 'head only'))
                  if role in by_role]
    lines = []
    for row in rows:
        if row['role'] not in SHORT:
            continue
        # + 0.0: a difference that rounds to zero prints +0.0000, not -0.0000
        parts = ['{:+.4f} vs {}'.format(round(row['mAP'] - by_role[ref]['mAP'], 4) + 0.0, name)
                 for ref, name in references if ref != row['role']]
        if parts:
            lines.append('  {}: {}'.format(SHORT[row['role']], ', '.join(parts)))
    if not lines:
        return ''
    return '\n'.join(['mAP differences (one seed, one run: the mini-reproduction has the '
                      'seed-to-seed spread):'] + lines)


def _arms_option(text):
    try:
        return parse_arms(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).replace('--arms: ', ''))


def build_parser():
    from .cli import Parser
    parser = Parser(prog='python -m gluon_distill.demo', description=__doc__)
    parser.add_argument('--quick', action='store_true', help='one-minute version')
    parser.add_argument('--out', default='runs/demo', help='output folder (default: %(default)s; '
                        'with --quick: runs/demo_quick)')
    parser.add_argument('--ctx', default='cpu', help='cpu, cpu:0,1, gpu:0 (default: %(default)s)')
    parser.add_argument('--num-workers', type=int, default=2, metavar='N',
                        help='data loader worker processes (default: %(default)s)')
    parser.add_renamed('--workers', '--num-workers')
    parser.add_argument('--fresh', action='store_true', help='retrain finished stages')
    parser.add_argument('--arms', type=_arms_option, default=list(ARMS),
                        help='students to train and compare, comma-separated, from {} (default: '
                             'all; the teacher is always trained)'.format(','.join(ARMS)))
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    from .cli import run_tool
    out = args.out if not args.quick or args.out != 'runs/demo' else 'runs/demo_quick'
    return run_tool(lambda: run_demo(out, args.quick, args.ctx, args.fresh, args.num_workers,
                                     args.arms))


if __name__ == '__main__':
    sys.exit(main())
