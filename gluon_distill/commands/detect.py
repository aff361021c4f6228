"""Detect objects in images with a trained detector; draw, save and list the detections.

    gluon-distill detect --params runs/demo/distilled/student.params img1.jpg img2.jpg \\
        --out detections --thresh 0.5
    gluon-distill detect --params best.params photos/     # every image file in the folder
    gluon-distill detect --params best.params photos/ --recursive   # and in its subfolders

Writes OUT/<image name>.png (boxes drawn with GluonCV's plot_bbox; inputs sharing a name get
distinct ones, e.g. a_jpg.png and a_png.png) and prints, per image, one line per detection:
class, score, box (x1 y1 x2 y2, 0-based pixels of the original image, clipped to it).
A folder means the image files in it; its subfolders are not searched, and a line names them.
With --recursive, the image files at any depth below it, each drawn into the same subfolder
of OUT (a/x.jpg and b/x.jpg give OUT/a/x.png and OUT/b/x.png).
The detections are those eval scores: the model family's own input size (an SSD's
square, a Faster R-CNN's short side within its max size) and the NMS settings of its run.
An image larger than --draw-max-side (default 2048 px on its longer side; 0: no bound) is
drawn on a scaled-down copy, and a line says so; the printed boxes stay in its own pixels.
A missing or undecodable input is reported ("PATH: skipped: why") and the others are still
processed; the exit status is then 1. An unwritable --out stops at once (exit 2).
A progress bar over the images is shown on a terminal only (never in redirected output).

An export folder (tools/export.py) instead of the .params: --model DIR runs its files with
gluon_distill.runtime (NumPy, OpenCV and ONNX Runtime; MXNet for the symbol files; neither
GluonCV nor the training code), the same folder rules, names and printed lines, boxes drawn
with OpenCV:

    gluon-distill detect --model deploy/student photos/                  # model.onnx
    gluon-distill detect --model deploy/student --format int8 photos/    # model-int8.onnx

tools/detect.py is the same command.
"""
import argparse
import sys

from ..cli import Parser, run_tool

#: what --format takes with --model (gluon_distill.runtime.FORMATS; not imported here so that
#: --help stays fast)
RUNTIME_FORMATS = ('onnx', 'int8', 'mxnet')


def add_model_arguments(parser, model_help):
    """``--params FILE``, ``--model DIR`` (``model_help``) and ``--format``: what detect and
    eval run, a trained detector or an export folder (checked by :func:`check_model_args`)."""
    parser.add_argument('--params', metavar='FILE',
                        help='.params file with model.json beside it (or --model)')
    parser.add_argument('--model', metavar='DIR', help=model_help)
    parser.add_argument('--format', choices=RUNTIME_FORMATS, metavar='FORMAT',
                        help='with --model: onnx (model.onnx), int8 (model-int8.onnx) or '
                             'mxnet (the symbol files) (default: onnx if there, else mxnet)')


def build_parser(prog=None, argv=None):
    parser = Parser(prog=prog, description=__doc__)
    add_model_arguments(parser, 'an export folder (deploy.json + model files): run it with '
                                'gluon_distill.runtime instead of a .params')
    parser.add_argument('images', nargs='+', metavar='IMAGE',
                        help='an image file, or a folder of them')
    parser.add_argument('--out', default='detections', metavar='DIR',
                        help='output folder (default: %(default)s)')
    parser.add_argument('--recursive', action='store_true',
                        help='a folder means the image files at any depth below it (drawn into '
                             'the same subfolders of --out); without it, the subfolders are not '
                             'searched and a line names them')
    parser.add_argument('--thresh', type=float, default=0.5, metavar='X',
                        help='minimum score (default: %(default)s)')
    # 2048: gluon_distill.detect.DRAW_MAX_SIDE (not imported here: mxnet loads slowly)
    parser.add_argument('--draw-max-side', type=_side, default=2048, metavar='PX',
                        help='draw on a copy at most this many pixels on its longer side '
                             '(default %(default)s; 0: full size)')
    return parser


def main(argv=None, prog=None):
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    check_model_args(parser, args)
    missing = []

    def run():
        if args.model:
            return run_export(args, missing)
        from ..detect import detect_images, format_detections, skipped
        results = detect_images(args.params, args.images, args.out, args.thresh,
                                draw_max_side=args.draw_max_side,
                                recursive=args.recursive)
        print(format_detections(results))
        missing.extend(skipped(results))
    status = run_tool(run)
    if status == 0 and missing:
        print('{} input(s) skipped: {}'.format(len(missing), ', '.join(missing)),
              file=sys.stderr)
        return 1
    return status


def check_model_args(parser, args):
    """Exactly one of --params and --model; --format only with --model."""
    if bool(args.params) == bool(args.model):
        parser.error('give --params FILE (a trained detector) or --model DIR (an export '
                     'folder), not {}'.format('both' if args.params else 'neither'))
    if args.format and not args.model:
        parser.error('--format chooses the files of an export folder: use it with --model DIR')


def run_export(args, missing):
    """``detect --model DIR``: the export folder through gluon_distill.runtime only."""
    from ..io_utils import ensure_writable_dir
    from ..runtime import detect_images, format_detections, skipped
    ensure_writable_dir(args.out, 'output folder')
    results = detect_images(args.model, args.images, args.out, args.thresh, args.format,
                            draw_max_side=args.draw_max_side, recursive=args.recursive,
                            progress=_progress())
    print(format_detections(results))
    missing.extend(skipped(results))


def _progress():
    """A progress-bar wrapper on a terminal (tqdm, when installed), else None."""
    try:
        from ..progress import on_terminal, progress_bar
        import tqdm  # noqa: F401
    except ImportError:
        return None
    if not on_terminal():
        return None
    return lambda items, total: progress_bar(items, True, total=total, desc='detect',
                                             unit='img', leave=False, dynamic_ncols=True)


def _side(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError('expected a whole number of pixels (0: full size), '
                                         'got {!r}'.format(text))
    return value
