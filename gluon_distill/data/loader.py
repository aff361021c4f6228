"""Training and validation loaders with reproducible augmentation.

MXNet's random generator state cannot be read back, and DataLoader workers are forked with
copies of the parent's NumPy state. So the augmentation of a sample is seeded from
``(seed, epoch, index)``: the sampler encodes the epoch into the indices it yields, and the
dataset wrapper decodes it and seeds NumPy and ``random`` before transforming. Any number of
workers, and a run resumed at an epoch boundary, see exactly the same batches.

Every loader of the package is a :class:`DataLoader`: MXNet's, whose worker processes exit
quietly when the process that started them is gone (killed with SIGKILL, say) instead of
printing a ``BrokenPipeError`` traceback for the batch they can no longer hand over.
"""
from collections import namedtuple
import multiprocessing.pool
import os
import random
import signal
import sys
import time

import numpy as np

import mxnet as mx
from mxnet import gluon
from gluoncv.data.batchify import Tuple, Stack
from gluoncv.data.transforms.presets.ssd import SSDDefaultTrainTransform, SSDDefaultValTransform

from .images import read_image


#: how long a loader worker whose pipe or socket to its parent broke waits to see the parent
#: gone (a dying process closes its files before its children are handed to another parent)
PARENT_EXIT_WAIT = 5.0


def _parent_gone(parent, error_type=None):
    """Whether the process ``parent`` that started this one is gone (this one was handed to
    another parent). After a broken connection (``error_type`` an OSError or EOFError) wait
    up to :data:`PARENT_EXIT_WAIT` seconds for it to finish exiting."""
    wait = PARENT_EXIT_WAIT if error_type is not None and issubclass(
        error_type, (OSError, EOFError)) else 0.0
    deadline = time.monotonic() + wait
    while os.getppid() == parent:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def _orphan_quiet_worker(parent, target, *args):
    """A loader worker process's life, ``target(*args)`` (multiprocessing's pool worker loop),
    ending quietly when the process ``parent`` that started it is gone: an idle worker then
    reads the end of its task queue and returns by itself, a busy one fails to hand over its
    batch (a broken pipe), which here ends it with status 0 and nothing printed. Errors while
    the parent lives are raised (and printed) as before."""
    hook = sys.excepthook

    def excepthook(kind, value, tb):
        # multiprocessing's helper thread that hands shared-memory batches to the parent
        # reports its errors here
        if not _parent_gone(parent, kind):
            hook(kind, value, tb)
    sys.excepthook = excepthook
    try:
        target(*args)
    except BaseException as e:
        if _parent_gone(parent, type(e)):
            os._exit(0)
        raise


class _WorkerPool(multiprocessing.pool.Pool):
    """A process pool whose workers run :func:`_orphan_quiet_worker`."""

    @staticmethod
    def Process(ctx, *args, **kwds):
        kwds['args'] = (os.getpid(), kwds['target']) + tuple(kwds.get('args', ()))
        kwds['target'] = _orphan_quiet_worker
        return ctx.Process(*args, **kwds)


class DataLoader(gluon.data.DataLoader):
    """MXNet's ``gluon.data.DataLoader`` (same arguments, same batches) whose worker processes
    (``num_workers > 0``, not ``thread_pool``) exit quietly once the process that started
    them is gone: after a SIGKILL of a training run they print no ``BrokenPipeError``
    tracebacks over the console or log they share with it."""

    def __init__(self, dataset, batch_size=None, shuffle=False, sampler=None, last_batch=None,
                 batch_sampler=None, batchify_fn=None, num_workers=0, pin_memory=False,
                 pin_device_id=0, prefetch=None, thread_pool=False, timeout=120,
                 auto_reload=False):
        processes = num_workers > 0 and not thread_pool
        # MXNet's constructor without workers, then its pool of workers built here (as MXNet
        # 1.9.1 builds it: the dataset handed to each worker, SIGINT ignored while forking)
        super().__init__(dataset, batch_size, shuffle, sampler, last_batch, batch_sampler,
                         batchify_fn, 0 if processes else num_workers, pin_memory,
                         pin_device_id, prefetch, thread_pool, timeout, auto_reload=False)
        if processes:
            from mxnet.gluon.data import dataloader as mx_loader
            from mxnet.util import is_np_array, is_np_shape
            self._num_workers = num_workers
            self._prefetch = max(0, int(prefetch) if prefetch is not None else 2 * num_workers)
            if batchify_fn is None:
                self._batchify_fn = mx_loader.default_mp_batchify_fn
            sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                self._worker_pool = _WorkerPool(
                    num_workers, initializer=mx_loader._worker_initializer,
                    initargs=[dataset, is_np_shape(), is_np_array()])
            finally:
                signal.signal(signal.SIGINT, sigint)
        self.auto_reload = auto_reload
        if auto_reload:
            self.refresh()


def sample_seed(seed, epoch, index):
    """A 32-bit seed unique to (run seed, epoch, sample index)."""
    return (seed * 1000003 + epoch * 7919 * 100003 + index) % (2 ** 32)


def epoch_order(length, seed, epoch, shuffle=True):
    """The order of ``range(length)`` one epoch reads: a permutation seeded by (seed, epoch)
    (every worker of a distributed job draws the same one and reads its slice of it)."""
    order = np.arange(length)
    if shuffle:
        np.random.RandomState(sample_seed(seed, epoch, 0)).shuffle(order)
    return order


class EpochSampler(gluon.data.Sampler):
    """Shuffles ``length`` indices with a generator seeded by (seed, epoch); yields
    ``epoch * length + index`` so that the dataset can recover the epoch."""

    def __init__(self, length, seed=0, shuffle=True):
        self._length = length
        self._seed = seed
        self._shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        order = epoch_order(self._length, self._seed, self.epoch, self._shuffle)
        return iter((self.epoch * self._length + order).tolist())

    def __len__(self):
        return self._length


def shard_indices(n, rank, world, seed, epoch, batch_size=None, shuffle=True):
    """The training images of worker ``rank`` for ``epoch``, in the order it reads them.

    All workers draw the same permutation of ``range(n)``, seeded by ``(seed, epoch)`` as a
    one-process run does (``world == 1`` gives exactly its order). The permutation is cut into
    global batches of ``batch_size`` (default: ``world``, one image per worker); the incomplete
    last global batch is **dropped**, as the one-process loader drops it, so every worker reads
    the same number of images, no image twice, and worker ``r``'s ``k``-th local batch is the
    ``r``-th slice of the one-process run's ``k``-th batch: 2 workers with one device each
    compute what one process with two devices computes. Dropped images change with the epoch.

    Parameters
    ----------
    n : int
        Number of training images.
    rank, world : int
        This worker, and the number of workers.
    seed, epoch : int
        The run's seed and the epoch (the order changes every epoch).
    batch_size : int or None
        The global batch size, a multiple of ``world``.

    Returns
    -------
    numpy.ndarray of int64
        ``(n // batch_size) * batch_size // world`` indices.
    """
    if world < 1 or not 0 <= rank < world:
        raise ValueError('rank {} is not in [0, {})'.format(rank, world))
    batch_size = world if batch_size is None else int(batch_size)
    if batch_size < world or batch_size % world:
        raise ValueError('the global batch size {} does not split evenly over {} workers'
                         .format(batch_size, world))
    order = epoch_order(n, seed, epoch, shuffle)
    num_batches = n // batch_size
    local = batch_size // world
    blocks = order[:num_batches * batch_size].reshape(num_batches, world, local)
    return blocks[:, rank, :].reshape(-1).astype(np.int64)


class ShardSampler(gluon.data.Sampler):
    """:class:`EpochSampler` for one worker: yields
    ``epoch * length + index`` for the indices of :func:`shard_indices`, so the per-sample
    augmentation seed (seed, epoch, index) does not depend on which worker reads an image.
    Batch it with the local batch size ``batch_size // world`` (``last_batch='discard'``
    never drops anything: the shard is a whole number of local batches)."""

    def __init__(self, length, rank, world, batch_size, seed=0, shuffle=True):
        self._length = length
        self._rank, self._world = rank, world
        self._batch_size = batch_size
        self._seed = seed
        self._shuffle = shuffle
        self.epoch = 0
        shard_indices(length, rank, world, seed, 0, batch_size, shuffle)  # validate early

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        indices = shard_indices(self._length, self._rank, self._world, self._seed, self.epoch,
                                self._batch_size, self._shuffle)
        return iter((self.epoch * self._length + indices).tolist())

    def __len__(self):
        return self._length // self._batch_size * (self._batch_size // self._world)


def val_shard(n, rank, world):
    """The validation images of worker ``rank``: contiguous, in dataset order, every image in
    exactly one shard (shards differ in length by at most one; nothing is padded, so no image
    is counted twice)."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError('rank {} is not in [0, {})'.format(rank, world))
    return np.array_split(np.arange(n, dtype=np.int64), world)[rank]


def train_batch_sampler(length, batch_size, seed=0, shuffle=True, world=(0, 1)):
    """``(sampler, batch_sampler)`` of a training loader whose global batch is
    ``batch_size``: the :class:`EpochSampler` in batches of ``batch_size``, or for worker
    ``rank`` of a distributed job of ``workers`` processes (``world=(rank, workers)``, as
    :func:`~gluon_distill.engine.distributed.world` gives it) its :class:`ShardSampler` in
    local batches of ``batch_size // workers`` (every image once per epoch over all workers,
    the same per-sample augmentation seeds as one process). Incomplete last batches are
    dropped. ``sampler.set_epoch(e)`` before each epoch. Every family's training loader should
    draw its batches from here."""
    rank, workers = world
    if workers == 1:
        sampler = EpochSampler(length, seed, shuffle)
        return sampler, gluon.data.BatchSampler(sampler, batch_size, 'discard')
    sampler = ShardSampler(length, rank, workers, batch_size, seed, shuffle)
    return sampler, gluon.data.BatchSampler(sampler, batch_size // workers, 'discard')


class SeededTransformDataset(gluon.data.Dataset):
    """Applies ``transform(img, label)`` to ``dataset[index]`` with per-sample seeding."""

    def __init__(self, dataset, transform, seed=0):
        self._dataset = dataset
        self._transform = transform
        self._seed = seed

    def __len__(self):
        return len(self._dataset)

    def __getitem__(self, key):
        epoch, index = divmod(int(key), len(self._dataset))
        s = sample_seed(self._seed, epoch, index)
        np.random.seed(s)
        random.seed(s)
        img, label = self._dataset[index]
        return self._transform(img, label)


class NumpyImages(gluon.data.Dataset):
    """``(img uint8 (H, W, 3) RGB numpy, label)`` of a DetectionDataset, decoded by
    :func:`~gluon_distill.data.images.read_image` like every other consumer (stored pixels;
    grayscale and CMYK converted to 3 channels)."""

    def __init__(self, dataset):
        self._dataset = dataset

    def __len__(self):
        return len(self._dataset)

    def __getitem__(self, index):
        record = self._dataset.record(index)
        return read_image(record.image_path), record.label_array()


class StackUInt8:
    """Batchify images keeping their uint8 dtype (GluonCV's Stack converts to float32)."""

    def __call__(self, data):
        out = np.stack(data)
        return mx.nd.array(out, ctx=mx.Context('cpu_shared', 0), dtype=out.dtype)


class StackNormalized:
    """Batchify uint8 HWC images into normalised float32 ``(B, 3, S, S)``, in NumPy.

    For CPU devices: MXNet's cast + transpose + broadcast ops cost about 8x what these three
    per-channel NumPy passes cost here (150 vs 20 ms for 8 images at 512 px on 2 cores), and
    there is no host-to-device copy to save by shipping uint8.
    """

    def __init__(self, mean, std):
        self.mean = np.array(mean, np.float32) * 255
        self.inv_std = 1.0 / (np.array(std, np.float32) * 255)

    def __call__(self, data):
        first = data[0]
        out = np.empty((len(data), 3) + first.shape[:2], np.float32)
        for i, img in enumerate(data):
            for c in range(3):
                np.subtract(img[:, :, c], self.mean[c], out=out[i, c], dtype=np.float32)
        out *= self.inv_std.reshape((1, 3, 1, 1))
        return mx.nd.array(out, ctx=mx.Context('cpu_shared', 0), dtype=out.dtype)


class DevicePrepare:
    """Turns a loader batch ``(images, cls_targets, box_targets)`` into per-device lists.

    With a ``normalizer`` the images arrive as uint8 ``(B, S, S, 3)`` and are normalised on
    each device (4x less to copy than float32); without, they are already normalised.
    """

    def __init__(self, ctx_list, normalizer=None):
        self.ctx_list = list(ctx_list)
        self.normalizer = normalizer

    def __call__(self, batch):
        images, cls_targets, box_targets = split_batch(batch, self.ctx_list)
        if self.normalizer is not None:
            images = [self.normalizer(x) for x in images]
        return images, cls_targets, box_targets


DeviceBatch = namedtuple('DeviceBatch', ['images', 'inputs', 'targets'])
DeviceBatch.__doc__ = """One training batch split over the devices.

``images``: per device, ``(B_d, 3, H, W)``. ``inputs``: a tuple of per-device lists the
training forward takes after the images (SSD: none; a two-stage detector: its ground-truth
boxes). ``targets``: a tuple of per-device lists the family's loss takes (SSD:
``cls_targets (B_d, N)``, ``box_targets (B_d, N, 4)``)."""


def as_device_batch(prepared):
    """A loader's prepared batch as a :class:`DeviceBatch`; a plain tuple ``(images, *targets)``
    (the SSD loaders' form) has no forward inputs."""
    if isinstance(prepared, DeviceBatch):
        return prepared
    return DeviceBatch(prepared[0], (), tuple(prepared[1:]))


PIPELINES = ('fast', 'gluoncv')


class TrainLoader:
    """Training batches for one epoch at a time, and how to put them on the devices.

    ``pipeline='fast'`` (the config's default): uint8 NumPy/OpenCV augmentation and NumPy SSD
    targets in the workers (:mod:`gluon_distill.data.augment`); normalisation on the devices
    for GPUs (uint8 is copied), in NumPy while batching for CPU devices.
    ``pipeline='gluoncv'``: GluonCV's SSDDefaultTrainTransform with targets per image in the
    workers (this class's default). Same augmentation policy; ``bench/loader.py`` compares
    them. ``prepare(batch)`` gives per-device ``images (B, 3, S, S)``, ``cls_targets (B, N)``
    (0 = background), ``box_targets (B, N, 4)``. Incomplete last batches are dropped so every
    device gets an equal shard every step. ``batch_size`` is the global batch: in a
    distributed job (``world=(rank, workers)``) each worker reads its shard in batches of
    ``batch_size // workers`` (:func:`train_batch_sampler`).
    """

    def __init__(self, dataset, data_shape, anchors, batch_size, mean, std, ctx_list=None,
                 seed=0, num_workers=0, pipeline='gluoncv', world=(0, 1)):
        if pipeline not in PIPELINES:
            raise ValueError('data.pipeline: expected one of {}, got {!r}'.format(PIPELINES,
                                                                              pipeline))
        if len(dataset) < batch_size:
            raise ValueError('the training set has {} images, fewer than one batch of {}'.format(
                len(dataset), batch_size))
        ctx_list = ctx_list or [mx.cpu()]
        if pipeline == 'fast':
            from .augment import Normalizer
            from .ssd_targets import SSDTrainTransform
            source = NumpyImages(dataset)
            transform = SSDTrainTransform(data_shape, anchors, mean)
            if all(c.device_type == 'cpu' for c in ctx_list):
                # CPU devices: normalise in NumPy while batching (in the workers)
                batchify = Tuple(StackNormalized(mean, std), Stack(), Stack())
                self.prepare = DevicePrepare(ctx_list)
            else:
                # GPUs: ship uint8 (4x less to copy), normalise on each device
                batchify = Tuple(StackUInt8(), Stack(), Stack())
                self.prepare = DevicePrepare(ctx_list, Normalizer(mean, std))
        else:
            source = dataset
            transform = SSDDefaultTrainTransform(data_shape, data_shape, anchors,
                                                 mean=tuple(mean), std=tuple(std))
            batchify = Tuple(Stack(), Stack(), Stack())
            self.prepare = DevicePrepare(ctx_list)
        self.sampler, batch_sampler = train_batch_sampler(len(dataset), batch_size, seed,
                                                          world=world)
        self.loader = DataLoader(
            SeededTransformDataset(source, transform, seed), batch_sampler=batch_sampler,
            batchify_fn=batchify, num_workers=num_workers)

    def epoch(self, epoch):
        """An iterator over the batches of ``epoch``."""
        self.sampler.set_epoch(epoch)
        return iter(self.loader)

    def __len__(self):
        return len(self.loader)


class IndexedValDataset(gluon.data.Dataset):
    """``(transformed image, index)`` per image of a detection dataset (validation order)."""

    def __init__(self, dataset, transform):
        self._dataset = dataset
        self._transform = transform

    def __len__(self):
        return len(self._dataset)

    def __getitem__(self, index):
        img, label = self._dataset[index]
        img, _ = self._transform(img, label)
        return img, np.int64(index)


def val_loader(dataset, data_shape, batch_size, mean, std, num_workers=0):
    """Batches of ``(images (B, 3, S, S), indices (B,))`` in dataset order, all images kept;
    the records of ``dataset`` give sizes and ground truth."""
    transform = SSDDefaultValTransform(data_shape, data_shape, mean=tuple(mean), std=tuple(std))
    return DataLoader(IndexedValDataset(dataset, transform), batch_size, shuffle=False,
                      last_batch='keep', batchify_fn=Tuple(Stack(), Stack()),
                      num_workers=num_workers)


def split_batch(batch, ctx_list):
    """Each array of a batch split evenly over the devices (``split_and_load``)."""
    return [gluon.utils.split_and_load(x, ctx_list, batch_axis=0, even_split=False)
            for x in batch]
