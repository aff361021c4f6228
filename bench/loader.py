#!/usr/bin/env python
"""Images per second of the training data pipeline at 512 px: ours beside GluonCV's.

Both pipelines do, per image, the same work with the same augmentation policy: decode, SSD
augmentation (colour distortion, expansion, constrained crop, resize, flip), SSD target
generation against the anchors of the 512 px MobileNet 1.0 SSD, then batching, and the
per-device preparation of ``TrainLoader.prepare`` (ours normalises there, on the device): all
of it is inside the timed window, wherever it runs. Pipelines:

* ``fast`` (ours, the default): ``gluon_distill.data.augment`` (uint8 NumPy/OpenCV, vectorised
  constrained crop, NumPy targets), normalisation on the device;
* ``gluoncv``: GluonCV's ``SSDDefaultTrainTransform`` with anchors (targets in the workers).

With 0, 1 and 2 workers, on the generated data (images 300-500 px, like VOC's) and on
``../shared/data/raccoon`` when present. The first batch of each configuration (worker start)
is not timed. Last line: ``loader_vs_gluoncv=Z.ZZ``, images/s with 0 workers on the generated
data, ours / GluonCV's.

    python bench/loader.py
    python bench/loader.py --batch 16 --batches 6 --workers 0 2
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import RACCOON, datasets, load  # noqa: E402

import mxnet as mx  # noqa: E402


def anchors_512(classes, size=512):
    from gluon_distill.models.ssd import anchors_of, build_ssd, initialize, resolve_arch
    net = build_ssd(resolve_arch('mobilenet1.0', size), classes)
    initialize(net, [mx.cpu()])
    return anchors_of(net, size)


def images_per_second(dataset, anchors, pipeline, workers, batch, batches, size, mean, std):
    from gluon_distill.data.loader import TrainLoader
    loader = TrainLoader(dataset, size, anchors, batch, mean, std, [mx.cpu()], seed=0,
                         num_workers=workers, pipeline=pipeline)
    it = loader.epoch(0)
    first = loader.prepare(next(it))
    mx.nd.waitall()
    del first
    start = time.perf_counter()
    seen = 0
    for _ in range(batches):
        try:
            b = next(it)
        except StopIteration:
            break
        images, cls_t, box_t = loader.prepare(b)
        for x in images:
            x.wait_to_read()
        seen += int(b[0].shape[0])
    elapsed = time.perf_counter() - start
    del it
    return seen / elapsed, seen


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--size', type=int, default=512)
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--batches', type=int, default=4, help='timed batches per setting')
    parser.add_argument('--workers', type=int, nargs='+', default=[0, 1, 2])
    args = parser.parse_args(argv)
    from gluon_distill.config import IMAGENET_MEAN, IMAGENET_STD
    print('# loader at {} px, batch {}, {} timed batches per setting; {}; MXNet {}'.format(
        args.size, args.batch, args.batches, load(), mx.__version__))
    sources = [('synthetic 300-500 px', 'synthetic')]
    if os.path.isdir(os.path.join(RACCOON, 'Annotations')):
        sources.append(('raccoon', os.path.abspath(RACCOON)))
    else:
        print('(../shared/data/raccoon absent: generated data only)')
    ratio = {}
    for label, root in sources:
        bundle, _ = datasets(root, min_size=300, max_size=500, num_train=64)
        anchors = anchors_512(bundle.classes, args.size)
        print('\n## {}: {} training images, {} anchors'.format(label, len(bundle.train),
                                                              anchors.shape[1]))
        print('| workers | ours img/s | GluonCV img/s | ours / GluonCV | load (1 min) |')
        print('|---:|---:|---:|---:|---:|')
        for w in args.workers:
            rate = {}
            for pipeline in ('fast', 'gluoncv'):
                rate[pipeline], _ = images_per_second(
                    bundle.train, anchors, pipeline, w, args.batch, args.batches, args.size,
                    IMAGENET_MEAN, IMAGENET_STD)
            r = rate['fast'] / rate['gluoncv']
            ratio[(label, w)] = r
            print('| {} | {:.1f} | {:.1f} | {:.2f} | {:.2f} |'.format(
                w, rate['fast'], rate['gluoncv'], r, os.getloadavg()[0]))
    print('\n# {}'.format(load()))
    key = (sources[0][0], 0)
    if key not in ratio:
        key = sorted(ratio)[0]
    print('loader_vs_gluoncv={:.2f}'.format(ratio[key]))
    return 0


if __name__ == '__main__':
    sys.exit(main())
