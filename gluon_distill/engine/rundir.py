"""The output folder of a training run: one run per folder, never overwritten by accident.

:func:`open_run_folder` is called before any data or network is loaded. It

* creates ``OUT`` and checks that it can be written (a read-only or missing parent is one line);
* takes ``OUT/.lock`` with ``fcntl.flock`` for the run's whole life: a second run into the same
  folder stops at once, naming the first one's PID (the kernel drops the lock when the process
  ends, however it ends, so a killed run never leaves a stale lock);
* refuses a folder that already holds a run (``summary.json``, a checkpoint, ``metrics.jsonl``
  or ``*.params``) unless the run is resumed (``--resume``) or the user asked for
  ``--overwrite``, which moves the old folder aside to ``OUT.old-<YYYYmmdd-HHMMSS>``: nothing
  is deleted.

:func:`config_differences` names the keys in which a resumed run's configuration differs from
the one in ``OUT/config.yaml``.
"""
import fcntl
import json
import os
import time

from .checkpoint import CheckpointError, write_error
from ..io_utils import OutputDirError, ensure_writable_dir

LOCK_NAME = '.lock'
#: Files whose presence means a folder holds (part of) a run worth keeping.
RUN_FILES = ('summary.json', 'last.ckpt', 'prev.ckpt', 'metrics.jsonl')

#: Config keys a resumed run must share with the run it continues: they decide the network,
#: its classes, the checkpoint's parameter groups and optimizer states. Other keys (epochs,
#: devices, batch size, learning rate, ...) may change on resume; they are logged.
RESUME_KEYS = ('model.network', 'model.data_shape', 'model.width', 'model.blocks',
               'model.mean', 'model.std', 'data.root', 'data.train_split', 'data.classes',
               'data.val_fraction', 'data.split_seed', 'teacher.', 'distill.',
               'train.optimizer')
#: Keys that never matter when comparing two runs' configurations.
IGNORED_KEYS = ('train.resume', 'train.overwrite', 'train.out')

_HELD = {}  # folder -> open lock file of this process


class RunFolderError(CheckpointError):
    """The output folder cannot be used: not writable, in use, or holding another run."""


def _flatten(d, prefix=''):
    flat = {}
    for key, value in d.items():
        dotted = '{}.{}'.format(prefix, key) if prefix else str(key)
        if isinstance(value, dict):
            flat.update(_flatten(value, dotted))
        else:
            flat[dotted] = value
    return flat


def config_differences(old, new):
    """``[(key, old value, new value)]`` of two nested config dicts, sorted by key."""
    a, b = _flatten(old), _flatten(new)
    diffs = []
    for key in sorted(set(a) | set(b)):
        if key in IGNORED_KEYS or key.startswith('experiment.'):
            continue
        if a.get(key, '<unset>') != b.get(key, '<unset>'):
            diffs.append((key, a.get(key, '<unset>'), b.get(key, '<unset>')))
    return diffs


def is_resume_key(key):
    return any(key == k or (k.endswith('.') and key.startswith(k)) for k in RESUME_KEYS)


def format_differences(diffs):
    return ', '.join('{} {!r} -> {!r}'.format(k, a, b) for k, a, b in diffs)


def existing_run(out):
    """A short description of the run ``out`` holds, or None when it holds none."""
    if not os.path.isdir(out):
        return None
    names = set(os.listdir(out))
    params = sorted(n for n in names if n.endswith('.params'))
    if not (names & set(RUN_FILES)) and not params:
        return None
    if 'summary.json' in names:
        try:
            with open(os.path.join(out, 'summary.json')) as f:
                summary = json.load(f)
            best = summary.get('best_mAP')
            epochs = summary.get('epochs')
            return 'a finished run ({} epochs, best mAP {})'.format(
                epochs, '{:.4f}'.format(best) if isinstance(best, float) else best)
        except (OSError, ValueError):
            return 'a finished run'
    if 'last.ckpt' in names or 'prev.ckpt' in names:
        return 'an unfinished run (last.ckpt)'
    return 'the files of another run ({})'.format(', '.join(
        sorted(names & set(RUN_FILES)) + params[:3]))


def _lock_owner(path):
    try:
        with open(path) as f:
            return f.read().strip() or 'unknown'
    except OSError:
        return 'unknown'


def acquire_lock(out):
    """Hold ``out/.lock`` (exclusive, non-blocking) until the process ends or
    :func:`release_lock`. Returns the open lock file."""
    out = os.path.abspath(out)
    release_lock(out)  # a previous run of this same process into this folder has ended
    path = os.path.join(out, LOCK_NAME)
    try:
        handle = open(path, 'a+')
    except OSError as e:
        raise _not_writable(out, e)
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        owner = _lock_owner(path)
        handle.close()
        raise RunFolderError('{} is in use by another run (PID {}): wait for it to end or choose '
                             'another --out'.format(out, owner))
    handle.seek(0)
    handle.truncate()
    handle.write('{} (since {})\n'.format(os.getpid(), time.strftime('%Y-%m-%d %H:%M:%S')))
    handle.flush()
    _HELD[out] = handle
    return handle


def release_lock(out):
    handle = _HELD.pop(os.path.abspath(out), None)
    if handle is not None:
        handle.close()


def _not_writable(out, error):
    return RunFolderError('--out {} is not writable ({}): choose another folder'.format(
        out, error.strerror or error))


def _check_writable(out):
    try:
        ensure_writable_dir(out, '--out')
    except OutputDirError as e:
        raise RunFolderError('{} (not writable): choose another folder'.format(e))


def _move_aside(out):
    target = '{}.old-{}'.format(out, time.strftime('%Y%m%d-%H%M%S'))
    n = 1
    while os.path.exists(target):
        n += 1
        target = '{}.old-{}-{}'.format(out, time.strftime('%Y%m%d-%H%M%S'), n)
    try:
        os.rename(out, target)
    except OSError as e:
        raise RunFolderError('--overwrite: cannot move {} to {} ({}): move or delete it '
                             'yourself'.format(out, target, e.strerror))
    return target


def open_run_folder(out, resume=False, overwrite=False):
    """Make ``out`` ready for a run and lock it (see the module docstring).

    Returns ``moved_to``: where ``--overwrite`` moved the previous run, or None.
    """
    out = os.path.abspath(out)
    if resume and overwrite:
        raise RunFolderError('--resume continues the run in {}, --overwrite moves it aside: '
                             'pass one of them'.format(out))
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise _not_writable(out, e)
    acquire_lock(out)
    _check_writable(out)
    if resume:
        if not any(os.path.exists(os.path.join(out, n)) for n in ('last.ckpt', 'prev.ckpt')):
            release_lock(out)
            raise CheckpointError('--resume: no checkpoint at {}'.format(
                os.path.join(out, 'last.ckpt')))
        return None
    held = existing_run(out)
    if held is None:
        return None
    if not overwrite:
        release_lock(out)
        hint = ('--resume continues it, ' if held.startswith('an unfinished') else
                '--resume with more --epochs continues it, ' if held.startswith('a finished')
                else '')
        raise RunFolderError('{} already holds {}: {}--overwrite moves it aside to {}.old-<time> '
                             'and starts afresh, or choose another --out'.format(
                                 out, held, hint, out))
    moved_to = _move_aside(out)  # our lock moves along with it, so nobody starts in between
    try:
        os.makedirs(out)
    except OSError as e:
        raise write_error(out, e) from None
    old_handle = _HELD.pop(out)
    try:
        acquire_lock(out)
    finally:
        old_handle.close()
    return moved_to
