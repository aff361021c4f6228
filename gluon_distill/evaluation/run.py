"""Evaluate a saved detector (``.params`` + ``model.json``) on a VOC-format split (VOC07 mAP)
or on COCO-format data (COCO AP@[.5:.95] by pycocotools)."""
import copy
import logging
import os

from ..config import (Config, ConfigError, DataConfig, EvalConfig, merge_dict, set_key,
                      yaml_load)
from ..data.coco import coco_split_source, is_coco_data
from ..data.datasets import load_split, resolve_root
from ..data.voc import DetectionDataset
from ..engine.devices import parse_ctx
from ..families import family_of_spec
from ..models.io import load_detector
from ..io_utils import ensure_writable_dir
from ..progress import progress_bar
from .coco import COCOEvaluator, format_coco_table
from .voc07 import format_ap_table, save_metrics_json


def data_config_for(spec, data_root=None, split=None, overrides=()):
    """The data section to evaluate on: the training run's validation data (recorded in
    ``model.json``) unless ``data_root``/``split``/``overrides`` (``data.KEY=VALUE`` strings,
    as ``--set`` takes them) say otherwise.

    Another ``data_root`` drops the recorded COCO file (``format``, ``annotations``,
    ``images``; a COCO root is recognised by its layout). Another ``data.annotations`` without
    ``split`` is evaluated whole (split ``all``), unless it contains ``{split}``.
    """
    data = DataConfig()
    recorded = copy.deepcopy(spec.get('data') or {})
    if recorded:
        merge_dict(data, recorded, 'model.json data')
    if data_root:
        data.root = data_root
        if data_root != recorded.get('root'):
            data.val_split = split or ('val' if data_root == 'synthetic' else '2007_test')
            if data_root != 'synthetic':
                data.format, data.annotations, data.images = 'voc', '', ''
    cfg = Config(data=data)
    for item in overrides:
        key, sep, raw = item.partition('=')
        key = key.strip()
        if not sep or not key.startswith('data.'):
            raise ConfigError('eval --set takes data.KEY=VALUE, got {!r}'.format(item))
        set_key(cfg, key, yaml_load(raw) if raw.strip() else '')
    data = cfg.data
    if data.annotations and data.annotations != recorded.get('annotations') and not split \
            and '{split}' not in data.annotations:
        data.val_split = 'all'
    if split:
        data.val_split = split
    return data


def eval_settings(spec, **given):
    """NMS and IoU settings to evaluate a saved model with: each given value (not None),
    else the run's own (``model.json``'s ``eval``, written since the Faster R-CNN family:
    its NMS is 0.3), else :class:`~gluon_distill.config.EvalConfig`'s default."""
    recorded = spec.get('eval') or {}
    default = EvalConfig()
    return {k: v if v is not None else recorded.get(k, getattr(default, k))
            for k, v in given.items()}


def evaluate_params(params_path, data_root=None, split=None, ctx='cpu', batch_size=16,
                    save_dir=None, num_workers=0, nms_thresh=None, nms_topk=None, post_nms=None,
                    iou_thresh=None, progress=True, logger=None, overrides=()):
    """VOC07 mAP (or, on COCO data, COCO AP) of the detector at ``params_path``; returns
    ``(result, table_text)``. ``overrides``: see :func:`data_config_for`. NMS and IoU settings
    left None are the training run's (:func:`eval_settings`): the logged mAP is reproduced.

    With ``save_dir``: ``metrics.json`` and the devkit's ``results/comp4_det_<split>_<class>.txt``
    (COCO data: ``results.json``, the COCO results file in the JSON's image and category ids);
    the folder is checked writable first, before the model and data are loaded.
    """
    logger = logger or logging.getLogger('gluon_distill')
    if save_dir:
        ensure_writable_dir(save_dir, '--out folder')
    ctx_list = parse_ctx(ctx)
    net, spec = load_detector(params_path, ctx_list)
    classes = spec['classes']
    data = data_config_for(spec, data_root, split, overrides)
    root = resolve_root(data)
    records, _, report = load_split(root, data.val_split, classes, data, progress)
    report.raise_if_fatal()
    dataset = DetectionDataset(records, classes)
    logger.info('evaluating %s on %d images of %s split %r', params_path, len(dataset), root,
                data.val_split)
    net.hybridize(static_alloc=True)
    coco = is_coco_data(data, root)
    if coco:  # the ground truth is the JSON itself, predictions keyed by its image ids
        evaluator = COCOEvaluator(coco_split_source(data, root, data.val_split)[0],
                                  data.category_ids, classes)
    else:
        evaluator = None
    bar = progress_bar(None, progress, total=len(dataset), desc='eval', leave=False)
    chosen = eval_settings(spec, iou_thresh=iou_thresh, nms_thresh=nms_thresh,
                           nms_topk=nms_topk, post_nms=post_nms)
    logger.info('NMS %g (top %d before, %d after), IoU %g', chosen['nms_thresh'],
                chosen['nms_topk'], chosen['post_nms'], chosen['iou_thresh'])
    settings = EvalConfig(batch_size=batch_size, **chosen)
    result, evaluator = family_of_spec(spec).evaluate(net, dataset, spec, ctx_list, settings,
                                                      classes, evaluator, num_workers, bar)
    bar.close()
    result['params'] = os.path.abspath(params_path)
    result['data_root'] = root
    result['split'] = data.val_split
    if save_dir:
        os.makedirs(save_dir, exist_ok=True)
        save_metrics_json(result, os.path.join(save_dir, 'metrics.json'))
        if coco:
            evaluator.write_results(os.path.join(save_dir, 'results.json'))
        else:
            evaluator.write_devkit_results(os.path.join(save_dir, 'results'),
                                           split=_devkit_split_name(data.val_split))
    return result, format_coco_table(result, classes) if coco else format_ap_table(result, classes)


def _devkit_split_name(split):
    """``2007_test`` -> ``test`` (the devkit's file names carry the image set only)."""
    return split.split('+')[-1].split('_')[-1]
