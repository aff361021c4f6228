"""Atomic file writes: every file of a run (checkpoint, config, summary, metrics, deploy
record, reproduction results) is written to a temporary file beside it, synced, then renamed
over the old one, so a crash or Ctrl-C at any moment leaves the previous file whole and no
temporary file behind. A write that fails (full disk, read-only folder) raises
:class:`WriteError`, one line naming the file and the free space. Output folders are proved
writable before any work (:func:`ensure_writable_dir`).

This module does not import MXNet (the configuration writer uses it); MXNet's own writer
errors are recognised when MXNet is loaded.
"""
import json
import os
import shutil
import sys
import tempfile


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or does not fit the network."""


class WriteError(CheckpointError, OSError):
    """A file of a run could not be written (full disk, read-only folder); the file it would
    have replaced is intact."""


def mxnet_reason(error):
    """The one informative line of an MXNet error (its text starts with a C++ traceback)."""
    lines = [l.strip() for l in str(error).splitlines() if l.strip()]
    for line in reversed(lines):
        if line.startswith('MXNetError:'):
            return line[len('MXNetError:'):].strip()
    return lines[-1] if lines else type(error).__name__


def format_bytes(n):
    for unit in ('B', 'KB', 'MB', 'GB'):
        if n < 1024 or unit == 'GB':
            return '{:.0f} {}'.format(n, unit) if unit == 'B' else '{:.1f} {}'.format(n, unit)
        n /= 1024.0
    return '{:.1f} TB'.format(n)


def free_space(path):
    """Free bytes on the file system holding ``path`` (None when unknown)."""
    try:
        return shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free
    except OSError:
        return None


def write_error(path, error):
    """:class:`WriteError` for a failed write of ``path``: the reason and the free space."""
    if isinstance(error, OSError) and error.errno is not None:
        reason = os.strerror(error.errno)
    elif isinstance(error, OSError):
        reason = str(error) or 'write failed'
    else:  # MXNet's C++ writer: "Check failed: ...: FileStream.Write incomplete"
        reason = mxnet_reason(error).rsplit(': ', 1)[-1]
    free = free_space(path)
    if free is not None and free < (1 << 20) and 'space' not in reason:
        reason = 'the disk is full ({})'.format(reason)
    where = '' if free is None else '; {} free on that disk'.format(format_bytes(free))
    return WriteError('cannot write {}: {}{}'.format(path, reason, where))


def _default_mode():
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _is_mxnet_error(error):
    mx = sys.modules.get('mxnet')
    base = getattr(mx, 'base', None)
    return base is not None and isinstance(error, base.MXNetError)


def _write_temp(path, write_fn):
    """``write_fn(tmp)`` into a new temporary file beside ``path``, synced, with the mode a
    new file gets; returns its path. A failure removes it and raises :class:`WriteError`
    naming ``path`` (other exceptions, e.g. KeyboardInterrupt, propagate)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp',
                                   dir=directory)
    except OSError as e:
        raise write_error(path, e) from None
    os.close(fd)
    try:
        write_fn(tmp)
        with open(tmp, 'rb') as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _default_mode())  # mkstemp creates 0600 files
    except BaseException as e:
        _remove_quietly(tmp)
        if isinstance(e, WriteError):
            raise
        if isinstance(e, OSError) or _is_mxnet_error(e):
            raise write_error(path, e) from None
        raise
    return tmp


def _remove_quietly(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _commit(path, tmp, previous=None):
    """Rename ``tmp`` onto ``path`` (the file ``path`` held first renamed to ``previous``,
    when given). Renames within a folder need no free space."""
    try:
        if previous is not None and os.path.exists(path):
            os.replace(path, previous)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            _remove_quietly(tmp)
        if isinstance(e, OSError):
            raise write_error(path, e) from None
        raise


def atomic_write(path, write_fn, previous=None):
    """Call ``write_fn(tmp_path)`` then rename the temporary file onto ``path``.

    With ``previous``, the file ``path`` held so far is renamed to ``previous`` first (only once
    the new content is safely on disk). A failed write raises :class:`WriteError` (other
    exceptions, e.g. KeyboardInterrupt, propagate) and leaves ``path`` (and ``previous``) as
    they were, with no temporary file behind.
    """
    _commit(path, _write_temp(path, write_fn), previous)


def atomic_write_all(writes):
    """Write several files as one: all of them, or (when one fails) none.

    ``writes``: ``(path, write_fn)`` or ``(path, write_fn, previous)`` entries, as
    :func:`atomic_write` takes them. Every file is first written to a temporary file beside
    it, in the order given; only when all of them are on disk are they renamed into place
    (renames need no free space, so a full disk cannot stop them half-way): the others in
    the order given, the first one last, so that the first file's new content means every
    other file was written too. A write that fails raises :class:`WriteError` naming its file,
    removes every temporary file, and leaves every ``path`` and ``previous`` as it was.
    """
    staged = []
    try:
        for entry in writes:
            path, write_fn = entry[0], entry[1]
            staged.append((path, _write_temp(path, write_fn),
                           entry[2] if len(entry) > 2 else None))
    except BaseException:
        for _, tmp, _ in staged:
            _remove_quietly(tmp)
        raise
    order = staged[1:] + staged[:1]
    for i, (path, tmp, previous) in enumerate(order):
        try:
            _commit(path, tmp, previous)
        except BaseException:
            for _, later, _ in order[i + 1:]:
                _remove_quietly(later)
            raise


def text_writer(text):
    """A ``write_fn`` for :func:`atomic_write` / :func:`atomic_write_all` writing ``text``."""
    def write(tmp):
        with open(tmp, 'w') as f:
            f.write(text)
    return write


def atomic_write_text(path, text):
    """Write the string ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, text_writer(text))


def atomic_write_json(path, value, **kwargs):
    """``json.dump(value)`` to ``path`` atomically, indented by 2 unless ``indent`` is given;
    the value is serialised before any file is touched."""
    kwargs.setdefault('indent', 2)
    atomic_write_text(path, json.dumps(value, **kwargs) + '\n')


class OutputDirError(ValueError):
    """An output folder cannot be created or written; the message names it."""


def ensure_writable_dir(path, what='output folder'):
    """Create ``path`` if needed and prove it writable by creating and removing a file in it.

    ``os.access`` is not enough: it says yes to root on a read-only mount or a folder with mode
    0500, and says nothing about a full disk's quota; a real file answers all of these.

    Returns the absolute path; raises :class:`OutputDirError` with one line naming the path.
    """
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputDirError('cannot write to {} {}: it is a file, not a folder'.format(
            what, path))
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix='.write-probe-')
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise OutputDirError('cannot write to {} {}: {}'.format(
            what, path, e.strerror or type(e).__name__))
    return path
