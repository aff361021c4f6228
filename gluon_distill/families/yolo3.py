"""YOLOv3 (GluonCV's ``YOLOV3``): the third detector family, a one-stage detector with three
scales.

Training follows GluonCV's ``scripts/detection/yolo/train_yolo3.py``: multi-scale training
(a square size drawn from 320..608 every 10 batches, ``model.random_shapes`` /
``model.random_shape_interval``), its augmentation, its prefetched targets (made in the data
workers: :mod:`gluon_distill.data.yolo_targets`, equal to GluonCV's generator), its loss
(``YOLOV3TargetMerger`` + ``YOLOV3Loss``), mixup, label smoothing and no-wd as options.
Validation: the square ``data_shape`` input, GluonCV's NMS, the same evaluators as SSD (boxes
back in the original pixels), through the SSD family's prediction path (a YOLOv3 answers
``ids, scores, boxes`` as an SSD does).

Distillation pairs the three backbone maps (stride 8, 16, 32) of student and teacher. The
student feeds the teacher's head (transitions, detection blocks, output layers; initialised
from the teacher's with ``distill.init_head_from_teacher``) through per-scale 1x1 adapters
where the channels differ (MobileNet 0.25: 64/128/256 against Darknet53's 256/512/1024;
MobileNet 1.0 has Darknet53's channels and needs none); the adapters fold into the detection
blocks' first 1x1 convolutions (``distill.fold_adapters``, ``tools/export.py``).
"""

import numpy as np

import mxnet as mx
from mxnet import gluon
from mxnet.gluon import nn
from gluoncv.data.batchify import Pad, Stack, Tuple

from ..data.loader import (DataLoader, NumpyImages, StackNormalized, StackUInt8, sample_seed,
                           train_batch_sampler)
from ..data.voc import VOC_CLASSES
from ..data.yolo_targets import MixupSource, YOLO3TrainTransform
from ..engine.distributed import world
from ..models.teacher import StudentPlan, Teacher, check_teacher, zoo_teacher_file
from ..models.io import load_start_params, model_spec
from ..models.ssd import ModelError
from ..models.yolo3 import (RANDOM_SHAPES, YOLO3Loss, YOLOTrainForward, YOLOArch,
                            anchors_per_scale, arch_from_dict, build_yolo3, copy_head,
                            fold_adapters, grid_anchors, map_sizes, no_weight_decay,
                            parse_network, resolve_arch, route_shapes, stage_blocks,
                            teacher_maps, training_sizes, HEAD_CHANNELS, YOLOFeatures)
from .base import DetectorFamily, DeviceBatch, saved_teacher

#: GluonCV's YOLOv3 recipe (scripts/detection/yolo/train_yolo3.py defaults, --dataset voc),
#: what tools/train_yolo3.py starts from: darknet53, validation at 416, training sizes
#: 320..608 drawn every 10 batches, 200 epochs, batch 64, SGD lr 1e-3 x0.1 at epochs 160 and
#: 180, momentum 0.9, wd 5e-4, no warm-up, seed 233, NMS 0.45 (top 400, 100 kept)
RECIPE = {
    'model.family': 'yolo3', 'model.network': 'darknet53', 'model.data_shape': 416,
    'model.random_shapes': list(RANDOM_SHAPES), 'model.random_shape_interval': 10,
    'train.epochs': 200, 'train.batch_size': 64, 'train.optimizer': 'sgd', 'train.lr': 0.001,
    'train.momentum': 0.9, 'train.wd': 0.0005, 'train.lr_decay': 0.1,
    'train.lr_steps': [160, 180], 'train.warmup_iters': 0, 'train.log_interval': 100,
    'train.seed': 233, 'train.out': 'runs/yolo3', 'train.mixup': False,
    'train.no_mixup_epochs': 20, 'train.label_smooth': False, 'train.no_wd': False,
    'eval.nms_thresh': 0.45, 'eval.nms_topk': 400, 'eval.post_nms': 100,
}


def _size_draw(seed, epoch, block, count):
    """The training size index of the ``block``-th run of ``interval`` batches of ``epoch``:
    the same for every worker of a distributed job and for a resumed run."""
    rng = np.random.RandomState((sample_seed(seed, epoch, block) ^ 0x2545F491) % (2 ** 32))
    return int(rng.randint(count))


class _ShapeBatches:
    """The batches of a :func:`~gluon_distill.data.loader.train_batch_sampler`, each sample
    key carrying the batch's training size (drawn every ``interval`` batches, GluonCV's
    ``RandomTransformDataLoader``) and whether mixup is on for the epoch: the workers read
    everything from the key, so a forked worker needs no state from the parent."""

    def __init__(self, batch_sampler, sizes, interval, seed, mixup_epochs):
        self.batch_sampler = batch_sampler
        self.sizes = list(sizes)
        self.interval = max(int(interval), 1)
        self.seed = seed
        self.mixup_epochs = mixup_epochs
        self.epoch = 0

    def size_of(self, k):
        """The training size of the epoch's ``k``-th batch."""
        if len(self.sizes) == 1:
            return self.sizes[0]
        return self.sizes[_size_draw(self.seed, self.epoch, k // self.interval,
                                     len(self.sizes))]

    def __iter__(self):
        mix = self.epoch < self.mixup_epochs
        for k, batch in enumerate(self.batch_sampler):
            size = self.size_of(k)
            yield [(int(key), size, mix) for key in batch]

    def __len__(self):
        return len(self.batch_sampler)


class _Samples(gluon.data.Dataset):
    """``(key, size, mix)`` -> the transformed sample, NumPy and ``random`` seeded from
    (seed, epoch, index) first (:func:`~gluon_distill.data.loader.sample_seed`)."""

    def __init__(self, source, transform, seed):
        self._source = source
        self._transform = transform
        self._seed = seed

    def __len__(self):
        return len(self._source)

    def __getitem__(self, item):
        import random
        key, size, mix = item
        epoch, index = divmod(int(key), len(self._source))
        s = sample_seed(self._seed, epoch, index)
        np.random.seed(s)
        random.seed(s)
        img, label = self._source.get(index, mix)
        return self._transform(img, label, size)


class YOLOTrainLoader:
    """Training batches of a YOLOv3: per batch one square size of ``model.random_shapes``
    (every ``model.random_shape_interval`` batches a new one), GluonCV's augmentation and
    targets in the workers, seeded per sample as the other families' loaders are, drawn by
    :func:`~gluon_distill.data.loader.train_batch_sampler` (in a distributed job, this
    worker's shard of each global batch; the size depends on the batch number alone, so all
    workers agree); incomplete last batches dropped.

    A batch is ``(images, objectness, center_targets, scale_targets, weights, class_targets,
    gt_boxes)``; ``prepare(batch)`` gives a :class:`DeviceBatch` with no forward inputs and
    targets ``(gt_boxes, objectness, center_targets, scale_targets, weights,
    class_targets)`` per device (:class:`~gluon_distill.models.yolo3.YOLO3Loss`)."""

    def __init__(self, dataset, net, cfg, ctx_list):
        m, t = cfg.model, cfg.train
        if len(dataset) < t.batch_size:
            raise ValueError('the training set has {} images, fewer than one batch of {}'.format(
                len(dataset), t.batch_size))
        self.ctx_list = list(ctx_list)
        sizes = training_sizes(m)
        maps = {s: list(reversed(map_sizes(net, s))) for s in sizes}   # deepest first
        anchors = list(reversed(anchors_per_scale(net.arch)))
        pipeline = cfg.data.pipeline
        transform = YOLO3TrainTransform(len(net.classes), anchors, maps, m.mean, m.std,
                                        pipeline, t.mixup)
        source = MixupSource(NumpyImages(dataset) if pipeline == 'fast' else dataset, t.mixup)
        self.normalizer = None
        if pipeline == 'fast' and all(c.device_type == 'cpu' for c in self.ctx_list):
            images = StackNormalized(m.mean, m.std)
        elif pipeline == 'fast':
            from ..data.augment import Normalizer
            images = StackUInt8()
            self.normalizer = Normalizer(m.mean, m.std)
        else:
            images = Stack()
        batchify = Tuple(*([images] + [Stack() for _ in range(5)] + [Pad(axis=0, pad_val=-1)]))
        self.sampler, batch_sampler = train_batch_sampler(len(dataset), t.batch_size, t.seed,
                                                          world=world())
        mixup_epochs = t.epochs - t.no_mixup_epochs if t.mixup else 0
        self.batches = _ShapeBatches(batch_sampler, sizes, m.random_shape_interval, t.seed,
                                     mixup_epochs)
        self.loader = DataLoader(_Samples(source, transform, t.seed),
                                 batch_sampler=self.batches, batchify_fn=batchify,
                                 num_workers=cfg.data.num_workers)

    def epoch(self, epoch):
        self.sampler.set_epoch(epoch)
        self.batches.epoch = epoch
        return iter(self.loader)

    def __len__(self):
        return len(self.loader)

    def prepare(self, batch):
        images, obj, center, scale, weight, cls, gt = [
            gluon.utils.split_and_load(x, self.ctx_list, batch_axis=0, even_split=True)
            for x in batch]
        if self.normalizer is not None:
            images = [self.normalizer(x) for x in images]
        return DeviceBatch(images, (), (gt, obj, center, scale, weight, cls))


def batch_ground_truth(batch):
    """Per image of a loader batch, its boxes ``(M, 4)`` in input pixels (padding dropped)."""
    boxes = batch[6].asnumpy()
    return [b[(b >= 0).all(axis=1)] for b in boxes]


#: GluonCV's published VOC YOLOv3 weights (trained on VOC07+12 trainval, VOC07 test mAP at
#: 320 / 416: darknet53 79.3 / 81.5, mobilenet1.0 73.9 / 75.8; none for mobilenet0.25 VOC)
ZOO_VOC_WEIGHTS = {'darknet53': 'yolo3_darknet53_voc', 'mobilenet1.0': 'yolo3_mobilenet1.0_voc'}


def zoo_teacher(tcfg, model_cfg, ctx):
    """GluonCV's VOC YOLOv3 as a frozen teacher (``teacher.pretrained``; ``teacher.network``
    ``darknet53`` or ``yolo3_darknet53_voc``, or the MobileNet 1.0 ones), at the student's
    validation size; offline, an error naming the file to place by hand."""
    network = parse_network(tcfg.network or 'darknet53')
    if network not in ZOO_VOC_WEIGHTS:
        raise ModelError('teacher.pretrained: GluonCV has VOC YOLOv3 weights for {} only, not '
                         'for {!r} (train it with tools/train_yolo3.py and pass '
                         '--teacher-params)'.format(', '.join(ZOO_VOC_WEIGHTS), tcfg.network))
    path = zoo_teacher_file(ZOO_VOC_WEIGHTS[network])
    arch = YOLOArch(network, model_cfg.data_shape, list(HEAD_CHANNELS[network]))
    net = build_yolo3(arch, VOC_CLASSES, ctx=ctx)
    try:
        net.load_parameters(path, ctx=ctx)
    except (AssertionError, mx.base.MXNetError, ValueError) as e:
        raise ModelError('zoo teacher weights {} do not fit {}: {}'.format(
            path, network, str(e).splitlines()[0][:300]))
    for p in net.collect_params().values():
        p.grad_req = 'null'
    return Teacher(net, arch, list(VOC_CLASSES), list(model_cfg.mean), list(model_cfg.std),
                   path)


def load_teacher(tcfg, ctx, model_cfg=None):
    """The YOLOv3 teacher of a ``teacher`` config section (its ``params`` with
    ``model.json``, or with ``pretrained`` GluonCV's VOC weights), frozen."""
    if not tcfg.params and tcfg.pretrained:
        return zoo_teacher(tcfg, model_cfg, ctx)
    return saved_teacher(tcfg, ctx, 'yolo3', 'YOLOv3', arch_from_dict,
                         'no teacher: give --teacher-params FILE (a YOLOv3 trained with '
                         'tools/train_yolo3.py) or --teacher-pretrained (yolo3_darknet53_voc)')


class YOLO3Family(DetectorFamily):
    """GluonCV's YOLOv3: ``darknet53``, ``mobilenet1.0``, ``mobilenet0.25`` (by base or zoo
    name) or ``tiny``; multi-scale training, targets in the loader's workers, GluonCV's loss;
    validation at ``model.data_shape`` through the SSD prediction path."""
    name = 'yolo3'
    loss_names = YOLO3Loss.names

    def build(self, model_cfg, classes, ctx):
        arch = resolve_arch(model_cfg)
        net = build_yolo3(arch, classes, model_cfg.pretrained_base, ctx)
        net.random_shapes = training_sizes(model_cfg)
        if model_cfg.params:
            load_start_params(net, model_cfg.params, ctx)
        return net, arch

    def spec(self, arch, classes, model_cfg, prov, extra=None):
        return model_spec(arch, classes, model_cfg.mean, model_cfg.std, prov, 'yolo3', extra)

    def train_loader(self, dataset, net, cfg, ctx):
        """The run's :class:`YOLOTrainLoader`; also applies ``train.no_wd`` to ``net`` and
        records the run's loss options (``train.label_smooth``, the ignore threshold) for
        :meth:`loss`, which the run builders call after this."""
        if cfg.train.no_wd:
            no_weight_decay(net)    # GluonCV's --no-wd (read by the trainer at its first step)
        self._loss_options = (cfg.train.label_smooth, net.arch.ignore_iou_thresh,
                              len(net.classes))
        return YOLOTrainLoader(dataset, net, cfg, ctx)

    def training_forward(self, net):
        return YOLOTrainForward(net)

    def feature_forward(self, net, adapters=None):
        if adapters is not None:
            raise ModelError('YOLOv3: the adapters are part of the student')
        return YOLOTrainForward(net, with_features=True)

    def loss(self):
        """GluonCV's merger and loss (:class:`~gluon_distill.models.yolo3.YOLO3Loss`) with the
        options of the last :meth:`train_loader` (default: no label smoothing, ignore 0.7)."""
        label_smooth, ignore, num_class = getattr(self, '_loss_options', (False, 0.7, None))
        return _LazyLoss(label_smooth, ignore, num_class)

    def predictions(self, net, dataset, inputs, ctx, eval_cfg, num_workers=0, progress=None):
        from .ssd import SSDFamily     # GluonCV's YOLOv3 answers as its SSD does
        yield from SSDFamily().predictions(net, dataset, inputs, ctx, eval_cfg, num_workers,
                                           progress)

    def ground_truth_reader(self, net, data_shape, ctx):
        return batch_ground_truth

    def scale_anchors(self, net, data_shape, ctx):
        """Per route, the anchors of the largest training (or validation) size's grid; a
        smaller input's grid is its top-left crop (FGFI crops its masks to each batch)."""
        size = max([data_shape] + list(getattr(net, 'random_shapes', [])))
        return grid_anchors(net.arch, size)

    # ---- distillation

    def distillation_plan(self, cfg, classes, ctx):
        from ..models.student import ChannelAdapters
        m = cfg.model
        teacher = load_teacher(cfg.teacher, ctx, m)
        check_teacher(teacher, classes, m)
        own = resolve_arch(m)
        # the student: its backbone, the teacher's head (channels, anchors)
        arch = YOLOArch(own.network, m.data_shape, list(teacher.arch.channels),
                        [list(a) for a in teacher.arch.anchors], list(teacher.arch.strides),
                        list(teacher.arch.alloc_size), teacher.arch.ignore_iou_thresh,
                        own.width, own.blocks)
        probe = YOLOFeatures(nn.HybridSequential(), prefix='probe_')   # route shapes only
        probe.stages.add(*stage_blocks(arch, False))
        probe.initialize(ctx=ctx)
        s_shapes = route_shapes(probe, m.data_shape, ctx[0])
        t_shapes = route_shapes(teacher_maps(teacher.net), m.data_shape, ctx[0])
        if [s[1:] for s in s_shapes] != [t[1:] for t in t_shapes]:
            raise ModelError('student maps {} and teacher maps {} differ in size'.format(
                s_shapes, t_shapes))
        s_ch, t_ch = [s[0] for s in s_shapes], [t[0] for t in t_shapes]
        adapters = None
        if s_ch != t_ch:
            adapters = ChannelAdapters(s_ch, t_ch)
        net = build_yolo3(arch, classes, m.pretrained_base, ctx, adapters=adapters)
        net.random_shapes = training_sizes(m)
        if m.params:
            load_start_params(net, m.params, ctx)
        head = 'own'
        if cfg.distill.init_head_from_teacher:
            copy_head(teacher.net, net)
            head = 'teacher'
        # the critics see the maps of every training size: sized for the smallest (a larger
        # map gives several scores, averaged)
        smallest = min(training_sizes(m))
        sizes = [s[1] for s in route_shapes(net.features, smallest, ctx[0])]
        return teacher, StudentPlan(net, arch, head, [(0, 0), (1, 1), (2, 2)], sizes, None,
                                    s_ch, t_ch)

    def describe_plan(self, teacher, plan):
        return ('teacher {} ({}); student {} feeding the teacher\'s head ({} channels, {}); '
                'critics and imitation on the three backbone maps ({} -> {} channels{})'.format(
                    teacher.source, teacher.arch.network, plan.arch.network,
                    plan.arch.channels, 'initialised from the teacher\'s'
                    if plan.head == 'teacher' else 'initialised afresh',
                    plan.student_channels, plan.teacher_channels,
                    ', 1x1 adapters' if plan.net.adapters is not None else ''))

    def teacher_forward(self, teacher):
        return teacher_maps(teacher.net)

    def student_spec(self, plan, classes, model_cfg, prov, extra=None, folded=False):
        extra = dict(extra or {})
        if plan.net.adapters is not None:
            extra['adapters'] = {'student_channels': plan.student_channels,
                                 'teacher_channels': plan.teacher_channels, 'folded': folded}
        return self.spec(plan.arch, classes, model_cfg, prov, extra)

    def fold(self, plan, ctx):
        if plan.net.adapters is None:
            return None
        return fold_adapters(plan.net, ctx)


class _LazyLoss:
    """:class:`~gluon_distill.models.yolo3.YOLO3Loss` built at its first call (the number of
    classes is read from the outputs when the loader did not say it)."""

    def __init__(self, label_smooth, ignore_iou_thresh, num_class=None):
        self.label_smooth = label_smooth
        self.ignore = ignore_iou_thresh
        self.num_class = num_class
        self._loss = None
        self.names = YOLO3Loss.names

    def __call__(self, outputs, targets):
        if self._loss is None:
            num_class = self.num_class or int(outputs[0][4].shape[-1])
            self._loss = YOLO3Loss(num_class, self.ignore, self.label_smooth)
        return self._loss(outputs, targets)
