"""Checkpoints: one file per moment, written atomically.

A checkpoint bundles every parameter group (``net``; ``student``, ``adapters``, ``head``,
``critics`` in a distillation run), every optimizer state, and a JSON ``meta`` record (epoch,
iteration, best metric, seed) into one ``mx.nd.save`` file. It is written to a temporary file
and renamed over the old one, so a crash or Ctrl-C at any moment leaves the previous checkpoint
whole. The checkpoint it replaces is kept as ``prev.ckpt`` (see :func:`save_checkpoint`): a
``last.ckpt`` damaged later (a truncated copy) still leaves one good checkpoint to resume from.
A write that fails (full disk, read-only folder) raises :class:`WriteError`, one line naming the
file and the free space.
"""
import json
import os
import tempfile

import numpy as np

import mxnet as mx

from ..io_utils import (CheckpointError, WriteError, atomic_write, atomic_write_text,  # noqa: F401
                        format_bytes, free_space, mxnet_reason, write_error)

_PARAM = 'param:'
_OPTIM = 'optim:'
_META = 'meta'


def _bytes_to_nd(data):
    return mx.nd.array(np.frombuffer(data, dtype=np.uint8), dtype='uint8', ctx=mx.cpu())


def _nd_to_bytes(arr):
    return arr.asnumpy().astype(np.uint8).tobytes()


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
    try:
        fd, tmp = tempfile.mkstemp(suffix='.states')
    except OSError as e:
        raise write_error(os.path.join(tempfile.gettempdir(), 'tmp.states'), e) from None
    os.close(fd)
    try:
        trainer.save_states(tmp)
        with open(tmp, 'rb') as f:
            return f.read()
    except (OSError, mx.base.MXNetError) as e:
        raise write_error(tmp, e) from None
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


def checkpoint_writer(blocks, trainers, meta):
    """A ``write_fn`` (:func:`~gluon_distill.io_utils.atomic_write`) of the checkpoint of
    ``blocks`` (name -> Block), ``trainers`` (name -> Trainer) and ``meta`` (JSON-able dict),
    taken now."""
    payload = {}
    for group, block in blocks.items():
        for name, arr in block_arrays(block).items():
            payload['{}{}/{}'.format(_PARAM, group, name)] = arr
    for group, trainer in trainers.items():
        payload[_OPTIM + group] = _bytes_to_nd(trainer_state_bytes(trainer))
    payload[_META] = _bytes_to_nd(json.dumps(meta).encode('utf-8'))
    return lambda tmp: mx.nd.save(tmp, payload)


def save_checkpoint(path, blocks, trainers, meta, previous=None):
    """Write ``blocks`` (name -> Block), ``trainers`` (name -> Trainer) and ``meta`` (JSON-able
    dict) to one file, atomically; with ``previous``, the replaced checkpoint is kept there."""
    atomic_write(path, checkpoint_writer(blocks, trainers, meta), previous=previous)


def read_checkpoint(path):
    """``(params, optim, meta)``: group -> {name: array}, group -> bytes, dict."""
    if not os.path.exists(path):
        raise CheckpointError('no checkpoint at {}'.format(path))
    try:
        payload = mx.nd.load(path)
    except mx.base.MXNetError as e:
        raise CheckpointError('cannot read checkpoint {} ({}, {}): it is truncated or not a '
                              'checkpoint'.format(path, mxnet_reason(e),
                                                  format_bytes(os.path.getsize(path))))
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
