"""Batching detection samples and the data loader.

``batchify_detection`` turns a list of samples (tuples of fields) into one batch per field: fields of
equal shape are stacked; fields whose length along the first axis varies (labels, ...) are padded with
-1 to the longest in the batch. GluonCV's ``gluoncv.data.batchify`` spelling of the same job is here too:
:class:`Tuple` of :class:`Stack` and :class:`Pad` (``Tuple(Stack(), Pad(pad_val=-1))`` is GluonCV's validation
batchify), with GluonCV's signatures, dtypes and shared-memory NDArrays.

``make_loader`` wraps ``mx.gluon.data.DataLoader`` with worker processes, a seeded shuffle and per-worker
random seeds. Where MXNet is not installed (the machines of ``--backend torch``) batches are numpy arrays and
the loader is PyTorch's DataLoader over the same samplers and worker seeding.
"""
from __future__ import annotations

import functools
import logging
import multiprocessing
import random
from collections.abc import Callable, Sequence

import numpy as np

from .._mxnet import Dataset, is_ndarray, mx

__all__ = ["batchify_detection", "make_loader", "SeededRandomSampler", "Stack", "Pad", "Tuple"]

logger = logging.getLogger(__name__)

_LAST_BATCH = ("keep", "discard", "rollover")


def _out(array: np.ndarray, ctx):
    return array if ctx is None else mx.nd.array(array, ctx=ctx, dtype=array.dtype)


def _stack_field(values: list, k: int, pad_value: float, ctx):
    """One field of the batch: an NDArray on ``ctx``, or numpy where ``ctx`` is None."""
    if ctx is not None and all(isinstance(v, mx.nd.NDArray) for v in values):
        shapes = {v.shape for v in values}
        if len(shapes) == 1 and values[0].shape[:1] != (0,):
            out = mx.nd.empty((len(values),) + values[0].shape, dtype=values[0].dtype, ctx=ctx)
            return mx.nd.stack(*values, out=out)
    arrays = [v.asnumpy() if is_ndarray(v) else np.asarray(v) for v in values]
    shapes = [a.shape for a in arrays]
    if arrays[0].ndim == 0 or (len(set(shapes)) == 1 and shapes[0][0] > 0):
        if len(set(shapes)) != 1:
            raise ValueError(f"field {k} mixes scalars and arrays of shapes {sorted(set(shapes))}")
        return _out(np.stack(arrays), ctx)
    trailing = {s[1:] for s in shapes}
    if len(trailing) != 1 or any(a.ndim == 0 for a in arrays):
        raise ValueError(
            f"field {k} of the samples has shapes {shapes}: only the first axis may differ between samples "
            "(resize images to one size in a transform before batching)"
        )
    lengths = np.array([s[0] for s in shapes], dtype=np.int64)
    width = max(1, int(lengths.max()))
    dtype = np.result_type(*arrays)
    out = np.full((len(arrays), width) + shapes[0][1:], pad_value, dtype=dtype)
    rows = np.concatenate(arrays, axis=0)
    if len(rows):
        sample = np.repeat(np.arange(len(arrays)), lengths)
        slot = np.arange(len(rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        out[sample, slot] = rows
    return _out(out, ctx)


def batchify_detection(samples: Sequence, pad_value: float = -1.0, shared_memory: bool = False,
                       numpy: bool = False):
    """Collate detection samples into a batch.

    Parameters
    ----------
    samples : sequence of tuples, length B
        Each sample is a tuple of fields, e.g. ``(image, label)`` or
        ``(image, cls_targets, box_targets)``; a field is an ``mx.nd.NDArray``, a numpy array or a
        scalar. A sample that is not a tuple or list is one field.
    pad_value : float
        Fill of padded rows.
    shared_memory : bool
        Allocate the batch in shared CPU memory (what worker processes should return).
    numpy : bool
        Numpy arrays instead of NDArrays (always, where MXNet is not installed).

    Returns
    -------
    tuple of mx.nd.NDArray (or numpy arrays), or one array for one-field samples
        Per field, (B, ...) stacked when every sample has the same shape. A field whose first axis
        varies between samples (or is 0 somewhere, as the (0, 6) label of an image without objects) is
        padded with ``pad_value`` to (B, M, ...), M = max(1, longest): labels (N_i, 6) become (B, M, 6)
        with -1 rows after each image's objects. dtypes are kept.

    Raises
    ------
    ValueError
        Empty ``samples``, samples with different numbers of fields, or a field whose shapes differ
        beyond the first axis (e.g. images of different sizes).
    """
    if len(samples) == 0:
        raise ValueError("cannot batchify an empty list of samples")
    single = not isinstance(samples[0], (tuple, list))
    if single:
        samples = [(s,) for s in samples]
    n_fields = {len(s) for s in samples}
    if len(n_fields) != 1:
        raise ValueError(f"samples have different numbers of fields: {sorted(n_fields)}")
    if numpy or mx is None:
        ctx = None
    else:
        ctx = mx.Context("cpu_shared", 0) if shared_memory else mx.cpu()
    fields = tuple(
        _stack_field([s[k] for s in samples], k, pad_value, ctx) for k in range(n_fields.pop())
    )
    return fields[0] if single else fields


def _shared(array: np.ndarray):
    """A batch in shared CPU memory as GluonCV's batchify makes it (numpy as it is without MXNet)."""
    return array if mx is None else _out(array, mx.Context("cpu_shared", 0))


def _numpy_fields(data) -> list[np.ndarray]:
    return [x.asnumpy() if is_ndarray(x) else np.asarray(x) for x in data]


class Stack:
    """GluonCV's ``batchify.Stack``: stack N samples of one shape into a (N, ...) batch.

    Called with a list of N samples (NDArrays, numpy arrays, lists or numbers) of one shape. Returns an
    ``mx.nd.NDArray`` (N, ...) in shared CPU memory (``cpu_shared(0)``, what worker processes hand back): the
    samples' dtype when they are all NDArrays, else float32 (as GluonCV, whose ``mx.nd.array`` makes float32 of
    numpy input, uint8 images included). Without MXNet the same values as a numpy array.

    Raises
    ------
    ValueError
        No samples, or samples of different shapes (the message lists them; :class:`Pad` batches those).
    """

    def __call__(self, data):
        if len(data) == 0:
            raise ValueError("Stack got no samples; give it a list of arrays of one shape")
        shapes = sorted({tuple(x.shape) if hasattr(x, "shape") else np.shape(x) for x in data})
        if len(shapes) != 1:
            raise ValueError(f"Stack needs samples of one shape, got shapes {shapes}; batch them with "
                             "Pad(axis=...) or resize them to one size first")
        if mx is not None and all(is_ndarray(x) for x in data):
            out = mx.nd.empty((len(data),) + data[0].shape, dtype=data[0].dtype, ctx=mx.Context("cpu_shared", 0))
            return mx.nd.stack(*data, out=out)
        return _shared(np.stack(_numpy_fields(data)).astype(np.float32, copy=False))

    def __repr__(self) -> str:
        return "Stack()"


class Pad:
    """GluonCV's ``batchify.Pad``: pad N arrays to the longest along ``axis`` and stack them.

    Parameters
    ----------
    axis : int or tuple of int
        The axis (axes) whose length varies between samples; a negative axis counts from the end (GluonCV
        mishandles those).
    pad_val : number
        Fill of the padding.
    num_shards : int
        Split the batch into this many consecutive shards (``np.array_split`` sizes), each padded to its own
        longest: one batch per device.
    ret_length : bool
        Also return each sample's length along ``axis``.

    Notes
    -----
    Called with a list of N samples (NDArrays, numpy arrays or lists; all of one number of dimensions, equal
    outside ``axis``). Returns an ``mx.nd.NDArray`` (N, ...) in shared CPU memory with the dtype of the first
    sample (float64 for GluonCV's VOC labels, float32 for ours), padded with ``pad_val``; with ``ret_length``
    also the lengths, int32 (N,) (or (N, len(axis)) for several axes). With ``num_shards > 1``, lists of
    those, one per shard. Without MXNet, numpy arrays of the same values. :func:`batchify_detection` pads
    labels the same way (axis 0, -1) in one call for all the fields of a sample.

    Examples
    --------
    >>> Pad(pad_val=-1)([np.zeros((2, 6)), np.ones((1, 6))]).shape   # doctest: +SKIP
    (2, 2, 6)
    """

    def __init__(self, axis=0, pad_val=0, num_shards: int = 1, ret_length: bool = False):
        axes = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
        if not axes or not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in axes):
            raise TypeError(f"axis must be an int or a tuple of ints, got {axis!r}")
        if len(set(axes)) != len(axes):
            raise ValueError(f"axis {axis!r} names an axis twice")
        if isinstance(num_shards, bool) or int(num_shards) != num_shards or num_shards < 1:
            raise ValueError(f"num_shards must be a positive integer, got {num_shards!r}")
        self._axis, self._axes = axis, tuple(int(a) for a in axes)
        self._pad_val, self._num_shards, self._ret_length = pad_val, int(num_shards), bool(ret_length)

    def __call__(self, data):
        if len(data) == 0:
            raise ValueError("Pad got no samples; give it a list of arrays")
        first = data[0]
        if not (is_ndarray(first) or isinstance(first, (np.ndarray, list, tuple))):
            raise TypeError(f"Pad batches arrays (NDArray, numpy) or lists, got {type(first).__name__}; use Stack "
                            "for numbers")
        arrays = _numpy_fields(data)
        dtype = first.dtype if hasattr(first, "dtype") else arrays[0].dtype
        ndim = arrays[0].ndim
        if any(a.ndim != ndim for a in arrays):
            raise ValueError(f"Pad needs samples of one number of dimensions, got shapes {[a.shape for a in arrays]}")
        axes = []
        for a in self._axes:
            if not -ndim <= a < ndim:
                raise ValueError(f"axis {a} is out of range for samples of {ndim} dimensions")
            axes.append(a % ndim)
        fixed = {tuple(s for k, s in enumerate(a.shape) if k not in axes) for a in arrays}
        if len(fixed) != 1:
            raise ValueError(f"Pad pads axis {self._axis} only, but the samples also differ elsewhere: shapes "
                             f"{[a.shape for a in arrays]}")
        if self._num_shards > len(arrays):
            raise ValueError(f"num_shards={self._num_shards} is more than the {len(arrays)} samples of the batch")
        if len(arrays) % self._num_shards:
            logger.warning("Pad: %d samples do not split evenly into %d shards", len(arrays), self._num_shards)
        lengths = np.array([[a.shape[k] for k in axes] for a in arrays], dtype=np.int64)
        batches, valid = [], []
        for index in np.array_split(np.arange(len(arrays)), self._num_shards):
            shape = list(arrays[index[0]].shape)
            for j, k in enumerate(axes):
                shape[k] = int(lengths[index, j].max())
            out = np.full([len(index)] + shape, self._pad_val, dtype=dtype)
            for row, i in enumerate(index):
                out[(row,) + tuple(slice(0, n) for n in arrays[i].shape)] = arrays[i]
            batches.append(_shared(out))
            shard_lengths = lengths[index] if isinstance(self._axis, (tuple, list)) else lengths[index, 0]
            valid.append(_shared(shard_lengths.astype(np.int32)))
        if self._num_shards == 1:
            batches, valid = batches[0], valid[0]
        return (batches, valid) if self._ret_length else batches

    def __repr__(self) -> str:
        return (f"Pad(axis={self._axis!r}, pad_val={self._pad_val!r}, num_shards={self._num_shards}, "
                f"ret_length={self._ret_length})")


class Tuple:
    """GluonCV's ``batchify.Tuple``: batch field ``i`` of the samples with the ``i``-th function.

    Parameters
    ----------
    fn : callable, or a list or tuple of callables
        The batchify functions, one per field: ``Tuple(Stack(), Pad(pad_val=-1))`` or
        ``Tuple([Stack(), Pad(pad_val=-1)])``.
    *args : callable
        The further functions when ``fn`` is one.

    Notes
    -----
    Called with a list of N samples, each a tuple of K fields; returns a tuple of K batches.

    Raises
    ------
    TypeError
        A function that is not callable. ``ValueError`` when called with samples whose number of fields is not
        the number of functions (GluonCV checks the first sample only).
    """

    def __init__(self, fn, *args):
        if isinstance(fn, (list, tuple)):
            if args:
                raise ValueError(f"Tuple takes Tuple(A, B, ...) or Tuple([A, B, ...]), got a list and {len(args)} "
                                 "more argument(s)")
            fns = tuple(fn)
        else:
            fns = (fn,) + args
        for i, f in enumerate(fns):
            if not callable(f):
                raise TypeError(f"batchify function {i} of Tuple is not callable: {f!r}")
        self._fn = fns

    def __call__(self, data):
        if len(data) == 0:
            raise ValueError("Tuple got no samples")
        for k, sample in enumerate(data):
            if len(sample) != len(self._fn):
                raise ValueError(f"sample {k} has {len(sample)} fields but this Tuple batchifies {len(self._fn)} "
                                 f"({self._fn})")
        return tuple(f([sample[i] for sample in data]) for i, f in enumerate(self._fn))

    def __repr__(self) -> str:
        return f"Tuple({', '.join(map(repr, self._fn))})"


class SeededRandomSampler(mx.gluon.data.Sampler if mx is not None else object):
    """Random permutation of ``range(length)``, a new one each epoch, reproducible from a seed.

    Parameters
    ----------
    length : int
        Number of samples.
    seed : int, np.random.Generator or None
        Seed of the permutation stream; None draws fresh entropy.
    """

    def __init__(self, length: int, seed: int | np.random.Generator | None = None):
        self._length = int(length)
        self._rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    def __iter__(self):
        return iter(self._rng.permutation(self._length).tolist())

    def __len__(self) -> int:
        return self._length


class _WorkerSeededDataset(Dataset):
    """Reseeds the global RNGs once in each worker process before its first sample.

    Forked workers inherit the parent's random state, so without this every worker would draw the same
    "random" augmentations. The seed of worker ``w`` is derived from ``(seed, w)``.
    """

    def __init__(self, dataset, seed: int, worker_init_fn: Callable | None):
        self._dataset = dataset
        self._seed = seed
        self._worker_init_fn = worker_init_fn
        self._seeded_in = None

    def __len__(self) -> int:
        return len(self._dataset)

    def __getitem__(self, idx):
        proc = multiprocessing.current_process()
        if self._seeded_in != proc.name:
            self._seeded_in = proc.name
            worker = proc._identity[0] if proc._identity else 0
            state = np.random.SeedSequence([self._seed, worker]).generate_state(2)
            np.random.seed(int(state[0]))
            random.seed(int(state[1]))
            if mx is not None:
                mx.random.seed(int(state[0] % (2**31)))
            if self._worker_init_fn is not None:
                self._worker_init_fn(worker)
        return self._dataset[idx]


def make_loader(
    dataset,
    batch_size: int,
    shuffle: bool = False,
    num_workers: int = 0,
    last_batch: str = "keep",
    seed: int | None = None,
    batchify_fn: Callable | None = None,
    worker_init_fn: Callable | None = None,
    prefetch: int | None = None,
    timeout: int = 120,
):
    """A DataLoader over a detection dataset, with worker processes.

    Parameters
    ----------
    dataset : mx.gluon.data.Dataset
        Any dataset yielding tuples, e.g. a detection dataset or ``dataset.transform(fn)`` of one.
    batch_size : int
        Samples per batch.
    shuffle : bool
        Visit samples in a new random order each epoch (seeded by ``seed``).
    num_workers : int
        Worker processes (``thread_pool=False``); 0 loads in the calling process.
    last_batch : {'keep', 'discard', 'rollover'}
        The final partial batch: kept (use for evaluation: every image is scored), dropped, or carried
        into the next epoch (GluonCV's evaluation uses 'rollover' and so never scores the last images).
    seed : int, optional
        Seeds the shuffle and the workers' global RNGs (numpy, random, mxnet; worker ``w`` gets a seed
        derived from ``(seed, w)``). None draws fresh entropy.
    batchify_fn : callable, optional
        Default :func:`batchify_detection` (in shared memory when ``num_workers > 0``).
    worker_init_fn : callable, optional
        ``worker_init_fn(worker_index)`` runs once in each worker process before its first sample,
        e.g. to give a transform its own ``np.random.Generator``.
    prefetch : int, optional
        Batches in flight; default ``2 * num_workers``.
    timeout : int
        Seconds to wait for a worker's batch.

    Returns
    -------
    mx.gluon.data.DataLoader (torch.utils.data.DataLoader without MXNet)
        Yields what ``batchify_fn`` returns, e.g. ``(images (B, ...), labels (B, M, 6))``.
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    if last_batch not in _LAST_BATCH:
        raise ValueError(f"last_batch must be one of {_LAST_BATCH}, got {last_batch!r}")
    if int(num_workers) < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    if len(dataset) == 0:
        raise ValueError("the dataset is empty; check its split files and folders")
    seed_seq = np.random.SeedSequence(seed)
    shuffle_seed, worker_seed = seed_seq.spawn(2)
    if shuffle:
        sampler = SeededRandomSampler(len(dataset), np.random.default_rng(shuffle_seed))
    else:
        sampler = range(len(dataset)) if mx is None else mx.gluon.data.SequentialSampler(len(dataset))
    if batchify_fn is None:
        batchify_fn = functools.partial(batchify_detection, shared_memory=num_workers > 0)
    if num_workers > 0:
        dataset = _WorkerSeededDataset(dataset, int(worker_seed.generate_state(1)[0]), worker_init_fn)
    if mx is None:
        return torch_loader(dataset, _BatchIndices(sampler, int(batch_size), last_batch), batchify_fn, num_workers,
                            prefetch, timeout)
    batch_sampler = mx.gluon.data.BatchSampler(sampler, int(batch_size), last_batch)
    return mx.gluon.data.DataLoader(
        dataset, batch_sampler=batch_sampler, batchify_fn=batchify_fn, num_workers=int(num_workers),
        thread_pool=False, prefetch=prefetch, timeout=timeout,
    )


class _BatchIndices:
    """Index lists of ``batch_size`` from a sampler (gluon's BatchSampler, for the torch loader)."""

    def __init__(self, sampler, batch_size: int, last_batch: str):
        self._sampler, self._size, self._last = sampler, batch_size, last_batch
        self._carry: list = []

    def __iter__(self):
        batch, self._carry = self._carry, []
        for index in self._sampler:
            batch.append(index)
            if len(batch) == self._size:
                yield batch
                batch = []
        if batch:
            if self._last == "keep":
                yield batch
            elif self._last == "rollover":
                self._carry = batch

    def __len__(self):
        n = len(self._sampler) + (len(self._carry) if self._last == "rollover" else 0)
        return n // self._size + (1 if self._last == "keep" and n % self._size else 0)


def torch_loader(dataset, batch_sampler, collate_fn, num_workers: int = 0, prefetch: int | None = None,
                 timeout: int = 120, pin_memory: bool = False, persistent: bool = False):
    """PyTorch's DataLoader over ``dataset[i]`` for the index lists of ``batch_sampler``, collated with
    ``collate_fn`` (a process per worker; the loader of the machines without MXNet, and of ``--backend torch``).
    ``persistent`` keeps the workers from one pass to the next (as gluon's DataLoader does) where the items
    do not depend on state set between passes."""
    import torch.utils.data

    kwargs = {}
    if num_workers > 0:
        kwargs = {"timeout": timeout, "persistent_workers": persistent, "multiprocessing_context": "fork" if "fork"
                  in multiprocessing.get_all_start_methods() else None}
        if prefetch:
            kwargs["prefetch_factor"] = max(1, -(-int(prefetch) // int(num_workers)))
    return torch.utils.data.DataLoader(dataset, batch_sampler=batch_sampler, collate_fn=collate_fn,
                                       num_workers=int(num_workers), pin_memory=pin_memory, **kwargs)
