"""Start a distributed KVStore job: ps-lite scheduler, servers and workers.

::

    python -m gluon_distill.launch -n 2 -- python tools/train_ssd.py --kvstore dist_sync ...
    python -m gluon_distill.launch -n 2 -- tools/train_ssd.py ...   # a .py: run by --python
    python -m gluon_distill.launch -n 4 -s 2 --hosts hosts.txt -- /venv/bin/python tools/...

Without ``--hosts`` every process runs on this machine over loopback (127.0.0.1). With
``--hosts`` (one ``[user@]host`` per line, ``#`` comments) the scheduler runs here and servers
and workers are assigned to the hosts round-robin and started with ``ssh`` in the same
directory as here (the code and data must be at the same paths there).

Each process gets ``DMLC_ROLE``, ``DMLC_PS_ROOT_URI``/``DMLC_PS_ROOT_PORT`` (the scheduler),
``DMLC_NUM_SERVER``, ``DMLC_NUM_WORKER``, on loopback ``DMLC_NODE_HOST=127.0.0.1`` (else ps-lite
announces another interface), and ``PORT`` removed (ps-lite would take it as its own port).
Workers also get ``GLUON_DISTILL_LAUNCH_INDEX`` (their position in the launch order; ps-lite
assigns the KVStore rank itself, which may differ). Servers and the scheduler are
``python -c "import gluon_distill, mxnet"``: importing MXNet with ``DMLC_ROLE=server|scheduler``
runs that node (the package first, for its NumPy aliases on Python 3.12).

The launcher forwards SIGINT/SIGTERM to every process; when one fails it stops all the others
and exits non-zero naming it; it exits 0 when every worker did.

``--horovod`` runs COMMAND on ``-n`` ranks with ``horovodrun --gloo`` instead (the optional
``horovod`` extra), passing the command so that horovodrun cannot mistake its options for its
own (:mod:`gluon_distill.horovod_exec`).
"""
import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

LOOPBACK = '127.0.0.1'
DEFAULT_PORT = 9091
# after the last worker finished, how long the scheduler and servers get to exit by themselves
SHUTDOWN_GRACE = 15.0
# after a forwarded signal or a failure, how long processes get before SIGKILL
KILL_GRACE = 5.0


class LaunchError(Exception):
    """A job that cannot be started; the message says why and what to do."""


@dataclass
class Node:
    """One process of the job."""
    role: str           # scheduler, server or worker
    index: int          # position among the processes of its role
    host: str           # LOOPBACK, or the ssh destination from the hosts file
    env: dict = field(default_factory=dict)

    @property
    def name(self):
        where = '' if self.host == LOOPBACK else ' on ' + self.host
        if self.role == 'scheduler':
            return 'scheduler' + where
        return '{} {}{}'.format(self.role, self.index, where)


def read_hosts(path):
    """The hosts of a hosts file: one ``[user@]host`` per line; blank lines and ``#`` comments
    ignored."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise LaunchError('--hosts {}: {}'.format(path, e.strerror or e))
    hosts = []
    for number, line in enumerate(lines, 1):
        line = line.split('#', 1)[0].strip()
        if not line:
            continue
        if len(line.split()) != 1:
            raise LaunchError('--hosts {}:{}: expected one host per line, got {!r}'.format(
                path, number, line))
        hosts.append(line)
    if not hosts:
        raise LaunchError('--hosts {}: no host in the file'.format(path))
    return hosts


def outward_address(host):
    """This machine's address on the route to ``host`` (no packet is sent)."""
    target = host.rsplit('@', 1)[-1]
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((target, 9))
            return s.getsockname()[0]
    except OSError as e:
        raise LaunchError('cannot find this machine\'s address towards {} ({}): pass '
                          '--scheduler-host ADDRESS'.format(target, e))


def check_port(host, port):
    """Raise :class:`LaunchError` when ``host:port`` cannot be listened on (in use); returns
    the port, a free one when ``port`` is 0."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # the scheduler (ZeroMQ) sets SO_REUSEADDR too: a port in TIME_WAIT is usable
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            s.listen(1)
        except OSError as e:
            if port:
                raise LaunchError(
                    'port {} on {} is taken ({}): another job or program listens there; '
                    'pass --port with a free port, or --port 0 to pick one'.format(
                        port, host, e.strerror or e))
            raise LaunchError('cannot listen on {}: {}'.format(host, e.strerror or e))
        return s.getsockname()[1]


def plan(num_workers, num_servers, hosts=None, scheduler_host=LOOPBACK, port=DEFAULT_PORT,
         extra_env=None):
    """The :class:`Node` s of a job, scheduler first, then servers, then workers; servers and
    workers assigned to ``hosts`` round-robin (all on loopback without hosts)."""
    if num_workers < 1:
        raise LaunchError('-n: at least one worker, got {}'.format(num_workers))
    if num_servers < 1:
        raise LaunchError('-s: at least one server, got {}'.format(num_servers))
    common = dict(extra_env or {})
    common.update({
        'DMLC_PS_ROOT_URI': scheduler_host,
        'DMLC_PS_ROOT_PORT': str(port),
        'DMLC_NUM_SERVER': str(num_servers),
        'DMLC_NUM_WORKER': str(num_workers),
    })

    def node(role, index, host):
        env = dict(common, DMLC_ROLE=role)
        if host == LOOPBACK:
            env['DMLC_NODE_HOST'] = LOOPBACK
        if role == 'worker':
            env['GLUON_DISTILL_LAUNCH_INDEX'] = str(index)
        return Node(role, index, host, env)

    # the scheduler runs on this machine, at DMLC_PS_ROOT_URI
    nodes = [node('scheduler', 0, scheduler_host if hosts else LOOPBACK)]
    nodes += [node('server', i, hosts[i % len(hosts)] if hosts else LOOPBACK)
              for i in range(num_servers)]
    nodes += [node('worker', i, hosts[i % len(hosts)] if hosts else LOOPBACK)
              for i in range(num_workers)]
    return nodes


# what the scheduler and servers run: importing MXNet with DMLC_ROLE=scheduler|server runs
# that node; the package first (its NumPy aliases let MXNet 1.9.1 import beside NumPy >= 1.24)
NODE_PROGRAM = 'import gluon_distill, mxnet'


def with_interpreter(command, python=sys.executable):
    """``command`` as a process runs it: a command that is a ``.py`` file
    (``tools/train_ssd.py ...``) is run by ``python`` (a script need not be executable, nor its
    ``#!`` line name this environment's Python); any other command as it is."""
    command = list(command)
    if command and command[0].lower().endswith('.py'):
        return [python] + command
    return command


def node_command(node, command, python=sys.executable):
    """The argv a node runs: the user's ``command`` for workers (a ``.py`` file run by
    ``python``: :func:`with_interpreter`), ``python -c "import gluon_distill, mxnet"`` for the
    scheduler and servers."""
    if node.role == 'worker':
        return with_interpreter(command, python)
    return [python, '-c', NODE_PROGRAM]


def check_script(command, cwd=None):
    """Raise :class:`LaunchError` when ``command`` is a ``.py`` file that does not exist (in
    ``cwd``), before any process is started."""
    if command and command[0].lower().endswith('.py'):
        path = os.path.join(cwd or os.getcwd(), command[0])
        if not os.path.isfile(path):
            raise LaunchError('cannot run {}: no such file{}'.format(
                command[0], '' if os.path.isabs(command[0]) else
                ' in {}'.format(cwd or os.getcwd())))


def ssh_command(node, argv, cwd, ssh='ssh'):
    """The ``ssh`` argv starting ``argv`` on ``node.host`` in ``cwd`` with the node's
    environment (``PORT`` unset). ``-tt`` gives the remote process a terminal, so that it is
    hung up when the local ssh is ended."""
    assignments = ['{}={}'.format(k, shlex.quote(str(v))) for k, v in sorted(node.env.items())]
    remote = 'cd {} && exec env -u PORT {} {}'.format(
        shlex.quote(cwd), ' '.join(assignments), ' '.join(shlex.quote(a) for a in argv))
    return shlex.split(ssh) + ['-tt', '-o', 'BatchMode=yes', node.host, remote]


def local_environment(node, base=None):
    """This process's environment plus the node's, ``PORT`` removed."""
    env = dict(os.environ if base is None else base)
    env.pop('PORT', None)
    env.update(node.env)
    return env


def describe_exit(code):
    if code < 0:
        try:
            return 'was killed by {}'.format(signal.Signals(-code).name)
        except ValueError:
            return 'was killed by signal {}'.format(-code)
    return 'exited with code {}'.format(code)


class Job:
    """The started processes of a :func:`plan`, watched until the workers end."""

    def __init__(self, nodes, command, hosts=None, python=sys.executable, cwd=None, ssh='ssh',
                 log=None):
        self.nodes = nodes
        self.command = command
        self.remote = bool(hosts)
        self.python = python
        self.cwd = cwd or os.getcwd()
        self.ssh = ssh
        self.procs = []
        self.log = log or (lambda msg: print('launch: ' + msg, file=sys.stderr, flush=True))
        self._signal = None

    def argv(self, node):
        argv = node_command(node, self.command, self.python)
        if self.remote and node.role != 'scheduler':
            return ssh_command(node, argv, self.cwd, self.ssh)
        return argv

    def start(self):
        for node in self.nodes:
            argv = self.argv(node)
            try:
                # own session: a terminal's Ctrl-C reaches the launcher alone, which forwards it
                # once to each process group (DataLoader workers included)
                proc = subprocess.Popen(argv, env=local_environment(node), cwd=self.cwd,
                                        start_new_session=True)
            except OSError as e:
                self.stop()
                raise LaunchError('cannot start {} ({}): {}'.format(
                    node.name, ' '.join(argv[:2]), e.strerror or e))
            self.procs.append((node, proc))

    def _send(self, sig, which=None):
        for node, proc in which or self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass

    def stop(self, sig=signal.SIGTERM, grace=KILL_GRACE, which=None):
        """Send ``sig`` to every running process, then SIGKILL what is left after ``grace``
        seconds; returns when all have exited."""
        which = which or self.procs
        self._send(sig, which)
        deadline = time.monotonic() + grace
        while any(p.poll() is None for _, p in which) and time.monotonic() < deadline:
            time.sleep(0.05)
        self._send(signal.SIGKILL, which)
        for _, proc in which:
            proc.wait()
        # a SIGKILLed leader may leave children in its group
        for _, proc in which:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def _on_signal(self, signum, frame):
        self._signal = signum

    def wait(self, poll=0.05):
        """Watch the processes; returns the launcher's exit code."""
        workers = [(n, p) for n, p in self.procs if n.role == 'worker']
        others = [(n, p) for n, p in self.procs if n.role != 'worker']
        while True:
            if self._signal is not None:
                sig = self._signal
                self.log('received {}: forwarding it to the {} processes of the job'.format(
                    signal.Signals(sig).name, sum(p.poll() is None for _, p in self.procs)))
                self.stop(sig)
                return 128 + sig
            failed = [(n, p) for n, p in self.procs if p.poll() not in (None, 0)]
            if failed:
                node, proc = failed[0]
                running = sum(p.poll() is None for _, p in self.procs)
                self.log('{} {}: stopping the {} other running process(es) of the job'.format(
                    node.name, describe_exit(proc.returncode), running))
                self.stop()
                code = proc.returncode
                return code if 0 < code < 256 else (128 - code if code < 0 else 1)
            if all(p.poll() == 0 for _, p in workers):
                deadline = time.monotonic() + SHUTDOWN_GRACE
                while any(p.poll() is None for _, p in others) and \
                        time.monotonic() < deadline and self._signal is None:
                    time.sleep(poll)
                left = [n.name for n, p in others if p.poll() is None]
                if left:
                    self.log('all workers finished; ending {} which did not exit'.format(
                        ', '.join(left)))
                self.stop()
                bad = [(n, p) for n, p in others if p.returncode not in (0, -signal.SIGTERM,
                                                                          -signal.SIGKILL)]
                if bad:
                    node, proc = bad[0]
                    self.log('{} {} after the workers finished'.format(
                        node.name, describe_exit(proc.returncode)))
                return 0
            time.sleep(poll)

    def run(self):
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            return self.wait()
        finally:
            if self.procs:
                self.stop()
            for s, handler in previous.items():
                signal.signal(s, handler)


def horovod_hosts(num_workers, hosts=None):
    """horovodrun's ``-H`` value: ``localhost:N``, or the hosts' slots, ranks round-robin."""
    if not hosts:
        return 'localhost:{}'.format(num_workers)
    slots = {}
    for k in range(num_workers):
        host = hosts[k % len(hosts)]
        slots[host] = slots.get(host, 0) + 1
    return ','.join('{}:{}'.format(h.split('@')[-1], n) for h, n in slots.items())


def horovod_job(num_workers, command, hosts=None, python=sys.executable, cwd=None, env=None,
                horovodrun='horovodrun'):
    """``(argv, environment)`` of a Horovod (gloo) job running ``command`` on every rank.

    The command reaches the ranks through the environment and :mod:`gluon_distill.horovod_exec`
    (see there why not as arguments); a ``.py`` command is run by ``python``
    (:func:`with_interpreter`)."""
    environment = dict(os.environ if env is None else env)
    environment.pop('PORT', None)
    environment['GLUON_DISTILL_COMMAND'] = json.dumps(with_interpreter(command, python))
    environment['GLUON_DISTILL_CWD'] = cwd or os.getcwd()
    runner = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'horovod_exec.py')
    argv = [horovodrun, '--gloo', '-np', str(num_workers), '-H',
            horovod_hosts(num_workers, hosts), python, runner]
    return argv, environment


def run_horovod(argv, environment, log):
    """Run horovodrun in its own session, forwarding SIGINT/SIGTERM; its exit code."""
    try:
        proc = subprocess.Popen(argv, env=environment, start_new_session=True)
    except OSError as e:
        raise LaunchError('cannot start {}: {}; install the horovod extra (docs/multi-'
                          'machine.md, Horovod)'.format(argv[0], e.strerror or e))

    def forward(signum, frame):
        log('received {}: forwarding it to horovodrun'.format(signal.Signals(signum).name))
        try:
            os.killpg(proc.pid, signum)
        except ProcessLookupError:
            pass
    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return code if code >= 0 else 128 - code


def parse_args(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if '--' in argv:
        split = argv.index('--')
        own, command = argv[:split], argv[split + 1:]
    else:
        own, command = argv, []
    p = build_parser()
    args = p.parse_args(own)
    if not command:
        p.error('no command: put it after --, e.g. -- python tools/train_ssd.py ...')
    args.command = command
    return args


def build_parser():
    """The launcher's own options (those before ``--``)."""
    from .cli import Parser
    p = Parser(
        prog='python -m gluon_distill.launch',
        description='Start a distributed KVStore job (scheduler, servers, workers) on this '
                    'machine (loopback) or over ssh, and stop all of it when one process fails.',
        usage='%(prog)s -n PROCESSES [-s SERVERS] [--hosts FILE] [--port P] -- COMMAND ...')
    p.add_argument('-n', '--num-processes', dest='num_workers', type=int, required=True,
                   metavar='N',
                   help='number of training processes, each running COMMAND (the KVStore\'s '
                        'workers, or Horovod\'s ranks; --num-workers is the data loader\'s in '
                        'the training commands)')
    p.add_renamed('--num-workers', '--num-processes')
    p.add_argument('-s', '--num-servers', type=int, default=None,
                   help='number of parameter servers (default: 1 on loopback, one per host '
                        'with --hosts)')
    p.add_argument('--hosts', help='file with one [user@]host per line: servers and workers '
                                   'are started there with ssh, round-robin')
    p.add_argument('--port', type=int, default=DEFAULT_PORT,
                   help='the scheduler\'s port (default %(default)s; 0 picks a free one)')
    p.add_argument('--scheduler-host', default=None,
                   help='with --hosts: this machine\'s address the hosts can reach (default: '
                        'the address on the route to the first host)')
    p.add_argument('--env', action='append', default=[], metavar='NAME=VALUE',
                   help='an extra environment variable for every process (repeatable); with '
                        '--hosts this is how variables reach the remote processes')
    p.add_argument('--python', default=sys.executable,
                   help='the Python that runs the scheduler and servers, and a COMMAND that is '
                        'a .py file (default: this one; with --hosts it must exist at that '
                        'path on every host)')
    p.add_argument('--ssh', default='ssh', help='ssh command (default: %(default)s)')
    p.add_argument('--horovod', action='store_true',
                   help='run COMMAND on -n ranks with horovodrun (gloo) instead of a KVStore '
                        'job; give COMMAND --horovod too')
    return p


def _parse_env(items):
    env = {}
    for item in items:
        name, sep, value = item.partition('=')
        if not sep or not name or name.startswith('DMLC_') or name == 'PORT':
            raise LaunchError('--env {!r}: expected NAME=VALUE (DMLC_* and PORT are set by the '
                              'launcher)'.format(item))
        env[name] = value
    return env


def main(argv=None):
    args = parse_args(argv)
    try:
        hosts = read_hosts(args.hosts) if args.hosts else None
        if not hosts:  # on other hosts the file is looked for there
            check_script(args.command)
        if args.horovod:
            argv, environment = horovod_job(args.num_workers, args.command, hosts,
                                             python=args.python,
                                             env=dict(os.environ, **_parse_env(args.env)))
            print('launch: {}'.format(' '.join(argv[:6])), file=sys.stderr, flush=True)
            return run_horovod(argv, environment,
                               lambda msg: print('launch: ' + msg, file=sys.stderr, flush=True))
        if hosts:
            scheduler_host = args.scheduler_host or outward_address(hosts[0])
            num_servers = args.num_servers or len(hosts)
            listen = '0.0.0.0'
        else:
            scheduler_host = listen = LOOPBACK
            num_servers = args.num_servers or 1
        port = check_port(listen, args.port)
        nodes = plan(args.num_workers, num_servers, hosts, scheduler_host, port,
                     _parse_env(args.env))
        where = 'hosts ' + ', '.join(hosts) if hosts else 'this machine (loopback)'
        print('launch: scheduler {}:{}, {} server(s), {} worker(s) on {}'.format(
            scheduler_host, port, num_servers, args.num_workers, where), file=sys.stderr,
            flush=True)
        job = Job(nodes, args.command, hosts, args.python, ssh=args.ssh)
        return job.run()
    except LaunchError as e:
        print('launch: error: {}'.format(e), file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
