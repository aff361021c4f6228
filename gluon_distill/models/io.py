"""``model.json``: all a loader needs to rebuild a trained detector from its ``.params`` file.

Every checkpoint directory holds one ``model.json`` beside its ``*.params`` files: the kind of
model, its architecture (:class:`~gluon_distill.models.ssd.SSDArch`), classes, input size,
normalisation, and provenance (package version and commit, seed, command line, dataset
fingerprint). ``tools/eval.py --params FILE`` needs nothing else.
"""
import hashlib
import json
import os
import subprocess
import sys

import mxnet as mx

from .. import __version__
from ..io_utils import atomic_write_json
from .ssd import arch_from_dict, build_ssd, clamp_box_decoder, initialize, ModelError

MODEL_JSON = 'model.json'
FORMAT = 'gluon_distill.model/1'


def git_commit():
    """The commit of the package's source tree, or '' outside a git checkout."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=here, capture_output=True,
                             text=True, timeout=5)
        dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'],
                               cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ''
    if out.returncode != 0:
        return ''
    return out.stdout.strip() + ('-dirty' if dirty.stdout.strip() else '')


def dataset_fingerprint(records, classes):
    """A short hash of the class list and every record's id, size, boxes and labels."""
    h = hashlib.sha1()
    h.update(json.dumps(list(classes)).encode())
    for r in sorted(records, key=lambda r: r.image_id):
        h.update('{}|{}|{}|'.format(r.image_id, r.width, r.height).encode())
        h.update(r.boxes.round(2).tobytes())
        h.update(r.labels.astype('int32').tobytes())
    return h.hexdigest()[:16]


def provenance(seed, fingerprint, argv=None):
    return {
        'package': 'gluon-distill',
        'version': __version__,
        'commit': git_commit(),
        'mxnet': mx.__version__,
        'seed': seed,
        'command': ' '.join(argv if argv is not None else sys.argv),
        'dataset_fingerprint': fingerprint,
    }


def model_spec(arch, classes, mean, std, prov, kind='ssd', extra=None):
    """The ``model.json`` content of a plain SSD (``kind='ssd'``) or another kind."""
    spec = {
        'format': FORMAT,
        'kind': kind,
        'arch': arch.to_dict(),
        'classes': list(classes),
        'data_shape': arch.data_shape,
        'mean': list(mean),
        'std': list(std),
        'provenance': prov,
    }
    spec.update(extra or {})
    return spec


def write_model_json(directory, spec):
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, MODEL_JSON)
    atomic_write_json(path, spec)
    return path


def read_model_json(params_path):
    """The ``model.json`` beside ``params_path`` (or ``<params>.json``)."""
    candidates = [os.path.splitext(params_path)[0] + '.json',
                  os.path.join(os.path.dirname(os.path.abspath(params_path)), MODEL_JSON)]
    wrong = None
    for path in candidates:
        if os.path.exists(path):
            with open(path) as f:
                spec = json.load(f)
            if spec.get('format') != FORMAT:
                # e.g. best.json (epoch, mAP) beside best.params: try model.json next
                wrong = wrong or ModelError('{} is not a gluon_distill model description '
                                            '(format {!r})'.format(path, spec.get('format')))
                continue
            return spec
    if wrong is not None:
        raise wrong
    raise ModelError('no model.json beside {} (looked for {}): it says which network the '
                     'weights belong to'.format(params_path, ' and '.join(candidates)))


def build_from_spec(spec, ctx=None):
    """An initialised network for a ``model.json`` spec (weights not loaded)."""
    kind = spec['kind']
    if kind == 'faster_rcnn':
        from .faster_rcnn import build_from_spec as build_faster_rcnn_from_spec
        return build_faster_rcnn_from_spec(spec, ctx)
    if kind == 'yolo3':
        from .yolo3 import build_from_spec as build_yolo3_from_spec
        return build_yolo3_from_spec(spec, ctx)
    if kind == 'ssd':
        net = build_ssd(arch_from_dict(spec['arch']), spec['classes'])
    else:
        from .student import build_student_from_spec
        net = clamp_box_decoder(build_student_from_spec(spec))   # composed from GluonCV's SSD
    initialize(net, ctx or mx.cpu())
    return net


def load_detector(params_path, ctx=None):
    """``(net, spec)``: the detector saved at ``params_path``, ready for inference."""
    if not os.path.exists(params_path):
        raise ModelError('no weight file at {}'.format(params_path))
    spec = read_model_json(params_path)
    ctx = ctx or [mx.cpu()]
    ctx = ctx if isinstance(ctx, (list, tuple)) else [ctx]
    net = build_from_spec(spec, ctx)
    try:
        net.load_parameters(params_path, ctx=ctx)
    except (AssertionError, mx.base.MXNetError, ValueError) as e:
        raise ModelError('{} does not match the network in its model.json: {}'.format(
            params_path, str(e).splitlines()[0][:300]))
    return net, spec


def load_start_params(net, path, ctx):
    """Load ``model.params`` (the weights a run starts from) into ``net``, or a
    :class:`ModelError` naming the file."""
    if not os.path.exists(path):
        raise ModelError('model.params: no file at {}'.format(path))
    try:
        net.load_parameters(path, ctx=ctx)
    except (AssertionError, mx.base.MXNetError, ValueError) as e:
        raise ModelError('model.params {} does not fit {}: {}'.format(
            path, type(net).__name__, str(e).splitlines()[0][:300]))
