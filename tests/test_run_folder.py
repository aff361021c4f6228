"""The output folder of a run (issue 8, items 5, 6, 8, 9, 12, 13): nothing is lost, errors are
one line. Real runs of a 64 px tiny SSD through tools/train_ssd.py on the generated data."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import REPO

PY = sys.executable


def train_cmd(root, out, epochs=2, extra=()):
    return [PY, str(REPO / 'tools' / 'train_ssd.py'), '--data-root', str(root),
            '--train-split', 'train', '--val-split', 'val', '--network', 'tiny',
            '--data-shape', '64', '--no-pretrained-base', '--batch-size', '8',
            '--epochs', str(epochs), '--num-workers', '0', '--out', str(out),
            '--set', 'model.width=8', '--set', 'train.optimizer=adam',
            '--set', 'train.log_interval=2'] + list(extra)


def run(cmd, timeout=300):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(REPO))


def error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith('error:')]


def assert_one_line_error(res):
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert len(error_lines(res.stderr)) == 1, res.stderr[-2000:]
    assert 'Traceback' not in res.stderr and 'MXNetError' not in res.stderr, res.stderr[-2000:]
    return error_lines(res.stderr)[0]


def records(out):
    with open(os.path.join(str(out), 'metrics.jsonl')) as f:
        return [json.loads(line) for line in f]


def assert_each_epoch_once(out, epochs):
    recs = records(out)
    assert [r['epoch'] for r in recs if r['type'] == 'val'] == list(range(epochs))
    iterations = [r['iteration'] for r in recs if r['type'] == 'train']
    assert iterations == sorted(set(iterations)), iterations  # no window logged twice


def read_bytes(path):
    with open(str(path), 'rb') as f:
        return f.read()


@pytest.fixture(scope='module')
def finished(synthetic_root, tmp_path_factory):
    """A finished 2-epoch run (stdout kept) to copy from."""
    out = tmp_path_factory.mktemp('finished') / 'run'
    res = run(train_cmd(synthetic_root, out, 2))
    assert res.returncode == 0, res.stderr[-3000:]
    return out, res


def copy_run(finished, tmp_path, name='run'):
    target = tmp_path / name
    shutil.copytree(str(finished[0]), str(target))
    return target


def write_wrapper(tmp_path, body):
    """A script that applies ``body`` (a patch of the training code) then runs train_ssd.py,
    so a test can kill or starve a real run at an exact moment."""
    script = tmp_path / 'wrapped_train.py'
    script.write_text(textwrap.dedent('''\
        import os, signal, sys
        sys.path.insert(0, {tools!r})
        sys.path.insert(0, {repo!r})
        import gluon_distill.engine.hooks as hooks
        original = hooks.CheckpointHook.after_epoch
        {body}
        import train_ssd
        sys.exit(train_ssd.main(sys.argv[1:]))
        ''').format(tools=str(REPO / 'tools'), repo=str(REPO),
                    body=textwrap.dedent(body).strip()))
    return [PY, str(script)]


# --- item 6: which file holds which epoch -------------------------------------------------------

def test_final_line_says_which_epoch_each_file_holds(finished):
    out, res = finished
    last_line = res.stdout.strip().splitlines()[-1]
    match = re.match(r'^best\.params = epoch (\d+), mAP (\d\.\d{4}); '
                     r'last\.params = epoch (\d+), mAP (\d\.\d{4})$', last_line)
    assert match, last_line
    vals = {r['epoch']: r['mAP'] for r in records(out) if r['type'] == 'val'}
    best_epoch, best_map = int(match.group(1)), float(match.group(2))
    assert best_epoch == max(vals, key=lambda e: (vals[e], -e))
    assert best_map == pytest.approx(vals[best_epoch], abs=5e-5)
    assert int(match.group(3)) == 1 and float(match.group(4)) == pytest.approx(vals[1], abs=5e-5)
    best = json.loads((out / 'best.json').read_text())
    assert best['file'] == 'best.params' and best['epoch'] == best_epoch
    assert best['mAP'] == pytest.approx(vals[best_epoch])


def test_describe_outputs_wording():
    from gluon_distill.training import describe_outputs
    summary = {'outputs': {'best.params': {'epoch': 7, 'mAP': 0.68514},
                           'last.params': {'epoch': 9, 'mAP': 0.642},
                           'student.params': {'epoch': None, 'mAP': None}}}
    assert describe_outputs(summary, ['best.params', 'last.params']) == \
        'best.params = epoch 7, mAP 0.6851; last.params = epoch 9, mAP 0.6420'
    assert describe_outputs(summary).endswith('; student.params = not written')


# --- item 8: an existing run is never overwritten -----------------------------------------------

def test_rerun_into_a_finished_run_is_refused_and_changes_nothing(finished, synthetic_root,
                                                                  tmp_path):
    out = copy_run(finished, tmp_path)
    before = {name: read_bytes(out / name) for name in
              ('best.params', 'last.params', 'metrics.jsonl', 'config.yaml', 'train.log')}
    res = run(train_cmd(synthetic_root, out, 1, ['--set', 'model.width=16']))
    line = assert_one_line_error(res)
    assert str(out) in line and 'finished run' in line and '--overwrite' in line
    for name, content in before.items():
        assert read_bytes(out / name) == content, name


def test_overwrite_moves_the_old_run_aside(finished, synthetic_root, tmp_path):
    out = copy_run(finished, tmp_path)
    old_best = read_bytes(out / 'best.params')
    res = run(train_cmd(synthetic_root, out, 1, ['--overwrite']))
    assert res.returncode == 0, res.stderr[-3000:]
    moved = [p for p in tmp_path.iterdir() if p.name.startswith('run.old-')]
    assert len(moved) == 1
    assert read_bytes(moved[0] / 'best.params') == old_best  # nothing deleted
    assert 'moved to {}'.format(moved[0]) in (out / 'train.log').read_text()
    assert [r['epoch'] for r in records(out) if r['type'] == 'val'] == [0]  # a fresh run


def test_second_run_into_a_busy_folder_stops_at_once_naming_the_first(synthetic_root,
                                                                      tmp_path):
    out = tmp_path / 'busy'
    first = subprocess.Popen(train_cmd(synthetic_root, out, 200), cwd=str(REPO),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        lock = out / '.lock'
        while time.time() < deadline and first.poll() is None and not (
                lock.exists() and lock.read_text().strip()):
            time.sleep(0.05)
        assert first.poll() is None, 'the first run ended early'
        started = time.time()
        res = run(train_cmd(synthetic_root, out, 1))
        line = assert_one_line_error(res)
        assert 'in use by another run (PID {}'.format(first.pid) in line
        assert time.time() - started < 60
        assert first.poll() is None  # the first run goes on
    finally:
        first.kill()
        first.wait()
    # the kernel released the killed run's lock: resuming works at once
    if (out / 'last.ckpt').exists():
        res = run(train_cmd(synthetic_root, out, 1, ['--resume']))
        assert 'in use' not in res.stderr


def test_refused_resume_names_the_keys_and_keeps_config_yaml(finished, synthetic_root,
                                                            tmp_path):
    out = copy_run(finished, tmp_path)
    config = read_bytes(out / 'config.yaml')
    res = run(train_cmd(synthetic_root, out, 3, ['--resume', '--set', 'model.width=16',
                                                 '--set', 'model.blocks=2']))
    line = assert_one_line_error(res)
    assert 'model.width 8 -> 16' in line and 'model.blocks 1 -> 2' in line
    assert '{' not in line  # keys, not whole dicts
    assert read_bytes(out / 'config.yaml') == config


def test_resume_and_overwrite_together_is_an_error(finished, synthetic_root, tmp_path):
    out = copy_run(finished, tmp_path)
    line = assert_one_line_error(run(train_cmd(synthetic_root, out, 3,
                                               ['--resume', '--overwrite'])))
    assert '--resume' in line and '--overwrite' in line


# --- item 5: batch size and devices --------------------------------------------------------------

def test_batch_size_not_divisible_by_devices_suggests_valid_sizes(synthetic_root, tmp_path):
    res = run(train_cmd(synthetic_root, tmp_path / 'x', 1, ['--ctx', 'cpu:0,1,2',
                                                            '--batch-size', '8']))
    line = assert_one_line_error(res)
    assert '--batch-size 8' in line and '3 devices' in line and 'use 6 or 9' in line
    assert not (tmp_path / 'x').exists()  # refused before anything was written


def test_check_batch_size_suggestions():
    from gluon_distill.training import check_batch_size
    check_batch_size(8, 2)
    with pytest.raises(ValueError, match='use 2$'):
        check_batch_size(1, 2)
    with pytest.raises(ValueError, match='use 8 or 12'):
        check_batch_size(10, 4)


# --- item 9: unwritable folder, full disk, truncated checkpoint, kill ---------------------------

def _mounted_tmpfs(path, options, why):
    """Mount a tmpfs with ``options`` on ``path``, yield it, unmount (skip if not allowed)."""
    res = subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', str(path)],
                         capture_output=True)
    if res.returncode != 0:
        pytest.skip('{}: {}'.format(why, res.stderr.decode()[:200]))
    yield path
    subprocess.run(['umount', str(path)])


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nobody can write to: a read-only tmpfs as root (root ignores permission bits),
    mode 0555 otherwise."""
    path = tmp_path / 'ro'
    path.mkdir()
    if os.geteuid() == 0:
        yield from _mounted_tmpfs(path, 'size=1m,ro', 'cannot mount a read-only tmpfs here')
    else:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)


@pytest.mark.parametrize('sub', ['', 'new/run'])
def test_unwritable_out_is_one_line_before_any_work(read_only_dir, tmp_path, sub):
    out = read_only_dir / sub if sub else read_only_dir
    # a data root that does not exist: the folder is checked first, before any data is read
    res = run(train_cmd(tmp_path / 'no_such_root', out, 1))
    line = assert_one_line_error(res)
    assert 'not writable' in line and str(read_only_dir) in line


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MB tmpfs (root only; skipped where mounting is not allowed)."""
    path = tmp_path / 'disk'
    path.mkdir()
    yield from _mounted_tmpfs(path, 'size=16m', 'cannot mount a tmpfs here (needs root)')


def test_full_disk_while_writing_a_checkpoint(small_disk, synthetic_root):
    out = small_disk / 'run'
    # after epoch 0's files, fill the disk up to 256 KB: epoch 1's metrics and log lines still
    # fit, its 2.8 MB checkpoint does not
    wrapped = write_wrapper(small_disk.parent, '''
        def after_epoch(self):
            original(self)
            if self.loop.epoch == 0:
                import shutil
                disk = os.path.dirname(self.out_dir)
                room = shutil.disk_usage(disk).free - 256 * 1024
                with open(os.path.join(disk, 'filler'), 'wb') as f:
                    while room > 0:
                        f.write(b'\\0' * min(room, 1 << 20))
                        room -= 1 << 20
        hooks.CheckpointHook.after_epoch = after_epoch
        ''')
    res = run(wrapped + train_cmd(synthetic_root, out, 3)[2:])
    line = assert_one_line_error(res)
    assert str(out / 'last.ckpt') in line and 'free on that disk' in line, line
    assert re.search(r'\d+(\.\d)? KB free', line), line
    from gluon_distill.engine.checkpoint import read_checkpoint
    assert read_checkpoint(str(out / 'last.ckpt'))[2]['epoch'] == 0  # the previous one, whole
    assert not [n for n in os.listdir(str(out)) if n.startswith('.last.ckpt')]  # no temp file

    os.remove(str(small_disk / 'filler'))
    res = run(train_cmd(synthetic_root, out, 3, ['--resume']))
    assert res.returncode == 0, res.stderr[-3000:]
    assert_each_epoch_once(out, 3)


def assert_weights_are_the_checkpoints(params, ckpt):
    """``params`` (a detector's ``.params``) holds the weights of the checkpoint ``ckpt``."""
    import mxnet as mx
    from gluon_distill.engine.checkpoint import read_checkpoint
    saved, held = mx.nd.load(str(params)), read_checkpoint(str(ckpt))[0]['net']
    assert sorted(saved) == sorted(held)
    for name in saved:
        assert (saved[name].asnumpy() == held[name].asnumpy()).all(), name


def test_full_disk_at_the_weights_keeps_one_epoch_in_every_file_and_logs_the_error(
        small_disk, synthetic_root):
    """A disk with room for epoch 1's checkpoint but not for its weights too: the run stops
    with one line, which train.log holds as well, and last.ckpt and last.params (best.params
    and best.json too) still hold one and the same epoch (before, last.ckpt held epoch 1 and
    last.params epoch 0 until a --resume finished an epoch)."""
    out = small_disk / 'run'
    kept = small_disk.parent / 'epoch0'
    wrapped = write_wrapper(small_disk.parent, '''
        def after_epoch(self):
            original(self)
            if self.loop.epoch == 0:
                import shutil
                shutil.copytree(self.out_dir, {kept!r})
                disk = os.path.dirname(self.out_dir)
                ckpt = os.path.getsize(os.path.join(self.out_dir, 'last.ckpt'))
                params = os.path.getsize(os.path.join(self.out_dir, 'last.params'))
                room = shutil.disk_usage(disk).free - (ckpt + params // 2)
                with open(os.path.join(disk, 'filler'), 'wb') as f:
                    while room > 0:
                        f.write(b'\\0' * min(room, 1 << 20))
                        room -= 1 << 20
        hooks.CheckpointHook.after_epoch = after_epoch
        '''.format(kept=str(kept)))
    res = run(wrapped + train_cmd(synthetic_root, out, 3)[2:])
    line = assert_one_line_error(res)
    assert str(out) in line and 'free on that disk' in line, line
    # the error line is in train.log too
    log = (out / 'train.log').read_text().splitlines()
    assert log[-1].endswith(' ERROR ' + line), log[-3:]
    # every file of the run still holds epoch 0, whole; no temporary file is left
    from gluon_distill.engine.checkpoint import read_checkpoint
    assert read_checkpoint(str(out / 'last.ckpt'))[2]['epoch'] == 0
    for name in ('last.params', 'best.params', 'best.json', 'last.ckpt'):
        assert read_bytes(out / name) == read_bytes(kept / name), name
    assert_weights_are_the_checkpoints(out / 'last.params', out / 'last.ckpt')
    assert not [n for n in os.listdir(str(out)) if n.startswith('.') and n != '.lock']

    os.remove(str(small_disk / 'filler'))
    res = run(train_cmd(synthetic_root, out, 3, ['--resume']))
    assert res.returncode == 0, res.stderr[-3000:]
    assert_each_epoch_once(out, 3)
    assert read_checkpoint(str(out / 'last.ckpt'))[2]['epoch'] == 2
    assert_weights_are_the_checkpoints(out / 'last.params', out / 'last.ckpt')


def test_write_error_names_path_and_free_space_without_a_real_full_disk(tmp_path,
                                                                        monkeypatch):
    """The same message where no tmpfs can be mounted: the write raises ENOSPC."""
    import errno
    from gluon_distill.engine.checkpoint import WriteError, atomic_write_text
    path = tmp_path / 'summary.json'
    path.write_text('old')

    def no_space(tmp):
        raise OSError(errno.ENOSPC, 'No space left on device')

    from gluon_distill.engine import checkpoint
    with pytest.raises(WriteError) as info:
        checkpoint.atomic_write(str(path), no_space)
    msg = str(info.value)
    assert msg.startswith('cannot write {}: No space left on device; '.format(path))
    assert 'free on that disk' in msg and '\n' not in msg
    assert path.read_text() == 'old' and os.listdir(str(tmp_path)) == ['summary.json']
    atomic_write_text(str(path), 'new')
    assert path.read_text() == 'new'


def test_truncated_last_checkpoint_falls_back_to_the_previous_one(finished, synthetic_root,
                                                                  tmp_path):
    out = copy_run(finished, tmp_path)
    from gluon_distill.engine.checkpoint import read_checkpoint
    assert read_checkpoint(str(out / 'prev.ckpt'))[2]['epoch'] == 0
    data = read_bytes(out / 'last.ckpt')
    (out / 'last.ckpt').write_bytes(data[:len(data) // 2])  # a copy cut short
    res = run(train_cmd(synthetic_root, out, 3, ['--resume']))
    assert res.returncode == 0, res.stderr[-3000:]
    log = (out / 'train.log').read_text()
    assert 'truncated' in log and 'resuming from the previous checkpoint' in log
    assert 'epoch 0 done, continuing at epoch 1' in log
    assert_each_epoch_once(out, 3)
    assert read_checkpoint(str(out / 'last.ckpt'))[2]['epoch'] == 2


def test_truncated_checkpoint_without_a_previous_one_is_a_clear_error(finished, synthetic_root,
                                                                      tmp_path):
    out = copy_run(finished, tmp_path)
    os.remove(str(out / 'prev.ckpt'))
    data = read_bytes(out / 'last.ckpt')
    (out / 'last.ckpt').write_bytes(data[:len(data) // 2])
    line = assert_one_line_error(run(train_cmd(synthetic_root, out, 3, ['--resume'])))
    assert str(out / 'last.ckpt') in line and 'truncated' in line


def test_killed_after_logging_an_epoch_before_its_checkpoint(synthetic_root, tmp_path):
    out = tmp_path / 'killed'
    # SIGKILL at the worst moment: epoch 1 is validated and logged, its checkpoint not written
    wrapped = write_wrapper(tmp_path, '''
        def after_epoch(self):
            if self.loop.epoch == 1:
                os.kill(os.getpid(), signal.SIGKILL)
            original(self)
        hooks.CheckpointHook.after_epoch = after_epoch
        ''')
    res = run(wrapped + train_cmd(synthetic_root, out, 3)[2:])
    assert res.returncode == -signal.SIGKILL, res.stderr[-2000:]
    assert [r['epoch'] for r in records(out) if r['type'] == 'val'] == [0, 1]
    res = run(train_cmd(synthetic_root, out, 3, ['--resume']))
    assert res.returncode == 0, res.stderr[-3000:]
    assert_each_epoch_once(out, 3)  # was 0, 1, 1, 2
    assert (out / 'curves.png').stat().st_size > 10000


def test_loader_workers_of_a_killed_run_exit_quietly(synthetic_root, tmp_path):
    """SIGKILL of a run with --num-workers 2 while its workers are busy: they cannot hand
    their batches over any more and exit without a word (they printed BrokenPipeError
    tracebacks into the run's console or log). The pipe closes only when they are gone."""
    out = tmp_path / 'killed'
    wrapped = write_wrapper(tmp_path, '''
        import time
        from gluon_distill.data import loader
        read = loader.SeededTransformDataset.__getitem__
        def slowly(self, key):
            time.sleep(0.05)              # 0.4 s a batch: every worker is busy at the kill
            return read(self, key)
        loader.SeededTransformDataset.__getitem__ = slowly
        after_step = hooks.MetricsLogger.after_step
        def kill_at_the_second_step(self):
            after_step(self)
            if self.loop.iteration == 2:
                sys.stderr.write('killing the run\\n')
                sys.stderr.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        hooks.MetricsLogger.after_step = kill_at_the_second_step
        ''')
    cmd = wrapped + train_cmd(synthetic_root, out, 2)[2:]
    cmd[cmd.index('--num-workers') + 1] = '2'
    res = run(cmd)     # returns once every holder of the stderr pipe (the workers too) is gone
    assert res.returncode == -signal.SIGKILL, res.stderr[-3000:]
    assert res.stderr.rstrip().endswith('killing the run'), res.stderr[-3000:]
    assert 'Traceback' not in res.stderr and 'Error' not in res.stderr, res.stderr[-3000:]


# --- items 12 and 13: help, plots, quiet redirected logs ----------------------------------------

@pytest.mark.parametrize('tool', ['train_ssd.py', 'train_distill.py', 'plot.py'])
def test_help_points_only_at_files_that_exist(tool):
    res = run([PY, str(REPO / 'tools' / tool), '--help'])
    assert res.returncode == 0
    for path in re.findall(r'(?:experiments|tools)/[\w./-]+', res.stdout):
        assert (REPO / path.rstrip('.')).exists(), path


def test_every_run_writes_curves_and_a_redirected_log_stays_clean(finished):
    out, res = finished
    assert (out / 'curves.png').stat().st_size > 10000
    # stderr was a pipe: no progress bar, no library warning
    assert '\r' not in res.stderr and '%|' not in res.stderr, res.stderr[:2000]
    assert 'Warning' not in res.stderr, res.stderr[:2000]
    assert 'curves: {}'.format(out / 'curves.png') in (out / 'train.log').read_text()
