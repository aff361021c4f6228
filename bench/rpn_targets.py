#!/usr/bin/env python
"""RPN target generation per image: GluonCV's FasterRCNNDefaultTrainTransform vs ours
(gluon_distill/data/rcnn_targets.py, NumPy with cached anchors), as a ratio measured in one
run, and what share of a tiny Faster R-CNN training step (batch 4 on one core) each costs.

    OMP_NUM_THREADS=1 python bench/rpn_targets.py
    OMP_NUM_THREADS=1 python bench/rpn_targets.py --network resnet50_v1b --data-shape 600 \\
        --max-size 1000 --images 20

Both transforms get the same images and per-image seeds; the script first checks that they
give identical outputs. Printed: ms per image for the target part alone and for the whole
transform, the ratios, and the tiny training step's ms per batch.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tools'))
import _bootstrap  # noqa: F401,E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--network', default='tiny')
    parser.add_argument('--data-shape', type=int, default=128)
    parser.add_argument('--max-size', type=int, default=192)
    parser.add_argument('--images', type=int, default=64)
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--steps', type=int, default=10)
    args = parser.parse_args(argv)

    import tempfile
    import numpy as np
    import mxnet as mx
    from mxnet import autograd
    from gluoncv.data.transforms.presets.rcnn import FasterRCNNDefaultTrainTransform
    from gluon_distill.config import config_from
    from gluon_distill.data.datasets import load_split
    from gluon_distill.data.synthetic import make_synthetic_voc
    from gluon_distill.data.voc import DetectionDataset
    from gluon_distill.data.rcnn_targets import RCNNTrainTransform
    from gluon_distill.families import get_family
    from gluon_distill.families.faster_rcnn import _Batchify, _TrainTransform
    from gluon_distill.models.faster_rcnn import RCNNLoss, RCNNTrainForward, sampler_draws
    from gluon_distill.engine.steps import make_trainer

    root = make_synthetic_voc(os.path.join(tempfile.gettempdir(), 'gd_bench_rpn'),
                              num_train=args.images, num_val=1, seed=0,
                              size_range=(args.data_shape, int(args.max_size * 1.3)))
    cfg = config_from({'model.family': 'faster_rcnn', 'model.network': args.network,
                       'model.data_shape': args.data_shape, 'model.max_size': args.max_size,
                       'model.pretrained_base': False, 'model.width': 32})
    records, classes, _ = load_split(root, 'train', None, cfg.data, False)
    dataset = DetectionDataset(records, classes)
    samples = [dataset[i] for i in range(len(dataset))]
    family = get_family('faster_rcnn')
    net, arch = family.build(cfg.model, classes, [mx.cpu()])
    m = cfg.model
    theirs = FasterRCNNDefaultTrainTransform(net.short, net.max_size, net, mean=tuple(m.mean),
                                             std=tuple(m.std), ashape=net.ashape)
    ours = RCNNTrainTransform(net.short, net.max_size, net, m.mean, m.std, net.ashape)

    def run(transform):
        out = []
        for i, (img, label) in enumerate(samples):
            np.random.seed(i)
            out.append(transform(img, label))
        return out

    # identical outputs first
    for a, b in zip(run(theirs), run(ours)):
        assert np.array_equal(a[0].asnumpy(), b[0].asnumpy())
        assert np.array_equal(a[1], b[1])
        for k in (2, 3, 4):
            x, y = np.asarray(a[k][0]), np.asarray(b[k][0])
            assert x.shape == y.shape and np.allclose(x, y, atol=1e-5), k

    def best_of(fn):
        times = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times) / len(samples) * 1000

    # the target part alone: from the resized, flipped image's boxes to the three targets
    prepared = []
    for i, (img, label) in enumerate(samples):
        np.random.seed(i)
        x, bbox = theirs(img, label)[:2]
        prepared.append((x.shape[1], x.shape[2], bbox))

    def their_targets():
        for i, (h, w, bbox) in enumerate(prepared):
            np.random.seed(i)
            oshape = theirs._feat_sym.infer_shape(data=(1, 3, h, w))[1][0]
            anchor = theirs._anchors[:, :, :oshape[2], :oshape[3], :]
            theirs._target_generator(mx.nd.array(bbox[:, :4]), anchor.reshape((-1, 4)), w, h)

    def our_targets():
        from gluon_distill.data.rcnn_targets import rpn_targets
        for i, (h, w, bbox) in enumerate(prepared):
            np.random.seed(i)
            _, _, anchors = ours._anchors(h, w)
            rpn_targets(bbox[:, :4].astype(np.float32), anchors, w, h, **ours._sampler)

    t_theirs, t_ours = best_of(their_targets), best_of(our_targets)
    f_theirs, f_ours = best_of(lambda: run(theirs)), best_of(lambda: run(ours))

    # a tiny training step on one core: batch of args.batch_size, forward, backward, update
    batchify = _Batchify(net)
    with_draws = _TrainTransform(ours, sampler_draws(net.arch))
    batches = []
    for s in range(args.steps + 2):
        items = []
        for i in range(args.batch_size):
            np.random.seed(s * args.batch_size + i)
            items.append(with_draws(*samples[(s * args.batch_size + i) % len(samples)]))
        batches.append(batchify(items))
    items = []
    for i in range(args.batch_size):
        np.random.seed(i)
        items.append(with_draws(*samples[i]))
    start = time.perf_counter()
    for _ in range(args.rounds * 3):
        batchify(items)
    t_batchify = (time.perf_counter() - start) / (args.rounds * 3) * 1000
    forward, loss = RCNNTrainForward(net), RCNNLoss()
    trainer = make_trainer(list(net.collect_params().values()), 'adam', 1e-3)

    def step(batch):
        images, labels, cls_t, box_t, mask, _, rand = batch
        with autograd.record():
            out = forward(images, labels.slice_axis(axis=-1, begin=0, end=4),
                          labels.slice_axis(axis=-1, begin=4, end=5), rand)
            totals, _ = loss([out], ([cls_t], [box_t], [mask]))
        autograd.backward(totals)
        trainer.step(1)
        mx.nd.waitall()
    for batch in batches[:2]:
        step(batch)
    start = time.perf_counter()
    for batch in batches[2:]:
        step(batch)
    t_step = (time.perf_counter() - start) / args.steps * 1000

    b = args.batch_size
    print('{} Faster R-CNN, short side {} within {} px, {} images, best of {} rounds, '
          'OMP_NUM_THREADS={}'.format(args.network, args.data_shape, args.max_size,
                                      len(samples), args.rounds,
                                      os.environ.get('OMP_NUM_THREADS', 'unset')))
    print('outputs identical: yes')
    print('RPN targets per image: gluoncv {:.2f} ms, ours {:.2f} ms, speed-up {:.1f}x'.format(
        t_theirs, t_ours, t_theirs / t_ours))
    print('whole train transform per image: gluoncv {:.2f} ms, ours {:.2f} ms, speed-up '
          '{:.1f}x'.format(f_theirs, f_ours, f_theirs / f_ours))
    print('training step (batch {}, one process): {:.1f} ms; transform of its batch: gluoncv '
          '{:.1f} ms ({:.0%} of the step), ours {:.1f} ms ({:.0%})'.format(
              b, t_step, f_theirs * b, f_theirs * b / t_step, f_ours * b, f_ours * b / t_step))
    print("GluonCV's batchify (padding, RPN targets laid on the padded map) of that batch: "
          '{:.1f} ms ({:.0%} of the step)'.format(t_batchify, t_batchify / t_step))


if __name__ == '__main__':
    main()
