"""Export a trained detector (teacher, baseline or distilled student) for deployment.

    gluon-distill export --params runs/demo/distilled/student.params --out deploy/student
    gluon-distill export --params best.params --format onnx --out deploy/onnx

``--format mxnet``: model-symbol.json + model-0000.params (load with
``gluon.SymbolBlock.imports('model-symbol.json', ['data'], 'model-0000.params')``, no
gluon_distill needed) and model-raw-symbol.json (raw outputs, same params). ``--format onnx``:
model.onnx (opset 13, dynamic batch, per-class NMS in the graph; needs ``.[deploy]``).
Default: both (``--format mxnet,onnx``). A distilled student is exported with its adapters
folded into the head. After export the files are run against the original network on the same
input: the largest differences of raw class scores and box offsets are printed, with the
tolerances and whether the detections agree; a disagreement is an error (exit 2). Raw outputs
must agree within 1e-3 (relative above magnitude 1), detections within what that allows (a
score by half the logit tolerance, a box by the offset tolerance times its anchor and size),
ties at equal scores or at the NMS threshold allowed. An original network that itself gives inf
or nan is named as such. The input is a generated batch, or with --verify-image the given
photos, decoded as training and detect decode them. An unwritable --out stops at once, before
the model is loaded (exit 2).

A Faster R-CNN (train-rcnn) exports in the MXNet format: model-symbol.json +
model-0000.params, input one image (1, 3, H, W) resized to its short side, verified against
the Gluon network (detections agree). --format onnx is refused before anything is converted
or written (MXNet 1.9.1's converter writes a graph onnxruntime cannot load, with
class-agnostic NMS). tools/export.py is the same command.
"""

from ..cli import CommaList, Parser, run_tool

FORMATS = ('mxnet', 'onnx')


def build_parser(prog=None, argv=None):
    parser = Parser(prog=prog, description=__doc__)
    parser.add_argument('--params', required=True, metavar='FILE',
                        help='.params file with model.json beside it')
    parser.add_argument('--format', action=CommaList, allowed=FORMATS, metavar='FORMATS',
                        help='mxnet, onnx or mxnet,onnx (default: mxnet,onnx; a Faster R-CNN: '
                             'mxnet)')
    parser.add_argument('--out', required=True, metavar='DIR', help='output folder')
    parser.add_argument('--nms-thresh', type=float, default=None, metavar='X',
                        help="default: the training run's eval.nms_thresh (model.json), "
                             "else 0.45")
    parser.add_argument('--nms-topk', type=int, default=None, metavar='N',
                        help='default: the run\'s, else 400')
    parser.add_argument('--post-nms', type=int, default=None, metavar='N',
                        help='default: the run\'s, else 100')
    parser.add_argument('--no-verify', action='store_true', help='skip the verification run')
    parser.add_argument('--verify-image', action='append', metavar='IMAGE',
                        help='verify on this image (repeatable; decoded and resized as '
                             'detect does) instead of the generated input')
    return parser


def main(argv=None, prog=None):
    args = build_parser(prog).parse_args(argv)

    def run():
        from ..export import export_detector, format_report
        formats = args.format or (['mxnet'] if _kind(args.params) == 'faster_rcnn'
                                  else list(FORMATS))
        info = export_detector(args.params, args.out, formats,
                               verify=not args.no_verify, nms_thresh=args.nms_thresh,
                               nms_topk=args.nms_topk, post_nms=args.post_nms,
                               verify_images=args.verify_image)
        print('exported {} ({}{}) to {}: {}'.format(
            args.params, info['kind'], ', adapters folded into the head'
            if info['adapters_folded'] else '', args.out, ', '.join(sorted(
                info['files'].values()))))
        if 'onnx' in info:
            print('onnx opset {opset} (onnx {onnx}, onnxruntime {onnxruntime})'.format(
                **info['onnx']))
        if 'verification' in info:
            print(format_report(info['verification']))
            print('verified: exported outputs match the original')
    return run_tool(run)


def _kind(params):
    from ..models.io import read_model_json
    try:
        return read_model_json(params).get('kind')
    except Exception:  # a missing file is reported by the export itself
        return None
