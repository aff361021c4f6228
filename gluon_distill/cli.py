"""Shared behaviour of the command-line tools.

* :func:`run_tool`: known errors become one clear line (``error: ...``, exit 2).
* :class:`Parser`: argparse whose unknown flags are answered with the fix: the nearest flag,
  GluonCV's spelling mapped onto ours (``--gpus 0,1`` -> ``--ctx gpu:0,1``, ``--dataset-root``,
  ``--save-prefix``), a config key's ``--set``; whose renamed flags keep working with a one-line
  notice (:meth:`Parser.add_renamed`); and whose lists are comma-separated
  (:class:`CommaList`).

One name per concept across the tools (docs/training.md, "Command names and flags"): ``--out``
for every output, ``--data-root`` for every data root, ``--split`` / ``--train-split`` /
``--val-split``, ``--seed`` for the training seed, ``--split-seed`` for the seeded split's,
``--num-workers`` for data loader workers, lists as ``a,b``.
"""
import argparse
import difflib
import os
import sys


def known_errors():
    try:
        return _package_errors()
    except ImportError:   # the runtime alone (detect --model), without the training stack:
        return (ValueError, FileNotFoundError)   # its errors are ValueErrors


def _package_errors():
    from .config import ConfigError
    from .data.report import DatasetError
    from .engine.checkpoint import CheckpointError
    from .engine.distributed import DistributedError
    from .engine.hooks import TrainingDiverged
    from .models.ssd import ModelError
    return (ConfigError, DatasetError, CheckpointError, TrainingDiverged, ModelError, ValueError,
            FileNotFoundError, DistributedError)


def run_tool(fn):
    """Run ``fn()``; print known errors as ``error: ...`` (exit 2), Ctrl-C exits 130, a closed
    output pipe exits 1 quietly."""
    try:
        fn()
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130
    except BrokenPipeError:   # output piped into a reader that stopped (| head): no traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())   # Python's own flush at exit would fail again
        return 1
    except known_errors() as e:
        print('error: {}'.format(e), file=sys.stderr)
        return 2
    return 0


_NOTICES = set()


def notice(prog, text):
    """One line on stderr, ``PROG: text``, once per process (a renamed flag's notice)."""
    if (prog, text) not in _NOTICES:
        _NOTICES.add((prog, text))
        print('{}: {}'.format(prog, text), file=sys.stderr)


def _gpus(value):
    ids = [v.strip() for v in (value or '').split(',') if v.strip() and v.strip() != '-1']
    return '--ctx gpu:{}'.format(','.join(ids)) if ids else '--ctx cpu'


def _dataset(value):
    if value in ('voc', 'coco'):
        return '--data-root ~/.mxnet/datasets/{}'.format(value)
    return '--data-root DIR (a VOC root, a COCO root or synthetic)'


# GluonCV's scripts' flags (and other tools' former spellings) -> (the flag of ours it needs,
# the fix as a function of the value given, what the user's flag is)
HABITS = {
    '--gpus': ('--ctx', _gpus, "GluonCV's --gpus"),
    '--dataset-root': ('--data-root', lambda v: '--data-root {}'.format(v or 'DIR'),
                       "GluonCV's --dataset-root"),
    '--save-prefix': ('--out', lambda v: '--out {}'.format(v or 'DIR'),
                      "GluonCV's --save-prefix: here one output folder"),
    '--dataset': ('--data-root', _dataset, "GluonCV's --dataset"),
    '-j': ('--num-workers', lambda v: '--num-workers {}'.format(v or 'N'),
           "GluonCV's -j"),
    '--num-epochs': ('--epochs', lambda v: '--epochs {}'.format(v or 'N'), None),
    '--start-epoch': ('--resume', lambda v: '--resume (it continues OUT/last.ckpt at its next '
                      'epoch)', "GluonCV's --start-epoch"),
    '--warmup-epochs': ('--set', lambda v: '--set train.warmup_iters=N (iterations)',
                        "GluonCV's --warmup-epochs"),
    '--save-dir': ('--out', lambda v: '--out {}'.format(v or 'DIR'), None),
    '--output': ('--out', lambda v: '--out {}'.format(v or 'FILE'), None),
    '--results': ('--out', lambda v: '--out {}'.format(v or 'DIR'), None),
    '--voc-root': ('--data-root', lambda v: '--data-root {}'.format(v or 'DIR'), None),
    '--root': ('--data-root', lambda v: '--data-root {}'.format(v or 'DIR'), None),
    '--workers': ('--num-workers', lambda v: '--num-workers {}'.format(v or 'N'), None),
    '--gpu': ('--ctx', _gpus, None),
    '--devices': ('--ctx', lambda v: '--ctx {}'.format(v or 'cpu'), None),
}


def _is_flag(token):
    if not token.startswith('-') or token == '-':
        return False
    try:
        float(token)
        return False
    except ValueError:
        return True


class _Renamed(argparse.Action):
    """A former spelling of another option: does what it does, with a one-line notice."""

    def __init__(self, option_strings, dest, target=None, new=None, **kwargs):
        self.target, self.new = target, new
        takes_no_value = target.nargs == 0
        super().__init__(option_strings, dest, nargs=0 if takes_no_value else target.nargs,
                         type=None if takes_no_value else target.type,
                         choices=None if takes_no_value else target.choices,
                         default=argparse.SUPPRESS, help=argparse.SUPPRESS,
                         metavar=target.metavar)

    def __call__(self, parser, namespace, values, option_string=None):
        notice(parser.prog, '{} is now {} (read as such)'.format(option_string, self.new))
        self.target(parser, namespace, values, self.new)


class CommaList(argparse.Action):
    """A list flag: ``--methods gan,fgfi``. The former spellings, values separated by spaces
    (``--methods gan fgfi``) or the flag repeated, still work with a one-line notice."""

    def __init__(self, option_strings, dest, nargs='+', allowed=None, **kwargs):
        kwargs.setdefault('metavar', 'A,B')
        self.allowed = allowed
        super().__init__(option_strings, dest, nargs='+', **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        items = [v.strip() for value in values for v in str(value).split(',') if v.strip()]
        bad = [v for v in items if self.allowed and v not in self.allowed]
        if bad:
            parser.error('argument {}: {} is not one of {}'.format(
                option_string, ', '.join(map(repr, bad)), ', '.join(self.allowed)))
        seen = set(getattr(namespace, '_lists_seen', ()))
        if self.dest in seen:  # the flag repeated: the lists add up
            items = list(getattr(namespace, self.dest)) + items
        if len(values) > 1 or self.dest in seen:
            notice(parser.prog, '{} takes one comma-separated list: {} {} (read as such)'.format(
                option_string, option_string, ','.join(items)))
        setattr(namespace, '_lists_seen', seen | {self.dest})
        setattr(namespace, self.dest, items)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions keep their line breaks; a :class:`CommaList` shows as one value."""

    def _format_action_invocation(self, action):
        # ``-o, --out FILE`` (the metavar once), as Python 3.13 writes it, on every version
        if not action.option_strings or action.nargs == 0:
            return super()._format_action_invocation(action)
        value = self._format_args(action, self._get_default_metavar_for_optional(action))
        return '{} {}'.format(', '.join(action.option_strings), value)

    def _format_args(self, action, default_metavar):
        if isinstance(action, CommaList):
            return self._metavar_formatter(action, default_metavar)(1)[0]
        return super()._format_args(action, default_metavar)


class Parser(argparse.ArgumentParser):
    """The tools' argument parser: an unknown flag names its fix (:data:`HABITS`, a config key's
    ``--set`` with ``config_keys``, else the nearest flag); :meth:`add_renamed` keeps a former
    spelling working with a notice; descriptions keep their line breaks."""

    def __init__(self, *args, config_keys=False, **kwargs):
        kwargs.setdefault('formatter_class', HelpFormatter)
        super().__init__(*args, **kwargs)
        self.config_keys = config_keys

    def add_renamed(self, old, new):
        """``old`` (a former spelling) works as the option ``new``, with a one-line notice."""
        target = self._option_string_actions[new]
        if target.required:  # either spelling satisfies it: checked after parsing
            target.required = False
            self._required_renamed = getattr(self, '_required_renamed', []) + [target]
        return self.add_argument(old, dest=target.dest, action=_Renamed, target=target, new=new)

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if hasattr(namespace, '_lists_seen'):
            delattr(namespace, '_lists_seen')
        missing = [t for t in getattr(self, '_required_renamed', [])
                   if getattr(namespace, t.dest, None) is None]
        if missing:
            self.error('the following arguments are required: {}'.format(
                ', '.join('/'.join(t.option_strings) for t in missing)))
        return namespace, extras

    def parse_args(self, args=None, namespace=None):
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:  # one line per unknown argument, naming its fix (no usage block)
            self.exit(2, '{}: error: {}\n({} --help lists every flag)\n'.format(
                self.prog, self.unknown_message(extras), self.prog))
        return namespace

    # ------------------------------------------------------------------ unknown arguments

    def _all_options(self):
        """``(every option string, those shown in --help)``, sub-commands' included."""
        options, shown = set(self._option_string_actions), set()
        for action in self._actions:
            if action.help is not argparse.SUPPRESS:
                shown |= set(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    sub_options, sub_shown = sub._all_options()
                    options |= sub_options
                    shown |= sub_shown
        return options, shown

    def unknown_message(self, extras):
        """One line per unknown argument, each naming its fix."""
        parts, i = [], 0
        while i < len(extras):
            token = extras[i]
            if _is_flag(token):
                flag, eq, value = token.partition('=')
                if not eq:
                    value = None
                    if i + 1 < len(extras) and not _is_flag(extras[i + 1]):
                        value = extras[i + 1]
                        i += 1
                parts.append(self.suggest(flag, value))
            else:
                parts.append('unexpected argument {!r} (see --help)'.format(token))
            i += 1
        return '\n'.join(parts)

    def suggest(self, flag, value=None):
        """``unrecognized argument FLAG: ...`` naming the fix for ``flag`` (given ``value``)."""
        options, shown = self._all_options()
        given = flag + (' ' + value if value is not None else '')
        habit = HABITS.get(flag)
        if habit and (habit[0] in options or (habit[0] == '--set' and self.config_keys)):
            needed, fix, what = habit
            return 'unrecognized argument {}: use {}{}'.format(
                given, fix(value), ' ({})'.format(what) if what else '')
        if self.config_keys and flag.startswith('--'):
            keys = _config_keys(flag[2:].replace('-', '_'))
            if keys:
                return 'unrecognized argument {}: this is a config key, use {}'.format(
                    given, ' or '.join('--set {}={}'.format(k, value if value is not None
                                                           else 'VALUE') for k in keys))
        close = difflib.get_close_matches(flag, sorted(shown) or sorted(options), n=2,
                                          cutoff=0.6)
        if close:
            return 'unrecognized argument {}: did you mean {}?'.format(given, ' or '.join(close))
        return 'unrecognized argument {} (see --help)'.format(given)


def _config_keys(name):
    """The dotted config keys whose last part is ``name``."""
    import dataclasses
    from .config import Config

    found = []

    def walk(node, prefix):
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            dotted = prefix + f.name
            if dataclasses.is_dataclass(value):
                walk(value, dotted + '.')
            elif f.name == name:
                found.append(dotted)
    walk(Config(), '')
    return found


def prog_name(prog):
    """``prog`` or the name of the running script (``train_ssd.py``)."""
    return prog or os.path.basename(sys.argv[0])
