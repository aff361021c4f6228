"""Several devices: one set of BatchNorm statistics, so the logged mAP is the saved file's."""
import json
import subprocess
import sys

import numpy as np

import gluon_distill  # noqa: F401
import mxnet as mx
from mxnet import autograd

from conftest import REPO, tiny_config
from gluon_distill.engine.bn_sync import average_device_copies
from gluon_distill.evaluate import evaluate_params
from gluon_distill.models.ssd import build_ssd, initialize, resolve_arch
from gluon_distill.training import train_detector

TWO = [mx.cpu(0), mx.cpu(1)]


def _running_stats(net):
    return {name: p for name, p in net.collect_params().items()
            if name.endswith(('running_mean', 'running_var'))}


def test_average_device_copies_reconciles_batchnorm_statistics():
    mx.random.seed(3)
    net = build_ssd(resolve_arch('tiny', 64, width=8, blocks=1), ['a', 'b'])
    initialize(net, TWO)
    rng = np.random.RandomState(0)
    losses = []
    with autograd.record():  # training mode: each device updates its own running statistics
        for i, ctx in enumerate(TWO):
            x = mx.nd.array(rng.normal(i * 2.0, 1.0 + i, (2, 3, 64, 64)), ctx=ctx)
            cls_preds, box_preds, _ = net(x)
            losses.append(cls_preds.sum() + box_preds.sum())
    autograd.backward(losses)  # MXNet 1.9 on CPU moves the running statistics here
    stats = _running_stats(net)
    assert stats
    before = {n: [p.data(c).asnumpy() for c in TWO] for n, p in stats.items()}
    assert any(np.abs(a - b).max() > 1e-3 for a, b in before.values()), 'copies never differed'
    trainable_before = {n: p.data(TWO[1]).asnumpy() for n, p in net.collect_params().items()
                        if p.grad_req != 'null'}

    assert average_device_copies(net) >= len(stats)

    for name, param in stats.items():
        a, b = (param.data(c).asnumpy() for c in TWO)
        np.testing.assert_array_equal(a, b, err_msg=name)
        np.testing.assert_allclose(a, (before[name][0] + before[name][1]) / 2, rtol=1e-6,
                                   err_msg=name)
        # what save_parameters writes (the mean of the copies) is what every device now holds
        np.testing.assert_allclose(param._reduce().asnumpy(), a, rtol=1e-6)
    for name, value in trainable_before.items():
        np.testing.assert_array_equal(net.collect_params()[name].data(TWO[1]).asnumpy(), value)


def test_logged_map_on_two_devices_equals_eval_of_saved_files(synthetic_root, tmp_path):
    out = tmp_path / 'run'
    cfg = tiny_config(synthetic_root, out, **{'train.ctx': 'cpu:0,1', 'train.epochs': 4,
                                               'train.lr': 0.005})
    train_detector(cfg)
    vals = [json.loads(line) for line in open(out / 'metrics.jsonl')]
    vals = [r for r in vals if r['type'] == 'val']
    best = json.load(open(out / 'best.json'))
    assert vals[-1]['mAP'] > 0, 'nothing to compare: the run detected nothing'
    for name, logged in (('last.params', vals[-1]['mAP']), ('best.params', best['mAP'])):
        result, _ = evaluate_params(str(out / name), ctx='cpu', progress=False)
        assert round(result['mAP'], 4) == round(logged, 4), (name, result['mAP'], logged)
        assert abs(result['mAP'] - logged) < 1e-6, (name, result['mAP'], logged)


def test_two_device_run_resumed_gives_the_same_numbers(synthetic_root, tmp_path):
    """A run stopped after epoch 1 and resumed logs what the uninterrupted run logs."""
    sets = {'train.ctx': 'cpu:0,1', 'train.epochs': 4, 'train.lr': 0.005}
    train_detector(tiny_config(synthetic_root, tmp_path / 'straight', **sets))
    train_detector(tiny_config(synthetic_root, tmp_path / 'cut', **dict(sets, **{
        'train.epochs': 2})))
    train_detector(tiny_config(synthetic_root, tmp_path / 'cut', **dict(sets, **{
        'train.resume': True})))

    def val_maps(run):
        records = [json.loads(line) for line in open(tmp_path / run / 'metrics.jsonl')]
        return {r['epoch']: r['mAP'] for r in records if r['type'] == 'val'}

    straight, resumed = val_maps('straight'), val_maps('cut')
    assert sorted(resumed) == [0, 1, 2, 3]
    for epoch in (2, 3):
        assert round(resumed[epoch], 4) == round(straight[epoch], 4), (epoch, resumed, straight)
    a = mx.nd.load(str(tmp_path / 'cut' / 'last.params'))
    b = mx.nd.load(str(tmp_path / 'straight' / 'last.params'))
    stats = [k for k in a if k.endswith(('running_mean', 'running_var'))]
    assert stats
    # float summation order of MXNet's CPU kernels may vary between runs: far below a seed's
    assert max(np.abs(a[k].asnumpy() - b[k].asnumpy()).max() for k in a) < 2e-3


def _distill_cmd(root, teacher, out):
    return [sys.executable, str(REPO / 'tools' / 'train_distill.py'), '--data-root', root,
            '--train-split', 'train', '--val-split', 'val', '--network', 'tiny',
            '--data-shape', '64', '--no-pretrained-base', '--batch-size', '8', '--epochs', '2',
            '--num-workers', '2', '--ctx', 'cpu:0,1', '--out', str(out),
            '--teacher-params', str(teacher), '--set', 'model.width=8',
            '--set', 'distill.critic_width=16', '--set', 'train.optimizer=adam',
            '--set', 'train.progress=false']


def test_seeded_distillation_on_two_devices_reproduces_its_weights(synthetic_root, tmp_path):
    """Two identical seeded GAN distillations (separate processes, two CPU contexts, two
    loader workers) save the same weights and log the same validation mAP."""
    teacher = tmp_path / 'teacher'
    train_detector(tiny_config(synthetic_root, teacher, **{'model.width': 16}))
    runs = [tmp_path / 'a', tmp_path / 'b']
    for out in runs:
        done = subprocess.run(_distill_cmd(synthetic_root, teacher / 'best.params', out),
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    for name in ('last.params', 'best.params'):
        a, b = (mx.nd.load(str(out / name)) for out in runs)
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key].asnumpy(), b[key].asnumpy(),
                                          err_msg='{} {}'.format(name, key))

    def val_maps(out):
        records = [json.loads(line) for line in open(out / 'metrics.jsonl')]
        return [r['mAP'] for r in records if r['type'] == 'val']
    assert val_maps(runs[0]) == val_maps(runs[1])
