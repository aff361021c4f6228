"""Detect objects in images with a trained detector; draw, save and list the detections.

    gluon-distill detect --params runs/demo/distilled/student.params img1.jpg img2.jpg \\
        --out detections --thresh 0.5
    gluon-distill detect --params best.params photos/     # every image file in the folder

Writes OUT/<image name>.png (boxes drawn with GluonCV's plot_bbox; inputs sharing a name get
distinct ones, e.g. a_jpg.png and a_png.png) and prints, per image, one line per detection:
class, score, box (x1 y1 x2 y2, 0-based pixels of the original image, clipped to it).
The detections are those eval scores: the model family's own input size (an SSD's
square, a Faster R-CNN's short side within its max size) and the NMS settings of its run.
An image larger than --draw-max-side (default 2048 px on its longer side; 0: no bound) is
drawn on a scaled-down copy, and a line says so; the printed boxes stay in its own pixels.
A missing or undecodable input is reported ("PATH: skipped: why") and the others are still
processed; the exit status is then 1. An unwritable --out stops at once (exit 2).
tools/detect.py is the same command.
"""
import argparse
import sys

from ..cli import Parser, run_tool


def build_parser(prog=None, argv=None):
    parser = Parser(prog=prog, description=__doc__)
    parser.add_argument('--params', required=True, metavar='FILE',
                        help='.params file with model.json beside it')
    parser.add_argument('images', nargs='+', metavar='IMAGE',
                        help='an image file, or a folder of them')
    parser.add_argument('--out', default='detections', metavar='DIR',
                        help='output folder (default: %(default)s)')
    parser.add_argument('--thresh', type=float, default=0.5, metavar='X',
                        help='minimum score (default: %(default)s)')
    # 2048: gluon_distill.detect.DRAW_MAX_SIDE (not imported here: mxnet loads slowly)
    parser.add_argument('--draw-max-side', type=_side, default=2048, metavar='PX',
                        help='draw on a copy at most this many pixels on its longer side '
                             '(default %(default)s; 0: full size)')
    return parser


def main(argv=None, prog=None):
    args = build_parser(prog).parse_args(argv)
    missing = []

    def run():
        from ..detect import detect_images, format_detections, skipped
        results = detect_images(args.params, args.images, args.out, args.thresh,
                                draw_max_side=args.draw_max_side)
        print(format_detections(results))
        missing.extend(skipped(results))
    status = run_tool(run)
    if status == 0 and missing:
        print('{} input(s) skipped: {}'.format(len(missing), ', '.join(missing)),
              file=sys.stderr)
        return 1
    return status


def _side(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError('expected a whole number of pixels (0: full size), '
                                         'got {!r}'.format(text))
    return value
