"""The shipped detector on its own: run an export folder without the training code.

An export folder (``tools/export.py``) holds ``deploy.json`` (classes, input size, mean/std,
how to resize, NMS settings, verification) and the model files: ``model.onnx`` (float),
``model-int8.onnx`` (``--quantize int8``) and/or ``model-symbol.json`` + ``model-0000.params``
(MXNet). :class:`Detector` loads one of them and detects objects in images, boxes in the
original image's pixels::

    from gluon_distill.runtime import Detector, read_image
    det = Detector('deploy/student', format='int8')
    boxes, labels, scores = det.detect([read_image('photo.jpg')])[0]

``tools/detect.py --model DIR`` (:func:`detect_images`) and ``tools/eval.py --model DIR`` run
export folders through it.

This package imports NumPy, OpenCV and, for the ONNX files, ONNX Runtime; for the MXNet files,
MXNet. It never imports GluonCV or gluon_distill's training code (a test runs it with those
blocked), so it works where only the runtime and the export folder are installed.
"""
from .detector import (FORMATS, DeployError, Detections, Detector, available_formats,
                       read_deploy)
from .images import (DRAW_MAX_SIDE, IMAGE_SUFFIXES, ImageReadError, bounded_copy, clip_boxes,
                     expand_inputs, find_images, input_size, is_image_file, output_names,
                     preprocess, read_image)
from .report import detect_images, draw, format_detections, skipped

__all__ = ['DRAW_MAX_SIDE', 'DeployError', 'Detections', 'Detector', 'FORMATS',
           'IMAGE_SUFFIXES', 'ImageReadError', 'available_formats', 'bounded_copy',
           'clip_boxes', 'detect_images', 'draw', 'expand_inputs', 'find_images',
           'format_detections', 'input_size', 'is_image_file', 'output_names', 'preprocess',
           'read_deploy', 'read_image', 'skipped']
