"""Running a detector over a dataset and scoring it in the original images' pixels."""
import numpy as np

from mxnet import gluon

from ..data.loader import val_loader
from .voc07 import VOC07Evaluator


def prepare_for_inference(net, nms_thresh=0.45, nms_topk=400, post_nms=100):
    """Switch a (possibly hybridized, training-traced) SSD to inference outputs.

    A hybridized SSD fixes its training/inference branch when its graph is first built;
    ``set_nms`` clears that cached graph. Call :func:`prepare_for_training` afterwards to train
    on. The box decoder is clamped (:func:`~gluon_distill.models.ssd.clamp_box_decoder`; a
    network composed outside :func:`~gluon_distill.models.ssd.build_ssd`, such as a distilled
    student, gets it here), as every export is.
    """
    from ..models.ssd import clamp_box_decoder
    clamp_box_decoder(net)
    net.set_nms(nms_thresh=nms_thresh, nms_topk=nms_topk, post_nms=post_nms)


def prepare_for_training(net):
    """Drop the cached inference graph so the next recorded forward returns training outputs."""
    net.set_nms(nms_thresh=net.nms_thresh, nms_topk=net.nms_topk, post_nms=net.post_nms)


def clip_boxes(boxes, width, height):
    """``(K, 4)`` corner boxes clipped to the 0-based pixels of a ``width`` x ``height`` image."""
    limits = np.array([width - 1, height - 1] * 2, np.float32)
    return np.clip(boxes, 0, limits).astype(np.float32)


def predict(net, dataset, data_shape, mean, std, ctx_list, batch_size=16, num_workers=0,
            progress=None):
    """Yield ``(record, boxes (K, 4), labels (K,), scores (K,))`` per image of ``dataset``,
    boxes in the original image's 0-based pixels clipped to it (``[0, width - 1]`` x
    ``[0, height - 1]``, as the devkit's files expect), padding (label -1) removed."""
    loader = val_loader(dataset, data_shape, batch_size, mean, std, num_workers)
    for images, indices in loader:
        parts = gluon.utils.split_and_load(images, ctx_list, even_split=False)
        outputs = [net(x) for x in parts]
        ids = np.concatenate([o[0].asnumpy() for o in outputs])[..., 0]
        scores = np.concatenate([o[1].asnumpy() for o in outputs])[..., 0]
        boxes = np.concatenate([o[2].asnumpy() for o in outputs])
        for i, index in enumerate(indices.asnumpy().astype(int)):
            record = dataset.record(index)
            keep = ids[i] >= 0
            scale = np.array([record.width, record.height] * 2, np.float32) / data_shape
            yield (record, clip_boxes(boxes[i][keep] * scale, record.width, record.height),
                   ids[i][keep].astype(int), scores[i][keep])
        if progress is not None:
            progress.update(len(indices))


def score_predictions(predictions, classes, iou_thresh=0.5, evaluator=None):
    """``(result, evaluator)``: ``evaluator`` (reset/process/evaluate; default VOC07 at
    ``iou_thresh``) reset, then fed every ``(record, boxes, labels, scores)`` of
    ``predictions`` with the record's ground truth."""
    evaluator = evaluator or VOC07Evaluator(classes, iou_thresh=iou_thresh)
    evaluator.reset()
    for record, boxes, labels, scores in predictions:
        evaluator.process([record.image_id], [boxes], [labels], [scores], [record.boxes],
                          [record.labels], [record.difficult])
    return evaluator.evaluate(), evaluator
