"""What an evaluation of a saved detector reads and writes: the data it runs on (the training
run's validation data unless told otherwise), its NMS and IoU settings (the run's own), and its
results (the table, ``metrics.json``, the devkit's or COCO's results files). The evaluation of
a ``.params`` file is :func:`gluon_distill.evaluate.evaluate_params`, of an export folder
:func:`gluon_distill.evaluation.exported.evaluate_export`."""
import copy
import os

from ..config import Config, ConfigError, DataConfig, EvalConfig, merge_dict, set_key, yaml_load
from .coco import format_coco_table
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


def finish_evaluation(result, evaluator, classes, split, coco, save_dir=None):
    """``(result, table_text)`` of a scored evaluation (the COCO table on COCO data, else the
    VOC07 one); with ``save_dir``, ``metrics.json`` and the devkit's results files of ``split``
    (COCO data: ``results.json``) written there first.
    :func:`~gluon_distill.evaluate.evaluate_params` and
    :func:`~gluon_distill.evaluation.exported.evaluate_export` end with it."""
    if save_dir:
        os.makedirs(save_dir, exist_ok=True)
        save_metrics_json(result, os.path.join(save_dir, 'metrics.json'))
        if coco:
            evaluator.write_results(os.path.join(save_dir, 'results.json'))
        else:
            evaluator.write_devkit_results(os.path.join(save_dir, 'results'),
                                           split=_devkit_split_name(split))
    return result, format_coco_table(result, classes) if coco else format_ap_table(result, classes)


def _devkit_split_name(split):
    """``2007_test`` -> ``test`` (the devkit's file names carry the image set only)."""
    return split.split('+')[-1].split('_')[-1]
