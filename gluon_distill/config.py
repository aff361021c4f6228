"""Experiment configuration: one YAML file per experiment, typed sections, dotted overrides.

The schema is a tree of dataclasses with six sections (``data``, ``model``, ``teacher``,
``distill``, ``train``, ``eval``). A YAML file sets any subset of keys; ``--set
section.key=value`` overrides one key (the value is parsed as YAML); every command-line flag of
the tools is an alias of one dotted key (see :data:`FLAG_ALIASES`). Unknown keys and values of
the wrong type, or a value outside the allowed ones (:data:`CHOICES`), raise
:class:`ConfigError` naming the key. :func:`config_from` builds a config from dotted values.
"""
import argparse
import copy
import dataclasses
import re
import typing
import warnings
from dataclasses import dataclass, field
from typing import List, Optional

import yaml

from .io_utils import atomic_write_text

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ConfigError(ValueError):
    """A configuration key is unknown, or its value has the wrong type or is not allowed."""


# The names of the distillation methods (``distill.method``: one, or several joined by ``+``)
# and of the ablation without any distillation loss, which combines with nothing.
# :mod:`gluon_distill.distill.methods` maps each name to its builder.
DISTILL_METHODS = ('gan', 'mimic', 'fgfi', 'cosine')
DISTILL_ABLATION = 'head_only'

# dotted key -> the values it allows (every string option with a closed set of values)
CHOICES = {
    'data.pipeline': ('fast', 'gluoncv'),
    'data.on_bad_image': ('stop', 'skip'),
    'data.format': ('voc', 'coco'),
    'eval.metric': ('auto', 'voc07', 'coco'),
    'train.optimizer': ('sgd', 'adam'),
    'model.family': ('ssd', 'faster_rcnn', 'yolo3'),
    'model.roi_mode': ('align', 'pool'),
    'distill.adapter': ('conv1x1',),
    'distill.gan.critic': ('dcgan', 'bn', 'plain', 'spectral'),
    'distill.gan.critic_batch': ('joint', 'separate'),
    'distill.gan.adv_optimizer': ('shared', 'adam'),
}


def check_method(method, key='distill.method'):
    """``distill.method`` -> its list of method names (empty for the ablation), or a
    :class:`ConfigError` naming ``key`` and the allowed names."""
    names = [n.strip() for n in str(method).split('+')]
    allowed = (DISTILL_ABLATION,) + DISTILL_METHODS
    for n in names:
        if n not in allowed:
            raise ConfigError('{}: expected one of {} (or several joined by +, e.g. gan+fgfi), '
                              'got {!r}'.format(key, ', '.join(allowed), method))
    if DISTILL_ABLATION in names:
        if len(names) > 1:
            raise ConfigError('{}: {} is the ablation without any distillation loss and '
                              'combines with nothing, got {!r}'.format(key, DISTILL_ABLATION,
                                                                       method))
        return []
    if len(set(names)) != len(names):
        raise ConfigError('{}: {!r} names a method twice'.format(key, method))
    return names


def _check_choice(dotted, value, shown=None):
    """``value`` if the key ``dotted`` allows it, else a :class:`ConfigError` naming ``shown``
    (the key as the user wrote it; ``dotted`` by default)."""
    shown = shown or dotted
    if dotted == 'distill.method':
        check_method(value, shown)
    elif dotted in CHOICES and value not in CHOICES[dotted]:
        raise ConfigError('{}: expected one of {}, got {!r}'.format(
            shown, ', '.join(CHOICES[dotted]), value))
    return value


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader (YAML 1.1), except that ``1e-3`` is a float.

    YAML 1.1 wants a dot in a float (``1.0e-3``) and reads ``1e-3`` as a string; YAML 1.2, and
    GluonCV's configs and scripts, write learning rates that way.
    """


_Loader.add_implicit_resolver(
    'tag:yaml.org,2002:float',
    re.compile(r'^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$'),
    list('-+0123456789'))


def yaml_load(stream):
    """Parse YAML text or a file object as the configuration does (``1e-3`` is a float)."""
    return yaml.load(stream, Loader=_Loader)


@dataclass
class SyntheticConfig:
    """Parameters of the generated VOC root used when ``data.root`` is ``synthetic``."""
    dir: str = '~/.cache/gluon_distill/synthetic'
    num_train: int = 400
    num_val: int = 100
    min_size: int = 96
    max_size: int = 160
    seed: int = 0


@dataclass
class DataConfig:
    """Where the images come from. ``root`` is a VOC-format root, GluonCV's VOC root
    (``~/.mxnet/datasets/voc`` with VOC2007/VOC2012 inside), a COCO root
    (``annotations/instances_<split>.json``, e.g. GluonCV's ``~/.mxnet/datasets/coco``) or
    ``synthetic``. ``format: coco`` reads COCO JSON (a COCO root is recognised without it);
    ``annotations`` (a JSON file, ``{split}`` replaced by the split name) and ``images`` (its
    image folder) read any COCO file instead of ``root``. ``category_ids`` is the COCO id of
    each class, filled from the JSON and recorded in ``model.json``."""
    root: str = '~/.mxnet/datasets/voc'
    train_split: str = '2007_trainval+2012_trainval'
    val_split: str = '2007_test'
    classes: Optional[List[str]] = None
    val_fraction: float = 0.2
    split_seed: int = 0
    num_workers: int = 4
    pipeline: str = 'fast'              # see CHOICES
    check_images: bool = True
    on_bad_image: str = 'stop'          # a missing or undecodable image: stop or skip
    format: str = 'voc'                 # see CHOICES
    annotations: str = ''
    images: str = ''
    category_ids: Optional[List[int]] = None
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class ModelConfig:
    """The detector being trained (the student, in a distillation run).

    ``network`` is a base name as in GluonCV's train_ssd.py (``resnet50_v1``, ``mobilenet1.0``,
    ``vgg16_atrous``, ...) or a full zoo name (``ssd_512_resnet50_v1``); ``tiny`` is the
    demo-sized backbone of :mod:`gluon_distill.models.tiny`, sized by ``width``/``blocks``.
    ``family`` is the detector family (:mod:`gluon_distill.families`).
    """
    family: str = 'ssd'
    network: str = 'mobilenet1.0'
    data_shape: int = 512
    pretrained_base: bool = True
    params: str = ''
    width: int = 32
    blocks: int = 1
    mean: List[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: List[float] = field(default_factory=lambda: list(IMAGENET_STD))
    # family faster_rcnn (gluon_distill.families.faster_rcnn): data_shape is the short side;
    # 0 keeps the network's preset (GluonCV's VOC model, or the tiny net's scaled one)
    max_size: int = 1000
    roi_mode: str = 'align'             # see CHOICES
    rpn_train_pre_nms: int = 0
    rpn_train_post_nms: int = 0
    rpn_test_pre_nms: int = 0
    rpn_test_post_nms: int = 0
    rcnn_num_sample: int = 0
    rcnn_max_num_gt: int = 0
    # family yolo3 (gluon_distill.families.yolo3): the square training sizes, one drawn every
    # random_shape_interval batches (GluonCV's train_yolo3.py: 320..608; empty: data_shape only)
    random_shapes: List[int] = field(default_factory=list)
    random_shape_interval: int = 10


@dataclass
class TeacherConfig:
    """The trained detector a student learns from (empty ``network``: no teacher)."""
    network: str = ''
    params: str = ''
    pretrained: bool = False


@dataclass
class GanConfig:
    """``distill.gan``: per-scale WGAN critics (the paper). Defaults: the authors' logs."""
    critic: str = 'dcgan'
    critic_width: int = 64
    critic_batch: str = 'joint'
    critic_lr: float = 0.0005
    critic_beta1: float = 0.5
    clip: float = 0.03
    critic_norm: str = ''
    n_critic: int = 1
    adv_weight: float = 1.0
    adv_optimizer: str = 'adam'
    adv_lr: float = 0.0005
    adv_beta1: float = 0.5
    epochs: int = -1
    # the critics' (and the adversarial Adam's) own LR steps, epochs at which their rates are
    # multiplied by train.lr_decay; None: the run's train.lr_steps; []: constant rates (the
    # authors' Faster R-CNN log: lr_decay_GAN_epoch=5,20)
    lr_steps: Optional[List[int]] = None
    # the first this many epochs the critics train alone: the student learns from the
    # detection loss only, without the adversarial term (our reading of the Faster R-CNN
    # log's train_D_eopch=2; docs/distillation.md)
    critic_warmup_epochs: int = 0


@dataclass
class MimicConfig:
    """``distill.mimic``: L2 between adapted student maps and teacher maps, every scale."""
    weight: float = 1.0


@dataclass
class FgfiConfig:
    """``distill.fgfi``: fine-grained feature imitation (the original code's defaults)."""
    weight: float = 0.01
    psi: float = 0.5
    warmup_iters: int = 400


@dataclass
class CosineConfig:
    """``distill.cosine``: our reading of the authors' unpublished "cosine attention": per
    location, 1 - cosine + relative length difference of the adapted student vector and the
    teacher vector, weighted by an attention map of the teacher's feature norms
    (:mod:`gluon_distill.distill.cosine`)."""
    weight: float = 1.0
    attention_power: float = 2.0
    epochs: int = -1


# the former flat ``distill.KEY`` -> its key in a method's subsection
LEGACY_DISTILL_KEYS = {
    'critic_width': 'gan.critic_width', 'critic_lr': 'gan.critic_lr',
    'critic_beta1': 'gan.critic_beta1', 'clip': 'gan.clip', 'critic': 'gan.critic',
    'critic_norm': 'gan.critic_norm', 'n_critic': 'gan.n_critic',
    'adv_weight': 'gan.adv_weight', 'adv_optimizer': 'gan.adv_optimizer',
    'adv_lr': 'gan.adv_lr', 'adv_beta1': 'gan.adv_beta1', 'gan_epochs': 'gan.epochs',
}


def _legacy_property(key):
    section, name = LEGACY_DISTILL_KEYS[key].split('.')

    def get(self):
        return getattr(getattr(self, section), name)

    def put(self, value):
        setattr(getattr(self, section), name, value)
    return property(get, put, doc='former ``distill.{}``: ``distill.{}``'.format(
        key, LEGACY_DISTILL_KEYS[key]))


@dataclass
class DistillConfig:
    """How a student learns from its teacher.

    ``method``: ``gan`` (the paper: per-scale WGAN critics + SSD loss through the teacher's
    head), ``mimic`` (L2 on the paired maps), ``fgfi`` (masked imitation near the objects),
    ``cosine`` (our reading of the authors' "cosine attention"), several joined by ``+``
    (``gan+fgfi``, ``gan+cosine``), or ``head_only`` (the ablation: student, adapters and
    teacher-initialised head on the SSD loss alone). Each method reads its own subsection
    (``gan``, ``mimic``, ``fgfi``, ``cosine``). The former flat keys (``distill.critic``,
    ``distill.clip``, ``distill.gan_epochs``, ...) still work, with a warning: see
    :data:`LEGACY_DISTILL_KEYS`.
    """
    method: str = 'gan'
    adapter: str = 'conv1x1'
    init_head_from_teacher: bool = True
    fold_adapters: bool = False
    grad_ratio_interval: int = 50
    gan: GanConfig = field(default_factory=GanConfig)
    mimic: MimicConfig = field(default_factory=MimicConfig)
    fgfi: FgfiConfig = field(default_factory=FgfiConfig)
    cosine: CosineConfig = field(default_factory=CosineConfig)


def distill_key(d, key):
    """The dotted name to show for ``distill.<key>`` (``gan.critic``): the former flat name
    where the configuration set it that way, so an error names what the user wrote."""
    return d.__dict__.get('_legacy', {}).get(key, 'distill.' + key)


for _key in LEGACY_DISTILL_KEYS:
    setattr(DistillConfig, _key, _legacy_property(_key))
del _key


@dataclass
class TrainConfig:
    """Optimisation, devices and output. Defaults are GluonCV's published SSD recipe."""
    epochs: int = 240
    batch_size: int = 32
    optimizer: str = 'sgd'
    lr: float = 0.001
    momentum: float = 0.9
    wd: float = 0.0005
    lr_decay: float = 0.1
    lr_steps: List[int] = field(default_factory=lambda: [160, 200])
    warmup_iters: int = 0
    ctx: str = 'cpu'
    kvstore: str = 'device'
    horovod: bool = False
    seed: int = 0
    out: str = 'runs/ssd'
    resume: bool = False
    overwrite: bool = False
    log_interval: int = 20
    val_interval: int = 1
    max_nonfinite: int = 10
    divergence_stop: bool = True
    hybridize: bool = True
    progress: bool = True
    # family yolo3: GluonCV's train_yolo3.py options (--mixup, --no-mixup-epochs,
    # --label-smooth, --no-wd)
    mixup: bool = False
    no_mixup_epochs: int = 20
    label_smooth: bool = False
    no_wd: bool = False


@dataclass
class EvalConfig:
    """Validation and test settings. ``metric`` is what per-epoch validation scores (and
    ``best.params`` is chosen by): ``voc07`` (11-point mAP at ``iou_thresh``), ``coco``
    (COCO AP@[.5:.95] by pycocotools; COCO-format data only) or ``auto``: ``coco`` on
    COCO-format data, else ``voc07``."""
    metric: str = 'auto'                # see CHOICES
    iou_thresh: float = 0.5
    nms_thresh: float = 0.45
    nms_topk: int = 400
    post_nms: int = 100
    batch_size: int = 16


@dataclass
class ExperimentConfig:
    """What an experiment file reproduces: its paper table cell and published number
    (a fraction; ``published_metric`` says which metric, empty for VOC07 mAP@0.5)."""
    name: str = ''
    paper_table: str = ''
    published_mAP: Optional[float] = None
    published_metric: str = ''
    notes: str = ''


@dataclass
class Config:
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self):
        return dataclasses.asdict(self)

    def dump(self, path):
        """Write the resolved configuration as YAML (atomically)."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        atomic_write_text(path, text)


# dotted key -> its one-line meaning: docs/config.md (python -m gluon_distill.docgen) and the
# training tools' --help are made from this; tests/test_cli.py checks that every key has one.
KEY_HELP = {
    'experiment.name': 'the run\'s name in reproduce tables',
    'experiment.paper_table': 'the paper\'s table and cell this run reproduces (tools/reproduce.py '
                              'collects a table\'s runs by it)',
    'experiment.published_mAP': 'the published number, as a fraction (null: none)',
    'experiment.published_metric': 'the metric of published_mAP (empty: VOC07 mAP@0.5)',
    'experiment.notes': 'free text: where the settings come from',
    'data.root': 'VOC root, GluonCV VOC root, COCO root, or synthetic: a generated VOC root',
    'data.train_split': 'training split; GluonCV\'s default names mean train/val on a plain '
                        'VOC root',
    'data.val_split': 'validation split (per-epoch validation, best.params)',
    'data.classes': 'class names (null: discovered from the training annotations, sorted)',
    'data.val_fraction': 'validation fraction of the seeded split of a root without split files',
    'data.split_seed': 'seed of the seeded split of a root without split files; not the '
                       'training seed',
    'data.num_workers': 'data loader worker processes (0: in the training process)',
    'data.pipeline': 'training augmentation: fast (NumPy/OpenCV, targets in the workers) or '
                     'gluoncv (GluonCV\'s SSDDefaultTrainTransform)',
    'data.check_images': 'decode every image once before training (bad files named up front)',
    'data.on_bad_image': 'a missing or undecodable image: stop (fatal) or skip (left out, listed)',
    'data.format': 'voc or coco (a COCO root is recognised without it)',
    'data.annotations': 'a COCO JSON file to read instead of data.root ({split}: the split name)',
    'data.images': 'the image folder of data.annotations',
    'data.category_ids': 'the COCO id of each class (filled from the JSON, kept in model.json)',
    'data.synthetic.dir': 'where data.root synthetic is generated',
    'data.synthetic.num_train': 'generated training images',
    'data.synthetic.num_val': 'generated validation images',
    'data.synthetic.min_size': 'smallest generated image side, pixels',
    'data.synthetic.max_size': 'largest generated image side, pixels',
    'data.synthetic.seed': 'seed of the generated images',
    'model.family': 'detector family: ssd, faster_rcnn or yolo3',
    'model.network': 'base network (resnet50_v1, mobilenet1.0, ...), a zoo name, or tiny',
    'model.data_shape': 'input size: an SSD\'s square side; a Faster R-CNN\'s short side; a '
                        'YOLOv3\'s square validation side',
    'model.pretrained_base': 'start the backbone from GluonCV\'s ImageNet weights, downloaded',
    'model.params': 'start from this local .params file',
    'model.width': 'tiny network: channel unit',
    'model.blocks': 'tiny network: extra stride-1 convolutions per stage',
    'model.mean': 'per-channel input mean (RGB, 0-1 scale)',
    'model.std': 'per-channel input standard deviation (RGB, 0-1 scale)',
    'model.max_size': 'Faster R-CNN: longest image side limit',
    'model.roi_mode': 'Faster R-CNN: align (RoIAlign) or pool (RoIPooling)',
    'model.rpn_train_pre_nms': 'Faster R-CNN: RPN proposals before NMS in training (0: preset)',
    'model.rpn_train_post_nms': 'Faster R-CNN: RPN proposals after NMS in training (0: preset)',
    'model.rpn_test_pre_nms': 'Faster R-CNN: RPN proposals before NMS at test (0: preset)',
    'model.rpn_test_post_nms': 'Faster R-CNN: RPN proposals after NMS at test (0: preset)',
    'model.rcnn_num_sample': 'Faster R-CNN: RoIs sampled per image for the head (0: preset)',
    'model.rcnn_max_num_gt': 'Faster R-CNN: most ground-truth boxes per image (0: preset)',
    'model.random_shapes': 'YOLOv3: square training sizes, multiples of 32 (empty: '
                           'data_shape only, GluonCV\'s --no-random-shape)',
    'model.random_shape_interval': 'YOLOv3: batches between two draws of the training size',
    'teacher.network': 'teacher network (empty: no teacher, or read from its model.json)',
    'teacher.params': 'teacher weights (a model.json beside them describes the network)',
    'teacher.pretrained': 'the teacher is GluonCV\'s published VOC detector, downloaded',
    'distill.method': 'gan, mimic, fgfi, cosine, several joined by + (gan+cosine), or head_only',
    'distill.adapter': 'student-to-teacher feature adapter: conv1x1',
    'distill.init_head_from_teacher': 'start the student\'s head from the teacher\'s',
    'distill.fold_adapters': 'also write OUT/folded/student.params, adapters folded into the head',
    'distill.grad_ratio_interval': 'log the distillation/detection gradient ratio every this many '
                                   'iterations (0: never)',
    'distill.gan.critic': 'critic: dcgan (WGAN reference), bn, plain or spectral',
    'distill.gan.critic_width': 'critic width (dcgan: first layer, doubled per layer)',
    'distill.gan.critic_batch': 'joint: teacher and student maps in one critic batch; separate',
    'distill.gan.critic_lr': 'critics\' Adam learning rate',
    'distill.gan.critic_beta1': 'critics\' Adam beta1',
    'distill.gan.clip': 'WGAN weight clipping bound of every critic parameter',
    'distill.gan.critic_norm': 'former name of the critic kind (clip: plain, spectral); read '
                               'with a warning',
    'distill.gan.n_critic': 'critic updates per student update',
    'distill.gan.adv_weight': 'weight of the adversarial term',
    'distill.gan.adv_optimizer': 'adam: an own Adam applies the adversarial gradient; shared: '
                                 'the run\'s optimizer',
    'distill.gan.adv_lr': 'that Adam\'s learning rate',
    'distill.gan.adv_beta1': 'that Adam\'s beta1',
    'distill.gan.epochs': 'epochs with the adversarial term (-1: all)',
    'distill.gan.lr_steps': 'the critics\' own lr decay epochs (null: train.lr_steps; []: '
                            'constant)',
    'distill.gan.critic_warmup_epochs': 'first epochs in which the critics train alone',
    'distill.mimic.weight': 'weight of the L2 feature mimic term',
    'distill.fgfi.weight': 'weight of the FGFI term',
    'distill.fgfi.psi': 'FGFI mask threshold, a fraction of each box\'s best anchor IoU',
    'distill.fgfi.warmup_iters': 'iterations before the FGFI term starts',
    'distill.cosine.weight': 'weight of the cosine-attention term (0: logged only)',
    'distill.cosine.attention_power': 'power of the teacher-norm attention map (0: uniform)',
    'distill.cosine.epochs': 'epochs with the cosine term (-1: all)',
    'train.epochs': 'training epochs',
    'train.batch_size': 'global batch size, split over the devices and processes',
    'train.optimizer': 'sgd or adam',
    'train.lr': 'learning rate',
    'train.momentum': 'SGD momentum',
    'train.wd': 'weight decay',
    'train.lr_decay': 'learning rate factor at each of train.lr_steps',
    'train.lr_steps': 'epochs at which the learning rate is multiplied by train.lr_decay',
    'train.warmup_iters': 'iterations of linear learning-rate warm-up (0: none)',
    'train.ctx': 'devices: cpu, cpu:0,1, gpu:0,1,2,3',
    'train.kvstore': 'KVStore: device, local; dist_sync or dist_device_sync in a job of '
                     'python -m gluon_distill.launch, docs/multi-machine.md',
    'train.horovod': 'one process per device under horovodrun; needs the horovod extra',
    'train.seed': 'training seed (initialisation, shuffling, augmentation)',
    'train.out': 'output folder of the run',
    'train.resume': 'continue from OUT/last.ckpt at the next epoch boundary',
    'train.overwrite': 'move another run in OUT aside to OUT.old-<time> and start afresh',
    'train.log_interval': 'iterations per logged window (metrics.jsonl, train.log)',
    'train.val_interval': 'validate every this many epochs (and at the last)',
    'train.max_nonfinite': 'non-finite losses in a row that stop the run',
    'train.divergence_stop': 'stop a run whose losses explode (docs/training.md)',
    'train.hybridize': 'hybridize the network and the training step (faster)',
    'train.progress': 'progress bars on a terminal',
    'train.mixup': 'YOLOv3: mixup of image pairs (GluonCV\'s MixupDetection, ratio ~ '
                   'Beta(1.5, 1.5))',
    'train.no_mixup_epochs': 'YOLOv3: the last this many epochs train without mixup',
    'train.label_smooth': 'YOLOv3: label smoothing of the class targets',
    'train.no_wd': 'YOLOv3: no weight decay on biases and BatchNorm beta/gamma',
    'eval.metric': 'validation metric: auto (coco on COCO data, else voc07), voc07 or coco',
    'eval.iou_thresh': 'IoU of a match (VOC07 mAP)',
    'eval.nms_thresh': 'NMS IoU threshold of the detector\'s output',
    'eval.nms_topk': 'highest-scoring detections NMS looks at',
    'eval.post_nms': 'detections per image kept after NMS',
    'eval.batch_size': 'validation batch size',
}

# Command-line flag -> dotted key. Every tool flag that configures the run is one of these.
FLAG_ALIASES = {
    'network': 'model.network',
    'data_shape': 'model.data_shape',
    'pretrained_base': 'model.pretrained_base',
    'params': 'model.params',
    'max_size': 'model.max_size',
    'roi_mode': 'model.roi_mode',
    'data_root': 'data.root',
    'train_split': 'data.train_split',
    'val_split': 'data.val_split',
    'split_seed': 'data.split_seed',
    'val_fraction': 'data.val_fraction',
    'num_workers': 'data.num_workers',
    'ctx': 'train.ctx',
    'batch_size': 'train.batch_size',
    'epochs': 'train.epochs',
    'lr': 'train.lr',
    'wd': 'train.wd',
    'lr_decay_epoch': 'train.lr_steps',
    'out': 'train.out',
    'resume': 'train.resume',
    'overwrite': 'train.overwrite',
    'seed': 'train.seed',
    'kvstore': 'train.kvstore',
    'horovod': 'train.horovod',
    'teacher_network': 'teacher.network',
    'teacher_params': 'teacher.params',
    'teacher_pretrained': 'teacher.pretrained',
}


def _type_name(tp):
    return getattr(tp, '__name__', str(tp).replace('typing.', ''))


def _coerce(value, tp, key):
    """Check ``value`` against the annotated type ``tp``; ints are accepted for floats."""
    origin = typing.get_origin(tp)
    if origin is typing.Union:  # Optional[X]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], key)
    if origin in (list, List):
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError('{}: expected a list of {}, got {!r}'.format(
                key, _type_name(item_tp), value))
        return [_coerce(v, item_tp, '{}[{}]'.format(key, i)) for i, v in enumerate(value)]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is str and value is None:
        return ''
    if tp is bool and not isinstance(value, bool):
        raise ConfigError('{}: expected true/false, got {!r}'.format(key, value))
    if tp in (int, float) and isinstance(value, bool):
        raise ConfigError('{}: expected {}, got {!r}'.format(key, tp.__name__, value))
    if not isinstance(value, tp):
        raise ConfigError('{}: expected {}, got {!r} ({})'.format(
            key, _type_name(tp), value, type(value).__name__))
    return value


def _field_types(obj):
    return {f.name: f.type for f in dataclasses.fields(obj)}


_WARNED = set()


def _legacy_key(node, part, dotted):
    """A former flat ``distill.KEY``: its new dotted name (warned once per process), or None."""
    if not isinstance(node, DistillConfig) or part not in LEGACY_DISTILL_KEYS:
        return None
    new = 'distill.' + LEGACY_DISTILL_KEYS[part]
    node.__dict__.setdefault('_legacy', {})[LEGACY_DISTILL_KEYS[part]] = dotted
    if dotted not in _WARNED:
        _WARNED.add(dotted)
        warnings.warn('config key {} is now {} (read as such)'.format(dotted, new),
                      FutureWarning, stacklevel=4)
    return new


def set_key(cfg, dotted, value, _shown=None):
    """Set ``cfg.<dotted>`` to ``value`` after checking the key exists, the type fits and the
    value is allowed (:data:`CHOICES`)."""
    parts = dotted.split('.')
    node = cfg
    for depth, part in enumerate(parts):
        if not dataclasses.is_dataclass(node):
            raise ConfigError('unknown config key {!r} ({} is not a section)'.format(
                dotted, '.'.join(parts[:depth])))
        types = _field_types(node)
        new = _legacy_key(node, part, '.'.join(parts[:depth + 1]))
        if new is not None and depth == len(parts) - 1:
            return set_key(cfg, new, value, _shown='.'.join(parts[:depth + 1]))
        if part not in types:
            where = '.'.join(parts[:depth]) or 'top level'
            raise ConfigError('unknown config key {!r} ({} has: {})'.format(
                dotted, where, ', '.join(sorted(types))))
        if depth == len(parts) - 1:
            if dataclasses.is_dataclass(getattr(node, part)):
                if not isinstance(value, dict):
                    raise ConfigError('{}: expected a mapping, got {!r}'.format(dotted, value))
                merge_dict(getattr(node, part), value, prefix=dotted)
            else:
                value = _coerce(value, types[part], dotted)
                setattr(node, part, _check_choice(dotted, value, _shown))
        else:
            node = getattr(node, part)


def merge_dict(node, mapping, prefix=''):
    """Apply a nested mapping (a parsed YAML file) onto a config node, key by key."""
    if not isinstance(mapping, dict):
        raise ConfigError('{}: expected a mapping, got {!r}'.format(prefix or 'config', mapping))
    for key, value in mapping.items():
        dotted = '{}.{}'.format(prefix, key) if prefix else str(key)
        types = _field_types(node)
        new = _legacy_key(node, key, dotted)
        if new is not None:
            section, name = LEGACY_DISTILL_KEYS[key].split('.')
            value = _coerce(value, _field_types(getattr(node, section))[name], new)
            setattr(getattr(node, section), name, _check_choice(new, value, dotted))
            continue
        if key not in types:
            raise ConfigError('unknown config key {!r} ({} has: {})'.format(
                dotted, prefix or 'top level', ', '.join(sorted(types))))
        child = getattr(node, key)
        if dataclasses.is_dataclass(child):
            merge_dict(child, value, dotted)
        else:
            setattr(node, key, _check_choice(dotted, _coerce(value, types[key], dotted)))


def check_choices(node, prefix=''):
    """Check every key of :data:`CHOICES` (and ``distill.method``) under ``node``, the config
    or its section ``prefix``: for a config assembled by assigning attributes, which
    :func:`set_key` has not seen. Raises :class:`ConfigError` naming the key."""
    for dotted in ('distill.method',) + tuple(CHOICES):
        if prefix and not dotted.startswith(prefix + '.'):
            continue
        rel = dotted[len(prefix) + 1:] if prefix else dotted
        value = node
        for part in rel.split('.'):
            value = getattr(value, part)
        shown = distill_key(node, rel) if isinstance(node, DistillConfig) else dotted
        _check_choice(dotted, value, shown)


def config_from(values, base=None):
    """A config from a dict of dotted keys -> values, applied in order onto ``base`` (a copy of
    it; the defaults when None), each checked as ``--set`` checks it."""
    cfg = Config() if base is None else copy.deepcopy(base)
    for key, value in values.items():
        set_key(cfg, key, value)
    return cfg


def find_config(path):
    """The file ``--config path`` names: as given, else a shipped experiment config
    (:func:`gluon_distill.resources.find_experiment`, so ``voc/NAME.yaml`` works from any
    folder); a path found nowhere is a :class:`ConfigError` naming the nearest configs."""
    from .resources import find_experiment, near_configs
    found = find_experiment(path)
    if found:
        return found
    near = near_configs(path)
    raise ConfigError('cannot read config file {}: no such file{}'.format(
        path, '; did you mean {}?'.format(' or '.join(near)) if near else
        ' (the shipped configs: experiments/README.md, e.g. '
        'voc/ssd512_resnet50_v1_to_mobilenet1.0.yaml)'))


def load_config(path=None, overrides=(), base=None):
    """Defaults (``base``, or :class:`Config`'s), then the YAML file at ``path`` (found by
    :func:`find_config`), then ``key=value`` overrides, in that order."""
    cfg = Config() if base is None else copy.deepcopy(base)
    if path:
        found = find_config(path)
        try:
            with open(found) as f:
                data = yaml_load(f) or {}
        except OSError as e:
            raise ConfigError('cannot read config file {}: {}'.format(path, e.strerror))
        except yaml.YAMLError as e:
            raise ConfigError('config file {} is not valid YAML: {}'.format(path, e))
        try:
            merge_dict(cfg, data)
        except ConfigError as e:
            raise ConfigError('{}: {}'.format(path, e))
    for item in overrides:
        if '=' not in item:
            raise ConfigError('--set expects section.key=value, got {!r}'.format(item))
        key, raw = item.split('=', 1)
        set_key(cfg, key.strip(), yaml_load(raw) if raw.strip() else '')
    return cfg


def get_key(cfg, dotted):
    """The value of ``cfg.<dotted>``."""
    value = cfg
    for part in dotted.split('.'):
        value = getattr(value, part)
    return value


def format_default(value):
    """A value as a flag takes it: ``true``/``false``, lists comma-separated, ``(empty)``."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if value is None:
        return 'null'
    if isinstance(value, (list, tuple)):
        return ','.join(str(v) for v in value) if value else 'none'
    if value == '':
        return 'none'
    return str(value)


def comma_list(item_type=str, name='list'):
    """An argparse ``type``: ``'a,b'`` -> ``['a', 'b']`` (items converted by ``item_type``).
    Every list a flag takes is written this way."""
    def parse(text):
        items = [t.strip() for t in str(text).split(',') if t.strip()]
        try:
            return [item_type(t) for t in items]
        except ValueError:
            raise argparse.ArgumentTypeError('expected a comma-separated list of {}, e.g. {}, '
                                             'got {!r}'.format(name, '14,20' if item_type is int
                                                               else 'a,b', text))
    parse.__name__ = name
    return parse


# flag -> (type, metavar); absent: a string flag with metavar from the name
_FLAG_FORMS = {
    'network': (str, 'NAME'), 'data_root': (str, 'DIR'), 'train_split': (str, 'SPLIT'),
    'val_split': (str, 'SPLIT'), 'ctx': (str, 'DEVICES'), 'out': (str, 'DIR'),
    'params': (str, 'FILE'), 'kvstore': (str, 'TYPE'), 'data_shape': (int, 'PX'),
    'batch_size': (int, 'N'), 'epochs': (int, 'N'), 'num_workers': (int, 'N'),
    'seed': (int, 'N'), 'split_seed': (int, 'N'), 'val_fraction': (float, 'F'),
    'lr': (float, 'LR'), 'wd': (float, 'WD'),
    'lr_decay_epoch': (comma_list(int, 'epochs'), 'E1,E2'),
    'max_size': (int, 'PX'), 'roi_mode': (str, None),
    'teacher_network': (str, 'NAME'), 'teacher_params': (str, 'FILE'),
}
# a flag's help beyond the key's meaning (KEY_HELP)
_FLAG_NOTES = {
    'train_split': ', e.g. 2007_trainval+2012_trainval or train',
    'val_split': ', e.g. 2007_test or val',
    'lr_decay_epoch': ', comma-separated',
    'max_size': '; --data-shape is the short side',
}
COMMON_FLAGS = ('network', 'data_root', 'train_split', 'val_split', 'split_seed', 'val_fraction',
                'data_shape', 'pretrained_base', 'params', 'batch_size', 'epochs', 'lr', 'wd',
                'lr_decay_epoch', 'num_workers', 'seed', 'ctx', 'kvstore', 'horovod', 'out',
                'resume', 'overwrite')
FASTER_RCNN_FLAGS = ('roi_mode', 'max_size')
TEACHER_FLAGS = ('teacher_network', 'teacher_params', 'teacher_pretrained')


def _flag_help(name, defaults):
    dotted = FLAG_ALIASES[name]
    text = KEY_HELP[dotted] + _FLAG_NOTES.get(name, '')
    return '{} ({}; default: {})'.format(text, dotted, format_default(
        get_key(defaults, dotted))).replace('%', '%%')


def add_flags(parser, names, defaults=None):
    """Add the flags ``names`` (keys of :data:`FLAG_ALIASES`) to ``parser``; each help names
    its key and its default in ``defaults`` (the config before the flags: :class:`Config`'s
    defaults unless given). Flags default to ``None`` so that only the ones a user gives
    override the config file."""
    defaults = Config() if defaults is None else defaults
    for name in names:
        flag = '--' + name.replace('_', '-')
        help_text = _flag_help(name, defaults)
        if name == 'pretrained_base':
            parser.add_argument(flag, dest=name, default=None,
                                action=argparse.BooleanOptionalAction, help=help_text)
        elif name in ('horovod', 'resume', 'overwrite', 'teacher_pretrained'):
            parser.add_argument(flag, dest=name, default=None, action='store_true',
                                help=help_text)
        elif name == 'roi_mode':
            parser.add_argument(flag, dest=name, default=None, choices=CHOICES['model.roi_mode'],
                                help=help_text)
        else:
            tp, metavar = _FLAG_FORMS[name]
            parser.add_argument(flag, dest=name, type=tp, default=None, metavar=metavar,
                                help=help_text)
    return parser


def add_common_arguments(parser, defaults=None, faster_rcnn=False):
    """The flags every training tool shares: ``--config``, ``--set`` and the aliases of dotted
    keys (:data:`COMMON_FLAGS`; with ``faster_rcnn``, :data:`FASTER_RCNN_FLAGS` too). Help
    texts show each flag's default in ``defaults`` (see :func:`add_flags`)."""
    parser.add_argument('--config', metavar='FILE',
                        help='YAML experiment file: a path, or a shipped config such as '
                             'voc/ssd512_resnet50_v1_to_mobilenet1.0.yaml (experiments/)')
    parser.add_argument('--set', action='append', default=[], metavar='SECTION.KEY=VALUE',
                        help='override one config key (docs/config.md); repeatable')
    add_flags(parser, COMMON_FLAGS + (FASTER_RCNN_FLAGS if faster_rcnn else ()), defaults)
    return parser


def config_from_args(args, base=None):
    """Resolve the config of a tool: ``base`` (the defaults when None), the file, then
    ``--set``, then explicit flags."""
    cfg = load_config(args.config, list(args.set), base=base)
    for name, dotted in FLAG_ALIASES.items():
        value = getattr(args, name, None)
        if value is not None:
            set_key(cfg, dotted, value)
    return cfg
