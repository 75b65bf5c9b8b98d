"""Training checkpoints: one file that carries everything a run needs to continue exactly.

A checkpoint is a zip archive with ``params.params`` (the network, GluonCV's structural keys),
``trainer.states`` (optimizer state, e.g. SGD momentum) and ``meta.json`` (epoch, iteration, best
metric, the training arguments, numpy's and Python's RNG states: :func:`gluon_ssd.train.loop.rng_states`).
It is written with :func:`gluon_ssd.fileio.atomic_write` (a temporary file in the same folder, flushed to
disk and renamed over the previous one), so a crash at any moment leaves the previous checkpoint intact.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import zipfile

from .._mxnet import mx, require
from ..fileio import atomic_write
from .loop import rng_states

FORMAT = "gluon_ssd-checkpoint-1"
_MXNET_ERROR = mx.base.MXNetError if mx is not None else KeyError  # (KeyError: caught anyway)


@dataclasses.dataclass
class Checkpoint:
    params: dict  # structural key -> NDArray
    trainer_states: bytes
    meta: dict


def _nd_bytes(arrays: dict) -> bytes:
    require("an MXNet training checkpoint")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "a.params")
        mx.nd.save(path, arrays)
        with open(path, "rb") as f:
            return f.read()


def _nd_from_bytes(data: bytes) -> dict:
    require("reading an MXNet training checkpoint")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "a.params")
        with open(path, "wb") as f:
            f.write(data)
        return mx.nd.load(path)


def save_checkpoint(path, net, trainer, meta: dict):
    """Atomically write a checkpoint of ``net``, ``trainer`` and ``meta`` to ``path``."""
    params = {k: p._reduce() for k, p in net._collect_params_with_prefix().items()}
    with tempfile.TemporaryDirectory() as tmp:
        states_file = os.path.join(tmp, "trainer.states")
        trainer.save_states(states_file)
        with open(states_file, "rb") as f:
            states = f.read()
    meta = dict(meta, format=FORMAT)
    meta.setdefault("rng", rng_states())  # the loop's meta has them already
    with atomic_write(path, "wb") as raw, zipfile.ZipFile(raw, "w") as zf:
        zf.writestr("meta.json", json.dumps(meta, indent=1, default=str))
        zf.writestr("params.params", _nd_bytes(params))
        zf.writestr("trainer.states", states)


def is_checkpoint(path) -> bool:
    return zipfile.is_zipfile(os.fspath(path))


def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint; a clear ValueError if the file is not one or is damaged."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with zipfile.ZipFile(path) as zf:
            meta = json.loads(zf.read("meta.json"))
            params = _nd_from_bytes(zf.read("params.params"))
            states = zf.read("trainer.states")
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, _MXNET_ERROR) as err:
        raise ValueError(f"{path} is not a readable gluon_ssd checkpoint ({err}); use the *_last.ckpt file "
                         "a training run writes") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown checkpoint format {meta.get('format')!r}")
    return Checkpoint(params, states, meta)


def restore_trainer(trainer, states: bytes):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trainer.states")
        with open(path, "wb") as f:
            f.write(states)
        trainer.load_states(path)
