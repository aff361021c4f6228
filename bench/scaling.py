#!/usr/bin/env python
"""Communication overhead of a distributed KVStore job: 1 process vs 2 workers on loopback.

Trains the same seeded tiny SSD twice with ``tools/train_ssd.py``, on the same data and the
same global batch, with the same total of CPU threads:

  (1) one process, ``--ctx cpu``, ``OMP_NUM_THREADS=T``;
  (2) ``python -m gluon_distill.launch -n 2`` (1 scheduler, 1 server, 2 workers on 127.0.0.1),
      each worker ``--ctx cpu --kvstore dist_sync`` with ``OMP_NUM_THREADS=T/2`` and half the
      batch.

Throughput is the ``samples_per_sec`` that ``metrics.jsonl`` logs (rank 0 logs the global
batch), the median over the logging windows after the first epoch (warm-up, hybridization).
Last line: ``scaling=R`` = throughput of (2) / throughput of (1): 1.0 means the exchange with
the parameter server costs nothing; on one machine with the cores split, below 1 is the
overhead of communication (and of two processes sharing the cores).

    python bench/scaling.py                       # about 2 minutes on 2 cores
    python bench/scaling.py --threads 4 --batch-size 32 --epochs 4
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run_args(data_dir, out, args):
    values = {'data.synthetic.dir': data_dir, 'data.synthetic.num_train': args.images,
              'data.synthetic.num_val': 8, 'data.train_split': 'train',
              'data.val_split': 'val', 'data.num_workers': 0, 'model.width': args.width,
              'model.blocks': 1, 'train.log_interval': 2, 'train.progress': False,
              'train.val_interval': 1000}
    argv = ['--network', 'tiny', '--data-shape', str(args.data_shape), '--no-pretrained-base',
            '--data-root', 'synthetic', '--batch-size', str(args.batch_size),
            '--epochs', str(args.epochs), '--seed', '0', '--ctx', 'cpu', '--out', out]
    for key, value in values.items():
        argv += ['--set', '{}={}'.format(key, value)]
    return argv


def throughput(out):
    with open(os.path.join(out, 'metrics.jsonl')) as f:
        records = [json.loads(line) for line in f]
    rates = [r['samples_per_sec'] for r in records if r['type'] == 'train' and r['epoch'] > 0]
    return statistics.median(rates), len(rates)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--threads', type=int, default=2, help='total CPU threads of each set-up')
    p.add_argument('--batch-size', type=int, default=16, help='global batch')
    p.add_argument('--images', type=int, default=64)
    p.add_argument('--epochs', type=int, default=3)
    p.add_argument('--data-shape', type=int, default=128)
    p.add_argument('--width', type=int, default=16)
    args = p.parse_args()
    if args.threads % 2:
        p.error('--threads must be even (split over 2 workers)')
    tool = [sys.executable, os.path.join(REPO, 'tools', 'train_ssd.py')]
    env = dict(os.environ, PYTHONPATH=REPO)
    env.pop('PORT', None)
    with tempfile.TemporaryDirectory(prefix='scaling-') as tmp:
        data = os.path.join(tmp, 'data')
        one, two = os.path.join(tmp, 'one'), os.path.join(tmp, 'two')
        subprocess.run(tool + run_args(data, one, args), check=True, capture_output=True,
                       env=dict(env, OMP_NUM_THREADS=str(args.threads),
                                MXNET_CPU_WORKER_NTHREADS=str(args.threads)))
        launch = [sys.executable, '-m', 'gluon_distill.launch', '-n', '2', '-s', '1',
                  '--port', str(free_port()), '--']
        subprocess.run(launch + tool + run_args(data, two, args) + ['--kvstore', 'dist_sync'],
                       check=True, capture_output=True, cwd=REPO,
                       env=dict(env, OMP_NUM_THREADS=str(args.threads // 2),
                                MXNET_CPU_WORKER_NTHREADS=str(args.threads // 2)))
        rate1, n1 = throughput(one)
        rate2, n2 = throughput(two)
    print('tiny SSD {} px width {}, global batch {}, {} threads in all; median of {} / {} '
          'logging windows after epoch 0'.format(args.data_shape, args.width, args.batch_size,
                                                 args.threads, n1, n2))
    print('1 process:            {:8.1f} samples/s'.format(rate1))
    print('2 workers (loopback): {:8.1f} samples/s'.format(rate2))
    print('load average {:.2f} {:.2f} {:.2f} on {} cores'.format(*os.getloadavg(),
                                                                 os.cpu_count()))
    print('scaling={:.2f}'.format(rate2 / rate1))


if __name__ == '__main__':
    main()
