#!/usr/bin/env python
"""Mini-reproduction of Table 1 on this CPU (see gluon_distill/mini.py). Resumable: run it
again after an interruption and it continues where it stopped.

    python bench/mini_repro.py --out runs/mini --seeds 0 1 2 --epochs 60 --teacher-epochs 50
    python bench/mini_repro.py --out runs/mini --arms gan_w512 --seeds 0 --epochs 60
    python bench/mini_repro.py --data-root ../shared/data/raccoon --out runs/mini_raccoon
    python bench/mini_repro.py --set distill.gan.n_critic=5 --out runs/mini_ncritic5

Arms (gluon_distill/mini.py, every setting explicit there): baseline, head_only, mimic, fgfi,
gan (the default critics: dcgan, base width 64, teacher and student maps normalised together,
the adversarial term by its own Adam), gan_bn (the former bn critic, width 64, separate
batches, one shared optimizer), gan_w512 (bn, width 512), gan_plain (clipped critic without
BatchNorm, width 64), gan_spectral (spectral normalisation, adversarial weight 0.01, width 64).
The report pairs every distillation arm with head_only by seed (mean, 95% interval, the logged
gradient share) and plots the differences in OUT/paired.png.

Cosine attention (our reading, gluon_distill/distill/cosine.py): cosine, gan_cosine (the gan
arm plus the cosine term; also paired with gan), rcnn_cosine, rcnn_gan_cosine, e.g.

    python bench/mini_repro.py --out runs/mini --arms head_only gan cosine gan_cosine --seeds 0 1 2 \
        --epochs 40 --teacher-epochs 50

Faster R-CNN arms (their own teacher, rcnn_teacher/): rcnn_baseline, rcnn_head_only,
rcnn_mimic, rcnn_fgfi, rcnn_gan (the gan arm's critics), rcnn_gan_bn (gan_bn's); e.g. two processes at once, the second after the teacher:

    python bench/mini_repro.py --out runs/mini_rcnn --arms rcnn_baseline rcnn_gan --seeds 0 1 2 \
        --epochs 24 --teacher-epochs 24
    python bench/mini_repro.py --out runs/mini_rcnn --arms rcnn_mimic rcnn_fgfi --seeds 0 1 2 \
        --epochs 24 --teacher-epochs 24

YOLOv3 arms (beyond the paper; their own teacher, yolo_teacher/; docs/yolo3.md):
yolo_baseline, yolo_head_only, yolo_gan (the gan arm's critics), multi-scale 96/128/160 px:

    python bench/mini_repro.py --out runs/mini_yolo --arms yolo_baseline yolo_head_only yolo_gan \
        --seeds 0 1 2 --epochs 30 --teacher-epochs 60
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tools'))
import _bootstrap  # noqa: F401,E402
import yaml  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='runs/mini')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--epochs', type=int, default=60)
    parser.add_argument('--teacher-epochs', type=int, default=60)
    parser.add_argument('--arms', nargs='+', default=['baseline', 'head_only', 'gan'])
    parser.add_argument('--data-root', default='synthetic',
                        help='"synthetic" (generated shapes) or a VOC-format folder '
                             '(Annotations/, JPEGImages/), split 80/20 with a fixed seed')
    parser.add_argument('--workers', type=int, default=1)
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                        help='override a config key of the student runs')
    args = parser.parse_args(argv)
    from gluon_distill.mini import run_mini_reproduction
    overrides = [(k, yaml.safe_load(v)) for k, v in (s.split('=', 1) for s in args.set)]
    results = run_mini_reproduction(args.out, args.seeds, args.epochs, args.teacher_epochs,
                                    args.arms, args.workers, overrides,
                                    os.path.abspath(args.data_root)
                                    if args.data_root != 'synthetic' else 'synthetic')
    print(open(os.path.join(os.path.abspath(args.out), 'results.md')).read())
    return 0 if results else 1


if __name__ == '__main__':
    sys.exit(main())
