#!/usr/bin/env python
"""Validate a VOC-format detection dataset and print what was found.

    python tools/check_dataset.py ROOT [--split S] [--classes a,b,c] [--val-fraction F] [--seed N]
        [--on-bad-image stop|skip]

Images are decoded as training decodes them (OpenCV, stored pixels). Exit status 1 if any
problem is fatal (an empty split included), 0 otherwise; with --on-bad-image skip, missing,
undecodable and mostly missing images are listed as skipped instead of fatal.
"""
import argparse
import os
import sys

try:
    import gluon_distill  # noqa: F401
except ImportError:  # run from a checkout without installation
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gluon_distill.data.voc import load_voc_records  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('root', help='VOC root (Annotations/, JPEGImages/) or GluonCV root (VOC2007/...)')
    parser.add_argument('--split', default='trainval',
                        help="split name, e.g. 'trainval', 'train', or '2007_trainval+2012_trainval' "
                             "(default: %(default)s)")
    parser.add_argument('--classes', default=None,
                        help='comma-separated class names (default: discovered from the annotations)')
    parser.add_argument('--val-fraction', type=float, default=0.2,
                        help='validation fraction of the seeded split used without ImageSets/Main')
    parser.add_argument('--seed', type=int, default=0, help='seed of that split')
    parser.add_argument('--max-lines', type=int, default=20, help='problems listed individually')
    parser.add_argument('--no-images', action='store_true', help='skip decoding the images')
    parser.add_argument('--on-bad-image', choices=('stop', 'skip'), default='stop',
                        help='what data.on_bad_image does with a missing, undecodable or '
                             'mostly missing image (default: %(default)s)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    classes = [c for c in args.classes.split(',') if c.strip()] if args.classes else None
    _, _, report = load_voc_records(args.root, args.split, classes, val_fraction=args.val_fraction,
                                    seed=args.seed, check_images=not args.no_images,
                                    progress=sys.stderr.isatty(),
                                    on_bad_image=args.on_bad_image)
    print(report.summary(max_lines=args.max_lines))
    rotated = [p.path for p in report.problems if p.kind == 'exif_orientation']
    if rotated:
        print('images with an EXIF orientation tag, used as stored (not rotated): {}'.format(
            len(rotated)))
        print('\n'.join('  ' + path for path in rotated))
    return 1 if report.fatal() else 0


if __name__ == '__main__':
    sys.exit(main())
