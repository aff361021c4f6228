"""Evaluate a saved detector (``.params`` + ``model.json``) on a VOC-format split (VOC07 mAP)
or on COCO-format data (COCO AP@[.5:.95] by pycocotools): ``gluon-distill eval --params``, and
the scores of the demo and of reproduce."""
import logging
import os

from .config import EvalConfig
from .data.coco import coco_split_source, is_coco_data
from .data.datasets import load_split, resolve_root
from .data.voc import DetectionDataset
from .engine.devices import parse_ctx
from .evaluation.coco import COCOEvaluator
from .evaluation.run import data_config_for, eval_settings, finish_evaluation
from .families import family_of_spec
from .io_utils import ensure_writable_dir
from .models.io import load_detector
from .progress import progress_bar


def evaluate_params(params_path, data_root=None, split=None, ctx='cpu', batch_size=16,
                    save_dir=None, num_workers=0, nms_thresh=None, nms_topk=None, post_nms=None,
                    iou_thresh=None, progress=True, logger=None, overrides=()):
    """VOC07 mAP (or, on COCO data, COCO AP) of the detector at ``params_path``; returns
    ``(result, table_text)``. ``overrides``: see
    :func:`~gluon_distill.evaluation.run.data_config_for`. NMS and IoU settings left None are
    the training run's (:func:`~gluon_distill.evaluation.run.eval_settings`): the logged mAP is
    reproduced.

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
    return finish_evaluation(result, evaluator, classes, data.val_split, coco, save_dir)
