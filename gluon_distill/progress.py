"""Progress bars on a terminal only, the same rule in every tool.

Every tqdm bar of the package is made by :func:`progress_bar`: it is drawn on stderr when
stderr is a terminal and the caller allows it, and is a silent no-op bar otherwise (stderr
redirected to a file or a pipe, ``train.progress=false``), so a redirected log holds log lines
only. tqdm's own ``disable=None`` is not used: it hides a bar only when the stream has an
``isatty`` that answers no, so a stream without one (a wrapper, a logger's file object) gets
a bar; and a tqdm left at its default ``disable=False`` draws on a pipe too.
"""
import sys


def on_terminal(stream=None):
    """Whether ``stream`` (default: the current ``sys.stderr``) is a terminal; False for a
    file, a pipe, a closed stream or an object without ``isatty``."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def progress_bar(iterable=None, enabled=True, **kwargs):
    """A tqdm bar over ``iterable`` (or to ``update`` by hand with ``total=``) on stderr,
    shown when ``enabled`` and stderr is a terminal, else disabled (iterating and
    ``update``/``close`` still work, nothing is written). ``kwargs`` go to tqdm; ``file``
    defaults to the current ``sys.stderr``."""
    from tqdm import tqdm
    kwargs.setdefault('file', sys.stderr)
    kwargs['disable'] = not (enabled and on_terminal(kwargs['file']))
    return tqdm(iterable, **kwargs)
