"""Plot training runs from their metrics.jsonl: losses, learning rate, validation mAP and, for
distillation runs, the critics' losses and the Wasserstein estimate per scale.

    gluon-distill plot runs/demo/teacher                     # -> runs/demo/teacher/curves.png
    gluon-distill plot runs/a runs/b runs/c --out compare.png   # several runs overlaid
    gluon-distill plot runs/demo/distilled --authors-log AUTHORS_LOG   # critics vs the paper's

``--authors-log`` takes the raw text of a training log the paper's authors published
(repository p517332051/GAN-Knowledge-Distillation-SSD, e.g.
``ssd_512_mobilenet1_0_resnet50_v1_voc_g_d_new_train.log``) or a CSV of its windows, and draws
one GAN run's Loss_D, Loss_D_real, Loss_D_fake and Loss_G beside theirs over iterations (one
critic update each; default output RUN/critics_vs_authors.png), then prints both runs' values
at the authors' first window (iteration 100), at each power of ten and at the run's last
iteration, with their ratio.

Every training run already writes OUT/curves.png when it ends; this redraws it at any time
(while a run is going, too) and compares runs. Labels are the run folders' names.
tools/plot.py is the same command.
"""
import os

from ..cli import Parser, run_tool


def build_parser(prog=None, argv=None):
    parser = Parser(prog=prog, description=__doc__)
    parser.add_argument('runs', nargs='+', metavar='RUN',
                        help='a run folder (holding metrics.jsonl) or a metrics.jsonl file')
    parser.add_argument('-o', '--out', default=None, metavar='FILE',
                        help='PNG to write (default: RUN/curves.png for one run, '
                             'compare.png for several)')
    parser.add_renamed('--output', '--out')
    parser.add_argument('--title', default=None, help='figure title (default: the runs\' names)')
    parser.add_argument('--authors-log', default=None, metavar='FILE',
                        help="an authors' training log (raw text or CSV): compare one GAN run's "
                             'critic losses with it')
    return parser


def main(argv=None, prog=None):
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.authors_log and len(args.runs) != 1:
        parser.error('--authors-log compares one run, got {}'.format(len(args.runs)))

    def run():
        from ..viz import plot_runs
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
        if args.authors_log:
            return _compare_with_authors(path, label)
        output = args.out or (os.path.join(os.path.dirname(list(runs.values())[0]),
                                           'curves.png') if len(runs) == 1 else 'compare.png')
        title = args.title if args.title is not None else ' vs '.join(runs)
        print(plot_runs(runs, output, title=title))

    def _compare_with_authors(path, label):
        from ..viz import plot_critics_vs_authors
        output = args.out or os.path.join(os.path.dirname(path), 'critics_vs_authors.png')
        _, rows = plot_critics_vs_authors(path, args.authors_log, output, label=label)
        print('| iteration | value | {} | authors | ratio |'.format(label))
        print('|---:|---|---:|---:|---:|')
        for iteration, key, ours, theirs in rows:
            ratio = ours / theirs if theirs else float('inf')
            print('| {} | {} | {:.4g} | {:.4g} | {:.3g} |'.format(iteration, key, ours,
                                                                theirs, ratio))
        print(output)
    return run_tool(run)
