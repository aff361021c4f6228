#!/usr/bin/env python
"""VOC07 11-point mAP at IoU 0.5 of a saved detector (teacher, baseline or distilled student).

    python tools/eval.py --params runs/demo/teacher/best.params
    python tools/eval.py --params best.params --data-root ~/.mxnet/datasets/voc --split 2007_test \\
        --save-dir eval_out     # + metrics.json and devkit results files

Without --data-root/--split it evaluates on the validation data the model was trained with;
without --nms-thresh/--iou-thresh, with the NMS and IoU of its run (model.json "eval").
The last line printed is ``mAP=0.xxxx``.

On COCO-format data (a COCO root such as ~/.mxnet/datasets/coco, or any COCO JSON) it prints
COCO AP@[.5:.95] by pycocotools: AP, AP50, AP75, AP small/medium/large, per-class AP, last line
``AP=0.xxxx``; --save-dir writes metrics.json and results.json (COCO results format):

    python tools/eval.py --params best.params --data-root ~/.mxnet/datasets/coco --split val2017
    python tools/eval.py --params best.params --set data.format=coco \
        --set data.annotations=my_val.json --set data.images=my_images/ --save-dir eval_out
"""
import argparse
import sys

import _bootstrap  # noqa: F401
from gluon_distill.cli import run_tool


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--params', required=True, help='.params file with model.json beside it')
    parser.add_argument('--data-root', help='VOC-format root, GluonCV VOC root, COCO root or '
                        '"synthetic"')
    parser.add_argument('--split', help='e.g. 2007_test, val, test, val2017, all')
    parser.add_argument('--save-dir', help='write metrics.json and devkit results here')
    parser.add_argument('--ctx', default='cpu', help='cpu, cpu:0,1 or gpu:0,1')
    parser.add_argument('--batch-size', type=int, default=16)
    parser.add_argument('--num-workers', type=int, default=0)
    parser.add_argument('--nms-thresh', type=float, default=None,
                        help="NMS IoU threshold (default: the training run's eval.nms_thresh "
                             "from model.json, else 0.45)")
    parser.add_argument('--iou-thresh', type=float, default=None,
                        help="IoU of a match (default: the run's eval.iou_thresh, else 0.5)")
    parser.add_argument('--set', action='append', default=[], metavar='data.KEY=VALUE',
                        help='override a data key, e.g. data.format=coco; repeatable')
    args = parser.parse_args(argv)

    def run():
        from gluon_distill.engine.hooks import setup_logging
        from gluon_distill.evaluation.run import evaluate_params
        setup_logging()
        _, table = evaluate_params(args.params, args.data_root, args.split, args.ctx,
                                   args.batch_size, args.save_dir, args.num_workers,
                                   nms_thresh=args.nms_thresh, iou_thresh=args.iou_thresh,
                                   overrides=args.set)
        print(table)
    return run_tool(run)


if __name__ == '__main__':
    sys.exit(main())
