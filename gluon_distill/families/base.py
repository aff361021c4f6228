"""The detector-family seam: everything that differs between one-stage SSD and other detector
families, in one object per family.

The training loop, its hooks, the evaluator and the distillers never ask which family they
run; the run builder (:mod:`gluon_distill.training`) asks the family for a network, its
``model.json`` spec, its training loader, the forward pass and loss the steps run, and how to
predict for validation. A new family is one module implementing :class:`DetectorFamily` and
one entry in :data:`gluon_distill.families.FAMILIES`.
"""
from ..data.loader import DeviceBatch, as_device_batch  # noqa: F401 (the seam's batch)
from ..evaluation.inference import score_predictions


class DetectorFamily:
    """What the run builder and the steps need to know about one detector family.

    Network outputs and losses stay per device lists throughout, so that a family's loss can
    normalise over the whole batch (SSD: by the positives of every device).
    """
    name = ''
    #: the loss components the steps log, in order (each a per-device list from :meth:`loss`)
    loss_names = ()

    def build(self, model_cfg, classes, ctx):
        """``(net, arch)``: the detector of a ``model`` config section, initialised on ``ctx``."""
        raise NotImplementedError

    def spec(self, arch, classes, model_cfg, prov, extra=None):
        """The ``model.json`` content of a network :meth:`build` made."""
        raise NotImplementedError

    def hybridize_flags(self):
        """``hybridize`` keywords of the network and the training step (with
        ``train.hybridize``). Static memory (``static_alloc``, ``static_shape``: each cached
        graph keeps one memory plan between calls) suits inputs of one size; a family whose
        input size changes from batch to batch returns ``{}`` (memory taken per call and
        given back, as GluonCV's training scripts do)."""
        return {'static_alloc': True, 'static_shape': True}

    def train_loader(self, dataset, net, cfg, ctx):
        """The training loader of a run: iterable per epoch (``loader.epoch(e)``), ``len()``
        iterations, and ``prepare(batch)`` putting a batch on the devices
        (:func:`as_device_batch` reads the result)."""
        raise NotImplementedError

    def training_forward(self, net):
        """A block ``(x, *inputs) -> head outputs`` (a tuple) of a plain training step."""
        raise NotImplementedError

    def feature_forward(self, net, adapters=None):
        """A block ``(x, *inputs) -> [map_0 .. map_K-1] + head outputs`` for distillation: the
        maps the distillers compare (through ``adapters`` when given) and the same head
        outputs as :meth:`training_forward`, from one backbone pass. Its
        ``num_head_outputs`` says how many trailing outputs are head outputs."""
        raise NotImplementedError

    def loss(self):
        """A callable ``(head outputs per device, DeviceBatch.targets) -> (totals, parts)``:
        per-device loss arrays to back-propagate (summing over devices to the batch loss) and
        ``{name: per-device arrays}`` for :attr:`loss_names`."""
        raise NotImplementedError

    def predictions(self, net, dataset, inputs, ctx, eval_cfg, num_workers=0, progress=None):
        """Yield ``(record, boxes (K, 4), labels (K,), scores (K,))`` per image of ``dataset``:
        the detector's final detections (``eval_cfg``'s NMS settings) in the original image's
        0-based pixels. ``inputs``: ``data_shape``, ``mean``, ``std`` (a ``model.json`` spec
        has them). Leaves ``net`` ready to train on."""
        raise NotImplementedError

    def evaluate(self, net, dataset, inputs, ctx, eval_cfg, classes, evaluator=None,
                 num_workers=0, progress=None):
        """``(result, evaluator)``: ``evaluator`` (reset/process/evaluate; default VOC07 at
        ``eval_cfg.iou_thresh``) fed every image's :meth:`predictions` and ground truth."""
        return score_predictions(self.predictions(net, dataset, inputs, ctx, eval_cfg,
                                                  num_workers, progress),
                                 classes, eval_cfg.iou_thresh, evaluator)

    def ground_truth_reader(self, net, data_shape, ctx):
        """A callable: loader batch (host arrays, before ``prepare``) -> per image, its
        ground-truth boxes ``(M, 4)`` in input pixels (FGFI's imitation masks)."""
        raise NotImplementedError

    def scale_anchors(self, net, data_shape, ctx):
        """Per map of the network's features, its anchors ``(H, W, A, 4)`` (centre x, y, w,
        h in input pixels; FGFI's imitation masks)."""
        raise NotImplementedError

    # ---- distillation: teacher, student composition, deployable spec

    def distillation_plan(self, cfg, classes, ctx):
        """``(teacher, plan)``: the frozen teacher of ``cfg.teacher`` (with ``net``, ``source``
        and ``arch``) and the student plan (``net`` the deployable student, ``pairs``
        (student map, teacher map), ``critic_adapters`` or None, ``teacher_channels``),
        checked against each other and the classes."""
        raise NotImplementedError

    def describe_plan(self, teacher, plan):
        """One log line: teacher, student, and which maps are paired."""
        return ''

    def teacher_forward(self, teacher):
        """A block ``x -> teacher maps`` (run outside autograd, inference mode)."""
        raise NotImplementedError

    def student_spec(self, plan, classes, model_cfg, prov, extra=None, folded=False):
        """The ``model.json`` of the deployable student (loadable without the teacher)."""
        raise NotImplementedError

    def fold(self, plan, ctx):
        """The student with its training-only layers folded away, or None if nothing folds."""
        return None


def saved_teacher(tcfg, ctx, kind, title, arch_from_dict, no_teacher):
    """The frozen teacher of a ``teacher`` config section's ``params`` (with its
    ``model.json``, whose kind must be ``kind``; ``title``, e.g. ``YOLOv3``, names it in
    errors); ``no_teacher``: the error when no file is given. ``arch_from_dict`` rebuilds
    the family's arch from ``model.json``."""
    import os
    from ..models.io import load_detector, read_model_json
    from ..models.ssd import ModelError
    from ..models.teacher import Teacher
    if not tcfg.params:
        raise ModelError(no_teacher)
    if not os.path.exists(tcfg.params):
        raise ModelError('teacher.params: no file at {}'.format(tcfg.params))
    spec = read_model_json(tcfg.params)
    if spec.get('kind') != kind:
        raise ModelError('teacher.params {}: a {} student needs a {} teacher, this is a '
                         '{}'.format(tcfg.params, title, title, spec.get('kind')))
    net, spec = load_detector(tcfg.params, ctx)
    for p in net.collect_params().values():
        p.grad_req = 'null'
    return Teacher(net, arch_from_dict(spec['arch']), spec['classes'], spec['mean'],
                   spec['std'], tcfg.params)
