"""The fast data pipeline against GluonCV's, the device-side multibox loss against GluonCV's,
and one host synchronisation per training step."""
import random

import numpy as np
import pytest

import gluon_distill  # noqa: F401
import mxnet as mx
from gluoncv.data.transforms import bbox as gcv_bbox
from gluoncv.data.transforms.presets.ssd import SSDDefaultTrainTransform
from gluoncv.loss import SSDMultiBoxLoss
from gluoncv.model_zoo.ssd.target import SSDTargetGenerator

from conftest import tiny_config
from gluon_distill.data.augment import SSDTrainAugment, _iou
from gluon_distill.data.ssd_targets import SSDTargetEncoder
from gluon_distill.data.datasets import build_datasets
from gluon_distill.data.loader import NumpyImages, TrainLoader
from gluon_distill.engine.loss import MultiBoxLoss

SIZE = 64          # output side of the augmentation tests (small: fast, same geometry)
SAMPLES = 300
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@pytest.fixture(scope='module')
def data(synthetic_root, tmp_path_factory):
    cfg = tiny_config(synthetic_root, tmp_path_factory.mktemp('cfg'))
    return cfg, build_datasets(cfg.data, progress=False)


def _seed(s):
    np.random.seed(s)
    random.seed(s)


class _FlipRecorder:
    """Records every ``flip_x`` that GluonCV's box flip receives (both pipelines call it:
    ours only when flipping, GluonCV's preset on every image with the drawn flag)."""

    def __init__(self, monkeypatch):
        self.calls = []
        original = gcv_bbox.flip

        def flip(bbox, size, flip_x=False, flip_y=False):
            self.calls.append(bool(flip_x))
            return original(bbox, size, flip_x=flip_x, flip_y=flip_y)
        monkeypatch.setattr(gcv_bbox, 'flip', flip)


def _ours(ds, n):
    """Per sample: (image uint8, label, input label) of our augmentation."""
    source = NumpyImages(ds)
    aug = SSDTrainAugment(SIZE, MEAN)
    out = []
    for s in range(n):
        img, label = source[s % len(source)]
        _seed(1000 + s)
        o, l = aug(img, label)
        out.append((o, l, label))
    return out


def _statistics(samples, flips, pixels):
    """Per-sample arrays: kept fraction of boxes, box scale, flip, pixel mean (0-255)."""
    kept = np.array([len(l) / float(len(inp)) for _, l, inp in samples])
    scale = np.array([np.sqrt((l[:, 2] - l[:, 0]) * (l[:, 3] - l[:, 1])).mean() / SIZE
                      for _, l, _ in samples if len(l)])
    return {'boxes kept per image': kept, 'box scale': scale,
            'flip rate': np.asarray(flips, np.float64), 'pixel mean': np.asarray(pixels)}


def test_every_produced_box_is_valid(data):
    """Inside the output image, positive area, class preserved, over many seeded samples."""
    _, ds = data
    total = 0
    for img, label, inp in _ours(ds.train, SAMPLES):
        assert img.shape == (SIZE, SIZE, 3) and img.dtype == np.uint8
        assert len(label) >= 1                      # the crop keeps at least one box centre
        assert np.all(label[:, :2] >= 0) and np.all(label[:, 2:4] <= SIZE)
        assert np.all(label[:, 2] > label[:, 0]) and np.all(label[:, 3] > label[:, 1])
        assert set(label[:, 4].tolist()) <= set(inp[:, 4].tolist())
        total += len(label)
    assert total >= SAMPLES


def test_statistics_agree_with_gluoncv(data, monkeypatch):
    """Boxes kept, box scale, flip rate and pixel mean of ours and of GluonCV's
    SSDDefaultTrainTransform (same inputs, independent seeded draws) agree within 4 standard
    errors of the difference (a two-sample z-test at ~6e-5 false alarm per statistic), plus
    for the pixel mean 1.5 grey levels: we saturate distorted pixels to [0, 255], GluonCV keeps
    the out-of-range floats (brightness +-32 and contrast up to 1.5x push some past 255)."""
    _, ds = data
    rec = _FlipRecorder(monkeypatch)
    ours = _ours(ds.train, SAMPLES)
    # ours calls flip only when it flips: the count is the number of flipped samples
    assert all(rec.calls)
    our_flips = [True] * len(rec.calls) + [False] * (SAMPLES - len(rec.calls))
    our_pixels = [o.astype(np.float64).mean() for o, _, _ in ours]
    rec.calls.clear()

    gcv = SSDDefaultTrainTransform(SIZE, SIZE, mean=MEAN, std=STD)
    theirs, their_pixels = [], []
    for s in range(SAMPLES):
        img, label = ds.train[s % len(ds.train)]
        _seed(1000 + s)
        o, l = gcv(img, label)
        theirs.append((None, l, label))
        their_pixels.append(float(((o.transpose((1, 2, 0)) * mx.nd.array(STD) +
                                    mx.nd.array(MEAN)) * 255).mean().asscalar()))
    assert len(rec.calls) == SAMPLES
    a = _statistics(ours, our_flips, our_pixels)
    b = _statistics(theirs, rec.calls, their_pixels)
    for name in a:
        x, y = a[name], b[name]
        se = np.sqrt(x.var(ddof=1) / len(x) + y.var(ddof=1) / len(y))
        slack = 1.5 if name == 'pixel mean' else 0.0
        assert abs(x.mean() - y.mean()) <= 4 * se + slack, (name, x.mean(), y.mean(), se)


def test_target_encoder_equals_gluoncv_except_exact_ties():
    rng = np.random.RandomState(0)
    size = 128
    # anchors: a grid of centres with a few sizes (centre format, pixels)
    cx, cy = np.meshgrid(np.arange(8, size, 16), np.arange(8, size, 16))
    anchors = np.concatenate([np.stack([cx.ravel(), cy.ravel(), np.full(cx.size, s),
                                        np.full(cx.size, s * r)], 1)
                              for s in (20, 40, 80) for r in (0.5, 1, 2)]).astype(np.float32)
    encoder = SSDTargetEncoder(anchors)
    generator = SSDTargetGenerator(iou_thresh=0.5, stds=(0.1, 0.1, 0.2, 0.2),
                                   negative_mining_ratio=-1)
    differing = 0
    for trial in range(30):
        m = rng.randint(1, 6)
        xy = rng.uniform(0, size * 0.8, (m, 2))
        wh = rng.uniform(8, size * 0.6, (m, 2))
        boxes = np.concatenate([xy, np.minimum(xy + wh, size)], 1).astype(np.float32)
        ids = rng.randint(0, 5, m).astype(np.float32)
        cls, box = encoder(boxes, ids)
        g_cls, g_box, _ = generator(mx.nd.array(anchors[None]), None,
                                    mx.nd.array(boxes[None]), mx.nd.array(ids[None, :, None]))
        g_cls, g_box = g_cls[0].asnumpy(), g_box[0].asnumpy()
        diff = np.nonzero(cls != g_cls)[0]
        if len(diff):
            iou = _iou(encoder.corner, boxes.astype(np.float64))
            col_max = iou.max(axis=0)
            for i in diff:
                # a differing anchor ties (to float32 rounding) with some box's best anchor
                assert np.any(np.abs(iou[i] - col_max) <= 1e-6 * np.maximum(col_max, 1)), i
            differing += len(diff)
        same = (cls == g_cls) & (cls > 0)
        np.testing.assert_allclose(box[same], g_box[same], rtol=1e-4, atol=1e-4)
    assert differing <= 0.01 * 30 * len(anchors)


def test_fixed_seed_reproduces_the_same_batch(data):
    cfg, ds = data
    anchors = np.array([[[32, 32, 20, 20], [16, 16, 30, 15], [48, 40, 40, 40]]], np.float32)

    def first(seed, epoch=0):
        loader = TrainLoader(ds.train, SIZE, mx.nd.array(anchors), 8, MEAN, STD, seed=seed,
                             pipeline='fast')
        return [x.asnumpy() for x in next(iter(loader.epoch(epoch)))]

    a, b, c = first(7), first(7), first(7, epoch=1)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


# ----------------------------------------------------------------------------- the loss

def _random_loss_inputs(seed, batch=4, anchors=300, classes=6):
    rng = np.random.RandomState(seed)
    cls_pred = mx.nd.array(rng.randn(batch, anchors, classes))
    box_pred = mx.nd.array(rng.randn(batch, anchors, 4))
    pos = rng.rand(batch, anchors) < 0.05
    cls_target = mx.nd.array(pos * rng.randint(1, classes, (batch, anchors)))
    box_target = mx.nd.array(rng.randn(batch, anchors, 4))
    return cls_pred, box_pred, cls_target, box_target


@pytest.mark.parametrize('ctx_list', [[mx.cpu(0)], [mx.cpu(0), mx.cpu(1)]],
                         ids=['1 device', '2 devices'])
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_multibox_loss_equals_gluoncv(ctx_list, seed):
    inputs = _random_loss_inputs(seed)
    split = [mx.gluon.utils.split_and_load(x, ctx_list) for x in inputs]
    theirs = SSDMultiBoxLoss()(*split)
    ours = MultiBoxLoss()(*split)
    for group_t, group_o in zip(theirs, ours):
        assert len(group_t) == len(group_o) == len(ctx_list)
        for t, o in zip(group_t, group_o):
            assert o.context == t.context
            np.testing.assert_allclose(o.asnumpy(), t.asnumpy(), rtol=1e-6, atol=1e-7)


def test_multibox_loss_without_positives_is_zero():
    cls_pred, box_pred, _, box_target = _random_loss_inputs(3)
    zeros = mx.nd.zeros(cls_pred.shape[:2])
    for a, b in zip(SSDMultiBoxLoss()(cls_pred, box_pred, zeros, box_target),
                    MultiBoxLoss()(cls_pred, box_pred, zeros, box_target)):
        # GluonCV returns one zero per device, we one zero per image
        assert not a[0].asnumpy().any() and not b[0].asnumpy().any()
        assert b[0].shape == (cls_pred.shape[0],)


# ------------------------------------------------------------- host synchronisations

class _SyncCounter:
    """Counts NDArray.asnumpy (asscalar goes through it) and wait_to_read, and mx.nd.waitall."""

    def __init__(self, monkeypatch):
        self.count = 0
        for owner, name in ((mx.nd.NDArray, 'asnumpy'), (mx.nd.NDArray, 'wait_to_read'),
                            (mx.nd, 'waitall')):
            original = getattr(owner, name)
            monkeypatch.setattr(owner, name, self._wrap(original))

    def _wrap(self, original):
        def wrapper(*args, **kwargs):
            self.count += 1
            return original(*args, **kwargs)
        return wrapper


def _distill_setup(data, loss=None):
    from gluon_distill.models.teacher import Teacher, plan_student
    from gluon_distill.distill.gan import GANDistiller
    from gluon_distill.distill.step import DistillStep
    from gluon_distill.families.ssd import SSDLoss
    from gluon_distill.engine.steps import make_trainer
    from gluon_distill.models.ssd import anchors_of, build_ssd, initialize, resolve_arch
    cfg, ds = data
    ctx = [mx.cpu()]
    mx.random.seed(3)
    arch = resolve_arch('tiny', SIZE, width=16)
    t_net = build_ssd(arch, ds.classes)
    initialize(t_net, ctx)
    anchors_of(t_net, SIZE)
    teacher = Teacher(t_net, arch, list(ds.classes), MEAN, STD, 'random')
    plan = plan_student(teacher, cfg.model, ds.classes, ctx)
    anchors = anchors_of(plan.net, SIZE)
    trainer = make_trainer(plan.net.collect_params(), 'adam', lr=1e-3, wd=0.0, kvstore=None)
    distiller = GANDistiller(plan.pairs, plan.sizes, ctx, width=16,
                             channels=[plan.teacher_channels[t] for _, t in plan.pairs])
    loader = TrainLoader(ds.train, SIZE, anchors, 8, MEAN, STD, seed=1, pipeline='fast')
    step = DistillStep(plan.net, t_net.features, ctx, trainer, distiller, loss=SSDLoss(loss),
                       prepare=loader.prepare)
    step.hybridize(static_alloc=True, static_shape=True)
    return step, plan, loader


def test_one_host_synchronisation_per_step(data, monkeypatch):
    from gluon_distill.engine.steps import DetectionStep, make_trainer
    from gluon_distill.families.ssd import SSDLoss
    step, plan, loader = _distill_setup(data)
    batches = list(loader.epoch(0))[:3]
    step.run_step(batches[0])
    step.run_step(batches[1])          # the second carries the pending Loss_G_adv too
    mx.nd.waitall()
    counter = _SyncCounter(monkeypatch)
    values = step.run_step(batches[2])
    assert counter.count == 1, counter.count
    assert 'Loss_G_adv' in values and values['finite']

    plain = DetectionStep(plan.net, [mx.cpu()],
                          make_trainer(plan.net.collect_params(), 'adam', lr=1e-3, wd=0.0,
                                       kvstore=None), SSDLoss(), prepare=loader.prepare)
    plain.run_step(batches[0])
    mx.nd.waitall()
    counter.count = 0
    plain.run_step(batches[1])
    assert counter.count == 1, counter.count


def test_gluoncv_loss_adds_a_host_synchronisation(data, monkeypatch):
    """The before-state: GluonCV's SSDMultiBoxLoss reads the positive count back per device."""
    step, _, loader = _distill_setup(data, loss=SSDMultiBoxLoss())
    batches = list(loader.epoch(0))[:2]
    step.run_step(batches[0])
    mx.nd.waitall()
    counter = _SyncCounter(monkeypatch)
    step.run_step(batches[1])
    assert counter.count == 2, counter.count
