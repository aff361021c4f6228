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
class-agnostic NMS).

--quantize int8 (with the ONNX format) also writes model-int8.onnx: the float model statically
quantised by ONNX Runtime's tools (QDQ, int8 weights per channel, uint8 activations; the
network up to its class and box predictors, the post-processing and NMS stay float),
calibrated on --calibration-images images of --calibration DIR (a folder of images, a VOC or a
COCO root) or, without it, of the training split recorded in model.json; then verified: the
float and INT8 models scored on the recorded validation split (VOC07 mAP or COCO AP, at most
--int8-verify-images images) must differ by at most --int8-max-drop points, else the INT8 file
is removed (exit 2):

    gluon-distill export --params student.params --format onnx --quantize int8 --out deploy/s

The folder runs without the training code: detect --model DIR, eval --model DIR
(gluon_distill.runtime). tools/export.py is the same command.
"""
import os

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
    parser.add_argument('--quantize', choices=('int8',), metavar='int8',
                        help='also write model-int8.onnx, statically quantised (needs the onnx '
                             'format)')
    parser.add_argument('--calibration', metavar='DIR',
                        help='calibrate on images of DIR: a folder of images (searched '
                             'recursively), a VOC root or a COCO root (its training split) '
                             '(default: the training split recorded in model.json)')
    parser.add_argument('--calibration-images', type=int, default=100, metavar='N',
                        help='calibration images, a seeded sample (default: %(default)s)')
    parser.add_argument('--int8-max-drop', type=float, default=1.0, metavar='POINTS',
                        help='largest mAP (COCO: AP) loss of the INT8 model against the float '
                             'one, in points (default: %(default)s)')
    parser.add_argument('--int8-verify-images', type=int, default=500, metavar='N',
                        help='validation images the INT8 model is scored on (0: all; default: '
                             '%(default)s)')
    return parser


def main(argv=None, prog=None):
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.quantize and args.format and 'onnx' not in args.format:
        parser.error('--quantize int8 quantises the ONNX model: add onnx to --format '
                     '(--format onnx or --format mxnet,onnx)')
    if not args.quantize and (args.calibration or args.calibration_images != 100):
        parser.error('--calibration and --calibration-images go with --quantize int8')
    if args.calibration_images < 1:
        parser.error('--calibration-images: at least 1, got {}'.format(args.calibration_images))

    def run():
        from ..export import export_detector, format_report
        formats = args.format or (['mxnet'] if _kind(args.params) == 'faster_rcnn'
                                  else list(FORMATS))
        if args.quantize and 'onnx' not in formats:
            formats = formats + ['onnx']      # a Faster R-CNN is refused here, with the reason
        if args.quantize and args.calibration and not os.path.isdir(args.calibration):
            raise ValueError('--calibration {}: no such folder (a folder of images, a VOC '
                             'root or a COCO root)'.format(args.calibration))
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
        if args.quantize:
            from ..export.quantize import format_int8_report, quantize_export
            section = quantize_export(args.out, args.calibration, args.calibration_images,
                                      args.int8_max_drop, not args.no_verify,
                                      args.int8_verify_images)
            print(format_int8_report(section))
            if 'verification' in section:
                print('verified: the INT8 model is within {:g} point(s) of the float '
                      'model'.format(args.int8_max_drop))
    return run_tool(run)


def _kind(params):
    from ..models.io import read_model_json
    try:
        return read_model_json(params).get('kind')
    except Exception:  # a missing file is reported by the export itself
        return None
