"""Convert detection annotations between PASCAL VOC and COCO formats.

    gluon-distill convert voc2coco --data-root DIR --split trainval --out instances_trainval.json
    gluon-distill convert coco2voc --annotations instances_val2017.json --images val2017 \\
        --out voc_val [--link]

Both directions validate their input as training does (a fatal problem converts nothing).
Boxes keep one pixel convention: VOC xmin = COCO x + 1, VOC xmax = COCO x + w. VOC
<difficult> becomes a "difficult": 1 field in COCO; COCO crowd regions become difficult VOC
objects. See gluon_distill/data/convert.py. tools/convert.py is the same command.
"""

from ..cli import Parser, run_tool
from ..config import comma_list


def build_parser(prog=None, argv=None):
    parser = Parser(prog=prog, description=__doc__)
    sub = parser.add_subparsers(dest='direction', required=True, metavar='DIRECTION',
                                parser_class=Parser)
    v2c = sub.add_parser('voc2coco', help='VOC root split -> COCO instances JSON')
    v2c.add_argument('--data-root', required=True, metavar='DIR',
                     help='VOC root or GluonCV VOC root')
    v2c.add_renamed('--voc-root', '--data-root')
    v2c.add_argument('--split', default='trainval', help='e.g. trainval, 2007_test '
                     '(default: %(default)s)')
    v2c.add_argument('--out', required=True, metavar='FILE', help='JSON file to write')
    v2c.add_argument('--classes', type=comma_list(str, 'class names'), metavar='A,B',
                     help='comma-separated class order (default: sorted)')
    v2c.add_argument('--category-ids', type=comma_list(int, 'ids'), metavar='1,2',
                     help='comma-separated id of each class (default 1..K)')
    v2c.add_argument('--check-images', action='store_true', help='decode every image (slow)')
    c2v = sub.add_parser('coco2voc', help='COCO instances JSON + images -> VOC root')
    c2v.add_argument('--annotations', required=True, metavar='FILE', help='COCO instances JSON')
    c2v.add_argument('--images', required=True, metavar='DIR',
                     help='folder the file_names are relative to')
    c2v.add_argument('--out', required=True, metavar='DIR', help='VOC root to write')
    c2v.add_argument('--split', default='all', help='all (written as trainval), or a seeded '
                     'split: train, val (default: %(default)s)')
    c2v.add_argument('--link', action='store_true', help='symlink images instead of copying')
    c2v.add_argument('--check-images', action='store_true', help='decode every image (slow)')
    return parser


def main(argv=None, prog=None):
    args = build_parser(prog).parse_args(argv)

    def run():
        from ..data import convert
        if args.direction == 'voc2coco':
            path, images, n_img, n_box = convert.voc_to_coco(
                args.data_root, args.split, args.out, args.classes, args.category_ids,
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
