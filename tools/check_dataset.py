#!/usr/bin/env python
"""Validate a VOC-format or COCO-format detection dataset and print what was found.

    python tools/check_dataset.py ROOT [--split S] [--classes a,b,c] [--val-fraction F] [--seed N]
        [--on-bad-image stop|skip] [--format auto|voc|coco]
    python tools/check_dataset.py --annotations FILE.json --images DIR [--split all|train|val]

ROOT is a VOC root (``Annotations/``, ``JPEGImages/``), GluonCV's VOC root (``VOC2007/``...) or
a COCO root (``annotations/instances_<split>.json``, e.g. ``~/.mxnet/datasets/coco``; without
--split every split of it is checked). ``--annotations``/``--images`` check any COCO JSON and
its image folder (the whole file by default). Images are decoded as training decodes them
(OpenCV, stored pixels). Exit status 1 if any problem is fatal (an empty split included), 0
otherwise; with --on-bad-image skip, missing, undecodable and mostly missing images are listed
as skipped instead of fatal.
"""
import argparse
import os
import sys

try:
    import gluon_distill  # noqa: F401
except ImportError:  # run from a checkout without installation
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gluon_distill.data.coco import (coco_split_paths, coco_splits, is_coco_layout,  # noqa: E402
                                     load_coco_records)
from gluon_distill.data.voc import load_voc_records  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('root', nargs='?', default=None,
                        help='VOC root (Annotations/, JPEGImages/), GluonCV VOC root (VOC2007/...) '
                             'or COCO root (annotations/instances_<split>.json)')
    parser.add_argument('--format', choices=('auto', 'voc', 'coco'), default='auto',
                        help='how to read ROOT (default: COCO if it has '
                             'annotations/instances_*.json and no Annotations/ folder)')
    parser.add_argument('--annotations', default=None,
                        help='a COCO instances JSON to check instead of ROOT (needs --images)')
    parser.add_argument('--images', default=None,
                        help='the folder the file_names of --annotations are relative to')
    parser.add_argument('--split', default=None,
                        help="split name, e.g. 'trainval', 'train', '2007_trainval+2012_trainval' "
                             "or, on a COCO root, 'val2017' (default: trainval on VOC, every "
                             "split of a COCO root, all of an --annotations file)")
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
    args = parser.parse_args(argv)
    if args.annotations:
        if args.root:
            parser.error('give ROOT or --annotations, not both')
        if not args.images:
            parser.error('--annotations needs --images (the folder its file_names are relative to)')
    elif args.images:
        parser.error('--images goes with --annotations')
    elif not args.root:
        parser.error('give a dataset ROOT, or --annotations FILE --images DIR')
    if args.annotations and args.format == 'voc':
        parser.error('--annotations is a COCO file: --format voc does not apply')
    return args


def is_coco(args):
    """Whether to read COCO JSON (``--annotations``, ``--format coco``, or a COCO root)."""
    if args.annotations or args.format == 'coco':
        return True
    return args.format == 'auto' and is_coco_layout(args.root) and \
        not os.path.isdir(os.path.join(args.root, 'Annotations'))


def _coco_sources(args):
    """``[(annotation JSON, image folder, split for load_coco_records)]`` to check."""
    if args.annotations:
        return [(args.annotations, args.images, args.split or 'all')]
    splits = [args.split] if args.split else coco_splits(args.root)
    return [coco_split_paths(args.root, split) + ('all',) for split in splits]


def print_report(report, max_lines):
    print(report.summary(max_lines=max_lines))
    rotated = [p.path for p in report.problems if p.kind == 'exif_orientation']
    if rotated:
        print('images with an EXIF orientation tag, used as stored (not rotated): {}'.format(
            len(rotated)))
        print('\n'.join('  ' + path for path in rotated))


def main(argv=None):
    args = parse_args(argv)
    classes = [c for c in args.classes.split(',') if c.strip()] if args.classes else None
    options = dict(val_fraction=args.val_fraction, seed=args.seed,
                   check_images=not args.no_images, progress=sys.stderr.isatty(),
                   on_bad_image=args.on_bad_image)
    if not is_coco(args):
        _, _, report = load_voc_records(args.root, args.split or 'trainval', classes, **options)
        print_report(report, args.max_lines)
        return 1 if report.fatal() else 0
    try:
        sources = _coco_sources(args)
    except FileNotFoundError as e:
        print('error: {}'.format(e), file=sys.stderr)
        return 1
    fatal = False
    for json_path, image_dir, split in sources:
        _, names, ids, report = load_coco_records(json_path, image_dir, split, classes, **options)
        print_report(report, args.max_lines)
        if ids and not report.fatal():
            print('category ids: {}'.format(', '.join(
                '{} {}'.format(n, i) for n, i in zip(names, ids))))
        fatal = fatal or bool(report.fatal())
    return 1 if fatal else 0


if __name__ == '__main__':
    sys.exit(main())
