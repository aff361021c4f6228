#!/usr/bin/env python
"""Train a plain GluonCV SSD: a teacher, or a student with no teacher.

    python tools/train_ssd.py --network resnet50_v1 --data-shape 512 --ctx gpu:0,1,2,3
    python tools/train_ssd.py --config experiments/voc/teacher_ssd512_resnet50_v1.yaml --ctx gpu:0,1
    python tools/train_ssd.py --network tiny --data-shape 128 --no-pretrained-base \\
        --data-root synthetic --set model.width=32 --set model.blocks=2 --out runs/tiny

OUT (--out) receives last.params and best.params (with model.json beside them), last.ckpt and
prev.ckpt (for --resume), metrics.jsonl, train.log, config.yaml, best.json, summary.json and
curves.png. An OUT that holds another run is refused: --resume continues it, --overwrite moves
it aside to OUT.old-<time>. The last line printed says which epoch each .params file holds and
its validation mAP.
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
    args = parser.parse_args(argv)

    def run():
        from gluon_distill.engine.distributed import is_writer
        from gluon_distill.training import train_detector, describe_outputs
        cfg = config_from_args(args)
        summary = train_detector(cfg, argv=sys.argv)
        if is_writer():  # a distributed job: rank 0 alone reports
            print('outputs in {}'.format(summary['out']))
            print(describe_outputs(summary, ['best.params', 'last.params']))
    return run_tool(run)


if __name__ == '__main__':
    sys.exit(main())
