"""Plots of training runs from their ``metrics.jsonl`` files (matplotlib, PNG).

Every run gets ``OUT/curves.png`` when its training ends; ``tools/plot.py RUN [RUN...]`` overlays
several runs. Panels: the SSD losses, the learning rate(s), validation mAP per epoch and, for
distillation runs, the critics' and adversarial losses and the Wasserstein estimate per scale.
"""
import json
import math
import os
import re

_W_SCALE = re.compile(r'^W\d+$')


def read_metrics(path):
    """``(train_records, val_records)`` of one run's metrics.jsonl (a torn last line, as a
    killed run may leave, is ignored)."""
    train, val = [], []
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            (train if record.get('type') == 'train' else val).append(record)
    return train, val


def _series(records, key):
    points = [(r['iteration'], r[key]) for r in records
              if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    return [p[0] for p in points], [p[1] for p in points]


def _keys(train, accept):
    """Numeric keys of the training records that ``accept(key)``, in first-seen order."""
    keys = []
    for record in train:
        for key, value in record.items():
            if key not in keys and isinstance(value, (int, float)) and accept(key):
                keys.append(key)
    return keys


def _is_lr(key):
    return key == 'lr' or key.startswith('lr_')


def _is_critic(key):
    return key.startswith('Loss_')


# numbers a training record carries that are not a detection-loss part
_NOT_DETECTION_LOSS = ('epoch', 'iteration', 'loss', 'samples_per_sec', 'data_wait',
                       'batch_size')


def _is_detection_loss(key):
    """A part of the detector family's loss (SSD: ``CrossEntropy``, ``SmoothL1``; Faster R-CNN:
    ``RPN_Conf``, ``RPN_SmoothL1``, ``RCNN_CrossEntropy``, ``RCNN_SmoothL1``)."""
    return not (key in _NOT_DETECTION_LOSS or _is_lr(key) or _is_critic(key) or
                _W_SCALE.match(key))


def panels_of(data):
    """The panels one figure of ``data`` (label -> (train, val)) needs, in display order."""
    trains = [train for train, _ in data.values()]
    panels = ['losses', 'lr', 'mAP']
    if any(_keys(train, _is_critic) for train in trains):
        panels.append('critics')
    if any(_keys(train, _W_SCALE.match) for train in trains):
        panels.append('W')
    return panels


def _metric_name(data):
    """What the validation records' ``mAP`` holds: VOC07 mAP, or COCO AP on COCO runs."""
    metrics = {r.get('metric') for _, val in data.values() for r in val if r.get('metric')}
    if metrics == {'coco'}:
        return 'COCO AP@[.5:.95]'
    return 'mAP (VOC07, IoU 0.5)' if not metrics or metrics == {'voc07'} else 'mAP / AP'


def plot_runs(runs, out_png, title='gluon-distill'):
    """One figure overlaying ``runs``: detection losses, learning rate, validation mAP per
    epoch and, where present, the distillation and critic losses and the per-scale
    Wasserstein estimates.

    ``runs``: ordered mapping label -> metrics.jsonl path (missing files are skipped).
    Returns ``out_png``.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    data = {label: read_metrics(path) for label, path in runs.items() if os.path.exists(path)}
    several = len(data) > 1
    panels = panels_of(data)
    rows = (len(panels) + 1) // 2
    fig, axes = plt.subplots(rows, 2, figsize=(12, 4 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]

    def name(label, key):
        return '{} {}'.format(label, key) if several else key

    for ax, panel in zip(flat, panels):
        drawn = False
        for label, (train, val) in data.items():
            if panel == 'mAP':
                points = [(r['epoch'], r['mAP']) for r in val
                          if isinstance(r.get('mAP'), (int, float))]
                if points:
                    ax.plot([p[0] for p in points], [p[1] for p in points], marker='o',
                            label=label)
                    drawn = True
                continue
            if panel == 'losses':
                keys = _keys(train, _is_detection_loss)
            elif panel == 'lr':
                keys = _keys(train, _is_lr)
            elif panel == 'critics':
                keys = _keys(train, _is_critic)
            else:
                keys = sorted(_keys(train, _W_SCALE.match), key=lambda k: int(k[1:]))
            for key in keys:
                xs, ys = _series(train, key)
                if xs:
                    ax.plot(xs, ys, '--' if key.endswith('SmoothL1') else '-',
                            label=name(label, key))
                    drawn = True
        titles = {'losses': ('detection losses', 'iteration'),
                  'lr': ('learning rate', 'iteration'),
                  'mAP': ('validation {}'.format(_metric_name(data)), 'epoch'),
                  'critics': ('distillation and critic losses', 'iteration'),
                  'W': ('Wasserstein estimate per scale (mean D(student) - mean D(teacher))',
                        'iteration')}
        ax.set(title=titles[panel][0], xlabel=titles[panel][1])
        if panel == 'mAP':
            ax.set_ylim(0, 1)
        if drawn:
            ax.legend(fontsize=7)
    for ax in flat[len(panels):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


def plot_run_folder(out_dir, out_png=None):
    """``OUT/curves.png`` (or ``out_png``) of the run in ``out_dir``."""
    out_png = out_png or os.path.join(out_dir, 'curves.png')
    return plot_runs({os.path.basename(os.path.normpath(out_dir)):
                      os.path.join(out_dir, 'metrics.jsonl')}, out_png,
                     title=os.path.basename(os.path.normpath(out_dir)))


# the critic quantities compared with the authors' log, in panel order
CRITIC_KEYS = ('Loss_D', 'Loss_D_real', 'Loss_D_fake', 'Loss_G_adv')


def authors_iterations(windows, per_epoch=None):
    """Each authors' window's iteration count from the start of their run. ``per_epoch``:
    iterations per epoch (default: the largest logged batch number rounded up to the next
    hundred, their log interval; an underestimate by less than one interval)."""
    if per_epoch is None:
        per_epoch = int(math.ceil((max(w['batch'] for w in windows) + 1) / 100.0)) * 100
    first = windows[0]['epoch']
    return [(w['epoch'] - first) * per_epoch + w['batch'] + 1 for w in windows]


def critic_comparison(train, authors, per_epoch=None):
    """Rows ``(iteration, key, ours, theirs)`` at the authors' first window, at our last one and
    in between at every power of ten: each run's window nearest to that iteration count (a
    critic update per iteration in both), for every key of :data:`CRITIC_KEYS` both logged."""
    ours = [r for r in train if isinstance(r.get('Loss_D'), (int, float))]
    if not ours:
        raise ValueError('the run logged no Loss_D: not a GAN distillation run')
    their_it = authors_iterations(authors, per_epoch)
    last = ours[-1]['iteration']
    marks = [their_it[0]] + [10 ** k for k in range(1, 12) if their_it[0] < 10 ** k < last]
    marks.append(last)

    def nearest(xs, x):
        return min(range(len(xs)), key=lambda i: abs(math.log(xs[i]) - math.log(x)))
    rows = []
    for mark in marks:
        mine = ours[nearest([r['iteration'] for r in ours], mark)]
        theirs = authors[nearest(their_it, mark)]
        for key in CRITIC_KEYS:
            if key in mine and key in theirs:
                rows.append((mark, key, mine[key], theirs[key]))
    return rows


def plot_critics_vs_authors(metrics_path, authors_path, out_png, label='this run',
                            per_epoch=None):
    """One panel per :data:`CRITIC_KEYS` quantity: a run's windows (``metrics_path``) beside
    the authors' (``authors_path``, see :func:`gluon_distill.authors_log.read_authors_log`)
    over iterations (one critic update each), log scale. Returns ``(out_png, rows of
    critic_comparison)``."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from .authors_log import read_authors_log

    train, _ = read_metrics(metrics_path)
    authors = read_authors_log(authors_path)
    rows = critic_comparison(train, authors, per_epoch)
    ours = [r for r in train if isinstance(r.get('Loss_D'), (int, float))]
    their_it = authors_iterations(authors, per_epoch)
    keys = [k for k in CRITIC_KEYS if any(k in w for w in authors) or any(k in r for r in ours)]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax, key in zip(flat, keys):
        xs, ys = _series(ours, key)
        if xs:
            ax.plot(xs, ys, label=label)
        points = [(x, w[key]) for x, w in zip(their_it, authors) if key in w]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points],
                    label='authors (epochs {}-{})'.format(authors[0]['epoch'],
                                                         authors[-1]['epoch']))
        ax.set_xscale('log')
        ax.set_yscale('symlog', linthresh=0.1)
        ax.axhline(0, color='grey', lw=0.5)
        ax.set(title=key, xlabel='iteration (one critic update each)')
        ax.legend(fontsize=8)
    for ax in flat[len(keys):]:
        ax.set_visible(False)
    fig.suptitle("critics: {} vs the authors' log ({}; their iterations estimated from the "
                 "logged batch numbers)".format(label, os.path.basename(authors_path)),
                 fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png, rows


def plot_paired_differences(pairs, out_png, title=''):
    """Per compared pair of arms (``[(name, diff)]`` of
    :func:`gluon_distill.mini.paired_differences`): each seed's difference as a dot, the mean
    and its 95% interval as a bar, zero as a line. Returns ``out_png``."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4, 1.6 * len(pairs) + 2), 4))
    for x, (name, diff) in enumerate(pairs):
        seeds = list(diff['per_seed'].items())
        ax.scatter([x + 0.08 * (i - (len(seeds) - 1) / 2) for i in range(len(seeds))],
                   [v for _, v in seeds], color='tab:blue', zorder=3, s=18)
        if diff['interval95']:
            lo, hi = diff['interval95']
            ax.errorbar([x + 0.3], [diff['mean']], yerr=[[diff['mean'] - lo], [hi - diff['mean']]],
                        fmt='o', color='black', capsize=4, zorder=3)
        else:
            ax.plot([x + 0.3], [diff['mean']], 'o', color='black')
    ax.axhline(0, color='grey', lw=0.8)
    ax.set_xticks(range(len(pairs)))
    ax.set_xticklabels([name for name, _ in pairs], fontsize=8)
    ax.set_ylabel('difference of final mAP')
    ax.set_title(title + '\n(dots: seeds; black: mean and 95% interval)', fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
