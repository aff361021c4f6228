"""Output folders that are checked before any work is done."""
import os
import tempfile


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
