"""Teacher and student of a distillation run, built from a config and checked against each
other and against the data before any training starts."""
import os
from dataclasses import dataclass
from typing import List, Optional, Tuple

import mxnet as mx

from .io import load_detector, read_model_json
from .ssd import (ModelError, build_ssd, initialize, resolve_arch, arch_from_dict,
                  zoo_download_hint)
from .student import ChannelAdapters, compose_student, copy_head, feature_shapes


@dataclass
class Teacher:
    net: object                 # a detector of the run's family (SSD, Faster R-CNN), frozen
    arch: object                # its architecture (SSDArch, RCNNArch)
    classes: List[str]
    mean: List[float]
    std: List[float]
    source: str


@dataclass
class StudentPlan:
    """How the student is composed and which maps the critics compare."""
    net: object                          # the deployable student detector
    arch: object                         # the student's architecture
    head: str                            # 'teacher' or 'own'
    pairs: List[Tuple[int, int]]         # (student map, teacher map) of equal spatial size
    sizes: List[int]
    critic_adapters: Optional[object]    # own-head case: adapters that only feed the critics
    student_channels: List[int]
    teacher_channels: List[int]


def load_teacher(tcfg, model_cfg, classes, ctx):
    """The teacher of ``teacher`` config section: ``params`` (with its model.json, or a zoo
    ``network`` for a bare GluonCV weight file) or the zoo's VOC weights (``pretrained``)."""
    if tcfg.params:
        if not os.path.exists(tcfg.params):
            raise ModelError('teacher.params: no file at {}'.format(tcfg.params))
        try:
            spec = read_model_json(tcfg.params)
        except ModelError:
            spec = None
        if spec is not None:
            net, spec = load_detector(tcfg.params, ctx)
            if spec['kind'] != 'ssd':
                raise ModelError('teacher.params {}: a teacher must be a plain SSD, this is a '
                                 '{}'.format(tcfg.params, spec['kind']))
            return Teacher(net, arch_from_dict(spec['arch']), spec['classes'], spec['mean'],
                           spec['std'], tcfg.params)
        if not tcfg.network:
            raise ModelError('teacher.params {} has no model.json beside it: also give '
                             '--teacher-network (e.g. resnet50_v1) so it can be '
                             'rebuilt'.format(tcfg.params))
    elif not tcfg.pretrained:
        raise ModelError('no teacher: give --teacher-params FILE (a model trained with '
                         'tools/train_ssd.py) or --teacher-network NAME --teacher-pretrained')
    arch = resolve_arch(tcfg.network, model_cfg.data_shape)
    net = build_ssd(arch, classes)
    initialize(net, ctx)
    path = tcfg.params or _zoo_detector_file(arch, 'coco' if tcfg.network.endswith('_coco')
                                             else 'voc')
    try:
        net.load_parameters(path, ctx=ctx)
    except (AssertionError, mx.base.MXNetError, ValueError) as e:
        raise ModelError('teacher weights {} do not fit {} with {} classes: {}'.format(
            path, arch.network, len(classes), str(e).splitlines()[0][:300]))
    return Teacher(net, arch, list(classes), list(model_cfg.mean), list(model_cfg.std), path)


def _zoo_detector_file(arch, dataset='voc'):
    return zoo_teacher_file('ssd_{}_{}_{}'.format(arch.data_shape, arch.network, dataset))


def zoo_teacher_file(name):
    """The local file of GluonCV's detector weights ``name`` (downloaded if need be); offline,
    a :class:`ModelError` naming the file to place by hand."""
    try:
        from gluoncv.model_zoo.model_store import get_model_file
        return get_model_file(name)
    except Exception as e:  # offline: several exception types
        reason = type(e).__name__ + (': ' + str(e).splitlines()[0][:120] if str(e) else '')
        raise ModelError('could not download the zoo teacher {} ({}); place the file at {} by '
                         'hand or pass --teacher-params FILE'.format(
                             name, reason, zoo_download_hint(name))) from e


def check_teacher(teacher, classes, model_cfg, input_size=None):
    """Same classes in the same order, same input size and normalisation, or a clear error.

    ``input_size``: ``(teacher's, student's, what they are)`` when the family's input size is
    not ``data_shape`` alone (Faster R-CNN: short side and max size)."""
    problems = []
    if list(teacher.classes) != list(classes):
        problems.append('classes: teacher {} vs data {}'.format(teacher.classes, classes))
    t_size, s_size, what = input_size or (teacher.arch.data_shape, model_cfg.data_shape, '')
    if t_size != s_size:
        problems.append('input size: teacher {} px vs student {} px{}'.format(
            t_size, s_size, what))
    for name in ('mean', 'std'):
        t, s = getattr(teacher, name), list(getattr(model_cfg, name))
        if any(abs(a - b) > 1e-6 for a, b in zip(t, s)) or len(t) != len(s):
            problems.append('{}: teacher {} vs student {}'.format(name, t, s))
    if problems:
        raise ModelError('teacher {} does not match this run:\n  '.format(teacher.source) +
                         '\n  '.join(problems))


def plan_student(teacher, model_cfg, classes, ctx, init_head_from_teacher=True):
    """Compose the student and pair its maps with the teacher's.

    Rule: if the student yields as many maps as the teacher and every pair has the same
    spatial size, the student feeds the teacher's head through adapters (the paper's set-up).
    Otherwise (e.g. the 7-scale VGG16-512 teacher) the student keeps a head of its own, and
    each student map is paired with the teacher map of equal spatial size for the critics
    (maps without such a partner get no critic).
    """
    s_arch = resolve_arch(model_cfg.network, model_cfg.data_shape, model_cfg.width,
                          model_cfg.blocks)
    own = build_ssd(s_arch, classes, pretrained_base=model_cfg.pretrained_base)
    initialize(own, ctx)
    s_shapes = feature_shapes(own.features, model_cfg.data_shape, ctx[0])
    t_shapes = feature_shapes(teacher.net.features, model_cfg.data_shape, ctx[0])
    s_ch = [c for c, _, _ in s_shapes]
    t_ch = [c for c, _, _ in t_shapes]
    same_layout = (len(s_shapes) == len(t_shapes) and
                   all(s[1:] == t[1:] for s, t in zip(s_shapes, t_shapes)))
    if same_layout:
        adapters = ChannelAdapters(s_ch, t_ch)
        net = compose_student(own.features, adapters, teacher.arch, classes)
        net.head_arch = teacher.arch
        net.student_arch = s_arch
        initialize(net, ctx)
        if init_head_from_teacher:
            copy_head(teacher.net, net)
        pairs = [(k, k) for k in range(len(s_shapes))]
        return StudentPlan(net, s_arch, 'teacher', pairs, [s[1] for s in s_shapes], None,
                           s_ch, t_ch)
    pairs = []
    for k, (_, h, w) in enumerate(s_shapes):
        match = [j for j, t in enumerate(t_shapes) if t[1:] == (h, w)]
        if match:
            pairs.append((k, match[0]))
    if not pairs:
        raise ModelError('student maps {} and teacher maps {} share no spatial size: no critic '
                         'can compare them'.format(_fmt(s_shapes), _fmt(t_shapes)))
    # One adapter slot per student map, indexed like the maps (SSDFeatureForward applies the
    # adapters to all of them and the distiller selects maps by student index); a map with no
    # partner keeps its channels (identity, no parameters).
    partner = dict(pairs)
    critic_adapters = ChannelAdapters(
        s_ch, [t_ch[partner[k]] if k in partner else s_ch[k] for k in range(len(s_ch))])
    critic_adapters.initialize(ctx=ctx)
    return StudentPlan(own, s_arch, 'own', pairs, [s_shapes[s][1] for s, _ in pairs],
                       critic_adapters, s_ch, t_ch)


def describe_layout(plan):
    head = ('the teacher\'s head through 1x1 adapters' if plan.head == 'teacher' else
            'its own head (teacher head incompatible); adapters feed the critics only')
    return 'student feeds {}; critics on (student, teacher) maps {} of sizes {}'.format(
        head, plan.pairs, plan.sizes)


def _fmt(shapes):
    return ['{}x{}x{}'.format(*s) for s in shapes]
