#!/usr/bin/env python
"""Peak resident memory of a Faster R-CNN training run: ours against GluonCV's own training
loop, on the same network, images, iterations and validation images, in one run.

    OMP_NUM_THREADS=1 python bench/rcnn_memory.py
    OMP_NUM_THREADS=1 python bench/rcnn_memory.py --data-shape 600 --max-size 1000 --iters 4

Each arm runs in a child process of its own (one after the other) and reports its peak
resident memory (``VmHWM`` of ``/proc/self/status``):

* ``gluoncv``: a loop written with GluonCV's API the way its
  ``scripts/detection/faster_rcnn/train_faster_rcnn.py`` trains (``faster_rcnn_resnet50_v1b_voc``
  without ImageNet weights, ``FasterRCNNDefaultTrainTransform`` + ``FasterRCNNTrainBatchify``,
  ``ForwardBackwardTask``'s losses, SGD over ``collect_train_params``, ``hybridize()`` with
  the script's default ``static_alloc=False`` before the epoch and again before validation),
  ``--iters`` training iterations of one image, then its ``validate`` over ``--val-images``
  images (``FasterRCNNDefaultValTransform``, one image per call, VOC07 metric);
* ``ours``: ``train-rcnn``'s run (:func:`gluon_distill.training.train_detector`, the same
  network without ImageNet weights, one epoch of ``--iters`` iterations of one image, then
  its validation, checkpoint and plots).

Images are generated (``gluon_distill/data/synthetic.py``, ``--min-side``..``--max-side``
px) so the bench runs offline; both arms read the same files and resize them to
``--data-shape`` within ``--max-size``. The last line is ``peak_ours_GB=.. peak_gluoncv_GB=..
ratio=..``.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tools'))
import _bootstrap  # noqa: F401,E402

MARK = 'RCNN_MEMORY_RESULT '


def peak_rss_gb():
    """Peak resident memory of this process (VmHWM), in GB (1e9 bytes)."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) * 1024 / 1e9
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def data_values(args):
    from gluon_distill.data.synthetic import SYNTHETIC_CLASSES
    return {'data.root': args.root, 'data.train_split': 'train', 'data.val_split': 'val',
            'data.num_workers': args.num_workers, 'data.classes': list(SYNTHETIC_CLASSES)}


def load_data(args):
    import logging
    from gluon_distill.config import config_from
    from gluon_distill.data.datasets import build_datasets
    cfg = config_from(data_values(args))
    logger = logging.getLogger('bench')
    logger.setLevel(logging.WARNING)
    return build_datasets(cfg.data, logger, progress=False)


def run_gluoncv(args):
    """GluonCV's training script, reduced to ``args.iters`` iterations and one validation."""
    import numpy as np
    import mxnet as mx
    from mxnet import gluon
    import gluoncv as gcv
    from gluoncv.data.batchify import FasterRCNNTrainBatchify, Tuple, Append
    from gluoncv.data.transforms.presets.rcnn import (FasterRCNNDefaultTrainTransform,
                                                      FasterRCNNDefaultValTransform)
    from gluoncv.model_zoo.rcnn.faster_rcnn.data_parallel import ForwardBackwardTask
    from gluoncv.utils.metrics.voc_detection import VOC07MApMetric

    gcv.utils.random.seed(args.seed)
    data = load_data(args)
    ctx = [mx.cpu()]
    net = gcv.model_zoo.get_model('faster_rcnn_resnet50_v1b_voc', pretrained_base=False,
                                  per_device_batch_size=1)
    # the preset's sizes are 600/1000; the script's transforms read them from these
    net.short, net.max_size = args.data_shape, args.max_size
    for param in net.collect_params().values():
        if param._data is not None:
            continue
        param.initialize()
    net.collect_params().reset_ctx(ctx)
    net.reset_class(data.classes)  # the generated shapes (new predictors, initialised)

    # get_dataloader
    train_loader = gluon.data.DataLoader(
        data.train.transform(FasterRCNNDefaultTrainTransform(net.short, net.max_size, net,
                                                             ashape=net.ashape)),
        batch_sampler=gcv.data.sampler.SplitSortedBucketSampler(
            [1.] * len(data.train), 1, num_parts=1, part_index=0, shuffle=True),
        batchify_fn=FasterRCNNTrainBatchify(net, 1), num_workers=args.num_workers)
    val_loader = gluon.data.DataLoader(
        data.val.transform(FasterRCNNDefaultValTransform(net.short, net.max_size)), 1, False,
        batchify_fn=Tuple(*[Append() for _ in range(3)]), last_batch='keep',
        num_workers=args.num_workers)

    # train
    net.collect_params().setattr('grad_req', 'null')
    net.collect_train_params().setattr('grad_req', 'write')
    trainer = gluon.Trainer(net.collect_train_params(), 'sgd',
                            {'learning_rate': 0.001, 'wd': 0.0005, 'momentum': 0.9},
                            kvstore=mx.kvstore.create('device'))
    task = ForwardBackwardTask(net, trainer, gluon.loss.SigmoidBinaryCrossEntropyLoss(
        from_sigmoid=False), gluon.loss.HuberLoss(rho=1. / 9), gluon.loss.SoftmaxCrossEntropyLoss(),
        gluon.loss.HuberLoss(rho=1.), mix_ratio=1.0, amp_enabled=False)
    net.hybridize(static_alloc=False)
    losses = []
    for i, batch in enumerate(train_loader):
        if i == args.iters:
            break
        batch = [[x.as_in_context(ctx[0])] if not isinstance(x, (list, tuple)) else
                 [x[0].as_in_context(ctx[0])] for x in batch]
        result = task.forward_backward(list(zip(*batch))[0])
        trainer.step(1)
        losses.append([float(r.asscalar()) for r in result[:4]])
    train_peak = peak_rss_gb()

    # validate
    metric = VOC07MApMetric(iou_thresh=0.5, class_names=data.classes)
    clipper = gcv.nn.bbox.BBoxClipToImage()
    net.hybridize(static_alloc=False)
    for x, y, im_scale in val_loader:
        x, y, im_scale = x[0], y[0], im_scale[0]
        ids, scores, bboxes = net(x)
        bboxes = clipper(bboxes, x) * im_scale.reshape((-1)).asscalar()
        gt = y.slice_axis(axis=-1, begin=0, end=4) * im_scale.reshape((-1)).asscalar()
        metric.update(bboxes, ids, scores, gt, y.slice_axis(axis=-1, begin=4, end=5),
                      y.slice_axis(axis=-1, begin=5, end=6))
    _, values = metric.get()
    mx.nd.waitall()
    return {'iterations': len(losses), 'train_peak_GB': train_peak, 'mAP': float(values[-1]),
            'last_losses': losses[-1] if losses else None, 'val_images': len(data.val),
            'classes': len(data.classes), 'finite': bool(np.all(np.isfinite(losses)))}


def run_ours(args):
    """``train-rcnn``'s run: GluonCV's recipe at the bench's sizes, one epoch."""
    import mxnet as mx
    from gluon_distill.config import config_from
    from gluon_distill.families.faster_rcnn import RECIPE
    from gluon_distill.training import train_detector
    from gluon_distill.engine.hooks import EvalHook

    out = tempfile.mkdtemp(prefix='gd_bench_rcnn_memory_')
    values = dict(RECIPE)
    values.update(data_values(args))
    values.update({'model.network': 'resnet50_v1b', 'model.pretrained_base': False,
                   'model.data_shape': args.data_shape, 'model.max_size': args.max_size,
                   'train.epochs': 1, 'train.batch_size': 1, 'train.ctx': 'cpu',
                   'train.out': out, 'train.seed': args.seed, 'train.progress': False,
                   'train.log_interval': 1})
    cfg = config_from(values)
    peaks = {}
    evaluate = EvalHook.after_epoch

    def after_epoch(self):  # the peak of training alone, before validation starts
        peaks['train_peak_GB'] = peak_rss_gb()
        return evaluate(self)
    EvalHook.after_epoch = after_epoch
    summary = train_detector(cfg, [])
    mx.nd.waitall()
    with open(os.path.join(out, 'metrics.jsonl')) as f:
        records = [json.loads(line) for line in f]
    train = [r for r in records if r.get('type') == 'train']
    peaks.update({'iterations': summary['iterations'], 'mAP': summary['last_mAP']})
    shutil.rmtree(out, ignore_errors=True)
    if train:
        peaks['last_losses'] = {k: v for k, v in train[-1].items() if k.startswith(('RPN',
                                                                                   'RCNN'))}
    return peaks


def child(args):
    if args.child == 'gluoncv':
        result = run_gluoncv(args)
    else:
        result = run_ours(args)
    result['peak_GB'] = peak_rss_gb()
    print(MARK + json.dumps(result), flush=True)


def spawn(arm, args):
    cmd = [sys.executable, os.path.abspath(__file__), '--child', arm, '--root', args.root,
           '--data-shape', str(args.data_shape), '--max-size', str(args.max_size),
           '--iters', str(args.iters), '--val-images', str(args.val_images),
           '--num-workers', str(args.num_workers), '--seed', str(args.seed)]
    if args.nice:
        cmd = ['nice', '-n', str(args.nice)] + cmd
    start = time.time()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
    if proc.returncode or not lines:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit('the {} arm failed (exit {})'.format(arm, proc.returncode))
    result = json.loads(lines[-1][len(MARK):])
    result['seconds'] = time.time() - start
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data-shape', type=int, default=300, help='short side, px')
    parser.add_argument('--max-size', type=int, default=500, help='longest side limit, px')
    parser.add_argument('--iters', type=int, default=4, help='training iterations (1 image)')
    parser.add_argument('--val-images', type=int, default=4, help='validation images')
    parser.add_argument('--min-side', type=int, default=300, help='generated images, px')
    parser.add_argument('--max-side', type=int, default=500, help='generated images, px')
    parser.add_argument('--num-workers', type=int, default=0,
                        help='data loader workers of both arms (0: in the measured process)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--nice', type=int, default=0, help='run the children with nice -n N')
    parser.add_argument('--arms', nargs='+', default=['gluoncv', 'ours'],
                        choices=['gluoncv', 'ours'])
    parser.add_argument('--child', choices=['gluoncv', 'ours'], help=argparse.SUPPRESS)
    parser.add_argument('--root', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)

    from gluon_distill.data.synthetic import make_synthetic_voc
    args.root = make_synthetic_voc(
        os.path.join(tempfile.gettempdir(), 'gd_bench_rcnn_memory_{}_{}_{}_{}'.format(
            args.iters, args.val_images, args.min_side, args.max_side)),
        num_train=args.iters, num_val=args.val_images, seed=args.seed,
        size_range=(args.min_side, args.max_side))
    print('# Faster R-CNN peak memory: resnet50_v1b (no ImageNet weights), {}/{} px, {} '
          'iterations of 1 image, {} validation images, {} loader workers; load average '
          '{:.2f} {:.2f} {:.2f} on {} cores'.format(
              args.data_shape, args.max_size, args.iters, args.val_images, args.num_workers,
              *os.getloadavg(), os.cpu_count()), flush=True)
    results = {}
    for arm in args.arms:
        results[arm] = r = spawn(arm, args)
        print('{:8s} peak {:.2f} GB (training alone {:.2f} GB), {} iterations, mAP {:.4f}, '
              '{:.0f} s'.format(arm, r['peak_GB'], r['train_peak_GB'], r['iterations'],
                                r['mAP'] if r['mAP'] is not None else -1, r['seconds']),
              flush=True)
    if len(results) == 2:
        ours, theirs = results['ours']['peak_GB'], results['gluoncv']['peak_GB']
        print('peak_ours_GB={:.2f} peak_gluoncv_GB={:.2f} ratio={:.3f}'.format(
            ours, theirs, ours / theirs))


if __name__ == '__main__':
    main()
