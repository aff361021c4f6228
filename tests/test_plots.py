"""Plots of runs (issue 8, item 13): OUT/curves.png panels and tools/plot.py overlays."""
import json
import subprocess
import sys

from conftest import REPO

PY = sys.executable


def write_metrics(folder, distill=False, epochs=3, iters=4, broken_tail=False):
    """A metrics.jsonl as a plain (or GAN distillation) run writes it."""
    folder.mkdir(parents=True)
    lines = []
    it = 0
    for epoch in range(epochs):
        for _ in range(iters):
            it += 1
            record = {'type': 'train', 'epoch': epoch, 'iteration': it,
                      'CrossEntropy': 5.0 / it, 'SmoothL1': 2.0 / it, 'loss': 7.0 / it,
                      'lr': 0.001 * (0.1 if epoch == 2 else 1.0), 'samples_per_sec': 50.0,
                      'data_wait': 0.1}
            if distill:
                record.update({'Loss_D': -0.1 * it, 'Loss_D_real': 0.2, 'Loss_D_fake': 0.3,
                               'Loss_G_adv': 0.01 * it, 'W0': 0.1 * it, 'W1': 0.05 * it,
                               'lr_critics': 0.0005})
            lines.append(json.dumps(record))
        lines.append(json.dumps({'type': 'val', 'epoch': epoch, 'iteration': it,
                                 'mAP': 0.1 * (epoch + 1), 'AP': {}, 'eval_seconds': 0.1}))
    text = '\n'.join(lines) + '\n'
    if broken_tail:
        text += '{"type": "train", "epo'  # what a killed run can leave
    (folder / 'metrics.jsonl').write_text(text)
    return folder


def test_panels_follow_what_the_runs_logged(tmp_path):
    from gluon_distill.viz import panels_of, read_metrics
    plain = write_metrics(tmp_path / 'plain')
    gan = write_metrics(tmp_path / 'gan', distill=True)
    assert panels_of({'p': read_metrics(str(plain / 'metrics.jsonl'))}) == ['losses', 'lr', 'mAP']
    assert panels_of({'p': read_metrics(str(plain / 'metrics.jsonl')),
                      'g': read_metrics(str(gan / 'metrics.jsonl'))}) == \
        ['losses', 'lr', 'mAP', 'critics', 'W']


def test_run_folder_plot_reads_a_torn_last_line(tmp_path):
    from gluon_distill.viz import plot_run_folder
    run = write_metrics(tmp_path / 'run', broken_tail=True)
    path = plot_run_folder(str(run))
    assert path == str(run / 'curves.png')
    assert (run / 'curves.png').stat().st_size > 10000


def test_plot_tool_overlays_runs(tmp_path):
    a = write_metrics(tmp_path / 'teacher')
    b = write_metrics(tmp_path / 'distilled', distill=True)
    out = tmp_path / 'compare.png'
    res = subprocess.run([PY, str(REPO / 'tools' / 'plot.py'), str(a), str(b / 'metrics.jsonl'),
                          '-o', str(out)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == str(out)
    import matplotlib.image as mpimg
    image = mpimg.imread(str(out))
    assert image.shape[0] > 1000  # three rows of panels: losses, lr, mAP, critics, W
    res = subprocess.run([PY, str(REPO / 'tools' / 'plot.py'), str(a)], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and (a / 'curves.png').exists()
    res = subprocess.run([PY, str(REPO / 'tools' / 'plot.py'), str(tmp_path / 'nothing')],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.startswith('error: no metrics.jsonl at ')


def test_loss_panel_shows_any_familys_loss_parts_and_the_coco_metric(tmp_path, monkeypatch):
    """A Faster R-CNN run's four loss parts are drawn in the detection-loss panel (not only
    SSD's two), distillation losses in their own panel, and a COCO run's validation panel
    says COCO AP."""
    import matplotlib.axes
    from gluon_distill.viz import plot_runs
    folder = tmp_path / 'rcnn'
    folder.mkdir()
    parts = ('RPN_Conf', 'RPN_SmoothL1', 'RCNN_CrossEntropy', 'RCNN_SmoothL1')
    lines = [json.dumps(dict({p: 1.0 / it for p in parts}, type='train', epoch=0, iteration=it,
                             loss=4.0 / it, lr=0.001, samples_per_sec=9.0, data_wait=0.1,
                             Loss_fgfi=0.5))
             for it in range(1, 5)]
    lines.append(json.dumps({'type': 'val', 'epoch': 0, 'iteration': 4, 'mAP': 0.2, 'AP': {},
                             'metric': 'coco'}))
    (folder / 'metrics.jsonl').write_text('\n'.join(lines) + '\n')
    drawn, titles = {}, []
    plot, set_ = matplotlib.axes.Axes.plot, matplotlib.axes.Axes.set

    def spy_plot(ax, *args, **kwargs):
        drawn.setdefault(id(ax), []).append(kwargs.get('label'))
        return plot(ax, *args, **kwargs)

    def spy_set(ax, **kwargs):
        titles.append((kwargs.get('title'), id(ax)))
        return set_(ax, **kwargs)
    monkeypatch.setattr(matplotlib.axes.Axes, 'plot', spy_plot)
    monkeypatch.setattr(matplotlib.axes.Axes, 'set', spy_set)
    plot_runs({'r': str(folder / 'metrics.jsonl')}, str(tmp_path / 'c.png'))
    by_title = {t: drawn.get(ax, []) for t, ax in titles}
    assert by_title['detection losses'] == list(parts)
    assert by_title['distillation and critic losses'] == ['Loss_fgfi']
    assert 'validation COCO AP@[.5:.95]' in by_title
