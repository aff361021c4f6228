#!/usr/bin/env python
"""The critics' scale per Table 1 pair, before a long GPU run (docs/method-notes.md).

For every (teacher, student) pair of experiments/voc/ (or --pairs), the real zoo networks with
random weights (no download) at --size px, the critics of the pair's config (or --critic /
--width / --critic-batch), --steps critic updates on one random batch (student and teacher
frozen); then prints W per scale, how far W still moved over the last tenth of the steps, and
|adversarial gradient| / |SSD gradient| on the student's features. The last line sums the
last pair's W over scales:

    W_sum=<sum of W over scales> grad_ratio=<|adversarial grad| / |SSD grad|>

to hold against the authors' first logged window (Loss_D = -13.6, i.e. W summed over scales =
13.6) and a ratio in [0.1, 10] (critics able to move the student).

    python bench/critic_scale.py --size 512 --pairs resnet50_v1:mobilenet1.0   # the logged pair
    python bench/critic_scale.py --size 272 --critic bn --width 512 --critic-batch separate
"""
import argparse
import glob
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tools'))
import _bootstrap  # noqa: F401,E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config_pairs():
    """(teacher, student) -> ``distill.gan`` section of every GAN config in experiments/voc/."""
    from gluon_distill.config import load_config
    pairs = {}
    for path in sorted(glob.glob(os.path.join(REPO, 'experiments', 'voc', '*.yaml'))):
        cfg = load_config(path)
        if cfg.teacher.network and cfg.distill.method == 'gan':
            pairs[(cfg.teacher.network, cfg.model.network)] = cfg.distill.gan
    return pairs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--size', type=int, default=512, help='input px (VGG16-512 needs >= 272)')
    parser.add_argument('--pairs', nargs='+', default=None, metavar='TEACHER:STUDENT',
                        help='e.g. resnet50_v1:mobilenet1.0 (default: every GAN config)')
    parser.add_argument('--steps', type=int, default=300,
                        help='critic updates before measuring (300: the default critics have '
                             'reached their plateau on the logged pair at 512 px)')
    parser.add_argument('--critic', default=None,
                        help='dcgan, bn, plain or spectral (default: config)')
    parser.add_argument('--critic-batch', default=None, help='joint or separate (default: config)')
    parser.add_argument('--width', type=int, default=None, help='critic width (default: config)')
    parser.add_argument('--batch', type=int, default=2)
    args = parser.parse_args(argv)

    import mxnet as mx
    from gluon_distill.distill.scale import (critic_scale, describe, pair_step, random_batch,
                                             random_pair)
    from gluon_distill.models.ssd import anchors_of
    known = config_pairs()
    wanted = [tuple(p.split(':')) for p in args.pairs] if args.pairs else sorted(known)
    classes = ['c%d' % i for i in range(20)]
    ctx = [mx.cpu()]
    print('# {} px, batch {}, {} critic steps on one random batch, random zoo weights; '
          'MXNet {}'.format(args.size, args.batch, args.steps, mx.__version__))
    for teacher_net, student_net in wanted:
        if (teacher_net, student_net) not in known:
            parser.error('no GAN config in experiments/voc/ for {}:{}'.format(teacher_net,
                                                                              student_net))
        d = known[(teacher_net, student_net)]
        if args.critic:
            d.critic = args.critic
        if args.width:
            d.critic_width = args.width
        if args.critic_batch:
            d.critic_batch = args.critic_batch
        started = time.time()
        # the full zoo name keeps the 7-scale 512 preset of VGG16 at a small input
        teacher, plan = random_pair('ssd_512_' + teacher_net, student_net, args.size, classes,
                                    ctx)
        step = pair_step(teacher, plan, ctx, d)
        batch = random_batch(anchors_of(plan.net, args.size).shape[1], args.size, len(classes),
                             args.batch)
        result = critic_scale(step, batch, args.steps)
        history = result['W_history']
        tail = history[-max(2, len(history) // 10):]
        print('{} -> {} (critic {}, width {}, {} batch, clip {}): {}; W summed over scales '
              'moved {:+.3g} over the last {} steps ({:.0f} s)'.format(
                  teacher_net, student_net, d.critic, d.critic_width, d.critic_batch, d.clip,
                  describe(result), tail[-1] - tail[0], len(tail) - 1, time.time() - started),
              flush=True)
    print('W_sum={:.4g} grad_ratio={:.4g}'.format(sum(result['W']), result['ratio']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
