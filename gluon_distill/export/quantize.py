"""INT8: ``model-int8.onnx``, the float ``model.onnx`` statically quantised with ONNX Runtime's
quantisation tools, calibrated on images and verified by its mAP against the float model's.

``tools/export.py --format onnx --quantize int8 [--calibration DIR]``:

1. **Calibration images**: ``--calibration-images N`` (default 100) images, a seeded sample
   (seed 0) of ``--calibration DIR``, a folder of images (searched recursively), a VOC root or a
   COCO root (the images of its training split, the split names read as ``tools/train.py``
   reads them), or, without the flag, of the training split recorded in ``model.json``. Each is
   decoded and resized as the runtime does (:func:`gluon_distill.runtime.preprocess`).
2. **Quantisation** (:func:`quantize_onnx`): ``quant_pre_process`` (ONNX shape inference and
   ORT's graph optimisation: BatchNorm folded into the convolutions; ORT's symbolic shape
   inference is skipped, it cannot follow the NMS subgraph), then ``quantize_static`` in the QDQ
   format: weights int8 per output channel, activations uint8 per tensor (asymmetric, MinMax over
   the calibration images: u8s8, the form VNNI CPUs compute fastest). Only the network is
   quantised: the nodes that compute the raw outputs (``cls_preds``, ``box_preds``), up to and
   including the last convolutions (the class and box predictors). Everything after them stays
   float32: the reshapes and concatenation of the predictions, softmax, box decoding, the
   candidates and the per-class NMS (quantising the concatenated logits to one 8-bit scale cost
   7 mAP points on the raccoon teacher; the NMS has no integer kernels).
3. **Verification** (:func:`verify_int8`): the float and INT8 files, each through the runtime,
   on up to ``--int8-verify-images`` (500) images of the validation split recorded in
   ``model.json`` (the data ``tools/eval.py`` scores), with the same evaluator (VOC07 mAP or
   COCO AP). The INT8 model passes when it loses at most ``--int8-max-drop`` (1.0) point of
   it; otherwise ``model-int8.onnx`` is removed and the tool exits 2 naming the drop. Per-box
   equality is not asked: quantisation moves scores and boxes by design.

``deploy.json`` records the calibration (source, images, method), the quantised node count and
the verification (both numbers, the drop, the tolerance, the images).
"""
import os
import tempfile
from collections import defaultdict

import numpy as np

from ..io_utils import atomic_write_json
from ..models.ssd import ModelError
from .graph import PREFIX
from .verify import ExportError

INT8_FILE = PREFIX + '-int8.onnx'
#: images calibrated on by default
CALIBRATION_IMAGES = 100
#: largest mAP (or COCO AP) loss, in points, an INT8 model may show against the float one
MAX_DROP = 1.0
#: validation images the INT8 model is verified on (at most)
VERIFY_IMAGES = 500
#: the detection outputs of an exported graph (everything else it outputs is raw)
DETECTION_OUTPUTS = ('ids', 'scores', 'boxes')


def _sample(paths, n, seed=0):
    paths = list(paths)
    if n and len(paths) > n:
        keep = np.sort(np.random.RandomState(seed).choice(len(paths), n, replace=False))
        paths = [paths[i] for i in keep]
    return paths


def _recorded_data(info):
    from ..config import DataConfig, merge_dict
    data = DataConfig()
    if info.get('data'):
        merge_dict(data, dict(info['data']), 'model.json data')
    return data


def _split_images(root, data, split, classes):
    from ..data.datasets import load_split
    records, _, _ = load_split(root, split, classes, data, progress=False)
    return [r.image_path for r in records]


def _split_name(root, split):
    """The split a VOC root reads for ``split`` (GluonCV's default names mean ``train`` /
    ``val`` on a plain root)."""
    from ..data.datasets import effective_split
    try:
        return effective_split(root, split)[0]
    except Exception:
        return split


def calibration_images(info, calibration=None, num_images=CALIBRATION_IMAGES, seed=0):
    """``(paths, description)``: the images to calibrate on (see the module docstring);
    ``info`` is ``deploy.json`` (its recorded ``data``)."""
    from ..data.coco import is_coco_layout
    from ..data.datasets import resolve_root, root_kind
    from ..runtime import find_images
    if calibration:
        if not os.path.isdir(calibration):
            raise ModelError('--calibration {}: no such folder (a folder of images, a VOC root '
                             'or a COCO root)'.format(calibration))
        kind = root_kind(calibration)
        paths, what = None, None
        if kind:
            from ..config import DataConfig
            data = DataConfig(root=calibration, check_images=False, on_bad_image='skip')
            if kind == 'coco' and is_coco_layout(calibration):
                data.format = 'coco'
            try:
                paths = _split_images(calibration, data, data.train_split, None)
                what = 'the training split of the {} root {}'.format(
                    'COCO' if kind == 'coco' else 'VOC', calibration)
            except Exception:   # an unusual root: every image in it
                paths = None
        if not paths:
            files, _ = find_images([calibration], recursive=True)
            paths = [p for p, _ in files]
            what = 'the images in {}'.format(calibration)
    else:
        if not info.get('data'):
            raise ModelError('the training data is not recorded in model.json: pass '
                             '--calibration DIR (a folder of images, a VOC or COCO root)')
        data = _recorded_data(info)
        data.check_images = False
        root = resolve_root(data)
        paths = _split_images(root, data, data.train_split, list(info['classes']))
        what = 'the training split {!r} of {} (model.json)'.format(
            _split_name(root, data.train_split), root)
    if not paths:
        raise ModelError('no calibration images found in {}'.format(what))
    chosen = _sample(paths, num_images, seed)
    return chosen, '{} of {} images, a seeded sample (seed {}) of {}'.format(
        len(chosen), len(paths), seed, what)


class _Reader:
    """ONNX Runtime's ``CalibrationDataReader`` over image files, each preprocessed as the
    runtime preprocesses it (decoded one at a time)."""

    def __init__(self, paths, info, input_name='data'):
        self.paths = list(paths)
        self.info = info
        self.input_name = input_name
        self.index = 0

    def get_next(self):
        from ..runtime import preprocess, read_image
        if self.index >= len(self.paths):
            return None
        path = self.paths[self.index]
        self.index += 1
        x, _ = preprocess(read_image(path), self.info['preprocess'], self.info['mean'],
                          self.info['std'])
        return {self.input_name: x}

    def __len__(self):
        return len(self.paths)

    def set_range(self, start_index, end_index):   # part of ORT's reader interface
        self.index = start_index


def network_nodes(model):
    """``(nodes to quantise, predictor count)``: the names of the nodes that compute the raw
    outputs (every graph output but ``ids``, ``scores``, ``boxes``) up to and including the
    last convolutions before them, and how many such last convolutions there are. What comes
    after the last convolutions (reshapes, concatenation, softmax, decoding, NMS) is left
    out."""
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    consumers = defaultdict(list)
    for n in graph.node:
        for i in n.input:
            consumers[i].append(n)
    raw = [o.name for o in graph.output if o.name not in DETECTION_OUTPUTS]
    ancestors, stack = set(), list(raw)
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in ancestors:
            continue
        ancestors.add(node.name)
        stack.extend(node.input)
    # the last convolutions: reached from a raw output without passing another convolution
    last, seen, stack = [], set(), list(raw)
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type == 'Conv':
            last.append(node)
        else:
            stack.extend(node.input)
    after, stack = set(), [o for n in last for o in n.output]
    while stack:
        for node in consumers[stack.pop()]:
            if node.name not in after:
                after.add(node.name)
                stack.extend(node.output)
    return [n.name for n in graph.node if n.name in ancestors and n.name not in after], len(last)


def quantize_onnx(float_path, out_path, reader, per_channel=True, quant_format='qdq',
                  activations='uint8', network_only=True, method='minmax'):
    """Write the statically quantised ``out_path`` of ``float_path`` (see the module
    docstring), calibrated on what ``reader`` yields; returns ``{'quantized_nodes': n,
    'predictors': k, 'op_types': {type: count}}``. The defaults are ``tools/export.py``'s; the
    other choices are there to measure them (``bench/int8_variants.py``): ``per_channel``
    False (weights per tensor), ``quant_format`` ``qoperator``, ``activations`` ``int8``,
    ``network_only`` False (every node ORT can quantise, post-processing included),
    ``method`` ``entropy``, ``percentile`` or ``distribution``."""
    try:
        import onnx
        from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                              quantize_static)
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as e:
        raise ModelError('INT8 quantisation needs the deploy extra: pip install -e '
                         '".[deploy]" (onnx 1.16.2, onnxruntime 1.19.2): {}'.format(e))
    import onnxruntime
    from .onnx_format import _name_nodes
    # ORT's optimiser warns about every initializer it drops (an unused softmax constant)
    onnxruntime.set_default_logger_severity(3)
    with tempfile.TemporaryDirectory(prefix='int8_') as tmp:
        pre = os.path.join(tmp, 'pre.onnx')
        quant_pre_process(float_path, pre, skip_symbolic_shape=True)
        model = onnx.load(pre)
        nodes, predictors = network_nodes(model)
        if not network_only:
            nodes = [n.name for n in model.graph.node]
        if not predictors:
            raise ModelError('{}: no convolution computes its raw outputs; nothing to '
                             'quantise'.format(float_path))
        types = defaultdict(int)
        chosen = set(nodes)
        for n in model.graph.node:
            if n.name in chosen:
                types[n.op_type] += 1
        part = os.path.join(tmp, 'int8.onnx')
        quantize_static(pre, part, reader,
                        quant_format={'qdq': QuantFormat.QDQ,
                                      'qoperator': QuantFormat.QOperator}[quant_format],
                        per_channel=per_channel,
                        activation_type={'uint8': QuantType.QUInt8,
                                         'int8': QuantType.QInt8}[activations],
                        weight_type=QuantType.QInt8,
                        nodes_to_quantize=nodes if network_only else None,
                        calibrate_method={'minmax': CalibrationMethod.MinMax,
                                          'entropy': CalibrationMethod.Entropy,
                                          'percentile': CalibrationMethod.Percentile,
                                          'distribution': CalibrationMethod.Distribution}[method])
        model = onnx.load(part)
        _name_nodes(model.graph)      # unique names (ORT's full optimisation needs them)
        onnx.checker.check_model(model)
        tmp_out = out_path + '.part'
        onnx.save(model, tmp_out)
        os.replace(tmp_out, out_path)
    return {'quantized_nodes': len(nodes), 'predictors': predictors,
            'op_types': dict(sorted(types.items()))}


def verify_int8(out_dir, info, max_drop=MAX_DROP, num_images=VERIFY_IMAGES, batch_size=16,
                logger=None):
    """The float and INT8 models of ``out_dir`` scored on up to ``num_images`` images of the
    recorded validation split (0: all); returns the report, its ``ok`` true when the INT8 model
    loses at most ``max_drop`` points."""
    from ..evaluation.exported import export_dataset, metric_of, predict_export
    from ..evaluation.inference import score_predictions
    from ..evaluation.coco import COCOEvaluator
    from ..data.coco import coco_split_source, is_coco_data
    from ..runtime import Detector
    if not info.get('data'):
        raise ExportError('cannot verify the INT8 model: model.json records no validation '
                          'data (use --no-verify to keep it unverified)')
    dataset, data, root = export_dataset(info, progress=False)
    if num_images and len(dataset) > num_images:
        from ..data.voc import DetectionDataset
        dataset = DetectionDataset(dataset.records[:num_images], dataset.classes)
    classes = list(info['classes'])
    iou = (info.get('eval') or {}).get('iou_thresh', 0.5)
    coco = is_coco_data(data, root)
    scores = {}
    for fmt in ('onnx', 'int8'):
        evaluator = (COCOEvaluator(coco_split_source(data, root, data.val_split)[0],
                                   data.category_ids, classes) if coco else None)
        result, _ = score_predictions(predict_export(Detector(out_dir, fmt), dataset,
                                                     batch_size), classes, iou, evaluator)
        scores[fmt] = metric_of(result)
    name = scores['onnx'][0]
    drop = 100.0 * (scores['onnx'][1] - scores['int8'][1])
    return {'metric': name, 'float': scores['onnx'][1], 'int8': scores['int8'][1],
            'drop_points': drop, 'max_drop_points': max_drop, 'images': len(dataset),
            'data_root': root, 'split': _split_name(root, data.val_split),
            'ok': bool(drop <= max_drop)}


def format_int8_report(q):
    """Lines describing ``deploy.json``'s ``int8`` section."""
    lines = ['int8: {} ({} nodes quantised: {}; post-processing float)'.format(
        q['file'], q['quantized_nodes'], ', '.join('{} {}'.format(v, k)
                                                   for k, v in q['op_types'].items())),
             'calibrated on {}'.format(q['calibration']['source'])]
    v = q.get('verification')
    if v:
        lines.append('{metric} on {images} images of {data_root} split {split!r}: float '
                     '{float:.4f}, int8 {int8:.4f}, drop {drop_points:+.2f} points (at most '
                     '{max_drop_points:g})'.format(**v))
    return '\n'.join(lines)


def quantize_export(out_dir, calibration=None, num_images=CALIBRATION_IMAGES,
                    max_drop=MAX_DROP, verify=True, verify_images=VERIFY_IMAGES, seed=0):
    """Quantise the ``model.onnx`` of the export folder ``out_dir`` to ``model-int8.onnx``,
    verify it (unless ``verify`` is false) and record it in ``deploy.json``; returns the
    ``int8`` section. A failed verification removes the INT8 file and raises
    :class:`~.verify.ExportError`."""
    from ..runtime import read_deploy
    info = read_deploy(out_dir)
    float_path = os.path.join(out_dir, PREFIX + '.onnx')
    if not os.path.isfile(float_path):
        raise ModelError('{}: no {}.onnx to quantise (export with --format onnx)'.format(
            out_dir, PREFIX))
    paths, source = calibration_images(info, calibration, num_images, seed)
    out_path = os.path.join(out_dir, INT8_FILE)
    done = quantize_onnx(float_path, out_path, _Reader(paths, info))
    section = dict(done, file=INT8_FILE, format='QDQ', weights='int8, per output channel',
                   activations='uint8, per tensor, MinMax calibration',
                   calibration={'source': source, 'images': len(paths), 'method': 'minmax',
                                'seed': seed})
    if verify:
        report = verify_int8(out_dir, info, max_drop, verify_images)
        section['verification'] = report
        if not report['ok']:
            os.remove(out_path)
            raise ExportError(
                'the INT8 model loses {:.2f} {} points against the float model ({:.4f} -> '
                '{:.4f} on {} images), more than --int8-max-drop {:g}; {} was removed. '
                'Calibrate on more or more typical images (--calibration-images, '
                '--calibration DIR)'.format(report['drop_points'], report['metric'],
                                            report['float'], report['int8'], report['images'],
                                            max_drop, INT8_FILE))
    info = read_deploy(out_dir)
    info['files'] = dict(info.get('files') or {}, onnx_int8=INT8_FILE)
    info['int8'] = section
    atomic_write_json(os.path.join(out_dir, 'deploy.json'), info)
    return section
