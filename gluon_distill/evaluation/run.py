"""Evaluate a saved detector (``.params`` + ``model.json``) on a VOC-format split."""
import copy
import logging
import os

from tqdm import tqdm

from ..config import DataConfig, merge_dict
from ..data.datasets import load_split, resolve_root
from ..data.voc import DetectionDataset
from ..engine.devices import parse_ctx
from ..models.io import load_detector
from ..io_utils import ensure_writable_dir
from .inference import evaluate_detector, prepare_for_inference
from .voc07 import format_ap_table, save_metrics_json


def data_config_for(spec, data_root=None, split=None):
    """The data section to evaluate on: the training run's validation data (recorded in
    ``model.json``) unless ``data_root``/``split`` say otherwise."""
    data = DataConfig()
    recorded = copy.deepcopy(spec.get('data') or {})
    if recorded:
        merge_dict(data, recorded, 'model.json data')
    if data_root:
        data.root = data_root
        if data_root != recorded.get('root'):
            data.val_split = split or ('val' if data_root == 'synthetic' else '2007_test')
    if split:
        data.val_split = split
    return data


def evaluate_params(params_path, data_root=None, split=None, ctx='cpu', batch_size=16,
                    save_dir=None, num_workers=0, nms_thresh=0.45, nms_topk=400, post_nms=100,
                    iou_thresh=0.5, progress=True, logger=None):
    """VOC07 mAP of the detector at ``params_path``; returns ``(result, table_text)``.

    With ``save_dir``: ``metrics.json`` and the devkit's ``results/comp4_det_<split>_<class>.txt``;
    the folder is checked writable first, before the model and data are loaded.
    """
    logger = logger or logging.getLogger('gluon_distill')
    if save_dir:
        ensure_writable_dir(save_dir, '--save-dir folder')
    ctx_list = parse_ctx(ctx)
    net, spec = load_detector(params_path, ctx_list)
    classes = spec['classes']
    data = data_config_for(spec, data_root, split)
    root = resolve_root(data)
    records, _, report = load_split(root, data.val_split, classes, data, progress)
    report.raise_if_fatal()
    dataset = DetectionDataset(records, classes)
    logger.info('evaluating %s on %d images of %s split %r', params_path, len(dataset), root,
                data.val_split)
    net.hybridize(static_alloc=True)
    prepare_for_inference(net, nms_thresh, nms_topk, post_nms)
    bar = tqdm(total=len(dataset), desc='eval', leave=False, disable=None if progress else True)
    result, evaluator = evaluate_detector(net, dataset, spec['data_shape'], spec['mean'],
                                          spec['std'], ctx_list, classes, batch_size,
                                          num_workers, iou_thresh, progress=bar)
    bar.close()
    result['params'] = os.path.abspath(params_path)
    result['data_root'] = root
    result['split'] = data.val_split
    if save_dir:
        os.makedirs(save_dir, exist_ok=True)
        save_metrics_json(result, os.path.join(save_dir, 'metrics.json'))
        evaluator.write_devkit_results(os.path.join(save_dir, 'results'),
                                       split=_devkit_split_name(data.val_split))
    return result, format_ap_table(result, classes)


def _devkit_split_name(split):
    """``2007_test`` -> ``test`` (the devkit's file names carry the image set only)."""
    return split.split('+')[-1].split('_')[-1]
