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
            raise ValueError(no_gpu_message(spec, available))
        return [mx.gpu(i) for i in indices]
    return [mx.cpu(i) for i in indices]


def no_gpu_message(spec, available):
    """Why ``--ctx spec`` cannot run here, and the fix: ``--ctx cpu``, or MXNet's GPU build."""
    if available:
        return '--ctx {}: this machine has {} GPU(s) visible to MXNet (ids 0 to {})'.format(
            spec, available, available - 1)
    try:
        cuda = mx.runtime.Features().is_enabled('CUDA')
    except Exception:  # an MXNet without the feature list
        cuda = None
    if cuda is False:
        why = ('the installed MXNet is the CPU build (mxnet {}): train on the CPU with --ctx '
               'cpu, or install the GPU build on a machine with an NVIDIA GPU: pip install '
               '"gluon-distill[cu112]" (mxnet-cu112, CUDA 11.2; docs/install.md)'.format(
                   mx.__version__))
    else:
        why = ('MXNet sees no GPU (no NVIDIA driver or CUDA_VISIBLE_DEVICES hides them): train '
               'on the CPU with --ctx cpu, or check nvidia-smi (the GPU build: pip install '
               '"gluon-distill[cu112]", docs/install.md)')
    return '--ctx {}: this machine has no GPU; {}'.format(spec, why)
