"""The detector-family seam: a family is one object; the loop, hooks, evaluator and distillers
run any family without knowing it."""
import json

import mxnet as mx
import pytest
from mxnet.gluon import nn

from conftest import tiny_config
from gluon_distill import config as config_module
from gluon_distill.config import ConfigError, config_from
from gluon_distill.distill.run import train_distilled
from gluon_distill.families import (FAMILIES, DeviceBatch, family_of_spec, get_family,
                                    as_device_batch)
from gluon_distill.families.ssd import SSDFamily, SSDFeatureForward, SSDLoss
from gluon_distill.training import train_detector
from gluon_distill.evaluate import evaluate_params


def test_config_choices_are_the_families():
    assert set(config_module.CHOICES['model.family']) == set(FAMILIES)
    with pytest.raises(ConfigError, match=r"model.family.*ssd"):
        config_from({'model.family': 'yolo'})
    with pytest.raises(ValueError, match=r"model.family: expected one of ssd, faster_rcnn, yolo3, got 'yolo'"):
        get_family('yolo')


def test_saved_kinds_map_to_their_family():
    assert isinstance(family_of_spec({'kind': 'ssd'}), SSDFamily)
    assert isinstance(family_of_spec({'kind': 'distilled_ssd'}), SSDFamily)
    with pytest.raises(ValueError, match="kind 'faster_rcnn_v9'"):
        family_of_spec({'kind': 'faster_rcnn_v9'})


def test_plain_tuples_are_device_batches_without_inputs():
    b = as_device_batch(('images', 'cls', 'box'))
    assert b == DeviceBatch('images', (), ('cls', 'box'))
    assert as_device_batch(b) is b


class _Scaled(nn.HybridBlock):
    """Multiplies each image by a per-image factor given as a forward input, then runs
    ``inner``: a family whose training forward takes more than the images."""

    def __init__(self, inner, **kwargs):
        super(_Scaled, self).__init__(**kwargs)
        self.inner = inner
        self.register_child(inner, 'inner')
        self.num_head_outputs = getattr(inner, 'num_head_outputs', 0)
        self.calls = 0

    def hybrid_forward(self, F, x, factor):
        return self.inner(F.broadcast_mul(x, factor.reshape((-1, 1, 1, 1))))

    def forward(self, *args):
        self.calls += 1
        return super(_Scaled, self).forward(*args)


class _RenamedLoss:
    """The SSD loss under other names (a family's loss names are its own)."""

    def __init__(self):
        self.ssd = SSDLoss()

    def __call__(self, outputs, targets):
        totals, parts = self.ssd(outputs, targets)
        return totals, {'Focal': parts['CrossEntropy'], 'Box': parts['SmoothL1']}


class _ToyFamily(SSDFamily):
    """SSD with an extra forward input and its own loss names: what a second family looks
    like to the run builder and the steps."""
    name = 'toy'
    loss_names = ('Focal', 'Box')

    def __init__(self):
        self.forwards = []

    def train_loader(self, dataset, net, cfg, ctx):
        loader = super().train_loader(dataset, net, cfg, ctx)
        ssd_prepare = loader.prepare

        def prepare(batch):
            images, cls_targets, box_targets = ssd_prepare(batch)
            factors = [mx.nd.ones((x.shape[0],), ctx=x.context) for x in images]
            return DeviceBatch(images, (factors,), (cls_targets, box_targets))
        loader.prepare = prepare
        return loader

    def training_forward(self, net):
        block = _Scaled(net)
        self.forwards.append(block)
        return block

    def feature_forward(self, net, adapters=None):
        block = _Scaled(SSDFeatureForward(net, adapters))
        self.forwards.append(block)
        return block

    def loss(self, multibox=None):
        return _RenamedLoss()


@pytest.fixture
def toy(monkeypatch):
    family = _ToyFamily()
    monkeypatch.setitem(FAMILIES, 'toy', family)
    monkeypatch.setitem(config_module.CHOICES, 'model.family', ('ssd', 'toy'))
    return family


def _train_records(out):
    lines = [json.loads(line) for line in open(out / 'metrics.jsonl')]
    return [r for r in lines if r['type'] == 'train']


def test_a_new_family_trains_and_distils_through_the_same_loop(synthetic_root, tmp_path, toy):
    """No edit of the loop, hooks, evaluator or distillers: the toy family's forward (with
    its extra input) and its loss names reach the steps and the logs, for a plain run and a
    GAN + FGFI distillation on two devices."""
    teacher_out = tmp_path / 'teacher'
    summary = train_detector(tiny_config(synthetic_root, teacher_out, **{
        'model.family': 'toy', 'model.width': 16}))
    assert toy.forwards[0].calls >= 6   # every training iteration went through it
    records = _train_records(teacher_out)
    assert records and all('Focal' in r and 'Box' in r and 'CrossEntropy' not in r
                           for r in records)
    assert all(abs(r['loss'] - r['Focal'] - r['Box']) < 1e-3 for r in records)
    # the saved model evaluates like any other (its model.json says ssd)
    result, _ = evaluate_params(str(teacher_out / 'last.params'), progress=False)
    assert result['mAP'] == pytest.approx(summary['last_mAP'], abs=1e-6)

    student_out = tmp_path / 'student'
    train_distilled(tiny_config(synthetic_root, student_out, **{
        'model.family': 'toy', 'train.ctx': 'cpu:0,1',
        'teacher.params': str(teacher_out / 'last.params'), 'distill.method': 'gan+fgfi',
        'distill.fgfi.warmup_iters': 0, 'distill.gan.critic_width': 16}))
    distill_forward = toy.forwards[-1]
    assert isinstance(distill_forward.inner, SSDFeatureForward)
    assert distill_forward.calls >= 2 * 6   # two devices, every iteration
    records = _train_records(student_out)
    assert all('Focal' in r and 'Loss_fgfi' in r and 'Loss_D' in r for r in records)
