"""Plots of training runs from their ``metrics.jsonl`` files (matplotlib, PNG)."""
import json
import math
import os


def read_metrics(path):
    """``(train_records, val_records)`` of one run's metrics.jsonl."""
    train, val = [], []
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            record = json.loads(line)
            (train if record.get('type') == 'train' else val).append(record)
    return train, val


def _series(records, key):
    points = [(r['iteration'], r[key]) for r in records
              if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    return [p[0] for p in points], [p[1] for p in points]


def plot_runs(runs, out_png, title='gluon-distill'):
    """One figure: SSD losses of every run, the critics' losses and per-scale Wasserstein
    estimates of the distillation runs, and validation mAP per epoch of every run.

    ``runs``: ordered mapping label -> metrics.jsonl path. Returns ``out_png``.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    data = {label: read_metrics(path) for label, path in runs.items() if os.path.exists(path)}
    gan = {label: tv for label, tv in data.items()
           if any('Loss_D' in r for r in tv[0])}
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    ax = axes[0][0]
    for label, (train, _) in data.items():
        ax.plot(*_series(train, 'CrossEntropy'), label='{} CrossEntropy'.format(label))
        ax.plot(*_series(train, 'SmoothL1'), '--', label='{} SmoothL1'.format(label))
    ax.set(title='SSD losses', xlabel='iteration')
    ax.legend(fontsize=7)
    ax = axes[0][1]
    for label, (train, _) in gan.items():
        for key in ('Loss_D', 'Loss_D_real', 'Loss_D_fake', 'Loss_G_adv'):
            ax.plot(*_series(train, key), label='{} {}'.format(label, key))
    ax.set(title='critic and adversarial losses', xlabel='iteration')
    if gan:
        ax.legend(fontsize=7)
    ax = axes[1][0]
    for label, (train, _) in gan.items():
        scales = sorted({k for r in train for k in r if k.startswith('W') and k[1:].isdigit()},
                        key=lambda k: int(k[1:]))
        for key in scales:
            ax.plot(*_series(train, key), label='{} {}'.format(label, key))
    ax.set(title='Wasserstein estimate per scale (mean D(student) - mean D(teacher))',
           xlabel='iteration')
    if gan:
        ax.legend(fontsize=7)
    ax = axes[1][1]
    for label, (_, val) in data.items():
        points = [(r['epoch'], r['mAP']) for r in val if r.get('mAP') is not None]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker='o', label=label)
    ax.set(title='validation mAP (VOC07, IoU 0.5)', xlabel='epoch', ylim=(0, 1))
    ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
