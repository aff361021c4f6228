"""Reproduce one table of the paper with one command: train, evaluate, compare.

Every YAML file of the experiments folder whose ``experiment.paper_table`` names the table is
one run: teachers (``teacher_*``), baselines (``baseline_*``) and distillations (any config
with ``teacher.params``; its method is ``distill.method``). Runs go in dependency order, a
student after the teacher whose ``train.out/best.params`` it loads. A run with ``summary.json``
in its ``train.out`` is finished and skipped; one with ``last.ckpt`` is resumed.

Each finished run's ``best.params`` is evaluated on its config's validation split (cached in
``OUT/reproduce_eval.json``); ``table<N>.md``, ``table<N>.csv`` and ``table<N>.png`` put our
number beside ``experiment.published_mAP`` with the difference, in the table's metric
(:data:`TABLES`: VOC07 mAP for Table 1, COCO AP@[.5:.95] for Table 2).
"""
import csv
import glob
import io
import json
import os
import re
import time

from .io_utils import atomic_write_json, atomic_write_text

METHODS = ('gan', 'head_only', 'mimic', 'fgfi', 'cosine')

# Assumed training throughput, images per second per GPU at 512 px (forward + backward, one
# V100-class GPU, GluonCV's SSD). These are assumptions for planning, not measurements.
IMAGES_PER_SEC_512 = {
    'vgg16_atrous': 30.0, 'resnet101_v2': 25.0, 'resnet50_v1': 40.0, 'resnet18_v1': 80.0,
    'mobilenet1.0': 90.0, 'mobilenetv2_1.0': 90.0, 'tiny': 1000.0, 'mobilenet0.75': 110.0,
    # Faster R-CNN (Table 3, experiments/voc07_rcnn): one image per GPU, RoIs and NMS included
    'resnet50_v1b': 10.0, 'resnet101_v1d': 7.0,
}
DEFAULT_IMAGES_PER_SEC = 40.0
# a distillation step also runs the teacher forward: about a third of its training step
TEACHER_FORWARD_SHARE = 1.0 / 3
# images in the VOC splits the configs use
VOC_SPLIT_IMAGES = {'2007_trainval': 5011, '2012_trainval': 11540, '2007_test': 4952}
# images in the COCO 2017 splits (instances_train2017.json, instances_val2017.json)
COCO_SPLIT_IMAGES = {'train2017': 118287, 'val2017': 5000}


class TableSpec(object):
    """A table of the paper: its experiments folder and the metric its numbers are in
    (``key``: the evaluation result's entry; ``label``: column names; ``text``: the md note)."""

    def __init__(self, experiments, key, label, text):
        self.experiments, self.key, self.label, self.text = experiments, key, label, text


TABLES = {
    1: TableSpec('experiments/voc', 'mAP', 'mAP', 'VOC07 11-point mAP'),
    2: TableSpec('experiments/coco', 'AP', 'AP', 'COCO AP@[.5:.95] (pycocotools)'),
    3: TableSpec('experiments/voc07_rcnn', 'mAP', 'mAP', 'VOC07 11-point mAP'),
}


def table_spec(table):
    """The :class:`TableSpec` of ``table`` (a table not listed: VOC07 mAP, experiments/voc)."""
    return TABLES.get(int(table), TABLES[1])


class Run(object):
    """One config of the table: its path, role, method and loaded config."""

    def __init__(self, path, cfg):
        self.path = path
        self.cfg = cfg
        self.name = cfg.experiment.name or os.path.splitext(os.path.basename(path))[0]
        base = os.path.basename(path)
        if cfg.teacher.params or cfg.teacher.pretrained:
            self.role = 'student'
            self.method = cfg.distill.method
        elif base.startswith('teacher_'):
            self.role, self.method = 'teacher', 'teacher'
        else:
            self.role, self.method = 'baseline', 'baseline'
        self.out = os.path.abspath(os.path.expanduser(cfg.train.out))
        self.depends = None

    @property
    def finished(self):
        return os.path.exists(os.path.join(self.out, 'summary.json'))

    @property
    def started(self):
        return os.path.exists(os.path.join(self.out, 'last.ckpt'))

    def command(self, ctx=None):
        if self.role == 'student':
            name, script = 'distill', 'train_distill'
        else:
            name, script = {'faster_rcnn': ('train-rcnn', 'train_rcnn'),
                            'yolo3': ('train-yolo3', 'train_yolo3')}.get(
                                self.cfg.model.family, ('train', 'train_ssd'))
        cmd = '{} --config {}'.format(_command_prefix(name, script), self.path)
        if ctx:
            cmd += ' --ctx {}'.format(ctx)
        if self.started and not self.finished:
            cmd += ' --resume'
        return cmd


def _command_prefix(name, script):
    """How to run the command ``name``: ``python tools/<script>.py`` in a source checkout (its
    tools/ beside the package), ``gluon-distill <name>`` where the package was pip-installed."""
    tool = 'tools/{}.py'.format(script)
    checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.isfile(os.path.join(checkout, tool)):
        return 'python ' + tool
    return 'gluon-distill ' + name


def _in_table(cfg, table):
    return re.search(r'\bTable {}\b'.format(re.escape(str(table))),
                     cfg.experiment.paper_table or '') is not None


def method_parts(method):
    """``gan+cosine`` -> ``['gan', 'cosine']``."""
    return [part.strip() for part in str(method).split('+')]


def collect_runs(experiments, table=1, methods=None, overrides=()):
    """The runs of ``table`` under ``experiments``, in dependency order. ``methods``: the
    distillations to keep; a run combining several (``gan+cosine``) is kept when any of its
    methods is listed."""
    from .config import load_config
    methods = tuple(methods) if methods else METHODS
    for method in methods:
        for part in method_parts(method):
            if part not in METHODS:
                raise ValueError('unknown method {!r}: expected some of {}'.format(
                    method, ', '.join(METHODS)))
    wanted = {part for method in methods for part in method_parts(method)}
    paths = sorted(glob.glob(os.path.join(experiments, '*.yaml')))
    if not paths:
        raise FileNotFoundError('no *.yaml configs in {}'.format(experiments))
    runs = [Run(p, load_config(p, overrides)) for p in paths]
    runs = [r for r in runs if _in_table(r.cfg, table)]
    if not runs:
        raise ValueError('no config in {} has experiment.paper_table naming Table {}'.format(
            experiments, table))
    runs = [r for r in runs if r.role != 'student' or set(method_parts(r.method)) & wanted]
    teachers = {os.path.join(r.out, 'best.params'): r for r in runs if r.role == 'teacher'}
    for r in runs:
        if r.role == 'student':
            params = os.path.abspath(os.path.expanduser(r.cfg.teacher.params or ''))
            r.depends = teachers.get(params)
    order = {'teacher': 0, 'baseline': 1, 'student': 2}
    return sorted(runs, key=lambda r: order[r.role])


def _split_images(cfg):
    """Training images of ``cfg``: known VOC sizes, else the split files under its root."""
    total = 0
    root = os.path.expanduser(cfg.data.root)
    for split in cfg.data.train_split.split('+'):
        known = dict(VOC_SPLIT_IMAGES, **COCO_SPLIT_IMAGES)
        if split in known:
            total += known[split]
            continue
        name = split.split('_')[-1]
        files = glob.glob(os.path.join(root, 'ImageSets', 'Main', name + '.txt')) + \
            glob.glob(os.path.join(root, '*', 'ImageSets', 'Main', name + '.txt'))
        if not files:
            return None
        with open(files[0]) as f:
            total += sum(1 for line in f if line.strip())
    return total


def _rate(network):
    return IMAGES_PER_SEC_512.get(network, DEFAULT_IMAGES_PER_SEC)


def gpu_hours(run):
    """Estimated GPU-hours of ``run`` from its recipe (images x epochs / assumed rate)."""
    images = _split_images(run.cfg)
    if images is None:
        return None
    m = run.cfg.model
    seconds_per_image = (512.0 / m.data_shape) ** -2 / _rate(m.network)
    if run.role == 'student':
        seconds_per_image += (TEACHER_FORWARD_SHARE * (512.0 / m.data_shape) ** -2 /
                              _rate(run.cfg.teacher.network))
    return images * run.cfg.train.epochs * seconds_per_image / 3600.0


def _train(run, ctx, logger):
    from .config import set_key
    from .engine.divergence import Diverged
    from .training import train_detector
    from .distill.run import train_distilled
    if run.depends is not None and not run.depends.finished:
        raise FileNotFoundError('{} needs its teacher {} to finish first (no {})'.format(
            run.name, run.depends.name, os.path.join(run.depends.out, 'summary.json')))
    if ctx:
        set_key(run.cfg, 'train.ctx', ctx)
    stale = os.path.join(run.out, 'reproduce_eval.json')
    if os.path.exists(stale):
        os.remove(stale)
    if run.started:
        set_key(run.cfg, 'train.resume', True)
        logger.info('resuming %s', run.out)
    train = train_distilled if run.role == 'student' else train_detector
    started = time.time()
    try:
        summary = train(run.cfg, argv=['tools/reproduce.py', run.path])
    except Diverged as e:
        logger.warning('%s: %s', run.name, e)
        summary = {'out': run.out, 'diverged': str(e)}
    summary['seconds'] = time.time() - started
    atomic_write_json(os.path.join(run.out, 'summary.json'), summary)  # its presence: finished


def _evaluate(run, ctx):
    """Our mAP (COCO data: AP@[.5:.95]) of the run's best.params on its validation split
    (cached)."""
    from .evaluate import evaluate_params
    cache = os.path.join(run.out, 'reproduce_eval.json')
    if os.path.exists(cache):
        with open(cache) as f:
            return json.load(f)['mAP']
    params = os.path.join(run.out, 'best.params')
    if not os.path.exists(params):
        return None
    result, _ = evaluate_params(params, run.cfg.data.root, run.cfg.data.val_split,
                                ctx or 'cpu', progress=True,  # on a terminal only
                                nms_thresh=run.cfg.eval.nms_thresh)
    value = result['mAP'] if 'mAP' in result else result['AP']  # COCO data: AP@[.5:.95]
    atomic_write_json(cache, {'mAP': value, 'metric': 'mAP' if 'mAP' in result else 'AP',
                              'params': params, 'split': run.cfg.data.val_split})
    return value


def _fmt(value):
    return '—' if value is None else '{:.3f}'.format(value)


def write_results(rows, results_dir, table):
    """``table<N>.md``, ``.csv`` and ``.png`` of ``rows``; returns the three paths."""
    os.makedirs(results_dir, exist_ok=True)
    stem = os.path.join(results_dir, 'table{}'.format(table))
    spec = table_spec(table)
    table_csv = io.StringIO(newline='')
    writer = csv.writer(table_csv)
    writer.writerow(['name', 'role', 'method', 'paper_table', 'paper_' + spec.label,
                     'our_' + spec.label, 'difference'])
    for r in rows:
        writer.writerow([r['name'], r['role'], r['method'], r['paper_table'],
                         '' if r['paper'] is None else r['paper'],
                         '' if r['ours'] is None else '{:.4f}'.format(r['ours']),
                         '' if r['diff'] is None else '{:.4f}'.format(r['diff'])])
    lines = ['# Table {}: paper vs this reproduction'.format(table), '',
             '{} = {} of each run\'s best.params on its config\'s validation split; '
             'difference = ours - paper.'.format(spec.label, spec.text), '',
             '| run | role | method | paper {0} | our {0} | difference |'.format(spec.label),
             '|---|---|---|---:|---:|---:|']
    for r in rows:
        diff = '—' if r['diff'] is None else '{:+.3f}'.format(r['diff'])
        lines.append('| {} | {} | {} | {} | {} | {} |'.format(
            r['name'], r['role'], r['method'], _fmt(r['paper']), _fmt(r['ours']), diff))
    atomic_write_text(stem + '.csv', table_csv.getvalue())
    atomic_write_text(stem + '.md', '\n'.join(lines) + '\n')
    _plot(rows, stem + '.png', table)
    return stem + '.md', stem + '.csv', stem + '.png'


def _plot(rows, path, table):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    xs = range(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(rows) + 2), 4.5))
    width = 0.4
    ax.bar([x - width / 2 for x in xs], [r['paper'] or 0 for r in rows], width, label='paper')
    ax.bar([x + width / 2 for x in xs], [r['ours'] or 0 for r in rows], width, label='ours')
    ax.set_xticks(list(xs))
    ax.set_xticklabels([r['name'] for r in rows], rotation=60, ha='right', fontsize=7)
    ax.set_ylabel(table_spec(table).label)
    ax.set_title('Table {}: paper vs ours'.format(table))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _epochs(steps):
    return ', '.join(str(s) for s in steps) if steps else 'never'


def _span(epochs, total):
    """``0-N`` of a term that runs ``epochs`` (-1: all ``total``), or ``none``."""
    last = total if epochs < 0 else min(epochs, total)
    return '0-{}'.format(last - 1) if last > 0 else 'none'


def schedule(run):
    """The run's schedule in one line: epochs, batch, the student's rate and its decay epochs,
    and for a distillation the epochs of each method's term (GAN: critic warm-up and the
    critics' own decay epochs), as ``experiments/README.md`` sources them."""
    t = run.cfg.train
    text = '{} epochs, batch {}, lr {:g} x{:g} at {}'.format(
        t.epochs, t.batch_size, t.lr, t.lr_decay, _epochs(t.lr_steps))
    if run.role != 'student':
        return text
    d = run.cfg.distill
    parts = method_parts(run.method)
    if 'gan' in parts:
        g = d.gan
        text += '; GAN epochs {}'.format(_span(g.epochs, t.epochs))
        if g.critic_warmup_epochs:
            text += ' (critics alone 0-{})'.format(g.critic_warmup_epochs - 1)
        text += ', critic lr {:g} x{:g} at {}'.format(
            g.critic_lr, t.lr_decay, _epochs(t.lr_steps if g.lr_steps is None else g.lr_steps))
    if 'cosine' in parts:
        c = d.cosine
        text += '; cosine epochs {} (weight {:g})'.format(_span(c.epochs, t.epochs), c.weight)
    if 'fgfi' in parts:
        text += '; FGFI from iteration {}'.format(d.fgfi.warmup_iters)
    return text


def dry_run(runs, ctx=None, out=print):
    """Print the commands in order, their state, schedule and the GPU-hour estimate; returns
    the total."""
    total, unknown = 0.0, []
    for r in runs:
        state = 'done' if r.finished else ('resume' if r.started else 'todo')
        hours = gpu_hours(r)
        out('[{}] {}    # {}; {}; ~{} GPU-h'.format(
            state, r.command(ctx), r.method, schedule(r),
            '?' if hours is None else '{:.3g}'.format(hours)))
        if hours is None:
            unknown.append(r.name)
        elif not r.finished:
            total += hours
    out('estimate: {:.1f} GPU-hours for the {} unfinished runs (images x epochs of each recipe '
        'at assumed training rates per GPU at 512 px: {}; scaled by (512/size)^2; students add '
        'a teacher forward at {:.2f} of its step). An estimate from assumed rates, not a '
        'measurement.'.format(
            total, sum(1 for r in runs if not r.finished),
            ', '.join('{} {:g} img/s'.format(k, v) for k, v in IMAGES_PER_SEC_512.items()),
            TEACHER_FORWARD_SHARE))
    if unknown:
        out('no image count for: {}'.format(', '.join(unknown)))
    return total


def reproduce_table(table=1, experiments=None, methods=None, ctx=None,
                    results_dir='results', overrides=(), dry=False, out=print):
    """Train (or resume) every run of ``table`` in order, evaluate, and write the results.
    ``experiments`` defaults to the table's folder (:data:`TABLES`)."""
    runs = collect_runs(experiments or table_spec(table).experiments, table, methods, overrides)
    if dry:
        dry_run(runs, ctx, out)
        return None
    from .engine.hooks import setup_logging
    logger = setup_logging()
    rows = []
    for r in runs:
        if r.finished:
            logger.info('skip %s: %s/summary.json exists', r.name, r.out)
        else:
            logger.info('train %s (%s)', r.name, r.command(ctx))
            _train(r, ctx, logger)
        ours = _evaluate(r, ctx)
        paper = r.cfg.experiment.published_mAP
        rows.append({'name': r.name, 'role': r.role, 'method': r.method,
                     'paper_table': r.cfg.experiment.paper_table, 'paper': paper, 'ours': ours,
                     'diff': None if paper is None or ours is None else ours - paper})
    paths = write_results(rows, results_dir, table)
    for p in paths:
        out('wrote {}'.format(p))
    return rows
