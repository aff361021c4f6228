"""The network to export: GluonCV SSD's per-anchor outputs, adapter folding, symbol capture."""
import os
import tempfile

import mxnet as mx
from mxnet.gluon import nn

from ..models.ssd import ssd_head

VALID_THRESH = 0.01          # GluonCV SSD's box_nms valid_thresh and class-decoder threshold
PREFIX = 'model'


class RawSSD(nn.HybridBlock):
    """GluonCV SSD's forward up to the per-anchor outputs, in inference mode.

    Outputs ``cls_preds (B, N, C+1)``, ``box_preds (B, N, 4)``, ``anchors (1, N, 4)`` and,
    with ``candidates=True``, also GluonCV's pre-NMS candidates ``ids, scores, boxes``
    (``(B, N*C, 1|1|4)``, class-major as GluonCV concatenates them). Same code as
    ``gluoncv.model_zoo.ssd.SSD.hybrid_forward`` (training branch and the inference branch
    before ``box_nms``), but without ``autograd.train_mode()``: BatchNorm keeps using its
    running statistics, so the outputs are what the deployed detector computes.
    """

    def __init__(self, ssd, candidates=False, **kwargs):
        super(RawSSD, self).__init__(prefix='', **kwargs)
        self.ssd = ssd
        self.candidates = candidates
        self.register_child(ssd, 'ssd')

    def hybrid_forward(self, F, x):
        ssd = self.ssd
        cls_preds, box_preds, anchors = ssd_head(F, ssd, ssd.features(x), with_anchors=True)
        if not self.candidates:
            return cls_preds, box_preds, anchors
        bboxes = ssd.bbox_decoder(box_preds, anchors)
        cls_ids, scores = ssd.cls_decoder(F.softmax(cls_preds, axis=-1))
        results = []
        for i in range(ssd.num_classes):
            results.append(F.concat(cls_ids.slice_axis(axis=-1, begin=i, end=i + 1),
                                    scores.slice_axis(axis=-1, begin=i, end=i + 1),
                                    bboxes, dim=-1))
        result = F.concat(*results, dim=1)
        return (cls_preds, box_preds,
                F.slice_axis(result, axis=2, begin=0, end=1),
                F.slice_axis(result, axis=2, begin=1, end=2),
                F.slice_axis(result, axis=2, begin=2, end=6))


def deployable(net, spec):
    """``(net, folded)``: the network to ship. A distilled student with adapters is folded
    (adapters multiplied into the head's predictors); anything else is returned as is. Its
    box decoder is clamped as in validation, evaluation and detection
    (:func:`~gluon_distill.models.ssd.clamp_box_decoder`)."""
    from ..models.ssd import clamp_box_decoder
    adapters = getattr(getattr(net, 'features', None), 'adapters', None)
    if spec.get('kind') == 'distilled_ssd' and adapters is not None:
        from ..models.student import fold
        return clamp_box_decoder(fold(net)), True
    return clamp_box_decoder(net), False


def _sym_and_params(block, x):
    """The hybridized symbol of ``block`` on input ``x`` and its ``arg:``/``aux:`` dicts."""
    block.hybridize()
    block(x)
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, 'b')
        block.export(prefix, 0)
        sym = mx.sym.load(prefix + '-symbol.json')
        saved = mx.nd.load(prefix + '-0000.params')
    params = {k.split(':', 1)[1]: v for k, v in saved.items()}
    return sym, params

