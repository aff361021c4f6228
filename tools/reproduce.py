#!/usr/bin/env python
"""Reproduce a table of the paper: train (or resume) every run in order, evaluate, compare.

    python tools/reproduce.py --table 1 --dry-run          # commands + GPU-hour estimate
    python tools/reproduce.py --table 1 --ctx gpu:0,1
    python tools/reproduce.py --table 1 --methods gan fgfi --results results
    python tools/reproduce.py --table 2 --dry-run          # COCO 2017 (experiments/coco)
    python tools/reproduce.py --table 3 --dry-run          # Faster R-CNN (experiments/voc07_rcnn)

Runs are the configs of --experiments whose experiment.paper_table names the table: teachers,
then baselines, then the distillations (--methods of gan, head_only, mimic, fgfi, cosine;
default all; a run combining several, gan+cosine, is kept when any of them is listed). The dry
run prints each run's schedule beside its command. Finished runs (OUT/summary.json) are
skipped, cut-off ones (OUT/last.ckpt) resumed. Writes
RESULTS/table<N>.md, .csv (paper mAP, ours, difference; Table 2: COCO AP@[.5:.95]) and .png
(bar plot).
"""
import argparse
import sys

import _bootstrap  # noqa: F401
from gluon_distill.cli import run_tool


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--table', type=int, default=1, help='paper table number (default 1)')
    parser.add_argument('--methods', nargs='+', default=None,
                        help='distillation methods to run: gan head_only mimic fgfi cosine '
                             '(default all; gan+cosine runs are kept by gan or by cosine)')
    parser.add_argument('--ctx', default=None, help='devices for every run, e.g. gpu:0,1 or cpu')
    parser.add_argument('--experiments', default=None,
                        help='folder of the YAML configs (default: the table\'s, '
                             'experiments/voc for 1, experiments/coco for 2)')
    parser.add_argument('--results', default='results', help='folder of table<N>.md/.csv/.png')
    parser.add_argument('--set', action='append', default=[], metavar='SECTION.KEY=VALUE',
                        help='override one config key in every run; repeatable')
    parser.add_argument('--dry-run', action='store_true',
                        help='print the commands and a GPU-hour estimate; train nothing')
    args = parser.parse_args(argv)

    def run():
        from gluon_distill.reproduce import reproduce_table
        reproduce_table(args.table, args.experiments, args.methods, args.ctx, args.results,
                        args.set, args.dry_run)
    return run_tool(run)


if __name__ == '__main__':
    sys.exit(main())
