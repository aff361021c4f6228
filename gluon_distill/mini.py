"""A mini-reproduction of Table 1 on the CPU: does GAN distillation beat the baselines?

One teacher (shared by every seed), then for each seed one student per arm on the same
schedule. Every setting of every arm is written out here (:data:`BASE`, :data:`NETWORKS`,
:data:`ARMS`); nothing is inherited from the demo, so the commands of
docs/cpu-evidence.md keep giving its rows when the demo changes.

Arms: ``baseline`` (its own head, no teacher), ``head_only`` (adapters + teacher-initialised
head, SSD loss only), and GAN distillation (the paper's method) with the paper's logged critic
settings (clip 0.03, Adam 5e-4 / beta1 0.5, adversarial weight 1, one critic step) and one of
the critics: ``gan`` (the default: ``dcgan``, the WGAN reference critic at base width 64,
teacher and student maps normalised together, the adversarial term applied by its own Adam
with the logs' ``lrG``), ``gan_bn`` (the former default: ``bn`` at width 64, separate batches,
one shared optimizer), ``gan_w512`` (``bn`` at width 512), ``gan_plain`` (the un-normalised
clipped critic, width 64) and ``gan_spectral`` (spectral normalisation, adversarial weight
0.01, width 64). ``cosine`` is our reading of the authors' unpublished "cosine attention"
(:mod:`gluon_distill.distill.cosine`, weight 1, attention ``|t|^2``), ``gan_cosine`` the ``gan``
arm with it (also paired with ``gan``: what the cosine term adds to the critics).

Faster R-CNN arms (:data:`RCNN_BASE`, :data:`RCNN_NETWORKS`, :data:`RCNN_ARMS`; their own
teacher in ``rcnn_teacher/``): ``rcnn_baseline`` (no teacher), ``rcnn_head_only``,
``rcnn_mimic``, ``rcnn_fgfi``, ``rcnn_gan`` (the ``gan`` arm's settings), ``rcnn_gan_bn``
(the ``gan_bn`` arm's), ``rcnn_cosine`` and ``rcnn_gan_cosine`` (the ``cosine`` and
``gan_cosine`` arms') on the C4 map.

YOLOv3 arms (:data:`YOLO_BASE`, :data:`YOLO_NETWORKS`, :data:`YOLO_ARMS`; their own teacher
in ``yolo_teacher/``, beyond the paper): ``yolo_baseline`` (no teacher), ``yolo_head_only``
(adapters + the teacher's head, YOLO loss only) and ``yolo_gan`` (the ``gan`` arm's critics) on
the three backbone maps, trained multi-scale (96/128/160 px) as GluonCV trains YOLOv3.

Each (arm, seed) run writes its own folder and ``summary.json``: a cut-off run is resumed from
its last checkpoint, a finished one is skipped, a run stopped by the divergence stop is
recorded as such (its folder keeps the last good epoch). ``results.json`` and ``results.md``
hold mean and standard deviation of the students' final and best validation mAP.
"""
import json
import math
import os
import time

from .config import config_from, set_key
from .io_utils import atomic_write_json, atomic_write_text

# Shared by every run. ``synthetic``: the generated shapes (400 training, 100 validation
# images); any other root is a VOC-format folder split 80/20 with a fixed seed.
BASE = {
    'data.train_split': 'train', 'data.val_split': 'val', 'data.val_fraction': 0.2,
    'data.split_seed': 0,
    'data.synthetic.num_train': 400, 'data.synthetic.num_val': 100,
    'model.network': 'tiny', 'model.data_shape': 128, 'model.pretrained_base': False,
    'train.batch_size': 16, 'train.optimizer': 'adam', 'train.lr': 0.002, 'train.ctx': 'cpu',
    'train.log_interval': 10, 'train.progress': False,
}
NETWORKS = {'teacher': {'model.width': 32, 'model.blocks': 2},
            'student': {'model.width': 16, 'model.blocks': 1}}
# the authors' logged critic settings; the critic, its width, how teacher and student maps
# meet in its BatchNorm, and what applies the adversarial gradient differ between GAN arms
PAPER_CRITIC = {'distill.method': 'gan', 'distill.gan.clip': 0.03,
                'distill.gan.critic_lr': 0.0005, 'distill.gan.critic_beta1': 0.5,
                'distill.gan.n_critic': 1, 'distill.gan.adv_weight': 1.0,
                'distill.gan.adv_lr': 0.0005, 'distill.gan.adv_beta1': 0.5,
                'distill.gan.epochs': -1}
# the critic arms before the DCGAN critic became the default
FORMER_CRITIC = dict(PAPER_CRITIC, **{'distill.gan.critic_batch': 'separate',
                                      'distill.gan.adv_optimizer': 'shared'})
ARMS = {
    'baseline': {},
    'head_only': {'distill.method': 'head_only'},
    'gan': dict(PAPER_CRITIC, **{'distill.gan.critic': 'dcgan', 'distill.gan.critic_width': 64,
                                 'distill.gan.critic_batch': 'joint',
                                 'distill.gan.adv_optimizer': 'adam'}),
    'gan_bn': dict(FORMER_CRITIC, **{'distill.gan.critic': 'bn',
                                     'distill.gan.critic_width': 64}),
    'gan_w512': dict(FORMER_CRITIC, **{'distill.gan.critic': 'bn',
                                       'distill.gan.critic_width': 512}),
    'gan_plain': dict(FORMER_CRITIC, **{'distill.gan.critic': 'plain',
                                        'distill.gan.critic_width': 64}),
    'gan_spectral': dict(FORMER_CRITIC, **{'distill.gan.critic': 'spectral',
                                           'distill.gan.critic_width': 64,
                                           'distill.gan.adv_weight': 0.01}),
    # the two imitation baselines, each with its defaults written out
    'mimic': {'distill.method': 'mimic', 'distill.mimic.weight': 1.0},
    'fgfi': {'distill.method': 'fgfi', 'distill.fgfi.weight': 0.01, 'distill.fgfi.psi': 0.5,
             'distill.fgfi.warmup_iters': 400},
}
# our reading of the authors' "cosine attention" (distill/cosine.py), alone and beside the
# ``gan`` arm's critics (every GAN setting as in ``gan``, its schedule keys written out at their
# defaults: no critic warm-up, the critics on the run's LR steps), so that ``gan_cosine - gan``
# isolates the cosine term
COSINE = {'distill.cosine.weight': 1.0, 'distill.cosine.attention_power': 2.0,
          'distill.cosine.epochs': -1}
ARMS['cosine'] = dict(COSINE, **{'distill.method': 'cosine'})
ARMS['gan_cosine'] = dict(ARMS['gan'], **COSINE)
ARMS['gan_cosine'].update({'distill.method': 'gan+cosine',
                           'distill.gan.critic_warmup_epochs': 0, 'distill.gan.lr_steps': None})
# arms also paired with another distillation arm than head-only (what the second term adds)
EXTRA_REFERENCES = {'gan_cosine': 'gan', 'rcnn_gan_cosine': 'rcnn_gan'}
DEFAULT_ARMS = ('baseline', 'head_only', 'gan')

# Faster R-CNN (the paper's Table 3 on the generated shapes): arms named ``rcnn_*``, their own
# teacher (``rcnn_teacher``), every setting written out here as for the SSD arms. The tiny
# Faster R-CNN: 4 stride-2 convolutions to ``model.width`` channels at stride 16, RoIAlign
# 7x7, RPN anchors 16 px x 1/2/4/8 (models/faster_rcnn.py ``TINY_PRESET``), short side 128
# within 192 px, validation NMS 0.3 (GluonCV's Faster R-CNN recipe).
RCNN_BASE = {
    'data.train_split': 'train', 'data.val_split': 'val', 'data.val_fraction': 0.2,
    'data.split_seed': 0,
    'data.synthetic.num_train': 400, 'data.synthetic.num_val': 100,
    'model.family': 'faster_rcnn', 'model.network': 'tiny', 'model.data_shape': 128,
    'model.max_size': 192, 'model.roi_mode': 'align', 'model.pretrained_base': False,
    'train.batch_size': 8, 'train.optimizer': 'adam', 'train.lr': 0.002, 'train.ctx': 'cpu',
    'train.log_interval': 10, 'train.progress': False,
    'eval.nms_thresh': 0.3, 'eval.nms_topk': 400, 'eval.post_nms': 100,
}
RCNN_NETWORKS = {'teacher': {'model.width': 32, 'model.blocks': 2},
                 'student': {'model.width': 32, 'model.blocks': 1}}
# the student is the teacher's depth halved (one convolution per stage instead of two) at the
# same width: the C4 maps match (no adapter) and the student's RPN and RCNN predictors start
# from the teacher's, the paper's set-up (distill.init_head_from_teacher)
RCNN_ARMS = {
    'rcnn_baseline': {},
    'rcnn_head_only': {'distill.method': 'head_only'},
    'rcnn_mimic': {'distill.method': 'mimic', 'distill.mimic.weight': 1.0},
    'rcnn_fgfi': {'distill.method': 'fgfi', 'distill.fgfi.weight': 0.01,
                  'distill.fgfi.psi': 0.5, 'distill.fgfi.warmup_iters': 400},
    'rcnn_gan': ARMS['gan'],
    'rcnn_gan_bn': ARMS['gan_bn'],
    'rcnn_cosine': ARMS['cosine'],
    'rcnn_gan_cosine': ARMS['gan_cosine'],
}
ARMS.update(RCNN_ARMS)

# YOLOv3 (the third family, beyond the paper) on the generated shapes: arms named ``yolo_*``,
# their own teacher (``yolo_teacher``), every setting written out here as for the other arms.
# The tiny YOLOv3: three stages of Darknet cells to 2/4/8 x model.width channels at stride
# 8/16/32, GluonCV's anchors scaled from 416 to 128 px (models/yolo3.py), GluonCV's
# detection blocks and loss; trained on sizes 96/128/160 px (one drawn every 10 batches, as
# GluonCV's 320..608), validated at 128 px with GluonCV's NMS 0.45.
YOLO_BASE = {
    'data.train_split': 'train', 'data.val_split': 'val', 'data.val_fraction': 0.2,
    'data.split_seed': 0,
    'data.synthetic.num_train': 400, 'data.synthetic.num_val': 100,
    'model.family': 'yolo3', 'model.network': 'tiny', 'model.data_shape': 128,
    'model.random_shapes': [96, 128, 160], 'model.random_shape_interval': 10,
    'model.pretrained_base': False,
    'train.batch_size': 16, 'train.optimizer': 'adam', 'train.lr': 0.002, 'train.ctx': 'cpu',
    'train.mixup': False, 'train.label_smooth': False, 'train.no_wd': False,
    'train.log_interval': 10, 'train.progress': False,
    'eval.nms_thresh': 0.45, 'eval.nms_topk': 400, 'eval.post_nms': 100,
}
# the student has half the teacher's width and depth: its maps (16/32/64 channels) meet the
# teacher's (32/64/128) through 1x1 adapters into the teacher's head, the SSD arms' set-up
YOLO_NETWORKS = {'teacher': {'model.width': 16, 'model.blocks': 2},
                 'student': {'model.width': 8, 'model.blocks': 1}}
YOLO_ARMS = {
    'yolo_baseline': {},
    'yolo_head_only': {'distill.method': 'head_only'},
    'yolo_gan': ARMS['gan'],
}
ARMS.update(YOLO_ARMS)
# per family: the arm-name prefix, the base settings, the networks, the teacher's folder
FAMILY_SETUP = {
    'ssd': ('', BASE, NETWORKS, 'teacher'),
    'faster_rcnn': ('rcnn_', RCNN_BASE, RCNN_NETWORKS, 'rcnn_teacher'),
    'yolo3': ('yolo_', YOLO_BASE, YOLO_NETWORKS, 'yolo_teacher'),
}


def _family(arm):
    if arm.startswith('rcnn_'):
        return 'faster_rcnn'
    return 'yolo3' if arm.startswith('yolo_') else 'ssd'


def _config(values):
    return config_from(values)


def _data(data_root):
    return {'data.root': data_root}


def arm_config(arm, seed, out_root, epochs, teacher_params, workers=1, overrides=(),
               data_root='synthetic'):
    """The config of one (arm, seed) run."""
    if arm not in ARMS:
        raise ValueError('unknown arm {!r}: expected one of {}'.format(arm, ', '.join(ARMS)))
    prefix, base, networks, _ = FAMILY_SETUP[_family(arm)]
    values = dict(base, **networks['student'])
    values.update(_data(data_root))
    values.update({
        'data.num_workers': workers,
        'train.out': os.path.join(out_root, '{}_seed{}'.format(arm, seed)),
        'train.seed': seed, 'train.epochs': epochs, 'train.lr_steps': [int(epochs * 0.8)],
        'experiment.name': 'mini_{}_seed{}'.format(arm, seed)})
    if arm != prefix + 'baseline':
        values.update({'teacher.params': teacher_params, 'distill.fold_adapters': False,
                       'distill.init_head_from_teacher': True})
    values.update(ARMS[arm])
    cfg = _config(values)
    for key, value in overrides:
        set_key(cfg, key, value)
    return cfg


def teacher_config(out_root, epochs, workers=1, data_root='synthetic', family='ssd'):
    """The teacher of the SSD arms (``teacher/``), of the Faster R-CNN arms
    (``rcnn_teacher/``) or of the YOLOv3 arms (``yolo_teacher/``)."""
    _, base, networks, name = FAMILY_SETUP[family]
    values = dict(base, **networks['teacher'])
    values.update(_data(data_root))
    values.update({'data.num_workers': workers, 'train.out': os.path.join(out_root, name),
                   'train.epochs': epochs, 'train.lr_steps': [int(epochs * 0.8)],
                   'experiment.name': 'mini_' + name})
    return _config(values)


def _run(cfg, train, logger):
    """Train unless finished; resume a cut-off run. Returns its summary."""
    from .engine.divergence import Diverged
    out = cfg.train.out
    summary_path = os.path.join(out, 'summary.json')
    if os.path.exists(summary_path):
        with open(summary_path) as f:
            return json.load(f)
    if os.path.exists(os.path.join(out, 'last.ckpt')):
        set_key(cfg, 'train.resume', True)
        logger.info('resuming %s', out)
    started = time.time()
    try:
        summary = train(cfg, argv=['gluon_distill.mini', cfg.experiment.name])
    except Diverged as e:
        logger.warning('%s: %s', cfg.experiment.name, e)
        best = os.path.join(out, 'best.json')
        best_map = json.load(open(best))['mAP'] if os.path.exists(best) else None
        summary = {'out': out, 'diverged': str(e), 'best_mAP': best_map}
    summary['seconds'] = time.time() - started
    atomic_write_json(summary_path, summary)
    return summary


def _final_map(out):
    """Validation mAP after the last validated epoch (from metrics.jsonl)."""
    last = None
    path = os.path.join(out, 'metrics.jsonl')
    if not os.path.exists(path):
        return None
    with open(path) as f:
        for line in f:
            record = json.loads(line)
            if record.get('type') == 'val':
                last = record.get('mAP')
    return last


def _grad_ratio(out):
    """Mean, least and largest logged ``grad_ratio`` (|distillation gradient| / |detection
    gradient| on the student, ``distill.grad_ratio_interval``) of a run; None without any."""
    path = os.path.join(out, 'metrics.jsonl')
    values = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record.get('grad_ratio'), (int, float)):
                    values.append(record['grad_ratio'])
    if not values:
        return None
    return {'mean': sum(values) / len(values), 'min': min(values), 'max': max(values)}


# two-sided 95% quantiles of Student's t by degrees of freedom (a missing df takes the next
# smaller one listed, which widens the interval slightly)
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}


def t975(df):
    return T975[max(k for k in T975 if k <= df)]


def paired_differences(runs, reference_runs):
    """Per seed both arms finished, ``final mAP(arm) - final mAP(reference)``; their mean,
    standard deviation and 95% confidence interval (Student's t; None below two seeds)."""
    ref = {r['seed']: r['final_mAP'] for r in reference_runs if r['final_mAP'] is not None}
    diffs = [(r['seed'], r['final_mAP'] - ref[r['seed']]) for r in runs
             if r['final_mAP'] is not None and r['seed'] in ref]
    n = len(diffs)
    if not n:
        return None
    mean, sd = _mean_std([d for _, d in diffs])
    interval = None
    if n > 1:
        half = t975(n - 1) * sd / math.sqrt(n)
        interval = [mean - half, mean + half]
    return {'per_seed': dict(diffs), 'mean': mean, 'std': sd if n > 1 else None,
            'interval95': interval}


def _reference_arm(arm):
    """The arm an arm is paired with: a distillation arm with the head-only student of its
    family, the head-only student with the no-teacher one."""
    prefix = FAMILY_SETUP[_family(arm)][0]
    if arm == prefix + 'baseline':
        return None
    return prefix + ('baseline' if arm == prefix + 'head_only' else 'head_only')


def _mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return float('nan'), float('nan')
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1)
    return mean, math.sqrt(var)


def run_mini_reproduction(out_root='runs/mini', seeds=(0, 1, 2), epochs=60, teacher_epochs=60,
                          arms=DEFAULT_ARMS, workers=1, overrides=(), data_root='synthetic'):
    from .engine.hooks import setup_logging
    from .training import train_detector
    from .distill.run import train_distilled
    for arm in arms:
        if arm not in ARMS:
            raise ValueError('unknown arm {!r}: expected one of {}'.format(arm, ', '.join(ARMS)))
    logger = setup_logging()
    out_root = os.path.abspath(out_root)
    teachers, teacher_params = {}, {}
    needed = {_family(arm) for arm in arms}
    for family in [f for f in FAMILY_SETUP if f in needed]:  # ssd first
        cfg = teacher_config(out_root, teacher_epochs, workers, data_root, family)
        teachers[family] = _run(cfg, train_detector, logger)
        teacher_params[family] = os.path.join(cfg.train.out, 'best.params')
    teacher = teachers.get('ssd') or teachers.get('faster_rcnn') or teachers['yolo3']
    rows = {arm: [] for arm in arms}
    for seed in seeds:
        for arm in arms:
            cfg = arm_config(arm, seed, out_root, epochs, teacher_params[_family(arm)], workers,
                             overrides, data_root)
            train = train_detector if arm == FAMILY_SETUP[_family(arm)][0] + 'baseline' \
                else train_distilled
            summary = _run(cfg, train, logger)
            rows[arm].append({'seed': seed, 'final_mAP': _final_map(cfg.train.out),
                              'best_mAP': summary['best_mAP'],
                              'diverged': bool(summary.get('diverged')),
                              'seconds': summary.get('seconds'),
                              'grad_ratio': _grad_ratio(cfg.train.out)})
            write_results(out_root, teacher, rows, epochs, teachers)
    return write_results(out_root, teacher, rows, epochs, teachers)


def write_results(out_root, teacher, rows, epochs, teachers=None):
    results = {'teacher_best_mAP': teacher['best_mAP'], 'epochs': epochs, 'arms': {}}
    if teachers and 'faster_rcnn' in teachers:
        results['rcnn_teacher_best_mAP'] = teachers['faster_rcnn']['best_mAP']
    if teachers and 'yolo3' in teachers:
        results['yolo_teacher_best_mAP'] = teachers['yolo3']['best_mAP']
    lines = ['| arm | seeds | final mAP (mean ± std) | best mAP (mean ± std) | final, per seed |',
             '|---|---:|---:|---:|---|']
    for arm, runs in rows.items():
        final = _mean_std([r['final_mAP'] for r in runs])
        best = _mean_std([r['best_mAP'] for r in runs])
        results['arms'][arm] = {'runs': runs, 'final_mean': final[0], 'final_std': final[1],
                                'best_mean': best[0], 'best_std': best[1]}
        per_seed = ', '.join('{}{:.3f}{}'.format(
            's%d=' % r['seed'], r['final_mAP'] if r['final_mAP'] is not None else float('nan'),
            ' (diverged)' if r.get('diverged') else '') for r in runs)
        lines.append('| {} | {} | {:.4f} ± {:.4f} | {:.4f} ± {:.4f} | {} |'.format(
            arm, len(runs), final[0], final[1], best[0], best[1], per_seed))
    pairs = []
    for arm, runs in rows.items():
        for reference in [_reference_arm(arm), EXTRA_REFERENCES.get(arm)]:
            diff = paired_differences(runs, rows[reference]) if reference in rows else None
            if diff is None:
                continue
            ratios = [r['grad_ratio']['mean'] for r in runs if r.get('grad_ratio')]
            diff['grad_ratio_mean'] = sum(ratios) / len(ratios) if ratios else None
            results['arms'][arm]['minus_' + reference] = diff
            pairs.append(('{} - {}'.format(arm, reference), diff))
    if pairs:
        lines += ['', '| paired by seed (final mAP) | seeds | per seed | mean | 95% interval '
                  '| distillation / detection gradient |', '|---|---:|---|---:|---|---:|']
        for name, diff in pairs:
            interval = diff['interval95']
            lines.append('| {} | {} | {} | {:+.4f} | {} | {} |'.format(
                name, len(diff['per_seed']),
                ', '.join('s{}={:+.3f}'.format(k, v) for k, v in diff['per_seed'].items()),
                diff['mean'], '[{:+.4f}, {:+.4f}]'.format(*interval) if interval else '-',
                '{:.3g}'.format(diff['grad_ratio_mean'])
                if diff['grad_ratio_mean'] is not None else '-'))
    if teachers and set(teachers) == {'faster_rcnn'}:
        lines.append('\nFaster R-CNN teacher best mAP: {:.4f}; students trained {} '
                     'epochs'.format(teacher['best_mAP'], epochs))
    elif teachers and set(teachers) == {'yolo3'}:
        lines.append('\nYOLOv3 teacher best mAP: {:.4f}; students trained {} '
                     'epochs'.format(teacher['best_mAP'], epochs))
    elif teachers and 'yolo3' in teachers and 'ssd' not in teachers:
        lines.append('\nFaster R-CNN teacher best mAP: {:.4f}; students trained {} '
                     'epochs'.format(teacher['best_mAP'], epochs))
        lines.append('YOLOv3 teacher best mAP: {:.4f}'.format(teachers['yolo3']['best_mAP']))
    else:
        lines.append('\nteacher best mAP: {:.4f}; students trained {} epochs'.format(
            teacher['best_mAP'], epochs))
        if teachers and 'faster_rcnn' in teachers:
            lines.append('Faster R-CNN teacher best mAP: {:.4f}'.format(
                teachers['faster_rcnn']['best_mAP']))
        if teachers and 'yolo3' in teachers:
            lines.append('YOLOv3 teacher best mAP: {:.4f}'.format(
                teachers['yolo3']['best_mAP']))
    atomic_write_json(os.path.join(out_root, 'results.json'), results)
    atomic_write_text(os.path.join(out_root, 'results.md'), '\n'.join(lines) + '\n')
    if pairs:
        from .viz import plot_paired_differences
        plot_paired_differences(pairs, os.path.join(out_root, 'paired.png'),
                                title='{}: final mAP, paired by seed'.format(
                                    os.path.basename(os.path.normpath(out_root))))
    return results
