"""MXNet devices from the command-line forms of train_ssd.py, eval_ssd.py and demo_ssd.py.

``--gpus '0,1'`` (train, demo) and ``--num-gpus 2`` (eval) both come down to a list of GPU ids; an empty
list is the CPU, split into ``cpu_contexts`` contexts for training's multi-device batches.
"""
from __future__ import annotations

from collections.abc import Sequence

__all__ = ["parse_gpu_ids", "mxnet_contexts"]


def parse_gpu_ids(text) -> list[int]:
    """``'0,1'`` -> ``[0, 1]``; ``''`` (or only commas and blanks) -> ``[]``, the CPU.

    Raises
    ------
    ValueError
        An item that is no non-negative whole number.
    """
    items = [g.strip() for g in str(text).split(",") if g.strip()]
    if not all(g.isdigit() for g in items):
        raise ValueError(f"expected GPU numbers like '0' or '0,1' (empty for the CPU), got {str(text)!r}")
    return [int(g) for g in items]


def mxnet_contexts(gpu_ids: Sequence[int] = (), cpu_contexts: int = 0) -> list:
    """The ``mx.Context`` list: ``mx.gpu(i)`` for each id, or ``cpu_contexts`` CPU contexts (at least one).

    Raises
    ------
    ValueError
        GPUs and CPU contexts asked for together, a negative count, or a GPU id that this mxnet does not see
        (the message says how many it sees).
    """
    import mxnet as mx

    if cpu_contexts < 0:
        raise ValueError(f"the number of CPU contexts must be >= 0, got {cpu_contexts}")
    if gpu_ids and cpu_contexts:
        raise ValueError("CPU contexts split a batch on the CPU: ask for GPUs or for CPU contexts, not both")
    if not gpu_ids:
        return [mx.cpu(i) for i in range(max(cpu_contexts, 1))]
    available = mx.context.num_gpus()
    missing = [g for g in gpu_ids if g >= available]
    if missing:
        raise ValueError(f"MXNet sees {available} GPU(s), so there is no GPU {missing[0]} (this mxnet build may "
                         "have no CUDA support: the mxnet-cu112 build runs on a CUDA 11.2 host)")
    return [mx.gpu(g) for g in gpu_ids]
