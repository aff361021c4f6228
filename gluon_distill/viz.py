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
