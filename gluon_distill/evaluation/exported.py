"""Evaluate an export folder (what a deployment ships) with the package's evaluators.

``tools/eval.py --model DIR`` runs the exported files through :mod:`gluon_distill.runtime`
(``model.onnx``, ``model-int8.onnx`` or the MXNet symbol) on the validation data the
``.params`` it came from is evaluated on (``deploy.json`` records the run's ``data`` and
``eval`` sections; older exports: the ``model.json`` beside its ``source``), and scores the
detections with the same VOC07 or COCO evaluator as ``tools/eval.py --params``: the same
images in the same order, each decoded by the same decoder, boxes in the original pixels.

Differences with the ``.params``' mAP come only from the runtime's arithmetic: ONNX Runtime's
float32 kernels (raw outputs within ~1e-5 of MXNet's), OpenCV's bicubic resize of an image
smaller than an SSD's input (``cv2`` against MXNet's bundled OpenCV: at most one grey level in
a few percent of the pixels), and, for ``int8``, the quantisation itself. Measured: see
docs/deploy.md ("The runtime").
"""
import json
import logging
import os

from ..config import EvalConfig
from ..data.coco import coco_split_source, is_coco_data
from ..data.datasets import load_split, resolve_root
from ..data.images import read_image
from ..io_utils import ensure_writable_dir
from ..runtime import DeployError, Detector, read_deploy
from .coco import COCOEvaluator
from .inference import score_predictions


def recorded_spec(model_dir, info=None):
    """``deploy.json`` of ``model_dir`` with the training run's ``data`` and ``eval``: its own,
    or (exports written before they were recorded) those of the ``model.json`` beside the
    ``.params`` it was exported from, when that file is still there."""
    info = dict(info or read_deploy(model_dir))
    if info.get('data') or not info.get('source'):
        return info
    model_json = os.path.join(os.path.dirname(info['source']), 'model.json')
    if os.path.isfile(model_json):
        with open(model_json) as f:
            spec = json.load(f)
        for key in ('data', 'eval'):
            if spec.get(key) and not info.get(key):
                info[key] = spec[key]
    return info


def predict_export(detector, dataset, batch_size=16, progress=None):
    """Yield ``(record, boxes (K, 4), labels (K,), scores (K,))`` per image of ``dataset``
    (its records, in order) from the export ``detector`` (a
    :class:`~gluon_distill.runtime.Detector`), boxes in the original image's 0-based pixels,
    clipped: what :func:`~gluon_distill.evaluation.inference.predict` yields for the
    ``.params``. Images share a call in batches of ``batch_size`` when the input is square."""
    step = max(1, batch_size) if detector.batchable else 1
    records = [dataset.record(i) for i in range(len(dataset))]
    for start in range(0, len(records), step):
        chunk = records[start:start + step]
        found = detector.detect([read_image(r.image_path) for r in chunk])
        for record, dets in zip(chunk, found):
            yield record, dets.boxes, dets.labels, dets.scores
        if progress is not None:
            progress.update(len(chunk))


def export_dataset(info, data_root=None, split=None, overrides=(), progress=True):
    """``(dataset, data config, root)``: the validation data of the export (see
    :func:`recorded_spec`), or ``data_root``/``split``/``overrides`` as ``tools/eval.py``
    takes them."""
    from ..data.voc import DetectionDataset
    from .run import data_config_for
    if not info.get('data') and not data_root:
        raise DeployError('{}: deploy.json records no training data (an export written before '
                          'it was recorded, whose model.json is gone): pass --data-root and '
                          '--split'.format(info.get('_folder', 'the export')))
    data = data_config_for(info, data_root, split, overrides)
    root = resolve_root(data)
    records, _, report = load_split(root, data.val_split, list(info['classes']), data, progress)
    report.raise_if_fatal()
    return DetectionDataset(records, list(info['classes'])), data, root


def evaluate_export(model_dir, data_root=None, split=None, format=None, batch_size=16,
                    save_dir=None, iou_thresh=None, progress=True, logger=None, overrides=(),
                    threads=None, detector=None):
    """VOC07 mAP (or, on COCO data, COCO AP) of the export in ``model_dir`` run by the
    runtime (``format``: onnx, int8, mxnet; default the first present); returns ``(result,
    table_text)`` as :func:`~gluon_distill.evaluate.evaluate_params` does. The NMS is
    the exported graph's (``deploy.json``); ``iou_thresh`` left None is the run's."""
    from ..progress import progress_bar
    logger = logger or logging.getLogger('gluon_distill')
    if save_dir:
        ensure_writable_dir(save_dir, '--out folder')
    detector = detector or Detector(model_dir, format, threads)
    info = recorded_spec(model_dir, detector.info)
    info['_folder'] = model_dir
    dataset, data, root = export_dataset(info, data_root, split, overrides, progress)
    classes = list(info['classes'])
    recorded_eval = info.get('eval') or {}
    iou = iou_thresh if iou_thresh is not None else recorded_eval.get(
        'iou_thresh', EvalConfig().iou_thresh)
    coco = is_coco_data(data, root)
    evaluator = (COCOEvaluator(coco_split_source(data, root, data.val_split)[0],
                               data.category_ids, classes) if coco else None)
    nms = info.get('nms') or {}
    logger.info('evaluating export %s (%s: %s) on %d images of %s split %r; NMS of the graph '
                '%s (top %s before, %s after), IoU %g', model_dir, detector.format,
                ', '.join(os.path.basename(f) for f in detector.files), len(dataset), root,
                data.val_split, nms.get('thresh'), nms.get('topk'), nms.get('post_nms'), iou)
    bar = progress_bar(None, progress, total=len(dataset), desc='eval', leave=False)
    result, evaluator = score_predictions(predict_export(detector, dataset, batch_size, bar),
                                          classes, iou, evaluator)
    bar.close()
    result['model'] = os.path.abspath(model_dir)
    result['format'] = detector.format
    result['files'] = [os.path.basename(f) for f in detector.files]
    result['data_root'] = root
    result['split'] = data.val_split
    from .run import finish_evaluation
    return finish_evaluation(result, evaluator, classes, data.val_split, coco, save_dir)

def metric_of(result):
    """``(name, value)``: the headline number of an evaluation result, COCO ``AP`` or VOC07
    ``mAP``."""
    if 'mAP' in result:
        return 'mAP', float(result['mAP'])
    return 'AP', float(result['AP'])
