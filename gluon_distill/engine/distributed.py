"""One training run over several processes: MXNet's distributed KVStore, or Horovod.

Processes are started by ``python -m gluon_distill.launch`` (KVStore: a ps-lite scheduler,
servers and workers) or by ``horovodrun`` (Horovod). Each worker runs the same training tool;
this module gives it

* :func:`kvstore` / :func:`trainer_kvstore`: the process's one distributed KVStore, and a
  view of it per Gluon ``Trainer`` (several trainers - a student and its critics - cannot share
  one KVStore's keys otherwise);
* :func:`world`, :func:`is_writer`: ``(rank, num_workers)``, and whether this process writes
  files (rank 0);
* which images this worker reads: :func:`~gluon_distill.data.loader.shard_indices`,
  :class:`~gluon_distill.data.loader.ShardSampler`, :func:`~gluon_distill.data.loader.val_shard`
  (the loaders take ``world()``);
* :func:`all_gather_object`, :func:`broadcast_object`, :func:`allreduce`,
  :func:`average_worker_statistics`, :func:`evaluate_sharded`: results and statistics exchanged between workers.

Conventions, measured with the MXNet 1.9.1 wheel on loopback:

* A ``dist_sync`` KVStore **sums** the gradients of all workers (and of all devices of each
  worker): ``trainer.step`` must be given the *global* batch size (or 1 for a loss already
  normalised by a global count). Horovod's ``DistributedTrainer`` averages instead.
* ``trainer_kvstore`` views cannot run an optimizer on the servers, so every Trainer keeps
  ``update_on_kvstore=False``: gradients are summed by the servers, every worker applies the same
  update locally (gradient clipping between ``allreduce_grads()`` and ``update()`` then sees the
  global gradient). It also keeps the servers free of optimizers, which would otherwise apply
  to the keys :func:`all_gather_object` uses.
* ps-lite assigns ranks in its own order: ``kv.rank`` need not equal the launch order (the
  launcher's ``GLUON_DISTILL_LAUNCH_INDEX``), so only :func:`world` says who is rank 0.
* The servers add float32 values only (int32 aborts them); :func:`all_gather_object` therefore
  moves bytes as 16-bit integers in float32, exact below 2**24.
"""
from collections import OrderedDict
import os
import pickle

import numpy as np

import mxnet as mx
from mxnet import gluon
from mxnet.kvstore import KVStoreBase

DIST_KVSTORES = ('dist_sync', 'dist_device_sync')

# Integer key ranges on the servers (ps-lite refuses mixing string and integer keys).
_VIEW_SPAN = 1 << 20          # keys per Trainer view
_GROUP_BASE = 1 << 29         # allreduce's groups, after the trainers' views (at most 511)
_GROUP_SPAN = 1 << 10         # arrays per allreduce group
_GATHER_KEY = 1 << 30         # all_gather_object: sizes, then payload chunks
_GATHER_CHUNK = 1 << 20       # float32 values per payload round (4 MB)
_GROUP_VIEWS = _GROUP_BASE // _VIEW_SPAN

_state = {'kv': None, 'views': 0, 'groups': {}, 'gather_init': False, 'hvd': None,
          'hvd_trainers': 0}


class DistributedError(RuntimeError):
    """A distributed run that cannot start or continue, with what to do."""


def is_dist_kvstore(name):
    """True for ``dist_sync`` and ``dist_device_sync`` (the synchronous modes we support)."""
    return isinstance(name, str) and name in DIST_KVSTORES


def kvstore(name='dist_sync'):
    """The process's distributed KVStore, created on the first call (all workers must call it:
    creation waits for every worker, server and the scheduler).

    Raises :class:`DistributedError` when the process was not started by a launcher (no
    ``DMLC_ROLE``), instead of MXNet's abort.
    """
    if not is_dist_kvstore(name):
        raise DistributedError('train.kvstore: expected one of {}, got {!r}'.format(
            ', '.join(DIST_KVSTORES), name))
    kv = _state['kv']
    if kv is not None:
        if kv.type != name:
            raise DistributedError('train.kvstore {}: this process already runs a {} KVStore'
                                   .format(name, kv.type))
        return kv
    if os.environ.get('DMLC_ROLE') != 'worker':
        raise DistributedError(
            'train.kvstore {} needs the processes of a distributed job: start the tool with '
            '"python -m gluon_distill.launch -n WORKERS -- <command>" (DMLC_ROLE is {!r})'.format(
                name, os.environ.get('DMLC_ROLE')))
    if os.environ.get('PORT'):
        # ps-lite reads PORT as this node's own port: a leftover value aborts or hangs the job
        raise DistributedError('the environment variable PORT={} is set: ps-lite would use it '
                               'as every node\'s port; unset it'.format(os.environ['PORT']))
    _state['kv'] = mx.kv.create(name)
    return _state['kv']


class KVStoreView(KVStoreBase):
    """The keys ``offset + k`` of a shared KVStore, seen as keys ``k``: what one Gluon
    ``Trainer`` uses (it numbers its parameters from 0). No server-side optimizer, so the
    Trainer sums gradients through it and updates locally (``update_on_kvstore=False``)."""

    def __init__(self, kv, offset, span=_VIEW_SPAN):
        self._kv = kv
        self._offset = int(offset)
        self._span = int(span)

    def _key(self, key):
        if isinstance(key, (list, tuple)):
            return [self._key(k) for k in key]
        if not isinstance(key, (int, np.integer)):
            raise TypeError('KVStoreView keys are integers, got {!r}'.format(key))
        if not 0 <= key < self._span:
            raise ValueError('KVStoreView key {} outside [0, {})'.format(key, self._span))
        return self._offset + int(key)

    def init(self, key, value):
        self._kv.init(self._key(key), value)

    def push(self, key, value, priority=0):
        self._kv.push(self._key(key), value, priority)

    def pull(self, key, out=None, priority=0, ignore_sparse=True):
        self._kv.pull(self._key(key), out=out, priority=priority, ignore_sparse=ignore_sparse)

    def broadcast(self, key, value, out, priority=0):
        self._kv.broadcast(self._key(key), value, out, priority)

    def pushpull(self, key, value, out=None, priority=0):
        self._kv.pushpull(self._key(key), value, out=out, priority=priority)

    def row_sparse_pull(self, key, out=None, priority=0, row_ids=None):
        self._kv.row_sparse_pull(self._key(key), out=out, priority=priority, row_ids=row_ids)

    def set_gradient_compression(self, compression_params):
        self._kv.set_gradient_compression(compression_params)

    def is_capable(self, capability):
        return capability.lower() != KVStoreBase.OPTIMIZER and self._kv.is_capable(capability)

    def set_optimizer(self, optimizer):
        raise DistributedError('a KVStoreView does not run optimizers on the servers: create '
                               'the Trainer with update_on_kvstore=False (or None)')

    def save_optimizer_states(self, fname, dump_optimizer=False):
        raise DistributedError('no optimizer runs on the servers: use Trainer.save_states')

    def load_optimizer_states(self, fname):
        raise DistributedError('no optimizer runs on the servers: use Trainer.load_states')

    @property
    def type(self):
        return self._kv.type

    @property
    def rank(self):
        return self._kv.rank

    @property
    def num_workers(self):
        return self._kv.num_workers


def setup(kvstore_name='device', horovod=False):
    """Join the distributed job a training run's config asks for (``train.kvstore``
    ``dist_sync``/``dist_device_sync``, or ``train.horovod``) and return ``(rank,
    num_workers)``; ``(0, 1)`` for any other KVStore name."""
    if horovod:
        if is_dist_kvstore(kvstore_name):
            raise DistributedError('--horovod and train.kvstore {}: choose one (Horovod uses '
                                   'no KVStore)'.format(kvstore_name))
        use_horovod()
    elif is_dist_kvstore(kvstore_name):
        kvstore(kvstore_name)
    return world()


def is_distributed():
    """True in a worker of a distributed job (KVStore or Horovod), even a one-worker one."""
    return _state['kv'] is not None or _state['hvd'] is not None


class _StaleUpdates:
    """With ``_stale_updates`` every parameter is updated at every step, also one whose
    gradient this step did not compute (then with the averaged old gradient buffers): what a
    one-process multi-device Trainer that updates on its KVStore (``update_on_kvstore`` not
    False, the default) does, e.g. to FGFI's adaptation layers during its warm-up."""
    _stale_updates = False

    def _allreduce_grads(self):
        super(_StaleUpdates, self)._allreduce_grads()
        if self._stale_updates:
            for param in self._params:
                if param.grad_req != 'null':
                    for data in param.list_data():
                        data._fresh_grad = True


class _WorkerTrainer(_StaleUpdates, gluon.Trainer):
    """A Trainer on a :class:`KVStoreView`, updating on the worker (see :class:`_StaleUpdates`)."""


def distributed_trainer(params, optimizer, optimizer_params, update_on_kvstore=None):
    """The Gluon Trainer of a worker of a distributed job: gradients **averaged** over
    workers (a Horovod ``DistributedTrainer``, or a Trainer on a fresh :func:`trainer_kvstore`
    view with its gradient scale divided by the number of workers, which is what Horovod does
    too), the update applied on every worker. ``update_on_kvstore``: what the one-process
    Trainer would be given (not False: stale parameters are updated as its KVStore would).

    Every worker must create its trainers in the same order.
    """
    if _state['hvd'] is not None:
        # Horovod sorts a parameter list (Parameters do not compare) and names every tensor
        # by its index: keys that sort in structural order, and one name prefix per trainer
        number = _state['hvd_trainers']
        _state['hvd_trainers'] += 1
        indexed = OrderedDict(('{:05d}'.format(i), p) for i, p in enumerate(params))
        horovod_trainer = type('_HorovodTrainer',
                               (_StaleUpdates, _state['hvd'].DistributedTrainer), {})
        trainer = horovod_trainer(indexed, optimizer, optimizer_params,
                                  prefix='trainer{}.'.format(number))
        trainer._stale_updates = update_on_kvstore is not False
        return trainer
    kv = _state['kv']
    trainer = _WorkerTrainer(params, optimizer, optimizer_params,
                             kvstore=trainer_kvstore(kv.type), update_on_kvstore=False)
    trainer._stale_updates = update_on_kvstore is not False
    trainer._scale /= kv.num_workers  # the servers sum: average like Horovod
    return trainer


def broadcast_trainer_parameters(trainers):
    """Under Horovod, rank 0's values of every parameter of ``trainers`` on every worker
    (a KVStore trainer takes them from the servers when it initialises)."""
    if _state['hvd'] is None:
        return
    for k, trainer in enumerate(trainers):
        _state['hvd'].broadcast_parameters(
            OrderedDict(('trainer{}.{:05d}'.format(k, i), p)
                        for i, p in enumerate(trainer._params)), root_rank=0)


def trainer_kvstore(name='dist_sync'):
    """A fresh :class:`KVStoreView` of :func:`kvstore` for one ``gluon.Trainer``
    (``Trainer(params, ..., kvstore=trainer_kvstore(name), update_on_kvstore=False)``).

    Every worker must create its trainers in the same order: the n-th view of every worker
    addresses the same keys.
    """
    kv = kvstore(name)
    _state['views'] += 1
    if _state['views'] >= _GROUP_VIEWS:
        raise DistributedError('more than {} trainers in one process'.format(_GROUP_VIEWS - 1))
    return KVStoreView(kv, _state['views'] * _VIEW_SPAN)


def use_horovod():
    """Initialise Horovod (``horovod.mxnet``) for this process and return the module."""
    if _state['hvd'] is None:
        try:
            import horovod.mxnet as hvd
        except ImportError as e:
            raise DistributedError(
                '--horovod: horovod.mxnet cannot be imported ({}). Install the optional extra '
                'as docs/multi-machine.md (Horovod) says (HOROVOD_WITH_MXNET=1 pip '
                'install --no-build-isolation horovod==0.28.1), or use train.kvstore: '
                'dist_sync with python -m gluon_distill.launch'.format(e))
        hvd.init()
        _state['hvd'] = hvd
    return _state['hvd']


def world():
    """``(rank, num_workers)`` of this process: from Horovod when :func:`use_horovod` was
    called, from the distributed KVStore once :func:`kvstore` created it, else ``(0, 1)``."""
    if _state['hvd'] is not None:
        return _state['hvd'].rank(), _state['hvd'].size()
    if _state['kv'] is not None:
        return _state['kv'].rank, _state['kv'].num_workers
    return 0, 1


def launched_workers():
    """The number of workers the launcher started (``DMLC_NUM_WORKER``), readable before the
    KVStore exists (to check a batch size early); 1 outside a launched job."""
    if os.environ.get('DMLC_ROLE') != 'worker':
        return 1
    try:
        return max(1, int(os.environ.get('DMLC_NUM_WORKER', '1')))
    except ValueError:
        raise DistributedError('DMLC_NUM_WORKER={!r} is not an integer'.format(
            os.environ.get('DMLC_NUM_WORKER')))


def is_writer():
    """True for the one process that writes logs, plots, checkpoints and ``model.json``."""
    return world()[0] == 0


# ------------------------------------------------------------------ exchanging between workers

def _gather_kv():
    kv = _state['kv']
    if kv is None:
        raise DistributedError('no distributed KVStore in this process: call kvstore() first')
    if not _state['gather_init']:
        # init waits for every worker: all of them reach their first gather together
        kv.init(_GATHER_KEY, mx.nd.zeros((2 * kv.num_workers,)))
        kv.init(_GATHER_KEY + 1, mx.nd.zeros((_GATHER_CHUNK,)))
        _state['gather_init'] = True
    return kv


def _pushpull(kv, key, values):
    out = mx.nd.zeros(values.shape)
    kv.pushpull(key, mx.nd.array(values), out=out)
    return out.asnumpy()


def _kv_all_gather_bytes(data):
    kv = _gather_kv()
    rank, size = kv.rank, kv.num_workers
    words = np.frombuffer(data + b'\0' * (len(data) % 2), dtype=np.uint16)
    mine = np.zeros(2 * size, np.float32)
    mine[2 * rank:2 * rank + 2] = len(data) & 0xFFFF, len(data) >> 16
    low_high = _pushpull(kv, _GATHER_KEY, mine).round().astype(np.int64).reshape(size, 2)
    lengths = low_high[:, 0] + (low_high[:, 1] << 16)
    nwords = (lengths + 1) // 2
    starts = np.concatenate([[0], np.cumsum(nwords)])
    total = int(starts[-1])
    payload = np.zeros(total, np.float32)
    payload[starts[rank]:starts[rank] + len(words)] = words
    gathered = np.empty(total, np.float32)
    for begin in range(0, max(total, 1), _GATHER_CHUNK):
        chunk = np.zeros(_GATHER_CHUNK, np.float32)
        part = payload[begin:begin + _GATHER_CHUNK]
        chunk[:len(part)] = part
        gathered[begin:begin + len(part)] = _pushpull(kv, _GATHER_KEY + 1, chunk)[:len(part)]
    as_bytes = gathered.round().astype(np.uint16).tobytes()
    return [as_bytes[2 * starts[r]:2 * starts[r] + lengths[r]] for r in range(size)]


def all_gather_object(obj):
    """Every worker's ``obj`` (picklable), as a list indexed by rank, on every worker.

    Every worker must call it at the same point. Outside a distributed run: ``[obj]``.
    """
    if _state['hvd'] is not None:
        gather = getattr(_state['hvd'], 'allgather_object', None)
        if gather is None:
            raise DistributedError('this Horovod has no horovod.mxnet.allgather_object: use '
                                   'horovod>=0.22')
        return list(gather(obj))
    if _state['kv'] is None:
        return [obj]
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return [pickle.loads(b) for b in _kv_all_gather_bytes(data)]


def broadcast_object(obj, root=0):
    """Rank ``root``'s ``obj`` on every worker (e.g. the checkpoint bytes of a resumed run
    when only rank 0 can read the file)."""
    rank, _ = world()
    if _state['hvd'] is not None:
        return _state['hvd'].broadcast_object(obj, root_rank=root)
    return all_gather_object(obj if rank == root else None)[root]


def allreduce(arrays, average=False, group='default'):
    """Set every NDArray of ``arrays`` to its sum (or mean) over workers, in place.

    ``group`` names a fixed list of arrays (e.g. ``'bn_stats'``, ``'num_positives'``): each
    group has its own keys on the servers, created at its first call; every worker must make
    the same calls, with the same shapes, in the same order. Outside a distributed run the
    arrays are left as they are.
    """
    arrays = list(arrays)
    if _state['hvd'] is not None:
        hvd = _state['hvd']
        for i, a in enumerate(arrays):
            hvd.allreduce_(a, average=average, name='gluon_distill.{}.{}.{}'.format(
                group, i, 'x'.join(str(d) for d in a.shape)))
        return arrays
    kv = _state['kv']
    if kv is None or kv.num_workers == 1:
        return arrays
    # one set of keys per group and shapes: a group whose arrays change size (the logged
    # values of a step whose distillers switch on) gets keys per size
    name = (group,) + tuple(tuple(a.shape) for a in arrays)
    groups = _state['groups']
    if name not in groups:
        if _GROUP_BASE + (len(groups) + 1) * _GROUP_SPAN > _GATHER_KEY:
            raise DistributedError('too many allreduce groups')
        if len(arrays) > _GROUP_SPAN:
            raise DistributedError('allreduce group {!r}: more than {} arrays'.format(
                group, _GROUP_SPAN))
        view = KVStoreView(kv, _GROUP_BASE + len(groups) * _GROUP_SPAN, _GROUP_SPAN)
        for i, a in enumerate(arrays):
            view.init(i, mx.nd.zeros(a.shape, dtype=a.dtype))
        groups[name] = view
    view = groups[name]
    for i, a in enumerate(arrays):
        view.pushpull(i, a, out=a)
        if average:
            a /= kv.num_workers
    return arrays


def worker_mean(array, group):
    """``array`` (an NDArray) set to its mean over workers, in place, and returned; unchanged
    outside a distributed run. No host wait (the exchange is queued like any operator).

    The hook a detector family's loss calls for every batch-wide count it normalises by (SSD:
    the number of positives): the trainers *average* gradients over workers, so each worker
    normalises its loss as if its batch were the whole batch, by the mean count per worker.
    ``group`` names the call site (its keys on the servers)."""
    allreduce([array], average=True, group=group)
    return array


def worker_mean_value(value, group):
    """A host float's mean over workers (waits for every worker); ``value`` outside a
    distributed run."""
    if world()[1] == 1:
        return value
    arr = mx.nd.array([value], dtype='float32')
    allreduce([arr], average=True, group=group)
    return float(arr.asnumpy()[0])


def barrier():
    """Wait until every worker reaches this call."""
    if world()[1] > 1:
        all_gather_object(None)


def average_worker_statistics(block):
    """Epoch end, after the device averaging of :mod:`~gluon_distill.engine.bn_sync`: every
    non-trainable parameter (BatchNorm running statistics) of ``block`` set to its mean over
    workers on every device, so all workers validate and save the same numbers. Returns the
    number of parameters averaged."""
    params = [p for p in block.collect_params().values()
              if p.grad_req == 'null' and p._data is not None]
    if world()[1] == 1 or not params:
        return 0
    mx.nd.waitall()
    homes = [p.list_data()[0].copy() for p in params]
    allreduce(homes, average=True, group='statistics')
    for p, mean in zip(params, homes):
        for copy in p.list_data():
            mean.copyto(copy)
    return len(params)


def evaluate_sharded(family, net, dataset, inputs, ctx, eval_cfg, classes, evaluator=None,
                     num_workers=0):
    """:meth:`DetectorFamily.evaluate <gluon_distill.families.base.DetectorFamily.evaluate>`
    with each worker predicting its :func:`~gluon_distill.data.loader.val_shard` of
    ``dataset``: the predictions are gathered and fed to ``evaluator`` (default VOC07 at
    ``eval_cfg.iou_thresh``) in dataset order on every worker, so every worker gets the result
    one process gets on the whole set. Returns ``(result, evaluator)``."""
    from ..data.loader import val_shard
    from ..data.voc import DetectionDataset
    from ..evaluation.inference import score_predictions

    rank, size = world()
    shard = val_shard(len(dataset), rank, size)
    subset = DetectionDataset([dataset.record(int(i)) for i in shard], classes)
    mine = [(int(shard[j]), boxes, labels, scores) for j, (_, boxes, labels, scores) in
            enumerate(family.predictions(net, subset, inputs, ctx, eval_cfg, num_workers))]
    predictions = sorted((p for part in all_gather_object(mine) for p in part),
                         key=lambda p: p[0])
    if [p[0] for p in predictions] != list(range(len(dataset))):
        raise DistributedError('validation gather: got {} predictions for {} images'.format(
            len(predictions), len(dataset)))
    return score_predictions(((dataset.record(index), boxes, labels, scores)
                              for index, boxes, labels, scores in predictions),
                             classes, eval_cfg.iou_thresh, evaluator)
