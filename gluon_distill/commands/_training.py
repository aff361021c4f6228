"""What the three training commands share: the parser (config flags with their resolved
defaults in ``--help``, ``--print-config``) and ``--print-config`` itself."""
import argparse
import sys

from ..cli import Parser, run_tool
from ..config import (ConfigError, add_common_arguments, add_flags, config_from_args,
                      load_config, TEACHER_FLAGS)


def help_defaults(argv, base):
    """The config the flags start from: ``base`` with ``--config`` and ``--set`` of ``argv``
    applied when ``argv`` asks for ``--help`` (so the help shows what a flag left out gives),
    else ``base``."""
    base = base()
    if not argv or not ({'-h', '--help'} & set(argv)):
        return base
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument('--config')
    pre.add_argument('--set', action='append', default=[])
    known, _ = pre.parse_known_args(argv)
    try:
        return load_config(known.config, known.set, base=base)
    except ConfigError:
        return base   # the real parse names the error


def training_parser(module_doc, prog, argv, base, faster_rcnn=False, teacher=False):
    """The parser of a training command: ``--config``, ``--set``, the config flags (defaults
    in their help from ``base()`` and ``argv``'s ``--config``/``--set``), ``--print-config``."""
    defaults = help_defaults(argv, base)
    parser = Parser(prog=prog, description=module_doc, config_keys=True)
    add_common_arguments(parser, defaults, faster_rcnn=faster_rcnn)
    if teacher:
        add_flags(parser, TEACHER_FLAGS, defaults)
    parser.add_argument('--print-config', action='store_true',
                        help='print the resolved configuration (defaults, --config, --set, then '
                             'the flags) as YAML and exit')
    return parser


def family_recipe(family, refusal):
    """``(recipe, recipe_config)`` of the training command of a family with a GluonCV recipe
    (``RECIPE`` of ``gluon_distill.families.<family>``): ``recipe()`` is that recipe as a
    config; ``recipe_config(args)`` the recipe, then ``--config``, ``--set`` and the flags,
    refused with ``refusal`` (formatted with the family asked for) when ``model.family``
    names another family."""
    def recipe():
        import importlib
        from ..config import config_from
        return config_from(importlib.import_module('..families.' + family, __package__).RECIPE)

    def recipe_config(args):
        cfg = config_from_args(args, base=recipe())
        if cfg.model.family != family:
            raise ConfigError(refusal.format(cfg.model.family))
        return cfg
    return recipe, recipe_config


def print_config(resolve):
    """``--print-config``: the YAML of ``resolve()`` on stdout; exit status."""
    def run():
        import yaml
        sys.stdout.write(yaml.safe_dump(resolve().to_dict(), sort_keys=False))
    return run_tool(run)


def resolve(args, base=None):
    return config_from_args(args, base)


def training_main(argv, prog, build_parser, train, report, configure=resolve):
    """The training commands' ``main``: parse ``argv``; with ``--print-config`` print the
    resolved configuration, else ``train(cfg, argv=...)`` and ``report(summary)`` (in a
    distributed job on rank 0 alone). ``configure(args)`` resolves the configuration."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(prog, argv).parse_args(argv)
    if args.print_config:
        return print_config(lambda: configure(args))

    def run():
        from ..engine.distributed import is_writer
        from ..engine.hooks import log_files
        before = log_files()
        try:
            summary = train(configure(args), argv=sys.argv)
        except Exception as e:
            # the run's train.log gets the error line the console gets (when it can be
            # written at all); a log this call did not open is another run's
            _log_error(e, [h for h in log_files() if h not in before])
            raise
        if is_writer():
            report(summary)
    return run_tool(run)


def _log_error(error, handlers):
    """The error that ends a run into its ``train.log``: ``error: ...`` as :func:`run_tool`
    prints a known error, or the traceback of another."""
    if not handlers:
        return
    import traceback
    from ..cli import known_errors
    from ..engine.hooks import log_error_to_files
    if isinstance(error, known_errors()):
        text = 'error: {}'.format(error)
    else:
        text = 'error: {}'.format(''.join(traceback.format_exception(
            type(error), error, error.__traceback__)).rstrip())
    log_error_to_files(text, handlers)


def report_outputs(summary):
    """The plain training commands' last lines: where the outputs are, which file is which."""
    from ..training import describe_outputs
    print('outputs in {}'.format(summary['out']))
    print(describe_outputs(summary, ['best.params', 'last.params']))
