"""Device lists from the command line: ``cpu``, ``cpu:0,1``, ``gpu:0,1,2,3``."""
import mxnet as mx


def parse_ctx(spec):
    """``'gpu:0,1'`` -> ``[mx.gpu(0), mx.gpu(1)]``; ``'cpu'`` -> ``[mx.cpu(0)]``.

    Several ``mx.cpu(i)`` contexts in one process exercise the multi-device code path
    (``split_and_load``, per-device BatchNorm, KVStore reduction) without GPUs.
    """
    spec = (spec or 'cpu').strip().lower()
    kind, _, ids = spec.partition(':')
    if kind not in ('cpu', 'gpu'):
        raise ValueError('--ctx: expected cpu, cpu:0,1 or gpu:0,1,..., got {!r}'.format(spec))
    try:
        indices = [int(i) for i in ids.split(',') if i.strip()] if ids else [0]
    except ValueError:
        raise ValueError('--ctx: device ids must be integers, got {!r}'.format(spec))
    if len(set(indices)) != len(indices):
        raise ValueError('--ctx: repeated device id in {!r}'.format(spec))
    if kind == 'gpu':
        available = mx.context.num_gpus()
        missing = [i for i in indices if i >= available]
        if missing:
            raise ValueError('--ctx {}: this machine has {} GPU(s) visible to MXNet'.format(
                spec, available))
        return [mx.gpu(i) for i in indices]
    return [mx.cpu(i) for i in indices]
