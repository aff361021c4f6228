#!/usr/bin/env python
"""Distil a trained SSD teacher into a small student (GAN knowledge distillation).

    python tools/train_distill.py --config experiments/voc/ssd512_resnet50_v1_to_mobilenet1.0.yaml \\
        --teacher-params runs/voc/teacher_ssd512_resnet50_v1/best.params --ctx gpu:0,1
    python tools/train_distill.py --network tiny --teacher-params runs/demo/teacher/best.params \\
        --data-root synthetic --set distill.method=head_only

Leaves OUT/model.json with OUT/best.params (the epoch of best validation mAP) and
OUT/last.params = OUT/student.params (the last epoch): standalone detectors that tools/eval.py
evaluates with no teacher file. The last line printed names each file's epoch and mAP, or says
that the validation mAP collapsed. A run whose losses explode (SSD loss, or the critics' scores,
far above the SSD loss's early level) stops with a message naming the scale and exits 2.
"""
import argparse
import sys

import _bootstrap  # noqa: F401
from gluon_distill.cli import run_tool
from gluon_distill.config import add_common_arguments, config_from_args


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument('--teacher-network', dest='teacher_network', default=None,
                        help='teacher zoo network (needed with a bare GluonCV weight file)')
    parser.add_argument('--teacher-params', dest='teacher_params', default=None,
                        help='teacher weights; a model.json beside them describes the network')
    parser.add_argument('--teacher-pretrained', dest='teacher_pretrained', default=None,
                        action='store_true', help='GluonCV zoo VOC weights for the teacher')
    args = parser.parse_args(argv)

    def run():
        from gluon_distill.distill.run import train_distilled
        from gluon_distill.engine.distributed import is_writer
        cfg = config_from_args(args)
        summary = train_distilled(cfg, argv=sys.argv)
        if is_writer():  # a distributed job: rank 0 alone reports
            print(summary['final_line'])
    return run_tool(run)


if __name__ == '__main__':
    sys.exit(main())
