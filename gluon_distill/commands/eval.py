"""VOC07 11-point mAP at IoU 0.5 of a saved detector (teacher, baseline or distilled student).

    gluon-distill eval --params runs/demo/teacher/best.params
    gluon-distill eval --params best.params --data-root ~/.mxnet/datasets/voc --split 2007_test \\
        --out eval_out     # + metrics.json and devkit results files

Without --data-root/--split it evaluates on the validation data the model was trained with;
without --nms-thresh/--iou-thresh, with the NMS and IoU of its run (model.json "eval").
The last line printed is ``mAP=0.xxxx``.

On COCO-format data (a COCO root such as ~/.mxnet/datasets/coco, or any COCO JSON) it prints
COCO AP@[.5:.95] by pycocotools: AP, AP50, AP75, AP small/medium/large, per-class AP, last line
``AP=0.xxxx``; --out writes metrics.json and results.json (COCO results format):

    gluon-distill eval --params best.params --data-root ~/.mxnet/datasets/coco --split val2017
    gluon-distill eval --params best.params --set data.format=coco \\
        --set data.annotations=my_val.json --set data.images=my_images/ --out eval_out

An export folder (tools/export.py) instead of the .params: --model DIR runs its files through
gluon_distill.runtime (--format onnx, int8 or mxnet; default model.onnx if there, else the MXNet
symbol) on the data its .params is evaluated on (deploy.json records it) and scores them with
the same evaluator, so the mAP of what you ship is checked against the .params' mAP (the same
to within 0.001 for the float files; the NMS is the exported graph's):

    gluon-distill eval --model deploy/student
    gluon-distill eval --model deploy/student --format int8

tools/eval.py is the same command.
"""

from ..cli import Parser, run_tool
from .detect import add_model_arguments, check_model_args


def build_parser(prog=None, argv=None):
    parser = Parser(prog=prog, description=__doc__)
    add_model_arguments(parser, 'an export folder (deploy.json + model files): evaluate its '
                                'files run by gluon_distill.runtime')
    parser.add_argument('--data-root', metavar='DIR',
                        help='VOC root, GluonCV VOC root, COCO root or synthetic (default: the '
                             'data the model was trained on)')
    parser.add_argument('--split', metavar='SPLIT',
                        help='e.g. 2007_test, val, test, val2017, all (default: the validation '
                             'split the model was trained with)')
    parser.add_argument('--out', metavar='DIR',
                        help='write metrics.json and the devkit (or COCO) results files here '
                             '(default: write nothing)')
    parser.add_renamed('--save-dir', '--out')
    parser.add_argument('--ctx', default='cpu', metavar='DEVICES',
                        help='cpu, cpu:0,1 or gpu:0,1 (default: %(default)s)')
    parser.add_argument('--batch-size', type=int, default=16, metavar='N',
                        help='images per batch (default: %(default)s)')
    parser.add_argument('--num-workers', type=int, default=0, metavar='N',
                        help='data loader worker processes (default: %(default)s)')
    parser.add_argument('--nms-thresh', type=float, default=None, metavar='X',
                        help="NMS IoU threshold (default: the training run's eval.nms_thresh "
                             "from model.json, else 0.45)")
    parser.add_argument('--iou-thresh', type=float, default=None, metavar='X',
                        help="IoU of a match (default: the run's eval.iou_thresh, else 0.5)")
    parser.add_argument('--set', action='append', default=[], metavar='data.KEY=VALUE',
                        help='override a data key, e.g. data.format=coco; repeatable')
    return parser


def main(argv=None, prog=None):
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    check_model_args(parser, args)
    if args.model and args.nms_thresh is not None:
        parser.error('--nms-thresh: an export folder runs the NMS of its graph (deploy.json '
                     '"nms"); export again with --nms-thresh to change it')

    def run():
        from ..engine.hooks import setup_logging
        setup_logging()
        if args.model:
            from ..evaluation.exported import evaluate_export
            _, table = evaluate_export(args.model, args.data_root, args.split, args.format,
                                       args.batch_size, args.out, iou_thresh=args.iou_thresh,
                                       overrides=args.set)
            print(table)
            return
        from ..evaluate import evaluate_params
        _, table = evaluate_params(args.params, args.data_root, args.split, args.ctx,
                                   args.batch_size, args.out, args.num_workers,
                                   nms_thresh=args.nms_thresh, iou_thresh=args.iou_thresh,
                                   overrides=args.set)
        print(table)
    return run_tool(run)
