"""An export folder as a detector: ``deploy.json`` + ``model.onnx`` (ONNX Runtime),
``model-int8.onnx`` (ONNX Runtime, INT8) or ``model-symbol.json`` + ``model-0000.params``
(MXNet).

    from gluon_distill.runtime import Detector, read_image
    det = Detector('deploy/student')                 # model.onnx if there, else MXNet
    boxes, labels, scores = det.detect([read_image('photo.jpg')])[0]

Boxes come back in the original image's 0-based pixels, clipped to it, as ``tools/eval.py``
scores them: the exported graph's detections (NMS inside it, with the settings recorded in
``deploy.json``), padding rows dropped, scaled back from the model's input.

Imports: NumPy, OpenCV and ONNX Runtime for the ONNX files; MXNet (nothing else of it) for the
symbol files. Neither GluonCV nor the training code of gluon_distill.
"""
import json
import os
import warnings
from collections import namedtuple

import numpy as np

from .images import clip_boxes, preprocess

#: the files of each runtime format (``deploy.json`` ``files`` keys in brackets)
FORMAT_FILES = {'onnx': ('model.onnx',), 'int8': ('model-int8.onnx',),
                'mxnet': ('model-symbol.json', 'model-0000.params')}
FORMATS = tuple(FORMAT_FILES)

Detections = namedtuple('Detections', ['boxes', 'labels', 'scores'])
Detections.__doc__ = """One image's detections: ``boxes (K, 4)`` float32 corners in the
original image's 0-based pixels (clipped), ``labels (K,)`` class indices, ``scores (K,)``,
by descending score."""


class DeployError(ValueError):
    """An export folder that cannot be run, with the reason and the fix."""


def read_deploy(folder):
    """The ``deploy.json`` of an export folder, with its ``preprocess`` section filled in for
    exports written before it was recorded (an SSD's square input; a Faster R-CNN's short
    side within ``max_size``)."""
    folder = os.fspath(folder)
    path = os.path.join(folder, 'deploy.json')
    if not os.path.isdir(folder):
        raise DeployError('{}: no such folder (an export folder holds deploy.json and the '
                          'model files tools/export.py writes)'.format(folder))
    if not os.path.isfile(path):
        raise DeployError('{}: no deploy.json: not an export folder (write one with '
                          'tools/export.py --params FILE --out {})'.format(folder, folder))
    try:
        with open(path) as f:
            info = json.load(f)
    except ValueError as e:
        raise DeployError('{}: not valid JSON: {}'.format(path, e))
    missing = [k for k in ('classes', 'data_shape', 'mean', 'std') if k not in info]
    if missing:
        raise DeployError('{}: missing {}'.format(path, ', '.join(missing)))
    if 'preprocess' not in info:
        if info.get('kind') == 'faster_rcnn':
            info['preprocess'] = {'resize': 'short_within', 'short': info['data_shape'],
                                  'max_size': info['max_size'], 'interpolation': 'linear'}
        else:
            info['preprocess'] = {'resize': 'square', 'size': info['data_shape'],
                                  'interpolation': 'auto'}
    return info


def available_formats(folder, info=None):
    """The runtime formats whose files are in ``folder``, in order of preference."""
    folder = os.fspath(folder)
    return [f for f in FORMATS
            if all(os.path.isfile(os.path.join(folder, name)) for name in FORMAT_FILES[f])]


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as e:
        raise DeployError('running model.onnx needs ONNX Runtime (pip install onnxruntime; '
                          'tested with 1.19.2), or use the MXNet files with --format mxnet: '
                          '{}'.format(e))
    return onnxruntime


def _import_mxnet():
    # MXNet 1.9.1 uses NumPy aliases that NumPy 1.24 removed (docs/deploy.md)
    for name, value in dict(bool=bool, int=int, float=float, complex=complex, object=object,
                            str=str).items():
        np.__dict__.setdefault(name, value)
    try:
        import mxnet
    except ImportError as e:
        raise DeployError('running the MXNet symbol files needs MXNet (pip install '
                          'mxnet==1.9.1), or use model.onnx with --format onnx: {}'.format(e))
    return mxnet


class OnnxBackend:
    """``model.onnx`` or ``model-int8.onnx`` in an ONNX Runtime CPU session (full graph
    optimisation; ``threads`` intra-op threads, default ONNX Runtime's)."""

    def __init__(self, path, threads=None):
        ort = _import_onnxruntime()
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, so, providers=['CPUExecutionProvider'])
        self.input = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()]
        missing = [n for n in ('ids', 'scores', 'boxes') if n not in self.outputs]
        if missing:
            raise DeployError('{}: no output {} (outputs: {})'.format(
                path, ', '.join(missing), ', '.join(self.outputs)))

    def __call__(self, x):
        out = dict(zip(self.outputs, self.session.run(None, {self.input: x})))
        return out['ids'], out['scores'], out['boxes']


class MxnetBackend:
    """``model-symbol.json`` + ``model-0000.params`` as an MXNet ``SymbolBlock`` on the CPU."""

    def __init__(self, folder, threads=None):
        mx = _import_mxnet()
        self.mx = mx
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            self.block = mx.gluon.SymbolBlock.imports(
                os.path.join(folder, 'model-symbol.json'), ['data'],
                os.path.join(folder, 'model-0000.params'), ctx=mx.cpu())
        self.block.hybridize(static_alloc=True)

    def __call__(self, x):
        ids, scores, boxes = self.block(self.mx.nd.array(x))[:3]
        return ids.asnumpy(), scores.asnumpy(), boxes.asnumpy()


class Detector:
    """The detector of an export folder.

    ``format``: ``onnx`` (``model.onnx``), ``int8`` (``model-int8.onnx``), ``mxnet`` (the
    symbol files) or None: the first of those whose files are there. ``threads``: ONNX
    Runtime's intra-op threads (default: its own choice, one per core).
    """

    def __init__(self, folder, format=None, threads=None):
        self.folder = os.fspath(folder)
        self.info = read_deploy(self.folder)
        have = available_formats(self.folder)
        if format is None:
            if not have:
                raise DeployError('{}: none of the model files of deploy.json is there ({})'
                                  .format(self.folder, ', '.join(
                                      n for f in FORMATS for n in FORMAT_FILES[f])))
            format = have[0]
        if format not in FORMATS:
            raise DeployError('unknown format {!r}: choose {}'.format(format, ', '.join(FORMATS)))
        if format not in have:
            hint = {'int8': 'export with --format onnx --quantize int8',
                    'onnx': 'export with --format onnx (an SSD or a YOLOv3; a Faster R-CNN '
                            'exports to MXNet only)',
                    'mxnet': 'export with --format mxnet'}.get(format, 'export it')
            raise DeployError('{}: no {} ({}); it has: {}'.format(
                self.folder, ' + '.join(FORMAT_FILES[format]), hint,
                ', '.join(have) or 'no model files'))
        self.format = format
        self.files = [os.path.join(self.folder, n) for n in FORMAT_FILES[format]]
        if format == 'mxnet':
            self.backend = MxnetBackend(self.folder, threads)
        else:
            self.backend = OnnxBackend(self.files[0], threads)
        self.classes = list(self.info['classes'])
        self.pre = self.info['preprocess']
        self.mean, self.std = self.info['mean'], self.info['std']

    @property
    def batchable(self):
        """Whether images of any size can share a batch (a square input)."""
        return self.pre['resize'] == 'square'

    def __repr__(self):
        return 'Detector({!r}, format={!r}: {})'.format(self.folder, self.format,
                                                         ', '.join(os.path.basename(f)
                                                                   for f in self.files))

    def inputs(self, images):
        """``(x (B, 3, H, W) float32, [(scale, (h, w))...])`` of RGB uint8 images (one image
        per batch unless :attr:`batchable`)."""
        xs, metas = [], []
        for image in images:
            x, scale = preprocess(image, self.pre, self.mean, self.std)
            xs.append(x)
            metas.append((scale, image.shape[:2]))
        return np.concatenate(xs), metas

    def run(self, x):
        """The exported graph's ``(ids (B, P, 1), scores (B, P, 1), boxes (B, P, 4))`` of a
        prepared batch (boxes in input pixels, padding rows -1)."""
        return self.backend(np.ascontiguousarray(x, np.float32))

    def detect(self, images):
        """A :data:`Detections` per RGB uint8 ``(H, W, 3)`` image, boxes in its pixels. Images
        share one call of the graph when :attr:`batchable`, else one call each."""
        groups = [list(images)] if self.batchable else [[im] for im in images]
        found = []
        for group in groups:
            if not group:
                continue
            x, metas = self.inputs(group)
            ids, scores, boxes = self.run(x)
            for i, (scale, (h, w)) in enumerate(metas):
                found.append(self._in_pixels(ids[i, :, 0], scores[i, :, 0], boxes[i], scale,
                                             w, h))
        return found

    @staticmethod
    def _in_pixels(ids, scores, boxes, scale, width, height):
        keep = ids >= 0
        order = np.argsort(-scores[keep], kind='stable')
        return Detections(clip_boxes(boxes[keep] * scale, width, height)[order],
                          ids[keep].astype(int)[order], scores[keep][order])
