"""Faster R-CNN (GluonCV's ``FasterRCNN``, one C4 map): the two-stage family.

Training follows GluonCV's ``scripts/detection/faster_rcnn/train_faster_rcnn.py``: images
resized to a short side (``model.data_shape``, 600) within ``model.max_size`` (1000) and
flipped, RPN targets made in the data workers (``FasterRCNNDefaultTrainTransform``'s output,
computed in NumPy by :class:`~gluon_distill.data.rcnn_targets.RCNNTrainTransform`, +
``FasterRCNNTrainBatchify``), the loss of its ``ForwardBackwardTask``. Validation: one image
per call at the test size, boxes back in the original pixels, the same VOC07 evaluator as SSD.

Distillation pairs the student's C4 map with the teacher's (``features``: conv1..layer3, 1024
channels for ResNet50 and ResNet101, so no adapter is needed between them).
"""
import copy

import numpy as np

import mxnet as mx
from gluoncv.data.batchify import FasterRCNNTrainBatchify
from gluoncv.data.transforms.presets.rcnn import FasterRCNNDefaultValTransform

from ..data.rcnn_targets import RCNNTrainTransform
from ..data.voc import VOC_CLASSES
from ..data.loader import (DataLoader, IndexedValDataset, SeededTransformDataset,
                           train_batch_sampler)
from ..engine.distributed import world
from ..models.teacher import StudentPlan, Teacher, check_teacher, zoo_teacher_file
from ..evaluation.inference import clip_boxes
from ..models.io import load_start_params, model_spec
from ..models.ssd import ModelError
from ..models.faster_rcnn import (RCNNLoss, RCNNTrainForward, TeacherMaps, build_faster_rcnn,
                                  c4_shape, resolve_arch, rpn_anchors, arch_from_dict,
                                  sampler_draws)
from .base import DetectorFamily, DeviceBatch, saved_teacher

#: GluonCV's VOC recipe (train_faster_rcnn.py --dataset voc), what tools/train_rcnn.py starts
#: from: 20 epochs, SGD lr 1e-3 x0.1 at epoch 14 (and 20), momentum 0.9, wd 5e-4, batch 1
#: per device, no warm-up, short side 600 within 1000, RoIAlign, NMS 0.3
RECIPE = {
    'model.family': 'faster_rcnn', 'model.network': 'resnet50_v1b', 'model.data_shape': 600,
    'model.max_size': 1000, 'model.roi_mode': 'align',
    'train.epochs': 20, 'train.batch_size': 1, 'train.optimizer': 'sgd', 'train.lr': 0.001,
    'train.momentum': 0.9, 'train.wd': 0.0005, 'train.lr_decay': 0.1,
    'train.lr_steps': [14, 20], 'train.warmup_iters': 0, 'train.log_interval': 100,
    'train.out': 'runs/faster_rcnn', 'eval.nms_thresh': 0.3, 'eval.nms_topk': 400,
    'eval.post_nms': 100,
}


class _TrainTransform:
    """The training transform (resize, flip, RPN targets) plus the RoI sampler's uniform
    draws for the image, from the per-sample seeded NumPy generator."""

    def __init__(self, transform, draws):
        self.transform = transform
        self.draws = draws

    def __call__(self, img, label):
        out = self.transform(img, label)
        return tuple(out) + (np.random.uniform(size=self.draws).astype(np.float32),)


class _Batchify:
    """GluonCV's batchify (one shard: images padded to the batch's largest, labels with -1
    rows, RPN targets laid on the padded map) plus ``sizes (B, 2)`` (each image's height and
    width before padding) and the sampler's draws ``rand (B, R)``: a batch is ``(images,
    labels, rpn_cls_targets, rpn_box_targets, rpn_box_masks, sizes, rand)``."""

    def __init__(self, net):
        self.batchify = FasterRCNNTrainBatchify(net, 1)

    def __call__(self, data):
        sizes = np.array([d[0].shape[1:] for d in data], np.int32)
        rand = np.stack([d[5] for d in data])
        batch = [x if isinstance(x, mx.nd.NDArray) else x[0]
                 for x in self.batchify([d[:5] for d in data])]
        return tuple(batch) + (mx.nd.array(sizes, dtype='int32'), mx.nd.array(rand))


class RCNNTrainLoader:
    """Training batches of a Faster R-CNN, seeded per sample as the SSD loaders are, drawn by
    :func:`~gluon_distill.data.loader.train_batch_sampler` (in a distributed job, this
    worker's shard of each global batch); incomplete last batches dropped.

    ``prepare(batch)``: a :class:`DeviceBatch` with forward inputs ``(gt_box (B_d, M_d, 4),
    gt_label (B_d, M_d, 1), rand)`` and targets ``(rpn_cls_targets, rpn_box_targets,
    rpn_box_masks)``. Each device's images are padded to the largest of *its* images (and its
    labels to its largest box count), as GluonCV's script shards them: a device (or a worker
    of a distributed job) then sees the same arrays whichever other images share the batch.
    """

    def __init__(self, dataset, net, batch_size, mean, std, ctx_list, seed=0, num_workers=0):
        if len(dataset) < batch_size:
            raise ValueError('the training set has {} images, fewer than one batch of {}'.format(
                len(dataset), batch_size))
        self.ctx_list = list(ctx_list)
        self._feat = net.features(mx.sym.var('data'))
        self._maps = {}
        # GluonCV's transform, with the RPN targets in NumPy (same output, bench/rpn_targets.py)
        transform = RCNNTrainTransform(net.short, net.max_size, net, mean, std, net.ashape)
        self.sampler, batch_sampler = train_batch_sampler(len(dataset), batch_size, seed,
                                                          world=world())
        self.loader = DataLoader(
            SeededTransformDataset(dataset, _TrainTransform(transform, sampler_draws(net.arch)),
                                   seed),
            batch_sampler=batch_sampler, batchify_fn=_Batchify(net), num_workers=num_workers)

    def epoch(self, epoch):
        self.sampler.set_epoch(epoch)
        return iter(self.loader)

    def __len__(self):
        return len(self.loader)

    def map_size(self, height, width):
        """``(H, W)`` of the C4 map of a ``height`` x ``width`` input."""
        key = (int(height), int(width))
        if key not in self._maps:
            shape = self._feat.infer_shape(data=(1, 3) + key)[1][0]
            self._maps[key] = tuple(shape[2:])
        return self._maps[key]

    def prepare(self, batch):
        images, labels, cls_t, box_t, mask, sizes, rand = batch
        n = len(self.ctx_list)
        per = images.shape[0] // n
        sizes = sizes.asnumpy()
        full = self.map_size(*images.shape[2:])
        anchors = cls_t.shape[1] // (full[0] * full[1])
        valid = (labels.asnumpy()[:, :, 4] >= 0).sum(axis=1)
        out = [[] for _ in range(7)]
        for i, ctx in enumerate(self.ctx_list):
            lo, hi = i * per, (i + 1) * per
            h, w = sizes[lo:hi].max(axis=0)
            fh, fw = self.map_size(h, w)
            boxes = max(int(valid[lo:hi].max()), 1)

            def crop_map(t, last):
                t = t[lo:hi].reshape((per, full[0], full[1], -1))
                return t[:, :fh, :fw, :].reshape((per, fh * fw * anchors) + last)
            y = labels[lo:hi, :boxes]
            parts = [images[lo:hi, :, :h, :w], y.slice_axis(axis=-1, begin=0, end=4),
                     y.slice_axis(axis=-1, begin=4, end=5), rand[lo:hi],
                     crop_map(cls_t, ()), crop_map(box_t, (4,)), crop_map(mask, (4,))]
            for k, part in enumerate(parts):
                out[k].append(part.as_in_context(ctx))
        return DeviceBatch(out[0], tuple(out[1:4]), tuple(out[4:]))


def batch_ground_truth(batch):
    """Per image of a loader batch, its boxes ``(M, 4)`` in input pixels (padding dropped)."""
    labels = batch[1].asnumpy()
    return [y[y[:, 4] >= 0, :4] for y in labels]


class _ValImages(IndexedValDataset):
    """``(image, scale, index)``: the test transform also gives the resize factor."""

    def __getitem__(self, index):
        img, label = self._dataset[index]
        img, _, scale = self._transform(img, label)
        return img, np.float32(scale.asscalar()), np.int64(index)


def predict_rcnn(net, dataset, short, max_size, mean, std, ctx, num_workers=0, progress=None):
    """Yield ``(record, boxes, labels, scores)`` per image, one image per call at the test
    size, boxes in the original image's 0-based pixels (clipped), padding removed."""
    transform = FasterRCNNDefaultValTransform(short, max_size, mean=tuple(mean),
                                              std=tuple(std))
    loader = DataLoader(_ValImages(dataset, transform), 1, shuffle=False, last_batch='keep',
                        num_workers=num_workers)
    for img, scale, index in loader:
        x = img.as_in_context(ctx)
        ids, scores, boxes = [o[0].asnumpy() for o in net(x)]
        ids, scores = ids[:, 0], scores[:, 0]
        keep = ids >= 0
        record = dataset.record(int(index.asscalar()))
        boxes = boxes[keep] * float(scale.asscalar())
        yield (record, clip_boxes(boxes, record.width, record.height), ids[keep].astype(int),
               scores[keep])
        if progress is not None:
            progress.update(1)


HEAD_PARTS = ('rpn', 'class_predictor', 'box_predictor')


def copy_heads(source, target):
    """Copy the RPN and the RCNN class and box predictors of ``source`` into ``target``
    (``top_features``, the backbone's layer4, stays the student's)."""
    for part in HEAD_PARTS:
        src = sorted(getattr(source, part).collect_params().items())
        dst = sorted(getattr(target, part).collect_params().items())
        for (_, p_src), (_, p_dst) in zip(src, dst):
            if p_src.shape != p_dst.shape:
                raise ModelError(
                    "distill.init_head_from_teacher: the teacher's {} parameter {} has shape "
                    "{}, the student's {} expects {} (different channels); use --set "
                    "distill.init_head_from_teacher=false".format(part, p_src.name, p_src.shape,
                                                                   p_dst.name, p_dst.shape))
            p_dst.set_data(p_src.data(p_src.list_ctx()[0]))


#: GluonCV's VOC Faster R-CNN weights (trained on VOC07+12 trainval, 78.3 mAP); there are
#: none for resnet101_v1d
ZOO_VOC_WEIGHTS = {'resnet50_v1b': 'faster_rcnn_resnet50_v1b_voc'}


def zoo_teacher(tcfg, model_cfg, ctx):
    """The zoo's VOC Faster R-CNN as a frozen teacher (``teacher.pretrained``;
    ``teacher.network`` ``resnet50_v1b`` or ``faster_rcnn_resnet50_v1b_voc``), built at the
    student's input size; offline, an error naming the file to place by hand."""
    network = tcfg.network or 'resnet50_v1b'
    if network.startswith('faster_rcnn_'):
        network = network[len('faster_rcnn_'):].rsplit('_voc', 1)[0]
    if network not in ZOO_VOC_WEIGHTS:
        raise ModelError('teacher.pretrained: GluonCV has VOC Faster R-CNN weights for {} only, '
                         'not for {!r} (train it with tools/train_rcnn.py and pass '
                         '--teacher-params)'.format(', '.join(ZOO_VOC_WEIGHTS), tcfg.network))
    path = zoo_teacher_file(ZOO_VOC_WEIGHTS[network])
    # the zoo's preset (RoIAlign) at the student's input size and RPN settings
    teacher_model = copy.copy(model_cfg)
    teacher_model.network, teacher_model.roi_mode = network, 'align'
    arch = resolve_arch(teacher_model)
    net = build_faster_rcnn(arch, VOC_CLASSES, False, ctx)
    try:
        net.load_parameters(path, ctx=ctx, ignore_extra=True)
    except (AssertionError, mx.base.MXNetError, ValueError) as e:
        raise ModelError('zoo teacher weights {} do not fit {}: {}'.format(
            path, network, str(e).splitlines()[0][:300]))
    for p in net.collect_params().values():
        p.grad_req = 'null'
    return Teacher(net, arch, VOC_CLASSES, model_cfg.mean, model_cfg.std, path)


def load_teacher(tcfg, ctx, model_cfg=None):
    """The Faster R-CNN teacher of a ``teacher`` config section (its ``params`` with
    ``model.json``, or with ``pretrained`` the zoo's VOC weights), frozen."""
    if not tcfg.params and tcfg.pretrained:
        return zoo_teacher(tcfg, model_cfg, ctx)
    return saved_teacher(tcfg, ctx, 'faster_rcnn', 'Faster R-CNN', arch_from_dict,
                         'no teacher: give --teacher-params FILE (a Faster R-CNN trained with '
                         'tools/train_rcnn.py; GluonCV publishes no VOC07-only weights) or '
                         '--teacher-pretrained (faster_rcnn_resnet50_v1b_voc, VOC07+12)')


class FasterRCNNFamily(DetectorFamily):
    """GluonCV's Faster R-CNN: ``resnet50_v1b`` / ``resnet101_v1d`` (the zoo's VOC presets,
    ``model.roi_mode`` pool or align) or ``tiny`` (4 stride-2 convolutions, RPN scaled for
    128-256 px); variable input sizes; RPN targets in the loader's workers."""
    name = 'faster_rcnn'
    loss_names = RCNNLoss.names

    def hybridize_flags(self):
        """No static memory: every image has its own size, so a static plan is remade for
        each new shape, and validation's inference graph would keep a plan of its own beside
        the training graph's (the run's peak was 2x GluonCV's, bench/rcnn_memory.py).
        Without it the peak is GluonCV's; the computed values are the same."""
        return {}

    def build(self, model_cfg, classes, ctx):
        arch = resolve_arch(model_cfg)
        net = build_faster_rcnn(arch, classes, model_cfg.pretrained_base, ctx)
        if model_cfg.params:
            load_start_params(net, model_cfg.params, ctx)
        return net, arch

    def spec(self, arch, classes, model_cfg, prov, extra=None):
        extra = dict(extra or {})
        extra['max_size'] = arch.max_size
        return model_spec(arch, classes, model_cfg.mean, model_cfg.std, prov, 'faster_rcnn',
                          extra)

    def train_loader(self, dataset, net, cfg, ctx):
        return RCNNTrainLoader(dataset, net, cfg.train.batch_size, cfg.model.mean,
                               cfg.model.std, ctx, seed=cfg.train.seed,
                               num_workers=cfg.data.num_workers)

    def training_forward(self, net):
        return RCNNTrainForward(net)

    def feature_forward(self, net, adapters=None):
        return RCNNTrainForward(net, adapters, with_features=True)

    def loss(self):
        return RCNNLoss()

    def predictions(self, net, dataset, inputs, ctx, eval_cfg, num_workers=0, progress=None):
        # set_nms drops any cached graph: the next call traces the inference branch
        net.set_nms(eval_cfg.nms_thresh, eval_cfg.nms_topk, post_nms=eval_cfg.post_nms)
        yield from predict_rcnn(net, dataset, inputs['data_shape'],
                                inputs.get('max_size', net.max_size), inputs['mean'],
                                inputs['std'], ctx[0], num_workers, progress)

    def ground_truth_reader(self, net, data_shape, ctx):
        return batch_ground_truth

    def scale_anchors(self, net, data_shape, ctx):
        """The RPN anchors of the largest C4 map a ``max_size`` square input gives; a batch's
        map is its top-left crop (FGFI crops its masks to each batch's map)."""
        side = int(np.ceil(net.max_size / 16.0)) + 1
        return [rpn_anchors(net, side, ctx)]

    # ---- distillation

    def distillation_plan(self, cfg, classes, ctx):
        m = cfg.model
        teacher = load_teacher(cfg.teacher, ctx, m)
        check_teacher(teacher, classes, m, input_size=(
            '{}/{}'.format(teacher.arch.data_shape, teacher.arch.max_size),
            '{}/{}'.format(m.data_shape, m.max_size), ' (short side / max size)'))
        net, arch = self.build(m, classes, ctx)
        s_shape = c4_shape(net, m.data_shape, ctx[0])
        t_shape = c4_shape(teacher.net, m.data_shape, ctx[0])
        if s_shape[1:] != t_shape[1:]:
            raise ModelError('student C4 map {} and teacher C4 map {} differ in size: both '
                             'must have stride 16'.format(s_shape, t_shape))
        adapters = None
        if s_shape[0] != t_shape[0]:
            from ..models.student import ChannelAdapters
            adapters = ChannelAdapters([s_shape[0]], [t_shape[0]])
            adapters.initialize(ctx=ctx)
        head = 'own'
        if cfg.distill.init_head_from_teacher:
            copy_heads(teacher.net, net)
            head = 'teacher'
        return teacher, StudentPlan(net, arch, head, [(0, 0)], [s_shape[1]], adapters,
                                    [s_shape[0]], [t_shape[0]])

    def describe_plan(self, teacher, plan):
        return ('teacher {} ({}, {} RoIs); student {} ({}, RPN and RCNN heads {}); critics '
                'and imitation on the C4 map ({} -> {} channels{})'.format(
                    teacher.source, teacher.arch.network, teacher.arch.roi_mode,
                    plan.arch.network, plan.arch.roi_mode,
                    "initialised from the teacher's" if plan.head == 'teacher' else 'its own',
                    plan.student_channels[0], plan.teacher_channels[0],
                    ', 1x1 adapter' if plan.critic_adapters is not None else ''))

    def teacher_forward(self, teacher):
        return TeacherMaps(teacher.net)

    def student_spec(self, plan, classes, model_cfg, prov, extra=None, folded=False):
        return self.spec(plan.arch, classes, model_cfg, prov, extra)
