"""``gluon-distill COMMAND``: every tool of the package under one command.

Each command is a module here with ``build_parser(prog=None, argv=None)`` (its argparse parser)
and ``main(argv=None, prog=None)`` (exit status); ``tools/<script>.py`` are aliases of them, and
``python -m gluon_distill`` is ``gluon-distill``. docs/cli.md holds every command's ``--help``
(``python -m gluon_distill.docgen`` writes it).
"""
import difflib
import importlib
import sys

# command -> (module, the tools/ alias, what it does)
COMMANDS = {
    'train': ('train_ssd', 'tools/train_ssd.py',
              'train a plain SSD: a teacher, or a student with no teacher'),
    'distill': ('train_distill', 'tools/train_distill.py',
                'distil a trained teacher into a small student'),
    'train-rcnn': ('train_rcnn', 'tools/train_rcnn.py',
                   'train a plain Faster R-CNN (GluonCV\'s VOC recipe)'),
    'train-yolo3': ('train_yolo3', 'tools/train_yolo3.py',
                    'train a plain YOLOv3 (GluonCV\'s recipe)'),
    'eval': ('eval', 'tools/eval.py', 'VOC07 mAP (or COCO AP) of a saved detector'),
    'export': ('export', 'tools/export.py', 'export a detector to MXNet symbol or ONNX, verified'),
    'detect': ('detect', 'tools/detect.py', 'detect, draw and list objects in images'),
    'check': ('check_dataset', 'tools/check_dataset.py',
              'validate a VOC or COCO dataset and report what was found'),
    'convert': ('convert', 'tools/convert.py', 'convert annotations between VOC and COCO'),
    'plot': ('plot', 'tools/plot.py', 'plot training runs from their metrics.jsonl'),
    'reproduce': ('reproduce', 'tools/reproduce.py',
                  'train, evaluate and compare a table of the paper'),
}
# other names a user may type -> the command
SYNONYMS = {'train_ssd': 'train', 'train-ssd': 'train', 'train_distill': 'distill',
            'train-distill': 'distill', 'distil': 'distill', 'train_rcnn': 'train-rcnn',
            'train_yolo3': 'train-yolo3', 'train-yolo': 'train-yolo3',
            'check_dataset': 'check', 'check-dataset': 'check', 'evaluate': 'eval'}

PROG = 'gluon-distill'


def command_module(name):
    """The module of command ``name`` (``train``, ``check``, ...)."""
    return importlib.import_module('.' + COMMANDS[name][0], __name__)


def usage():
    from .. import __version__
    width = max(len(n) for n in COMMANDS)
    lines = ['usage: {} COMMAND [ARGS...]'.format(PROG), '',
             'gluon-distill {}: knowledge distillation for object detectors (MXNet Gluon, '
             'GluonCV).'.format(__version__), '', 'commands:']
    for name, (_, alias, text) in COMMANDS.items():
        lines.append('  {:<{}}  {}'.format(name, width, text))
    lines += ['', '{} COMMAND --help shows the flags of one command; every command and every '
                  'config key:'.format(PROG),
              'docs/cli.md and docs/config.md. The scripts tools/<name>.py of a source checkout '
              'are the same',
              'commands (tools/train_ssd.py = train, tools/check_dataset.py = check, ...).']
    return '\n'.join(lines)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ('-h', '--help', 'help'):
        if len(argv) > 1 and argv[0] == 'help':
            return main([argv[1], '--help'])
        print(usage())
        return 0 if argv else 2
    if argv[0] == '--version':
        from .. import __version__
        print('{} {}'.format(PROG, __version__))
        return 0
    name = argv[0]
    if name not in COMMANDS:
        wanted = SYNONYMS.get(name) or SYNONYMS.get(name.replace('.py', '')) or \
            next(iter(difflib.get_close_matches(name, list(COMMANDS), n=1, cutoff=0.5)), None)
        print(usage().splitlines()[0], file=sys.stderr)
        print('{}: error: unknown command {!r}{}'.format(
            PROG, name, ': did you mean {}?'.format(wanted) if wanted else
            ' (commands: {})'.format(', '.join(COMMANDS))), file=sys.stderr)
        return 2
    return command_module(name).main(argv[1:], prog='{} {}'.format(PROG, name))
