#!/usr/bin/env python
"""Can a critic see a difference of scale? The probe behind ``distill.gan.critic_batch``.

Teacher maps ``relu(N(0, 1))`` of C channels and S x S pixels, student maps ``--scale`` times
them; one critic per (size, batch mode) trained ``--steps`` updates at the paper's settings
(clip 0.03, Adam 5e-4, beta1 0.5) on one fixed batch. Prints D(teacher), D(student) and
W = D(student) - D(teacher) per size for teacher and student maps normalised apart (two
batches, as the WGAN reference runs real and fake) and together (one batch). Convolution and
LeakyReLU are positively homogeneous, so a critic whose BatchNorm sees each batch alone cannot
tell a map from its multiple; normalised together it can. Maps below 16 px go through the
critic's resize (docs/distillation.md).

    python bench/critic_probe.py                       # dcgan, 512 channels, sizes 32..1
    python bench/critic_probe.py --critic bn --width 512 --sizes 32 8
    python bench/critic_probe.py --sizes 8 4 --min-size 1   # DCGAN_D without our resize
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tools'))
import _bootstrap  # noqa: F401,E402


def probe(size, channels, mode, critic, width, scale, steps, batch, min_size, seed=0):
    import mxnet as mx
    from gluon_distill.distill.gan import GANDistiller
    mx.random.seed(seed)
    d = GANDistiller([(0, 0)], [size], [mx.cpu()], width=width, clip=0.03, lr=5e-4,
                     beta1=0.5, channels=[channels], critic=critic, critic_batch=mode,
                     critic_min_size=min_size)
    teacher = mx.nd.relu(mx.nd.random.normal(shape=(batch, channels, size, size)))
    student = teacher * scale
    for _ in range(steps):
        d.critic_forward_backward([[teacher]], [[student]], batch)
        d.critic_step()
    (real, fake), = d.critic_forward_backward([[teacher]], [[student]], batch)
    return float(real.asnumpy()[0]) / batch, float(fake.asnumpy()[0]) / batch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sizes', type=int, nargs='+', default=[32, 16, 8, 4, 2, 1])
    parser.add_argument('--channels', type=int, default=512)
    parser.add_argument('--critic', default='dcgan', help='dcgan, bn, plain or spectral')
    parser.add_argument('--width', type=int, default=64)
    parser.add_argument('--scale', type=float, default=3.0)
    parser.add_argument('--steps', type=int, default=100)
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--min-size', type=int, default=16,
                        help='dcgan: maps below this size are resized to it (1: never; the '
                             "critic's own rule is 16)")
    args = parser.parse_args(argv)
    print('# critic {} (width {}, maps below {} px resized), {} channels, student = {} x '
          'teacher, {} updates, batch {}'.format(args.critic, args.width, args.min_size,
                                                 args.channels, args.scale, args.steps,
                                                 args.batch))
    print('| size | batch mode | D(teacher) | D(student) | W | seconds |')
    print('|---:|---|---:|---:|---:|---:|')
    for size in args.sizes:
        for mode in ('separate', 'joint'):
            started = time.time()
            real, fake = probe(size, args.channels, mode, args.critic, args.width, args.scale,
                               args.steps, args.batch, args.min_size)
            print('| {} | {} | {:.3f} | {:.3f} | {:.3f} | {:.0f} |'.format(
                size, mode, real, fake, fake - real, time.time() - started), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
