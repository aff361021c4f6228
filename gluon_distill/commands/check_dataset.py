"""Validate a VOC-format or COCO-format detection dataset and print what was found.

    gluon-distill check --data-root ROOT [--split S] [--classes a,b,c] [--val-fraction F]
        [--split-seed N] [--on-bad-image stop|skip] [--format auto|voc|coco]
    gluon-distill check --annotations FILE.json --images DIR [--split all|train|val]

ROOT is a VOC root (``Annotations/``, ``JPEGImages/``), GluonCV's VOC root (``VOC2007/``...) or
a COCO root (``annotations/instances_<split>.json``, e.g. ``~/.mxnet/datasets/coco``; without
--split every split of it is checked); ``synthetic`` checks the generated dataset the training
commands use. ``--annotations``/``--images`` check any COCO JSON and its image folder (the
whole file by default). Images are decoded as training decodes them (OpenCV, stored pixels).
Exit status 1 if any problem is fatal (an empty split, or a root that is none of these,
included), 0 otherwise; with --on-bad-image skip, missing, undecodable and mostly missing
images are listed as skipped instead of fatal. tools/check_dataset.py is the same command.
"""
import argparse
import os
import sys

from ..cli import Parser, notice
from ..config import comma_list


def build_parser(prog=None, argv=None):
    parser = Parser(prog=prog, description=__doc__)
    parser.add_argument('--data-root', metavar='DIR',
                        help='VOC root (Annotations/, JPEGImages/), GluonCV VOC root (VOC2007/...),'
                             ' COCO root (annotations/instances_<split>.json) or synthetic')
    # the former spelling: the root as the first argument
    parser.add_argument('root', nargs='?', default=None, help=argparse.SUPPRESS)
    parser.add_argument('--format', choices=('auto', 'voc', 'coco'), default='auto',
                        help='how to read the root (default: auto, COCO if it has '
                             'annotations/instances_*.json and no Annotations/ folder)')
    parser.add_argument('--annotations', default=None, metavar='FILE',
                        help='a COCO instances JSON to check instead of a root (needs --images)')
    parser.add_argument('--images', default=None, metavar='DIR',
                        help='the folder the file_names of --annotations are relative to')
    parser.add_argument('--split', default=None, metavar='SPLIT',
                        help="split name, e.g. 'trainval', 'train', '2007_trainval+2012_trainval' "
                             "or, on a COCO root, 'val2017' (default: trainval on VOC, every "
                             "split of a COCO root, all of an --annotations file)")
    parser.add_argument('--classes', default=None, type=comma_list(str, 'class names'),
                        metavar='A,B',
                        help='comma-separated class names (default: discovered from the '
                             'annotations)')
    parser.add_argument('--val-fraction', type=float, default=0.2, metavar='F',
                        help='validation fraction of the seeded split used without '
                             'ImageSets/Main (data.val_fraction; default: %(default)s)')
    parser.add_argument('--split-seed', type=int, default=0, metavar='N',
                        help='seed of that split (data.split_seed; default: %(default)s)')
    parser.add_renamed('--seed', '--split-seed')
    parser.add_argument('--max-lines', type=int, default=20, metavar='N',
                        help='problems listed individually (default: %(default)s)')
    parser.add_argument('--no-images', action='store_true', help='skip decoding the images')
    parser.add_argument('--on-bad-image', choices=('stop', 'skip'), default='stop',
                        help='what data.on_bad_image does with a missing, undecodable or '
                             'mostly missing image (default: %(default)s)')
    return parser


def parse_args(argv=None, prog=None):
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.root is not None:
        if args.data_root is not None:
            parser.error('give the root once: --data-root {}'.format(args.data_root))
        notice(parser.prog, 'a root given as the first argument is now --data-root {} (read as '
                            'such)'.format(args.root))
        args.data_root = args.root
    args.root = args.data_root
    if args.annotations:
        if args.root:
            parser.error('give --data-root or --annotations, not both')
        if not args.images:
            parser.error('--annotations needs --images (the folder its file_names are relative to)')
    elif args.images:
        parser.error('--images goes with --annotations')
    elif not args.root:
        parser.error('give --data-root ROOT, or --annotations FILE --images DIR')
    if args.annotations and args.format == 'voc':
        parser.error('--annotations is a COCO file: --format voc does not apply')
    return args


def is_coco(args):
    """Whether to read COCO JSON (``--annotations``, ``--format coco``, or a COCO root)."""
    from ..data.coco import is_coco_layout
    if args.annotations or args.format == 'coco':
        return True
    return args.format == 'auto' and is_coco_layout(args.root) and \
        not os.path.isdir(os.path.join(args.root, 'Annotations'))


def _coco_sources(args):
    """``[(annotation JSON, image folder, split for load_coco_records)]`` to check."""
    from ..data.coco import coco_split_paths, coco_splits
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


def _synthetic_root(fmt):
    from ..config import Config
    from ..data.datasets import resolve_root
    data = Config().data
    data.root = 'synthetic'
    data.format = 'coco' if fmt == 'coco' else 'voc'
    return resolve_root(data)


def main(argv=None, prog=None):
    from ..data.coco import load_coco_records
    from ..data.report import DatasetError
    from ..data.voc import load_voc_records
    from ..data.datasets import check_root
    args = parse_args(argv, prog)
    options = dict(val_fraction=args.val_fraction, seed=args.split_seed,
                   check_images=not args.no_images, progress=True,  # on a terminal only
                   on_bad_image=args.on_bad_image)
    if args.root == 'synthetic':
        args.root = _synthetic_root(args.format)
    if not args.annotations:
        try:
            check_root(args.root)
        except DatasetError as e:
            print('error: {}'.format(e), file=sys.stderr)
            return 1
    if not is_coco(args):
        _, _, report = load_voc_records(args.root, args.split or 'trainval', args.classes,
                                        **options)
        print_report(report, args.max_lines)
        return 1 if report.fatal() else 0
    try:
        sources = _coco_sources(args)
    except FileNotFoundError as e:
        print('error: {}'.format(e), file=sys.stderr)
        return 1
    fatal = False
    for json_path, image_dir, split in sources:
        _, names, ids, report = load_coco_records(json_path, image_dir, split, args.classes,
                                                  **options)
        print_report(report, args.max_lines)
        if ids and not report.fatal():
            print('category ids: {}'.format(', '.join(
                '{} {}'.format(n, i) for n, i in zip(names, ids))))
        fatal = fatal or bool(report.fatal())
    return 1 if fatal else 0
