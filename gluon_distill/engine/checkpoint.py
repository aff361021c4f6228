"""Checkpoints: one file per moment, written atomically.

A checkpoint bundles every parameter group (``net``; ``student``, ``adapters``, ``head``,
``critics`` in a distillation run), every optimizer state, and a JSON ``meta`` record (epoch,
iteration, best metric, seed) into one ``mx.nd.save`` file. It is written to a temporary file
and renamed over the old one, so a crash or Ctrl-C at any moment leaves the previous checkpoint
whole.
"""
import json
import os
import tempfile

import numpy as np

from .. import _compat  # noqa: F401
import mxnet as mx

_PARAM = 'param:'
_OPTIM = 'optim:'
_META = 'meta'


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or does not fit the network."""


def _bytes_to_nd(data):
    return mx.nd.array(np.frombuffer(data, dtype=np.uint8), dtype='uint8', ctx=mx.cpu())


def _nd_to_bytes(arr):
    return arr.asnumpy().astype(np.uint8).tobytes()


def atomic_write(path, write_fn):
    """Call ``write_fn(tmp_path)`` then rename the temporary file onto ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', dir=directory)
    os.close(fd)
    try:
        write_fn(tmp)
        with open(tmp, 'rb') as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path, text):
    def write(tmp):
        with open(tmp, 'w') as f:
            f.write(text)
    atomic_write(path, write)


def block_arrays(block):
    """Structural parameter names (as ``save_parameters`` writes them) -> CPU arrays."""
    return {name: p._reduce() for name, p in block._collect_params_with_prefix().items()}


def load_block_arrays(block, arrays, source):
    """Set every parameter of ``block`` from ``arrays``; every name must match in shape."""
    params = block._collect_params_with_prefix()
    missing = sorted(set(params) - set(arrays))
    unexpected = sorted(set(arrays) - set(params))
    if missing or unexpected:
        raise CheckpointError('{} does not fit the network: missing {} unexpected {}'.format(
            source, missing[:5], unexpected[:5]))
    for name, param in params.items():
        value = arrays[name]
        if param.shape and tuple(param.shape) != tuple(value.shape) and 0 not in param.shape:
            raise CheckpointError('{}: parameter {} has shape {}, the network expects {}'.format(
                source, name, value.shape, param.shape))
        param.set_data(value)


def trainer_state_bytes(trainer):
    """The optimizer state of a Gluon Trainer as bytes (via its own save_states)."""
    fd, tmp = tempfile.mkstemp(suffix='.states')
    os.close(fd)
    try:
        trainer.save_states(tmp)
        with open(tmp, 'rb') as f:
            return f.read()
    finally:
        os.remove(tmp)


def load_trainer_state_bytes(trainer, data):
    fd, tmp = tempfile.mkstemp(suffix='.states')
    os.close(fd)
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
        trainer.load_states(tmp)
    finally:
        os.remove(tmp)


def save_checkpoint(path, blocks, trainers, meta):
    """Write ``blocks`` (name -> Block), ``trainers`` (name -> Trainer) and ``meta`` (JSON-able
    dict) to one file, atomically."""
    payload = {}
    for group, block in blocks.items():
        for name, arr in block_arrays(block).items():
            payload['{}{}/{}'.format(_PARAM, group, name)] = arr
    for group, trainer in trainers.items():
        payload[_OPTIM + group] = _bytes_to_nd(trainer_state_bytes(trainer))
    payload[_META] = _bytes_to_nd(json.dumps(meta).encode('utf-8'))
    atomic_write(path, lambda tmp: mx.nd.save(tmp, payload))


def read_checkpoint(path):
    """``(params, optim, meta)``: group -> {name: array}, group -> bytes, dict."""
    if not os.path.exists(path):
        raise CheckpointError('no checkpoint at {}'.format(path))
    try:
        payload = mx.nd.load(path)
    except mx.base.MXNetError as e:
        raise CheckpointError('cannot read checkpoint {}: {}'.format(
            path, str(e).splitlines()[0]))
    params, optim = {}, {}
    for key, arr in payload.items():
        if key.startswith(_PARAM):
            group, name = key[len(_PARAM):].split('/', 1)
            params.setdefault(group, {})[name] = arr
        elif key.startswith(_OPTIM):
            optim[key[len(_OPTIM):]] = _nd_to_bytes(arr)
    if _META not in payload:
        raise CheckpointError('{} is not a gluon_distill checkpoint (no meta record)'.format(path))
    return params, optim, json.loads(_nd_to_bytes(payload[_META]).decode('utf-8'))


def load_checkpoint(path, blocks, trainers):
    """Restore ``blocks`` and ``trainers`` in place from ``path``; returns the meta dict."""
    params, optim, meta = read_checkpoint(path)
    for group, block in blocks.items():
        if group not in params:
            raise CheckpointError('{} holds no parameter group {!r} (it has {})'.format(
                path, group, sorted(params)))
        load_block_arrays(block, params[group], '{} [{}]'.format(path, group))
    for group, trainer in trainers.items():
        if group not in optim:
            raise CheckpointError('{} holds no optimizer state {!r}'.format(path, group))
        load_trainer_state_bytes(trainer, optim[group])
    return meta


def save_params(path, block):
    """``block.save_parameters`` to ``path``, atomically."""
    atomic_write(path, block.save_parameters)
