"""Reproduce a table of the paper: train (or resume) every run in order, evaluate, compare.

    gluon-distill reproduce --table 1 --dry-run          # commands + GPU-hour estimate
    gluon-distill reproduce --table 1 --ctx gpu:0,1
    gluon-distill reproduce --table 1 --methods gan,fgfi --out results
    gluon-distill reproduce --table 2 --dry-run          # COCO 2017 (experiments/coco)
    gluon-distill reproduce --table 3 --dry-run          # Faster R-CNN (experiments/voc07_rcnn)
    gluon-distill reproduce --report --evidence runs/mini --demo runs/demo   # docs/results.md

Runs are the configs of --experiments whose experiment.paper_table names the table: teachers,
then baselines, then the distillations (--methods of gan, head_only, mimic, fgfi, cosine;
default all; a run combining several, gan+cosine, is kept when any of them is listed). The
table's folder is found from any working folder (the checkout's experiments/, else the
installed copy). The dry run prints each run's schedule beside its command. Finished runs
(OUT/summary.json) are skipped, cut-off ones (OUT/last.ckpt) resumed. Writes
OUT/table<N>.md, .csv (paper mAP, ours, difference; Table 2: COCO AP@[.5:.95]) and .png
(bar plot). tools/reproduce.py is the same command.
"""

from ..cli import CommaList, Parser, run_tool

METHODS = ('gan', 'head_only', 'mimic', 'fgfi', 'cosine')


def build_parser(prog=None, argv=None):
    parser = Parser(prog=prog, description=__doc__)
    parser.add_argument('--table', type=int, default=1, metavar='N',
                        help='paper table number (default: %(default)s)')
    parser.add_argument('--methods', action=CommaList, default=None, metavar='M1,M2',
                        help='distillation methods to run, comma-separated, from '
                             'gan,head_only,mimic,fgfi,cosine (default all; gan+cosine runs are '
                             'kept by gan or by cosine)')
    parser.add_argument('--ctx', default=None, metavar='DEVICES',
                        help='devices for every run, e.g. gpu:0,1 or cpu (default: each '
                             'config\'s train.ctx)')
    parser.add_argument('--experiments', default=None, metavar='DIR',
                        help='folder of the YAML configs (default: the table\'s, '
                             'experiments/voc for 1, experiments/coco for 2, '
                             'experiments/voc07_rcnn for 3)')
    parser.add_argument('--out', default=None, metavar='PATH',
                        help='the folder of table<N>.md/.csv/.png (default: results); with '
                             '--report, the page to write (default: docs/results.md)')
    parser.add_renamed('--results', '--out')
    parser.add_argument('--set', action='append', default=[], metavar='SECTION.KEY=VALUE',
                        help='override one config key in every run; repeatable')
    parser.add_argument('--dry-run', action='store_true',
                        help='print the commands and a GPU-hour estimate; train nothing')
    parser.add_argument('--report', action='store_true',
                        help='write the results page (Tables 1-3: paper, ours or "not run", '
                             'config, commands; the CPU evidence) from the finished runs; '
                             'trains nothing')
    parser.add_argument('--evidence', nargs='+', default=[], metavar='DIR',
                        help='with --report: mini-reproduction folders (bench/mini_repro.py)')
    parser.add_argument('--demo', default=None, metavar='DIR',
                        help='with --report: a demo output folder (python -m gluon_distill.demo)')
    return parser


def experiments_folder(table, given=None):
    """The folder of ``table``'s configs: ``given`` (or the table's own folder), found from
    any working folder (:func:`gluon_distill.resources.find_experiment`)."""
    from ..reproduce import table_spec
    from ..resources import find_experiment
    folder = given or table_spec(table).experiments
    return find_experiment(folder, directory=True) or folder


def main(argv=None, prog=None):
    args = build_parser(prog).parse_args(argv)

    def run():
        if args.report:
            from ..results_page import write_results_page
            return write_results_page(args.out or 'docs/results.md', args.evidence, args.demo)
        from ..reproduce import reproduce_table
        reproduce_table(args.table, experiments_folder(args.table, args.experiments),
                        args.methods, args.ctx, args.out or 'results', args.set, args.dry_run)
    return run_tool(run)
