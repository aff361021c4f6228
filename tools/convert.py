#!/usr/bin/env python
"""Convert detection annotations between PASCAL VOC and COCO formats.

    python tools/convert.py voc2coco --voc-root DIR --split trainval --out instances_trainval.json
    python tools/convert.py coco2voc --annotations instances_val2017.json --images val2017 \\
        --out voc_val [--link]

Both directions validate their input as training does (a fatal problem converts nothing).
Boxes keep one pixel convention: VOC xmin = COCO x + 1, VOC xmax = COCO x + w. VOC
<difficult> becomes a "difficult": 1 field in COCO; COCO crowd regions become difficult VOC
objects. See gluon_distill/data/convert.py.
"""
import argparse
import sys

import _bootstrap  # noqa: F401
from gluon_distill.cli import run_tool


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='direction', required=True)
    v2c = sub.add_parser('voc2coco', help='VOC root split -> COCO instances JSON')
    v2c.add_argument('--voc-root', required=True, help='VOC root or GluonCV VOC root')
    v2c.add_argument('--split', default='trainval', help='e.g. trainval, 2007_test')
    v2c.add_argument('--out', required=True, help='JSON file to write')
    v2c.add_argument('--classes', help='comma-separated class order (default: sorted)')
    v2c.add_argument('--category-ids', help='comma-separated id of each class (default 1..K)')
    v2c.add_argument('--check-images', action='store_true', help='decode every image (slow)')
    c2v = sub.add_parser('coco2voc', help='COCO instances JSON + images -> VOC root')
    c2v.add_argument('--annotations', required=True, help='COCO instances JSON')
    c2v.add_argument('--images', required=True, help='folder the file_names are relative to')
    c2v.add_argument('--out', required=True, help='VOC root to write')
    c2v.add_argument('--split', default='all', help='all (written as trainval), or a seeded '
                     'split: train, val')
    c2v.add_argument('--link', action='store_true', help='symlink images instead of copying')
    c2v.add_argument('--check-images', action='store_true', help='decode every image (slow)')
    args = parser.parse_args(argv)

    def run():
        from gluon_distill.data import convert
        if args.direction == 'voc2coco':
            classes = args.classes.split(',') if args.classes else None
            ids = [int(v) for v in args.category_ids.split(',')] if args.category_ids else None
            path, images, n_img, n_box = convert.voc_to_coco(
                args.voc_root, args.split, args.out, classes, ids,
                check_images=args.check_images)
            print('wrote {}: {} images, {} boxes'.format(path, n_img, n_box))
            print('train or evaluate on it with: --set data.format=coco --set '
                  'data.annotations={} --set data.images={}'.format(path, images))
        else:
            root, n_img, n_box = convert.coco_to_voc(args.annotations, args.images, args.out,
                                                     args.split, link=args.link,
                                                     check_images=args.check_images)
            print('wrote VOC root {}: {} images, {} boxes'.format(root, n_img, n_box))
    return run_tool(run)


if __name__ == '__main__':
    sys.exit(main())
