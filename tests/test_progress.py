"""Progress bars: every tool's long work shows a bar when stderr is a terminal, and none when
stderr is redirected (a pipe here, a file for a user): the redirected log holds log lines only.
The tools run as a user runs them, with stderr a pipe or a pseudo-terminal."""
import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios
import threading

import pytest

from conftest import REPO
from test_trust_detect import known_detector, photo, voc_root

PY = sys.executable
BAR = '%|'   # tqdm's bar: "eval:  40%|####      | 2/5"


def run_tool(args, stderr='pipe', timeout=300):
    """``(returncode, stdout, stderr)`` of ``python tools/<args>`` with stderr a pipe or a
    pseudo-terminal (``stderr='tty'``; the terminal's output as text, CRs kept)."""
    cmd = [PY] + [str(a) for a in args]
    if stderr == 'pipe':
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                             cwd=str(REPO))
        return res.returncode, res.stdout, res.stderr
    master, slave = pty.openpty()
    # a terminal of 24 x 100 (a new pseudo-terminal is 0 x 0: tqdm would draw empty bars)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 24, 100, 0, 0))
    chunks = []

    def read():
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:        # EIO: every holder of the terminal closed it
                return
            if not data:
                return
            chunks.append(data)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=slave, cwd=str(REPO),
                                stdin=subprocess.DEVNULL)
        os.close(slave)
        out, _ = proc.communicate(timeout=timeout)
        reader.join(30)
    finally:
        os.close(master)
    return proc.returncode, out.decode(), b''.join(chunks).decode(errors='replace')


@pytest.fixture(scope='module')
def scene(tmp_path_factory):
    """A built (not trained) detector, a VOC root of 5 photos, and a folder of 5 photos."""
    base = tmp_path_factory.mktemp('progress')
    params = known_detector(base / 'model')
    root = voc_root(base / 'voc', [(128, 96)] * 5, (5, 5, 40, 40))
    (root / 'ImageSets' / 'Main').mkdir(parents=True)
    (root / 'ImageSets' / 'Main' / 'val.txt').write_text(
        ''.join('img{}\n'.format(i) for i in range(5)))
    photos = base / 'photos'
    photos.mkdir()
    for i in range(5):
        photo(photos / 'p{}.jpg'.format(i), seed=i)
    return params, root, photos


def tool_args(name, scene, tmp_path):
    params, root, photos = scene
    return {
        'eval': ['tools/eval.py', '--params', params, '--data-root', root, '--split', 'val'],
        'detect': ['tools/detect.py', '--params', params, photos, '--out', tmp_path / 'det'],
        'convert': ['tools/convert.py', 'voc2coco', '--data-root', root, '--split', 'val',
                    '--out', tmp_path / 'val.json', '--check-images'],
        'check': ['tools/check_dataset.py', '--data-root', root, '--split', 'val'],
    }[name]


TOOLS = ['eval', 'detect', 'convert', 'check']


@pytest.mark.parametrize('name', TOOLS)
def test_no_progress_bar_in_redirected_output(name, scene, tmp_path):
    code, out, err = run_tool(tool_args(name, scene, tmp_path), 'pipe')
    assert code == 0, err[-3000:]
    assert BAR not in err and '\r' not in err, err[-3000:]


@pytest.mark.parametrize('name', TOOLS)
def test_progress_bar_on_a_terminal(name, scene, tmp_path):
    code, out, err = run_tool(tool_args(name, scene, tmp_path), 'tty')
    assert code == 0, err[-3000:]
    assert BAR in err, err[-3000:]


class _NoIsatty:
    """A stream without ``isatty`` (a wrapper): tqdm's ``disable=None`` would draw on it."""

    def __init__(self):
        self.buffer = io.StringIO()

    def write(self, text):
        self.buffer.write(text)

    def flush(self):
        pass


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_follows_the_stream_not_tqdm_defaults(monkeypatch):
    from gluon_distill.progress import on_terminal, progress_bar
    for stream, shown in ((_NoIsatty(), False), (io.StringIO(), False), (_Terminal(), True)):
        monkeypatch.setattr(sys, 'stderr', stream)
        assert on_terminal() is shown
        assert list(progress_bar(range(3), desc='x')) == [0, 1, 2]
        written = stream.buffer.getvalue() if isinstance(stream, _NoIsatty) else \
            stream.getvalue()
        assert (BAR in written) is shown, written
        bar = progress_bar(None, enabled=False, total=2)   # train.progress=false
        bar.update(2)
        bar.close()
        assert written == (stream.buffer.getvalue() if isinstance(stream, _NoIsatty) else
                           stream.getvalue())
