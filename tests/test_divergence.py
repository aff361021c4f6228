"""Divergence stop and the distillation tool's final line.

A run whose losses explode while staying finite stops with a message naming the scale and the
loss, keeps the last finished epoch's files and exits non-zero; the final line names which file
holds which epoch and its mAP, and never calls a collapsed student usable."""
import json
import os
import sys

import pytest

from conftest import REPO, tiny_config
from gluon_distill.engine.divergence import DivergenceStop, Diverged
from gluon_distill.engine.checkpoint import read_checkpoint
from gluon_distill.distill.run import deliverables
from gluon_distill.training import train_detector

sys.path.insert(0, str(REPO / 'tools'))


class _Loop:
    start_epoch = 0
    epoch = 0
    iteration = 0
    outputs = {}


def _feed(hook, values):
    for ssd, w in values:
        hook.loop.iteration += 1
        hook.loop.outputs = {'CrossEntropy': ssd * 0.7, 'SmoothL1': ssd * 0.3, 'loss': ssd,
                             'W0': w, 'W1': w / 10, 'finite': True}
        hook.after_step()


def _hook(**kwargs):
    hook = DivergenceStop(window=4, out_dir='/tmp/run', **kwargs)
    hook.loop = _Loop()
    hook.before_train()
    return hook


def test_healthy_runs_and_single_spikes_do_not_stop():
    hook = _hook()
    _feed(hook, [(8.0 - i * 0.05, 0.1) for i in range(40)])        # SSD loss falling, W small
    _feed(hook, [(90.0, 900.0)] * 8)                                 # two bad windows only
    _feed(hook, [(6.0, 0.2)] * 4)                                    # recovered: streak reset
    _feed(hook, [(90.0, 900.0)] * 8)
    assert hook.streak == 2


def test_exploding_ssd_loss_stops_naming_the_loss():
    hook = _hook()
    _feed(hook, [(5.0, 0.0)] * 12)                                   # reference: 5
    hook.loop.epoch = 1
    hook.after_epoch()                                               # epoch 1 saved
    hook.loop.epoch = 2
    with pytest.raises(Diverged, match=r'detection loss 60 is 12x'):
        _feed(hook, [(60.0, 0.0)] * 12)
    assert 'epoch 1' in str(hook.message(['x'])) and '/tmp/run/last.ckpt' in hook.message(['x'])


def test_exploding_critic_scores_stop_naming_the_scale():
    hook = _hook(adv_weight=1.0)
    with pytest.raises(Diverged, match='largest at scale 0: W0 = 2000 for 3 consecutive'):
        _feed(hook, [(5.0, 0.01)] * 12 + [(5.0, 2000.0)] * 12)
    # the same critic scores under a small adversarial weight do not pull: no stop
    hook = _hook(adv_weight=0.001)
    _feed(hook, [(5.0, 0.01)] * 12 + [(5.0, 2000.0)] * 12)


def test_a_run_exploding_from_its_first_iterations_stops_after_three_windows():
    """The reported run had |Loss_D| = 779 at iteration 2: no need to wait for the reference
    windows before judging."""
    hook = _hook()
    with pytest.raises(Diverged):
        _feed(hook, [(10.0, 800.0)] * 12)
    assert hook.loop.iteration == 12


def test_plain_critic_at_width_512_is_stopped_by_the_tool(synthetic_root, tmp_path, capsys):
    """The deliberately exploding configuration: the un-normalised clipped critic at the
    configs' width 512 (tiny networks, 64 px, the paper's clip/lr/weight). Its scores grow by
    orders of magnitude within 20 iterations; the tool stops, exits 2 with one line naming the
    scale and the bound, and the last finished epoch's checkpoint stays loadable."""
    import train_distill
    teacher = tmp_path / 'teacher'
    train_detector(tiny_config(synthetic_root, teacher))
    out = tmp_path / 'plain512'
    sets = {'model.width': 8, 'model.blocks': 1, 'model.pretrained_base': 'false',
            'train.optimizer': 'adam', 'train.lr': 0.001, 'data.train_split': 'train',
            'data.val_split': 'val', 'train.progress': 'false', 'train.log_interval': 2,
            'distill.gan.critic': 'plain', 'distill.gan.critic_width': 512}
    argv = ['--network', 'tiny', '--data-root', synthetic_root, '--teacher-params',
            str(teacher / 'best.params'), '--out', str(out), '--epochs', '6', '--batch-size',
            '8', '--data-shape', '64', '--num-workers', '0']
    for key, value in sets.items():
        argv += ['--set', '{}={}'.format(key, value)]
    assert train_distill.main(argv) == 2
    err = capsys.readouterr().err
    assert 'error: training diverged at epoch' in err
    assert 'critic scores adv_weight * sum|W|' in err and 'largest at scale 0: W0' in err
    assert 'distill.gan.critic=bn' in err and str(out / 'last.ckpt') in err
    assert not (out / 'summary.json').exists()
    _, _, meta = read_checkpoint(str(out / 'last.ckpt'))
    assert meta['epoch'] < 5 and 'are those of epoch {}'.format(meta['epoch']) in err
    assert (out / 'last.params').exists()


def _write_best(out, epoch, value):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, 'best.json'), 'w') as f:
        json.dump({'epoch': epoch, 'mAP': value}, f)


def test_final_line_names_each_file_epoch_and_map(tmp_path):
    _write_best(str(tmp_path), 41, 0.5956)
    summary = {'epochs': 60, 'best_mAP': 0.5956, 'last_mAP': 0.4469}
    line = deliverables(str(tmp_path), summary, teacher_map=0.68)
    assert 'best.params = epoch 41 (validation mAP 0.5956' in line
    assert 'last.params = student.params = epoch 59 (validation mAP 0.4469' in line
    assert summary['files']['best.params'] == {'epoch': 41, 'mAP': 0.5956}
    assert summary['collapsed'] is None


def test_collapsed_run_is_never_called_usable(tmp_path):
    _write_best(str(tmp_path / 'a'), 3, 0.4210)
    summary = {'epochs': 30, 'best_mAP': 0.4210, 'last_mAP': 0.0021}
    line = deliverables(str(tmp_path / 'a'), summary)
    assert line.startswith('validation mAP COLLAPSED from 0.4210 (epoch 3) to 0.0021')
    assert 'not a usable detector' in line and 'standalone' not in line
    # mAP 0 at every epoch from a teacher-initialised start (the reported ResNet50 run)
    _write_best(str(tmp_path / 'b'), 0, 0.0)
    summary = {'epochs': 2, 'best_mAP': 0.0, 'last_mAP': 0.0}
    line = deliverables(str(tmp_path / 'b'), summary, teacher_map=0.6814)
    assert "below 0.1 x the teacher's 0.6814" in line and 'not a usable detector' in line
    assert summary['collapsed']


def test_plain_ssd_training_is_guarded_too(synthetic_root, tmp_path, monkeypatch):
    """train_ssd.py's runs get the SSD-loss rule: a loss that explodes while staying finite
    stops the run (here the step's reported losses are inflated after a few iterations)."""
    import gluon_distill.training as training
    real_run_step = training.DetectionStep.run_step
    calls = []

    def exploding(self, batch):
        out = real_run_step(self, batch)
        calls.append(1)
        if len(calls) > 12:
            out['CrossEntropy'] *= 1e6
            out['loss'] = out['CrossEntropy'] + out['SmoothL1']
        return out
    monkeypatch.setattr(training.DetectionStep, 'run_step', exploding)
    cfg = tiny_config(synthetic_root, tmp_path / 'run', **{'train.epochs': 8,
                                                             'train.log_interval': 2})
    with pytest.raises(Diverged, match='detection loss'):
        train_detector(cfg)
    assert len(calls) < 8 * 6  # stopped well before the end (6 iterations per epoch)
    cfg = tiny_config(synthetic_root, tmp_path / 'off', **{'train.epochs': 3,
                                                             'train.divergence_stop': False})
    assert train_detector(cfg)['epochs'] == 3  # the switch turns it off
