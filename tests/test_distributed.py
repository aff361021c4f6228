"""The launcher and the distributed helpers, on loopback (127.0.0.1) only.

Jobs are real: a ps-lite scheduler, a server and two workers started by
``python -m gluon_distill.launch``; every job is bounded by a subprocess timeout.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from gluon_distill import launch
from gluon_distill.engine import distributed as dist
from gluon_distill.data.loader import EpochSampler, ShardSampler, shard_indices, val_shard

REPO = Path(__file__).resolve().parents[1]
JOB_TIMEOUT = 60


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def job_processes(port):
    """Live processes started for the job whose scheduler port is ``port``."""
    marker = 'DMLC_PS_ROOT_PORT={}'.format(port).encode()
    found = []
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/{}/environ'.format(pid), 'rb') as f:
                env = f.read().split(b'\0')
            with open('/proc/{}/stat'.format(pid)) as f:
                state = f.read().rsplit(')', 1)[1].split()[0]
        except OSError:
            continue
        if marker in env and state != 'Z':
            found.append(int(pid))
    return found


def launcher_argv(port, script, workers=2, extra=()):
    return [sys.executable, '-m', 'gluon_distill.launch', '-n', str(workers), '-s', '1',
            '--port', str(port), *extra, '--', sys.executable, str(script)]


def job_env():
    env = dict(os.environ, OMP_NUM_THREADS='1', MXNET_CPU_WORKER_NTHREADS='1',
               PYTHONPATH=str(REPO))
    env['PORT'] = '1'  # the trap: the launcher must not pass it on
    return env


def run_job(port, script, workers=2):
    return subprocess.run(launcher_argv(port, script, workers), cwd=str(REPO), env=job_env(),
                          capture_output=True, text=True, timeout=JOB_TIMEOUT)


# ---------------------------------------------------------------------------- worker scripts

TRAIN_SCRIPT = '''
import os
import numpy as np
import gluon_distill  # its NumPy aliases before MXNet (Python 3.12)
import mxnet as mx
from mxnet import autograd, gluon
from gluon_distill.data.loader import shard_indices
from gluon_distill.engine import distributed as d

assert 'PORT' not in os.environ
kv = d.kvstore('dist_sync')
rank, world = d.world()
assert world == 2 and rank in (0, 1), (rank, world)
assert d.is_writer() == (rank == 0)

# push/pull: the servers sum what the workers push
kv.init(7, mx.nd.zeros((3,)))
out = mx.nd.zeros((3,))
kv.pushpull(7, mx.nd.ones((3,)) * (rank + 1), out=out)
assert np.array_equal(out.asnumpy(), [3, 3, 3]), out

GLOBAL = 8
rs = np.random.RandomState(1)
X = mx.nd.array(rs.randn(32, 5))
Y = mx.nd.array(rs.randn(32, 2))


def make(seed):
    mx.random.seed(seed)
    a, b = gluon.nn.Dense(4, in_units=5), gluon.nn.Dense(2, in_units=4)
    a.initialize(mx.init.Xavier())
    b.initialize(mx.init.Xavier())
    return a, b


def trainers(a, b, kvstores):
    # two trainers with different optimizers: a student and a critic
    return (gluon.Trainer(a.collect_params(), 'sgd', {'learning_rate': 0.1, 'momentum': 0.9},
                          kvstore=kvstores[0], update_on_kvstore=False),
            gluon.Trainer(b.collect_params(), 'sgd', {'learning_rate': 0.05},
                          kvstore=kvstores[1], update_on_kvstore=False))


def values(*blocks):
    return [p.data().asnumpy() for blk in blocks for p in blk.collect_params().values()]


a, b = make(100 + rank)  # different per rank on purpose: rank 0's initial values must win
ta, tb = trainers(a, b, [d.trainer_kvstore(), d.trainer_kvstore()])
for t in (ta, tb):
    t._init_kvstore()
    t._init_params()
mx.nd.waitall()
start = values(a, b)
both = d.all_gather_object(start)
assert all(np.array_equal(x, y) for x, y in zip(both[0], both[1])), 'not broadcast'

ra, rb = make(0)  # one process, the whole global batch, no KVStore
for p, v in zip(list(ra.collect_params().values()) + list(rb.collect_params().values()), start):
    p.set_data(mx.nd.array(v))
rta, rtb = trainers(ra, rb, [None, None])

for step in range(3):
    mine = shard_indices(32, rank, world, seed=5, epoch=step, batch_size=GLOBAL)[:GLOBAL // 2]
    full = shard_indices(32, 0, 1, seed=5, epoch=step, batch_size=GLOBAL)[:GLOBAL]
    for na, nb, tra, trb, idx in ((a, b, ta, tb, mine), (ra, rb, rta, rtb, full)):
        idx = mx.nd.array(idx)
        with autograd.record():
            loss = ((nb(na(X.take(idx))) - Y.take(idx)) ** 2).sum()
        loss.backward()
        tra.step(GLOBAL)  # dist_sync sums over workers: the global batch size
        trb.step(GLOBAL)
got, want = values(a, b), values(ra, rb)
assert max(np.abs(x - y).max() for x, y in zip(got, want)) <= 1e-6, 'differs from one process'
assert max(np.abs(x - y).max() for x, y in zip(got, start)) > 1e-3, 'nothing trained'

# objects of different sizes, larger than one payload round
payload = bytes(range(256)) * (3000 * (rank + 1)) + b'x' * rank
gathered = d.all_gather_object({'rank': rank, 'payload': payload})
assert [g['rank'] for g in gathered] == [0, 1]
assert gathered[rank]['payload'] == payload
assert gathered[1]['payload'] == bytes(range(256)) * 6000 + b'x'
assert d.broadcast_object('from {}'.format(rank)) == 'from 0'

# BatchNorm running statistics: the mean over workers
bn = gluon.nn.BatchNorm(in_channels=3)
bn.initialize()
bn.running_mean.set_data(mx.nd.full((3,), 2.0 * rank))
assert d.average_worker_statistics(bn) == 2
assert np.allclose(bn.running_mean.data().asnumpy(), 1.0)
# another group of keys: a sum (a loss normaliser), then the first group again
positives = [mx.nd.array([3.0 + rank])]
d.allreduce(positives, group='num_positives')
assert positives[0].asscalar() == 7.0, positives
bn.running_var.set_data(mx.nd.full((3,), 4.0 * rank))
d.average_worker_statistics(bn)
assert np.allclose(bn.running_var.data().asnumpy(), 2.0)
assert np.allclose(bn.running_mean.data().asnumpy(), 1.0)
os.write(1, 'OK rank {} of {}\\n'.format(rank, world).encode())  # one write: not interleaved
'''

DIE_SCRIPT = '''
import os, signal
import gluon_distill  # its NumPy aliases before MXNet (Python 3.12)
import mxnet as mx
from gluon_distill.engine import distributed as d

kv = d.kvstore('dist_sync')
rank, _ = d.world()
kv.init(3, mx.nd.zeros((2,)))
out = mx.nd.zeros((2,))
kv.pushpull(3, mx.nd.ones((2,)), out=out)
out.wait_to_read()
if rank == 1:
    os.kill(os.getpid(), signal.SIGKILL)
while True:  # rank 0 now waits for rank 1 forever: the launcher must end it
    kv.pushpull(3, mx.nd.ones((2,)), out=out)
    out.wait_to_read()
'''

SLEEP_SCRIPT = '''
import os, sys, time
open(os.path.join(sys.argv[0] + '.ready' + os.environ['GLUON_DISTILL_LAUNCH_INDEX']), 'w').close()
time.sleep(120)
'''


def write_script(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# ------------------------------------------------------------------------------- real jobs

def test_two_workers_train_like_one_process(tmp_path):
    port = free_port()
    result = run_job(port, write_script(tmp_path, 'train.py', TRAIN_SCRIPT))
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(re.findall(r'OK rank \d of \d', result.stdout)) == \
        ['OK rank 0 of 2', 'OK rank 1 of 2']
    assert job_processes(port) == []


def test_killed_worker_stops_the_job(tmp_path):
    port = free_port()
    started = time.monotonic()
    result = run_job(port, write_script(tmp_path, 'die.py', DIE_SCRIPT))
    assert time.monotonic() - started < JOB_TIMEOUT
    assert result.returncode == 128 + signal.SIGKILL, result.stderr
    assert re.search(r'launch: worker [01] was killed by SIGKILL: stopping the \d other '
                     r'running process\(es\) of the job', result.stderr), result.stderr
    assert job_processes(port) == []


def test_sigterm_is_forwarded_and_nothing_is_left(tmp_path):
    port = free_port()
    script = write_script(tmp_path, 'sleep.py', SLEEP_SCRIPT)
    proc = subprocess.Popen(launcher_argv(port, script), cwd=str(REPO), env=job_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + JOB_TIMEOUT
        while not all(Path(str(script) + '.ready' + str(i)).exists() for i in (0, 1)):
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
            time.sleep(0.1)
        assert len(job_processes(port)) == 4
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert 'received SIGTERM: forwarding it to the 4 processes' in err
    assert job_processes(port) == []


def test_taken_port_is_a_clear_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_job(port, write_script(tmp_path, 'never.py', 'raise SystemExit(3)\n'))
    assert result.returncode == 2
    assert 'launch: error: port {} on 127.0.0.1 is taken'.format(port) in result.stderr
    assert '--port 0' in result.stderr
    assert job_processes(port) == []


PY_COMMAND_SCRIPT = '''
import os, sys
import gluon_distill  # its NumPy aliases before MXNet (Python 3.12)
from gluon_distill.engine import distributed as d

kv = d.kvstore('dist_sync')
rank, world = d.world()
os.write(1, 'OK rank {} of {} run by {}\\n'.format(rank, world, sys.executable).encode())
'''


def test_a_py_command_without_interpreter_runs_with_the_launchers_python(tmp_path):
    """``launch -n 2 -- tools/train_ssd.py ...``: a .py command (here not executable, as a
    checkout's tools/*.py are not) is run by the launcher's Python, not refused with
    'Permission denied'."""
    script = write_script(tmp_path, 'job.py', PY_COMMAND_SCRIPT)
    assert not os.access(str(script), os.X_OK)
    port = free_port()
    argv = [sys.executable, '-m', 'gluon_distill.launch', '-n', '2', '-s', '1', '--port',
            str(port), '--', str(script)]
    result = subprocess.run(argv, cwd=str(REPO), env=job_env(), capture_output=True,
                            text=True, timeout=JOB_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(re.findall(r'OK rank \d of \d run by \S+', result.stdout)) == [
        'OK rank {} of 2 run by {}'.format(r, sys.executable) for r in (0, 1)]
    assert job_processes(port) == []


def test_py_command_argv_and_a_missing_script(tmp_path, capsys, monkeypatch):
    nodes = launch.plan(1, 1, port=9123)
    assert launch.node_command(nodes[2], ['tools/t.py', '--lr', '1'], '/py') == \
        ['/py', 'tools/t.py', '--lr', '1']
    assert launch.node_command(nodes[2], ['/venv/bin/python', 't.py'], '/py') == \
        ['/venv/bin/python', 't.py']
    argv, env = launch.horovod_job(2, ['tools/train_ssd.py', '--horovod'], python='/py')
    assert json.loads(env['GLUON_DISTILL_COMMAND']) == ['/py', 'tools/train_ssd.py',
                                                        '--horovod']
    monkeypatch.chdir(tmp_path)
    assert launch.main(['-n', '2', '--port', '0', '--', 'tools/nope.py', '--x']) == 2
    assert 'launch: error: cannot run tools/nope.py: no such file in {}'.format(
        tmp_path) in capsys.readouterr().err


# ------------------------------------------------------------------------ command and env

def test_loopback_plan_environment():
    nodes = launch.plan(2, 1, port=9123)
    assert [(n.role, n.index) for n in nodes] == [('scheduler', 0), ('server', 0),
                                                  ('worker', 0), ('worker', 1)]
    for n in nodes:
        assert n.env['DMLC_ROLE'] == n.role
        assert n.env['DMLC_PS_ROOT_URI'] == n.env['DMLC_NODE_HOST'] == '127.0.0.1'
        assert (n.env['DMLC_PS_ROOT_PORT'], n.env['DMLC_NUM_SERVER'],
                n.env['DMLC_NUM_WORKER']) == ('9123', '1', '2')
        env = launch.local_environment(n, {'PORT': '9123', 'HOME': '/h'})
        assert 'PORT' not in env and env['HOME'] == '/h'
    assert nodes[3].env['GLUON_DISTILL_LAUNCH_INDEX'] == '1'
    assert launch.node_command(nodes[1], ['x'], '/py') == ['/py', '-c', launch.NODE_PROGRAM]
    assert launch.node_command(nodes[2], ['python', 't.py'], '/py') == ['python', 't.py']


def test_ssh_commands_round_robin(tmp_path):
    hosts_file = tmp_path / 'hosts'
    hosts_file.write_text('# two machines\nalice@node1\n\nnode2  # second\n')
    hosts = launch.read_hosts(str(hosts_file))
    assert hosts == ['alice@node1', 'node2']
    nodes = launch.plan(3, 2, hosts, scheduler_host='10.0.0.5', port=9091,
                        extra_env={'OMP_NUM_THREADS': '4'})
    assert [n.host for n in nodes] == ['10.0.0.5', 'alice@node1', 'node2', 'alice@node1',
                                       'node2', 'alice@node1']
    assert all('DMLC_NODE_HOST' not in n.env for n in nodes)
    job = launch.Job(nodes, ['/venv/bin/python', 'tools/train ssd.py', '--lr', '0.1'],
                     hosts, python='/venv/bin/python', cwd='/work/my repo')
    assert job.argv(nodes[0]) == ['/venv/bin/python', '-c', launch.NODE_PROGRAM]  # runs here
    argv = job.argv(nodes[4])
    assert argv[:5] == ['ssh', '-tt', '-o', 'BatchMode=yes', 'node2']
    assert argv[5] == ("cd '/work/my repo' && exec env -u PORT DMLC_NUM_SERVER=2 "
                       "DMLC_NUM_WORKER=3 DMLC_PS_ROOT_PORT=9091 DMLC_PS_ROOT_URI=10.0.0.5 "
                       "DMLC_ROLE=worker GLUON_DISTILL_LAUNCH_INDEX=1 OMP_NUM_THREADS=4 "
                       "/venv/bin/python 'tools/train ssd.py' --lr 0.1")
    assert job.argv(nodes[1])[-1].endswith("DMLC_ROLE=server OMP_NUM_THREADS=4 "
                                           "/venv/bin/python -c 'import gluon_distill, "
                                           "mxnet'")


def test_bad_hosts_file_and_arguments(tmp_path, capsys):
    empty = tmp_path / 'hosts'
    empty.write_text('# nobody\n')
    with pytest.raises(launch.LaunchError, match='no host in the file'):
        launch.read_hosts(str(empty))
    with pytest.raises(launch.LaunchError, match='No such file'):
        launch.read_hosts(str(tmp_path / 'missing'))
    assert launch.main(['-n', '2', '--env', 'PORT=5', '--port', '0', '--', 'true']) == 2
    assert "--env 'PORT=5': expected NAME=VALUE" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        launch.main(['-n', '2'])
    assert 'no command: put it after --' in capsys.readouterr().err


# ------------------------------------------------------------------------------- sharding

def test_shards_cover_every_index_once_and_change_with_epoch():
    n, world, batch = 103, 4, 8
    epochs = []
    for epoch in range(3):
        shards = [shard_indices(n, r, world, seed=7, epoch=epoch, batch_size=batch)
                  for r in range(world)]
        assert len({len(s) for s in shards}) == 1           # equal lengths
        union = np.concatenate(shards)
        assert len(union) == len(set(union.tolist())) == n // batch * batch  # remainder dropped
        epochs.append(union)
    assert not np.array_equal(np.sort(epochs[0]), np.sort(epochs[1])) or \
        not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(shard_indices(n, 0, world, 7, 0, batch),
                              shard_indices(n, 0, world, 7, 1, batch))
    assert np.array_equal(shard_indices(n, 0, world, 7, 2, batch),
                          shard_indices(n, 0, world, 7, 2, batch))
    with pytest.raises(ValueError, match='does not split evenly over 4 workers'):
        shard_indices(n, 0, 4, 7, 0, batch_size=6)


def test_one_worker_reads_what_one_process_reads_and_two_split_its_batches():
    sampler = EpochSampler(50, seed=3)
    sampler.set_epoch(4)
    one_process = [i - 4 * 50 for i in sampler]
    assert shard_indices(50, 0, 1, seed=3, epoch=4, batch_size=50).tolist() == one_process
    # worker r's k-th batch of 4 is the r-th half of the one-process k-th batch of 8
    w0 = shard_indices(50, 0, 2, seed=3, epoch=4, batch_size=8)
    w1 = shard_indices(50, 1, 2, seed=3, epoch=4, batch_size=8)
    for k in range(50 // 8):
        assert one_process[8 * k:8 * k + 8] == w0[4 * k:4 * k + 4].tolist() + \
            w1[4 * k:4 * k + 4].tolist()
    shard = ShardSampler(50, 1, 2, batch_size=8, seed=3)
    shard.set_epoch(4)
    assert [i - 4 * 50 for i in shard] == w1.tolist() and len(shard) == len(w1)


def test_validation_shards_do_not_duplicate():
    shards = [val_shard(17, r, 3) for r in range(3)]
    assert np.concatenate(shards).tolist() == list(range(17))
    assert [len(s) for s in shards] == [6, 6, 5]


def test_single_process_defaults():
    assert dist.world() == (0, 1) and dist.is_writer()
    assert dist.all_gather_object({'a': 1}) == [{'a': 1}]
    assert dist.broadcast_object(5) == 5


def test_kvstore_outside_a_launched_job_is_a_clear_error(monkeypatch):
    monkeypatch.delenv('DMLC_ROLE', raising=False)
    with pytest.raises(dist.DistributedError, match='python -m gluon_distill.launch'):
        dist.kvstore('dist_sync')
    with pytest.raises(dist.DistributedError, match='expected one of dist_sync'):
        dist.kvstore('dist_async')


# -------------------------------------------------------------------------------- Horovod

def _has_horovod():
    try:
        import horovod.mxnet  # noqa: F401  (the extra is optional)
        return True
    except ImportError:
        return False


@pytest.mark.skipif(_has_horovod(), reason='horovod is installed: the missing-extra message '
                                           'cannot be shown')
def test_missing_horovod_is_a_clear_error():
    with pytest.raises(dist.DistributedError, match='horovod.mxnet cannot be imported'):
        dist.use_horovod()


@pytest.mark.skipif(not _has_horovod(), reason='horovod (the optional extra, built from source: '
                                               'see docs/multi-machine.md) is not installed')
def test_horovod_two_ranks_gather(tmp_path):
    script = write_script(tmp_path, 'hvd.py', '''
        from gluon_distill.engine import distributed as d
        d.use_horovod()
        rank, world = d.world()
        assert world == 2
        assert d.all_gather_object(rank) == [0, 1]
        print('OK', rank, flush=True)
        ''')
    result = subprocess.run(['horovodrun', '--gloo', '-np', '2', '-H', 'localhost:2',
                             sys.executable, str(script)], cwd=str(REPO), env=job_env(),
                            capture_output=True, text=True, timeout=JOB_TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count('OK') == 2


# ------------------------------------------------------- the training tools across workers

TRAIN_TIMEOUT = 150


def tiny_run_args(data_dir, out, epochs, ctx, extra=()):
    """A tiny seeded SSD run: 16 training images, global batch 4 (4 iterations per epoch)."""
    args = ['--network', 'tiny', '--data-shape', '64', '--no-pretrained-base',
            '--data-root', 'synthetic', '--batch-size', '4', '--epochs', str(epochs),
            '--seed', '3', '--lr', '0.002', '--ctx', ctx, '--out', str(out)]
    for kv in ('data.synthetic.dir={}'.format(data_dir), 'data.synthetic.num_train=16',
               'data.synthetic.num_val=8', 'data.train_split=train', 'data.val_split=val',
               'data.num_workers=0', 'model.width=8', 'model.blocks=1', 'train.optimizer=adam',
               'train.log_interval=2', 'train.progress=false', 'distill.gan.critic_width=8'):
        args += ['--set', kv]
    return args + list(extra)


def tool_env(tmp_path):
    env = job_env()
    scratch = tmp_path / 'tmp'
    scratch.mkdir(exist_ok=True)
    env['TMPDIR'] = str(scratch)  # where the workers but rank 0 keep their scratch folders
    return env


def one_process(tool, args, tmp_path):
    result = subprocess.run([sys.executable, str(REPO / 'tools' / tool)] + args, cwd=str(REPO),
                            env=tool_env(tmp_path), capture_output=True, text=True,
                            timeout=TRAIN_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def two_workers(tool, args, tmp_path, popen=False):
    argv = launcher_argv(free_port(), REPO / 'tools' / tool) + args + ['--kvstore', 'dist_sync']
    if popen:
        return subprocess.Popen(argv, cwd=str(REPO), env=tool_env(tmp_path),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    result = subprocess.run(argv, cwd=str(REPO), env=tool_env(tmp_path), capture_output=True,
                            text=True, timeout=TRAIN_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def horovod_ranks(tool, args, tmp_path):
    """``tool`` on 2 Horovod ranks, through the launcher (horovodrun would take the tools'
    ``--network`` for its own option)."""
    argv = [sys.executable, '-m', 'gluon_distill.launch', '--horovod', '-n', '2', '--',
            sys.executable, str(REPO / 'tools' / tool)] + args + ['--horovod']
    result = subprocess.run(argv, cwd=str(REPO), env=tool_env(tmp_path), capture_output=True,
                            text=True, timeout=TRAIN_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    return result


GAN_FGFI = ['--set', 'distill.method=gan+fgfi', '--set', 'distill.fgfi.warmup_iters=1']


def gan_fgfi_one_process(tmp_path, reference):
    """The distillation arguments and the folder of the one-process (cpu:0,1) reference run."""
    extra = ['--teacher-params', str(reference / 'one' / 'last.params')] + GAN_FGFI
    one = tmp_path / 'one'
    one_process('train_distill.py', tiny_run_args(reference / 'data', one, 1, 'cpu:0,1', extra),
                tmp_path)
    return extra, one


def max_difference(path_a, path_b):
    """The largest absolute difference of the parameters in two ``.params`` or checkpoint
    files (a checkpoint's optimizer states are pickles: a KVStore-held optimizer pickles
    itself too)."""
    import mxnet as mx
    a, b = mx.nd.load(str(path_a)), mx.nd.load(str(path_b))
    assert sorted(a) == sorted(b)
    keys = [k for k in a if not k.startswith(('optim:', 'meta'))]
    assert keys
    return max(float(np.abs(a[k].asnumpy().astype(np.float64) -
                            b[k].asnumpy().astype(np.float64)).max()) for k in keys)


def run_files(out):
    return sorted(p.name for p in Path(out).iterdir() if p.name != '.lock')


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    """One process, two CPU contexts, 2 epochs: the plain SSD run the jobs must equal (and the
    teacher of the distillation runs)."""
    tmp = tmp_path_factory.mktemp('reference')
    out = tmp / 'one'
    one_process('train_ssd.py', tiny_run_args(tmp / 'data', out, 2, 'cpu:0,1'), tmp)
    return tmp


def test_ssd_two_workers_equal_one_process_and_resume(tmp_path, reference):
    out = tmp_path / 'dist'
    args = tiny_run_args(reference / 'data', out, 1, 'cpu')
    first = two_workers('train_ssd.py', args, tmp_path)
    # rank 0 alone writes the run folder and reports
    assert first.stdout.count('outputs in {}'.format(out)) == 1, first.stdout
    assert (out / 'last.ckpt').exists() and not (out / 'prev.ckpt').exists()
    # the second epoch as a resumed distributed run
    second = two_workers('train_ssd.py', tiny_run_args(reference / 'data', out, 2, 'cpu',
                                                        ['--resume']), tmp_path)
    assert 'resumed every worker from {}'.format(out / 'last.ckpt') in second.stderr
    one = reference / 'one'
    assert run_files(out) == run_files(one)
    assert max_difference(out / 'last.params', one / 'last.params') <= 1e-5
    assert max_difference(out / 'last.ckpt', one / 'last.ckpt') <= 1e-5
    records = [json.loads(line) for line in (out / 'metrics.jsonl').read_text().splitlines()]
    assert [(r['type'], r['epoch']) for r in records] == \
        [('train', 0), ('train', 0), ('val', 0), ('train', 1), ('train', 1), ('val', 1)]
    want = [json.loads(line) for line in (one / 'metrics.jsonl').read_text().splitlines()]
    for got, ref in zip(records, want):
        for key in ('CrossEntropy', 'SmoothL1', 'mAP'):
            if key in ref:
                assert got[key] == pytest.approx(ref[key], rel=1e-5, abs=1e-7), (key, got)
    # the logged mAP is the saved file's, evaluated by one process on the whole set
    from gluon_distill.evaluate import evaluate_params
    result, _ = evaluate_params(str(out / 'last.params'), progress=False)
    assert records[-1]['mAP'] == pytest.approx(result['mAP'], abs=1e-9)
    assert result['mAP'] > 0
    assert list((tmp_path / 'tmp').iterdir()) == []  # scratch folders removed


def test_gan_distillation_two_workers_equal_one_process(tmp_path, reference):
    extra, one = gan_fgfi_one_process(tmp_path, reference)
    out = tmp_path / 'dist'
    result = two_workers('train_distill.py',
                         tiny_run_args(reference / 'data', out, 1, 'cpu', extra), tmp_path)
    assert result.stdout.count('student (standalone with') == 1, result.stdout
    assert run_files(out) == run_files(one)
    # the student, its adapters, the critics (clipped) and FGFI's adaptation layers
    assert max_difference(out / 'last.ckpt', one / 'last.ckpt') <= 1e-5
    assert max_difference(out / 'student.params', one / 'student.params') <= 1e-5
    records = [json.loads(line) for line in (out / 'metrics.jsonl').read_text().splitlines()]
    want = [json.loads(line) for line in (one / 'metrics.jsonl').read_text().splitlines()]
    assert [r['type'] for r in records] == [r['type'] for r in want]
    for key in ('Loss_D', 'W0', 'Loss_fgfi', 'CrossEntropy'):
        assert records[1][key] == pytest.approx(want[1][key], rel=1e-4, abs=1e-7), key


def _worker_pid(port, index):
    for pid in job_processes(port):
        with open('/proc/{}/environ'.format(pid), 'rb') as f:
            env = f.read().split(b'\0')
        if b'DMLC_ROLE=worker' in env and \
                'GLUON_DISTILL_LAUNCH_INDEX={}'.format(index).encode() in env:
            return pid
    return None


def test_killed_training_worker_stops_the_job(tmp_path, reference):
    out = tmp_path / 'dist'
    port = free_port()
    argv = launcher_argv(port, REPO / 'tools' / 'train_ssd.py') + tiny_run_args(
        reference / 'data', out, 200, 'cpu') + ['--kvstore', 'dist_sync']
    proc = subprocess.Popen(argv, cwd=str(REPO), env=tool_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TRAIN_TIMEOUT
        while not (out / 'metrics.jsonl').exists():  # training is under way
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
            time.sleep(0.2)
        os.kill(_worker_pid(port, 1), signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGKILL, err
    assert 'launch: worker 1 was killed by SIGKILL: stopping the' in err
    assert job_processes(port) == []
    assert (out / 'last.ckpt').exists() or not (out / 'summary.json').exists()


def test_dist_kvstore_without_launcher_is_one_line(tmp_path, monkeypatch):
    from gluon_distill.config import config_from
    from gluon_distill.training import prepare_run
    monkeypatch.delenv('DMLC_ROLE', raising=False)
    cfg = config_from({'train.kvstore': 'dist_sync', 'train.out': str(tmp_path / 'run')})
    with pytest.raises(dist.DistributedError, match='python -m gluon_distill.launch'):
        prepare_run(cfg)
    assert not (tmp_path / 'run').exists()


def test_batch_size_must_split_over_workers_and_devices():
    from gluon_distill.training import check_batch_size
    check_batch_size(8, 2, 2)
    with pytest.raises(ValueError, match=r'over 2 workers x 2 devices .*use 4 or 8'):
        check_batch_size(6, 2, 2)


@pytest.mark.skipif(not _has_horovod(), reason='horovod (the optional extra, built from source: '
                                               'see docs/multi-machine.md) is not installed')
def test_horovod_ssd_two_ranks_equal_one_process(tmp_path, reference):
    out = tmp_path / 'hvd'
    horovod_ranks('train_ssd.py', tiny_run_args(reference / 'data', out, 2, 'cpu'), tmp_path)
    assert max_difference(out / 'last.params', reference / 'one' / 'last.params') <= 1e-5


def test_horovod_job_passes_the_command_outside_horovodrun_options(tmp_path):
    """horovodrun would read ``--network`` as ``--network-interface``: the command goes through
    the environment to horovod_exec, which runs it unchanged in the launch directory."""
    argv, env = launch.horovod_job(3, ['python', 'tools/train_ssd.py', '--network', 'tiny',
                                       '--config', 'x.yaml'], ['a', 'user@b'], python='py',
                                   cwd=str(tmp_path), env={'PORT': '9', 'KEEP': '1'})
    assert argv[:6] == ['horovodrun', '--gloo', '-np', '3', '-H', 'a:2,b:1']
    assert argv[6] == 'py' and argv[7].endswith('horovod_exec.py') and len(argv) == 8
    assert 'PORT' not in env and env['KEEP'] == '1'
    assert launch.horovod_hosts(2) == 'localhost:2'
    out = tmp_path / 'argv.json'
    env = dict(os.environ, GLUON_DISTILL_CWD=str(tmp_path), GLUON_DISTILL_COMMAND=json.dumps(
        [sys.executable, '-c', 'import json, os, sys; json.dump([os.getcwd()] + sys.argv[1:], '
         'open("argv.json", "w"))', '--network', 'tiny']))
    subprocess.run([sys.executable, argv[7]], env=env, check=True, timeout=60)
    assert json.loads(out.read_text()) == [str(tmp_path), '--network', 'tiny']


@pytest.mark.skipif(not _has_horovod(), reason='horovod (the optional extra, built from source: '
                                               'see docs/multi-machine.md) is not installed')
def test_horovod_gan_distillation_two_ranks_equal_one_process(tmp_path, reference):
    """Every trainer of a distillation (student, critics, FGFI's layers) under Horovod: one
    tensor name prefix per trainer, the same result as one process with two contexts."""
    extra, one = gan_fgfi_one_process(tmp_path, reference)
    out = tmp_path / 'hvd'
    horovod_ranks('train_distill.py', tiny_run_args(reference / 'data', out, 1, 'cpu', extra),
                  tmp_path)
    assert max_difference(out / 'last.ckpt', one / 'last.ckpt') <= 1e-5
