#!/usr/bin/env python
"""Train a plain GluonCV SSD: a teacher, or a student with no teacher.

    python tools/train_ssd.py --network resnet50_v1 --data-shape 512 --ctx gpu:0,1,2,3
    python tools/train_ssd.py --config experiments/demo/teacher.yaml --ctx cpu:0,1
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
        from gluon_distill.training import train_detector
        cfg = config_from_args(args)
        summary = train_detector(cfg, argv=sys.argv)
        print('best mAP={:.4f} ({})'.format(summary['best_mAP'], summary['out']))
    return run_tool(run)


if __name__ == '__main__':
    sys.exit(main())
