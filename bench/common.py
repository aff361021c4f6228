"""Shared set-up of the benchmarks: data roots, networks of each benchmark size, timing."""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tools'))
import _bootstrap  # noqa: F401,E402

from gluon_distill import _compat  # noqa: F401,E402
import mxnet as mx  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RACCOON = os.path.join(REPO, '..', 'shared', 'data', 'raccoon')

#: Benchmark networks per input size: (teacher network, width, blocks), (student ...).
#: 512: the paper's most used zoo pair (random weights, no pretrained base); 128: the
#: demo-sized networks of gluon_distill/demo.py.
NETWORKS = {
    512: (('resnet50_v1', 32, 1), ('mobilenet1.0', 32, 1)),
    128: (('tiny', 32, 2), ('tiny', 16, 1)),
}


def load(seconds_note=''):
    """The 1, 5 and 15 minute load averages as a string."""
    return 'load average {:.2f} {:.2f} {:.2f} on {} cores{}'.format(
        *os.getloadavg(), os.cpu_count(), seconds_note)


def data_config(root, min_size=96, max_size=160, num_train=64, split='train'):
    from gluon_distill.config import config_from
    values = {'data.root': root, 'data.train_split': split, 'data.val_split': 'val',
              'data.synthetic.num_train': num_train, 'data.synthetic.num_val': 8,
              'data.synthetic.min_size': min_size, 'data.synthetic.max_size': max_size}
    return config_from(values)


def datasets(root='synthetic', **kwargs):
    """The DataBundle of ``root`` (``synthetic``: generated and cached)."""
    import logging
    from gluon_distill.data.datasets import build_datasets
    logger = logging.getLogger('bench')
    logger.setLevel(logging.WARNING)
    split = kwargs.pop('split', 'train' if root == 'synthetic' else 'trainval')
    cfg = data_config(root, split=split, **kwargs)
    return build_datasets(cfg.data, logger, progress=False), cfg


def model_config(size, role):
    """The ModelConfig of the benchmark's ``role`` ('teacher' or 'student') at ``size``."""
    from gluon_distill.config import ModelConfig
    network, width, blocks = NETWORKS[size][0 if role == 'teacher' else 1]
    return ModelConfig(network=network, data_shape=size, pretrained_base=False, width=width,
                       blocks=blocks)


def stats(values):
    """``(median, min, max, stdev)`` of a list of seconds."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.median(values), min(values), max(values), sd


def timed(fn):
    """Seconds of ``fn()`` followed by a full device drain."""
    mx.nd.waitall()
    start = time.perf_counter()
    fn()
    mx.nd.waitall()
    return time.perf_counter() - start


def peak_rss_mb():
    """Peak resident memory of this process (VmHWM), in MiB."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024.0
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
