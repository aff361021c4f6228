#!/usr/bin/env python
"""Plot training runs from their metrics.jsonl: losses, learning rate, validation mAP and, for
distillation runs, the critics' losses and the Wasserstein estimate per scale.

    python tools/plot.py runs/demo/teacher                      # -> runs/demo/teacher/curves.png
    python tools/plot.py runs/a runs/b runs/c -o compare.png     # several runs overlaid

Every training run already writes OUT/curves.png when it ends; this redraws it at any time
(while a run is going, too) and compares runs. Labels are the run folders' names.
"""
import argparse
import os
import sys

import _bootstrap  # noqa: F401
from gluon_distill.cli import run_tool


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('runs', nargs='+', metavar='RUN',
                        help='a run folder (holding metrics.jsonl) or a metrics.jsonl file')
    parser.add_argument('-o', '--output', default=None,
                        help='PNG to write (default: RUN/curves.png for one run, '
                             'compare.png for several)')
    parser.add_argument('--title', default=None, help='figure title')
    args = parser.parse_args(argv)

    def run():
        from gluon_distill.viz import plot_runs
        runs = {}
        for item in args.runs:
            path = item if item.endswith('.jsonl') else os.path.join(item, 'metrics.jsonl')
            if not os.path.isfile(path):
                raise FileNotFoundError('no metrics.jsonl at {}'.format(path))
            folder = os.path.dirname(os.path.abspath(path))
            label = os.path.basename(folder)
            if label in runs:  # two runs/x/teacher: tell them apart by their parent
                label = os.path.join(os.path.basename(os.path.dirname(folder)), label)
            runs[label] = path
        output = args.output or (os.path.join(os.path.dirname(list(runs.values())[0]),
                                              'curves.png') if len(runs) == 1 else 'compare.png')
        title = args.title if args.title is not None else ' vs '.join(runs)
        print(plot_runs(runs, output, title=title))
    return run_tool(run)


if __name__ == '__main__':
    sys.exit(main())
