"""Shipping a trained detector: MXNet symbol + params and ONNX, verified against the original.

Any model the package trains (teacher, no-teacher baseline, distilled student) is exported
from its ``.params`` + ``model.json``. A distilled student is exported with its 1x1 adapters
folded into the head's predictors (:func:`gluon_distill.models.student.fold`), so the shipped
network is an ordinary SSD of the student's backbone and costs what the plain SSD costs.

Files written to ``OUT``:

``model-symbol.json`` + ``model-0000.params`` (``--format mxnet``)
    GluonCV's own inference graph (NMS included), outputs ``ids (B, P, 1)``, ``scores (B, P,
    1)``, ``boxes (B, P, 4)`` (corner pixels of the ``data_shape`` input; padding rows -1).
    Loads with ``gluon.SymbolBlock.imports(json, ['data'], params)``; no gluon_distill import.
``model-raw-symbol.json`` (``--format mxnet``, same params file)
    the network before decoding: ``cls_preds (B, N, C+1)`` (logits), ``box_preds (B, N, 4)``
    (encoded offsets), ``anchors (1, N, 4)``.
``model.onnx`` (``--format onnx``), opset 13, dynamic batch
    outputs ``ids``, ``scores``, ``boxes`` (as above, NMS in the graph) and ``cls_preds``,
    ``box_preds`` (raw, computed anyway on the way to the detections).
``deploy.json``
    classes, input size, mean/std, files, opset, verification report.

A Faster R-CNN (``model.json`` kind ``faster_rcnn``) goes through :mod:`.rcnn`: the MXNet
format only (one image ``(1, 3, H, W)`` per call, any size), verified on one image; ONNX is
refused before anything is converted or written, with the converter's reason.

Verification (:mod:`.verify`): raw outputs within 1e-3 (relative above magnitude 1), detections
within the tolerances that implies, ties at equal scores or at the NMS threshold allowed. Every
exported graph decodes boxes with the clamp validation, evaluation and detection use
(:data:`gluon_distill.models.ssd.BOX_SCALE_CLAMP`).

Modules: :mod:`.graph` (the raw SSD graph, adapter folding, symbol capture),
:mod:`.mxnet_format`, :mod:`.onnx_format` (ONNX with its own NMS; its docstring records the
converter findings), :mod:`.verify`, :mod:`.cost` and :mod:`.run` (:func:`export_detector`).
"""
from .cost import count_params_macs
from .graph import PREFIX, VALID_THRESH, RawSSD, deployable
from .graph import _sym_and_params  # noqa: F401  (bench/latency.py imports it from here)
from .mxnet_format import export_mxnet, load_mxnet
from .onnx_format import ONNX_OPSET, ONNX_OUTPUTS, export_onnx, onnx_session, run_onnx
from .run import export_detector
from .verify import (ExportError, compare, detection_tolerances, detections_agree,
                     format_report, image_input, reference_outputs, verify_export, verify_input)

__all__ = ['ExportError', 'ONNX_OPSET', 'ONNX_OUTPUTS', 'PREFIX', 'RawSSD', 'VALID_THRESH',
           'compare', 'count_params_macs', 'deployable', 'detection_tolerances',
           'detections_agree', 'export_detector',
           'export_mxnet', 'export_onnx', 'format_report', 'image_input', 'load_mxnet',
           'onnx_session', 'reference_outputs', 'run_onnx', 'verify_export', 'verify_input']
