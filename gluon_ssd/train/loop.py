"""The SSD training loop, one for every framework: it drives an :class:`Engine` (MXNet's in :mod:`.engine`, the
PyTorch twin's in ``convert.train.engine``) and imports no framework itself.

What makes a run exact and resumable:
- every random choice of an epoch derives from (seed, epoch, sample index): the shuffle
  (:class:`EpochBatchSampler`) and each image's augmentation (:class:`SeededAugmentation`, the one way training
  seeds it), whichever worker process decodes the image;
- the learning rate is a pure function of the fractional epoch;
- checkpoints carry parameters, optimizer state, the position (epoch, batch), the best metric and the RNG states.
``--resume`` also takes a parameter file (GluonCV's ``.params`` or ours): its weights alone, at ``--start-epoch``,
as GluonCV's train_ssd.py resumes; the optimizer state, the data order position and the best metric start fresh.

As GluonCV's train_ssd.py: epoch ``e`` (0-based) validates when ``e % val_interval == 0`` or it is a saving epoch
(``e % save_interval == 0``, which writes ``{prefix}_{e:04d}_{map:.4f}.params``; :mod:`.schedule`); the log's
CrossEntropy and SmoothL1 are GluonCV's numbers: each batch's loss (summed over its images, divided by its
positive anchors, the value that is backpropagated), averaged over the epoch's batches so far. metrics.jsonl
keeps per-image values: the batch's loss divided by the batch size.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import re
import struct
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import numpy as np

from ..fileio import atomic_write
from ..ndfile import LIST_MAGIC
from ..specs import head_classes
from .schedule import learning_rate, parse_decay_epochs, saves_params, validates

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """A training run cannot go on; the message says why and what is kept."""


class Engine(Protocol):
    """What the loop asks of a framework. Constructed as ``Engine(cfg, net, classes)`` (``net``: the initialized
    gluon SSD, or None where MXNet is not installed); the constructor joins the workers of a distributed run.

    Attributes: ``rank`` and ``parts`` (this worker and the number of workers), ``devices`` (devices per worker).
    """

    rank: int
    parts: int
    devices: int

    @staticmethod
    def check_config(cfg) -> None:
        """Refuse the options this engine cannot run (TrainingError), before any data is opened."""

    def setup(self) -> None:
        """Everything before a resume: optimizer, anchors (a training-mode forward on zeros, as GluonCV)."""

    def start(self) -> None:
        """Everything after a resume and before the first step (weight checks, graph compilation)."""

    def loader(self, dataset, sampler) -> Iterable:
        """Batches ``(images (B, 3, H, W), labels (B, M, 6))`` of ``dataset`` for the keys of ``sampler``."""

    def set_learning_rate(self, lr: float) -> None: ...

    def step(self, images, labels) -> Sequence[float]:
        """One SGD step on this worker's share of a global batch: (total, CrossEntropy, SmoothL1), each summed
        over the share's images and divided by the global batch's positive anchors."""

    def save_checkpoint(self, path: str, meta: dict) -> None:
        """Write ``{prefix}_last.ckpt``: the weights, the optimizer state and ``meta`` (atomically)."""

    def load_checkpoint(self, path: str, accept: Callable[[dict], None]) -> dict:
        """Load a checkpoint's weights and optimizer state, after ``accept(meta)`` (which raises to refuse);
        returns the meta."""

    def load_weights(self, path: str) -> None:
        """The weights of an MXNet parameter file (GluonCV's or ours); TrainingError if they do not fit."""

    def write_params(self, path: str) -> None:
        """GluonCV's parameter file of the network being trained."""

    def write_best(self, prefix: str, epoch: int, current_map: float) -> None:
        """The files of a new best mAP: ``{prefix}_best.params`` (and what else the engine keeps)."""

    def detector(self) -> AbstractContextManager[Any]:
        """The network as validation takes it (what ``eval_fn`` accepts), for the ``with`` block only."""

    def close(self) -> None:
        """Leave the workers' group; runs after the last epoch and on errors."""


def resume_kind(path) -> str:
    """What a ``--resume`` file is, from its first bytes (not its name).

    Returns
    -------
    str
        'checkpoint' for a zip archive (the ``{prefix}_last.ckpt`` a run writes: continues exactly), 'params' for an
        MXNet NDArray file (uint64 0x112 first: GluonCV's ``.params`` in either key format, or ours: weights only).

    Raises
    ------
    TrainingError
        Anything else, naming the file and its first bytes.
    """
    path = os.fspath(path)
    if zipfile.is_zipfile(path):
        return "checkpoint"
    with open(path, "rb") as f:
        head = f.read(8)
    if head == struct.pack("<Q", LIST_MAGIC):
        return "params"
    raise TrainingError(f"--resume {path} is neither a training checkpoint (a zip archive, the {{prefix}}_last.ckpt a "
                        f"run writes) nor an MXNet parameter file (.params, which starts with the bytes "
                        f"{struct.pack('<Q', LIST_MAGIC).hex()}; this file starts with {head.hex() or 'nothing'}): "
                        f"pass one of those")


def weights_file_classes(file_shapes: dict, own_shapes: dict, anchors_per_cell: int, optional=()) -> int | None:
    """How many classes an SSD parameter file detects when all of it but its class heads fits the run's network.

    Parameters
    ----------
    file_shapes, own_shapes : dict of str to tuple of int
        {structural key: shape} of the file and of the network being trained.
    anchors_per_cell : int
        Anchors per location of prediction layer 0 (its class head has ``anchors_per_cell * (classes + 1)``
        outputs).
    optional : collection of str
        Keys that one side may lack for a reason of its own (the twin holds no fix_gamma gamma). Anchor grids
        (``anchor_generators.*``) are left out on both sides: they are constants, checked by the loaders.

    Returns
    -------
    int or None
        The file's number of foreground classes; None when the rest of the file is another network.
    """
    def body(shapes):
        return {k: tuple(v) for k, v in shapes.items()
                if not k.startswith(("class_predictors.", "anchor_generators.")) and k not in optional}

    head = file_shapes.get("class_predictors.0.predictor.weight")
    if head is None or body(file_shapes) != body(own_shapes):
        return None
    return head_classes(head[0], anchors_per_cell)


def weights_file_error(cfg, classes: Sequence[str], path, problem, file_classes: int | None) -> TrainingError:
    """The error for a ``--resume`` parameter file that does not fit this run.

    ``problem`` is the loader's message; ``file_classes`` the file's class count when only its class heads
    differ (:func:`weights_file_classes`), else None."""
    count = len(classes)
    if file_classes is not None and file_classes != count:
        dataset = {20: " (20 classes: --dataset voc)", 80: " (80 classes: --dataset coco)"}.get(file_classes, "")
        return TrainingError(
            f"--resume {path} holds the network of {cfg.model_name} with class heads for {file_classes} classes, "
            f"this run trains {count} (--dataset {cfg.dataset}): resume it with the dataset it was trained "
            f"on{dataset}, or fine-tune it to these classes with --transfer {path} (a new run from epoch 0)")
    return TrainingError(
        f"--resume {path} does not hold the {cfg.model_name} network: pass the --network and --data-shape it was "
        f"trained with (GluonCV's file names say them: ssd_512_vgg16_atrous_voc_* is --network vgg16_atrous "
        f"--data-shape 512 --dataset voc). {problem}")


class EpochBatchSampler:
    """Batches of (epoch, index) keys: a seeded shuffle per epoch, this worker's share of each global batch.

    The global batch b of epoch e is ``permutation(seed, e)[b*B:(b+1)*B]``; worker ``rank`` of ``parts``
    takes its contiguous slice, so all workers together see exactly what one process would.
    """

    def __init__(self, length, global_batch, seed, rank=0, parts=1, shuffle=True):
        self.length, self.global_batch, self.seed = length, global_batch, seed
        self.rank, self.parts, self.shuffle = rank, parts, shuffle
        self.epoch, self.start_batch = 0, 0

    def __len__(self):
        return self.length // self.global_batch - self.start_batch

    def __iter__(self):
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.length)
        else:
            order = np.arange(self.length)
        local = self.global_batch // self.parts
        for b in range(self.start_batch, self.length // self.global_batch):
            chunk = order[b * self.global_batch:(b + 1) * self.global_batch]
            yield [(self.epoch, int(i)) for i in chunk[self.rank * local:(self.rank + 1) * local]]


class SeededAugmentation:
    """dataset[(epoch, i)] -> the i-th item augmented with an RNG seeded by (seed, epoch, i).

    The one way training seeds its augmentation: the draws of an image depend on nothing else (not on the
    worker process, nor on what it decoded before), so a resumed or distributed run augments as one process."""

    def __init__(self, dataset, transform, seed):
        self._dataset, self._transform, self._seed = dataset, transform, seed

    def __len__(self):
        return len(self._dataset)

    def __getitem__(self, key):
        epoch, idx = key
        img, label = self._dataset[idx]
        rng = np.random.default_rng([self._seed, epoch, idx])
        return self._transform(img, label, rng=rng)


def rng_states() -> dict:
    """numpy's and Python's global RNG states, as a checkpoint's meta keeps them (JSON)."""
    state = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {"numpy": [state[0], state[1].tolist(), *state[2:]], "python": [version, list(internal), gauss]}


def restore_rng_states(states: dict | None) -> None:
    """Restore what :func:`rng_states` returned (nothing for None)."""
    if not states:
        return
    name, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))


class TrainingLoop:
    """One training run: epochs, logs, metrics.jsonl, curves, validation, checkpoints, the NaN stop.

    Parameters
    ----------
    cfg : :class:`gluon_ssd.train.config.TrainConfig`.
    engine : the framework's :class:`Engine`.
    train_data : dataset of (epoch, index) keys (:class:`SeededAugmentation`).
    val_data : the validation dataset, or None (no validation).
    classes : the class names trained.
    eval_fn : ``eval_fn(detector, val_data)`` -> a result with ``map``, ``names`` and ``values``.
    """

    def __init__(self, cfg, engine: Engine, train_data, val_data, classes: Sequence[str], eval_fn: Callable | None):
        self.cfg, self.engine, self.classes = cfg, engine, classes
        self.train_data, self.val_data, self.eval_fn = train_data, val_data, eval_fn
        try:
            self.decay_epochs = parse_decay_epochs(cfg.lr_decay_epoch)
        except ValueError as err:
            raise TrainingError(str(err)) from None
        self.prefix = cfg.save_prefix + cfg.model_name
        self.is_main = engine.rank == 0
        self.best_map = -math.inf
        self.epoch, self.batch_in_epoch, self.iteration = cfg.start_epoch, 0, 0
        self.history: list[dict] = []

    # -- set-up and resume ------------------------------------------------------------------------
    def setup(self) -> None:
        """The engine set up, the ``--resume`` file loaded, the engine started: everything before the first step."""
        self.engine.setup()
        if self.cfg.resume:
            self.resume(self.cfg.resume)
        self.engine.start()

    def resume(self, path) -> None:
        """Continue from ``path``: a checkpoint exactly; a parameter file from its weights alone, at
        ``--start-epoch`` with a fresh optimizer state and best mAP."""
        if resume_kind(path) == "checkpoint":
            meta = self.engine.load_checkpoint(path, lambda meta: self.check_resumable(path, meta))
            self.restore_position(path, meta)
            return
        self.engine.load_weights(path)
        cfg = self.cfg
        # GluonCV names its files {prefix}_{epoch:04d}_{map:.4f}.params after the epoch just trained.
        written = re.search(r"_(\d{4})_\d+\.\d{4}\.params$", os.path.basename(path))
        hint = (f"; its name says it was written after epoch {int(written.group(1))}: --start-epoch "
                f"{int(written.group(1)) + 1} continues after it" if written and cfg.start_epoch == 0 else "")
        log.warning("--resume %s is a parameter file, so this is not an exact resume: weights only; the optimizer "
                    "momentum, the data order position and the best mAP start fresh. Training goes on at epoch %d "
                    "(--start-epoch%s), learning rate %g. For an exact resume use the _last.ckpt file a run writes.",
                    path, self.epoch, hint, self._lr(self.epoch, 0, 1))

    def check_resumable(self, path, meta: dict) -> None:
        """Refuse a checkpoint of another model or class list (TrainingError naming both)."""
        if meta["model_name"] != self.cfg.model_name or tuple(meta["classes"]) != tuple(self.classes):
            raise TrainingError(f"--resume {path} is a checkpoint of {meta['model_name']} with "
                                f"{len(meta['classes'])} classes, this run trains {self.cfg.model_name} with "
                                f"{len(self.classes)}: pass the matching --network/--data-shape/--dataset")

    def restore_position(self, path, meta: dict) -> None:
        """The RNG states, position, best metric and history of a checkpoint's meta."""
        restore_rng_states(meta.get("rng"))
        self.epoch, self.batch_in_epoch = meta["epoch"], meta["batch_in_epoch"]
        self.iteration = meta["iteration"]
        self.best_map = meta["best_map"] if meta["best_map"] is not None else -math.inf
        self.history = meta.get("history", [])
        log.info("resumed from %s at epoch %d, batch %d (iteration %d)", path, self.epoch,
                 self.batch_in_epoch, self.iteration)

    # -- files ------------------------------------------------------------------------------------
    def _meta(self) -> dict:
        return {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "iteration": self.iteration,
                "best_map": self.best_map if math.isfinite(self.best_map) else None,
                "model_name": self.cfg.model_name, "classes": list(self.classes),
                "config": dataclasses.asdict(self.cfg), "history": self.history, "rng": rng_states()}

    def save_checkpoint(self) -> None:
        # Every worker writes one (identical weights; atomic rename makes a shared path safe), so any rank
        # can resume and a test can compare the workers.
        self.engine.save_checkpoint(self.prefix + "_last.ckpt", self._meta())

    def _save_gluoncv_files(self, epoch: int, current_map: float) -> None:
        """GluonCV's files after the validation of ``epoch``: ``_best.params`` and a line of ``_best_map.log`` when
        the mAP beats the best so far and 0 (GluonCV starts its best at 0), ``_{epoch:04d}_{map:.4f}.params`` on
        the saving epochs (:func:`gluon_ssd.train.schedule.saves_params`)."""
        if not self.is_main:
            return
        if current_map > max(self.best_map, 0.0):
            self.best_map = current_map
            self.engine.write_best(self.prefix, epoch, current_map)
            with open(self.prefix + "_best_map.log", "a") as f:
                f.write(f"{epoch:04d}:\t{current_map:.4f}\n")
        if saves_params(epoch, self.cfg.save_interval):
            self.engine.write_params(f"{self.prefix}_{epoch:04d}_{current_map:.4f}.params")

    def _record(self, entry: dict) -> None:
        if self.is_main:
            with open(self.prefix + "_metrics.jsonl", "a") as f:
                f.write(json.dumps(entry) + "\n")

    # -- the run ----------------------------------------------------------------------------------
    def fit(self) -> list[dict]:
        """Train from the current position to ``--epochs`` (or ``--max-iterations``); returns the per-epoch
        history (dicts of metrics.jsonl's epoch records)."""
        try:
            return self._fit()
        finally:
            self.engine.close()

    def _fit(self) -> list[dict]:
        cfg, engine = self.cfg, self.engine
        self.setup()
        sampler = EpochBatchSampler(len(self.train_data), cfg.batch_size, cfg.seed, engine.rank, engine.parts)
        if len(self.train_data) < cfg.batch_size:
            raise TrainingError(f"the training set has {len(self.train_data)} images, fewer than one batch "
                                f"({cfg.batch_size}): lower --batch-size")
        loader = engine.loader(self.train_data, sampler)
        iters_per_epoch = len(self.train_data) // cfg.batch_size
        engine.set_learning_rate(self._lr(self.epoch, self.batch_in_epoch, iters_per_epoch))
        log.info("training %s on %s: %d images, %d iterations per epoch, global batch %d over %d worker(s) x "
                 "%d device(s)", cfg.model_name, cfg.dataset, len(self.train_data), iters_per_epoch,
                 cfg.batch_size, engine.parts, engine.devices)
        stop = False
        while self.epoch < cfg.epochs and not stop:
            stop = self._run_epoch(loader, sampler, iters_per_epoch)
        return self.history

    def _lr(self, epoch, batch, iters_per_epoch) -> float:
        cfg = self.cfg
        return learning_rate(epoch + batch / max(iters_per_epoch, 1), cfg.lr, cfg.lr_mode, cfg.lr_decay,
                             self.decay_epochs, cfg.warmup_epochs, cfg.epochs)

    def _run_epoch(self, loader, sampler, iters_per_epoch) -> bool:
        from tqdm import tqdm

        cfg, epoch, parts = self.cfg, self.epoch, self.engine.parts
        sampler.epoch, sampler.start_batch = epoch, self.batch_in_epoch
        sums = np.zeros(3)  # per-batch loss sums (metrics.jsonl: per image)
        # GluonCV's CrossEntropy / SmoothL1 meters (mx.metric.Loss fed the per-batch loss times the batch size):
        # the batch's loss (sum over its images, divided by its positive anchors), averaged over the epoch's
        # batches weighted by their size. Each worker holds its share of the global batch's loss: times parts.
        meters = np.zeros(2)
        seen = 0
        tic = btic = time.time()
        bar = tqdm(loader, total=len(sampler), desc=f"epoch {epoch}", leave=False,
                   disable=not (cfg.progress and self.is_main))
        stopped = False
        for images, labels in bar:
            lr = self._lr(epoch, self.batch_in_epoch, iters_per_epoch)
            self.engine.set_learning_rate(lr)
            loss, cls_loss, box_loss = self.engine.step(images, labels)
            n = images.shape[0]
            if not all(math.isfinite(v) for v in (loss, cls_loss, box_loss)):
                kept = self.prefix + "_last.ckpt"
                raise TrainingError(
                    f"the loss became {loss} (CrossEntropy={cls_loss}, SmoothL1={box_loss}) at epoch {epoch}, "
                    f"iteration {self.batch_in_epoch} (global {self.iteration}); the last good checkpoint is "
                    f"{kept if os.path.exists(kept) else 'none yet'}. Lower --lr or add --warmup-epochs.")
            sums += (loss, cls_loss, box_loss)
            meters += (n * parts * cls_loss, n * parts * box_loss)
            seen += n
            self.batch_in_epoch += 1
            self.iteration += 1
            bar.set_postfix(ce=f"{meters[0] / seen:.3f}", l1=f"{meters[1] / seen:.3f}", lr=f"{lr:.2e}")
            if cfg.log_interval and self.batch_in_epoch % cfg.log_interval == 0:
                speed = cfg.log_interval * cfg.batch_size / max(time.time() - btic, 1e-9)
                log.info("[Epoch %d][Batch %d], Speed: %.3f samples/sec, CrossEntropy=%.3f, SmoothL1=%.3f",
                         epoch, self.batch_in_epoch - 1, speed, meters[0] / seen, meters[1] / seen)
                btic = time.time()
            self._record({"kind": "iteration", "epoch": epoch, "batch": self.batch_in_epoch - 1,
                          "iteration": self.iteration, "lr": lr, "loss": loss / n, "cls_loss": cls_loss / n,
                          "box_loss": box_loss / n})
            if cfg.checkpoint_interval and self.iteration % cfg.checkpoint_interval == 0:
                self.save_checkpoint()
            if cfg.max_iterations and self.iteration >= cfg.max_iterations:
                stopped = True
                break
        bar.close()
        seconds = time.time() - tic
        seen = max(seen, 1)
        entry = {"kind": "epoch", "epoch": epoch, "iteration": self.iteration, "lr": self._lr(epoch, 0, 1),
                 "loss": sums[0] / seen, "cls_loss": sums[1] / seen, "box_loss": sums[2] / seen,
                 "seconds": seconds, "samples_per_sec": seen * parts / max(seconds, 1e-9)}
        log.info("[Epoch %d] Training cost: %.3f, CrossEntropy=%.3f, SmoothL1=%.3f", epoch, seconds,
                 meters[0] / seen, meters[1] / seen)
        if stopped and self.batch_in_epoch < iters_per_epoch:
            self.save_checkpoint()
            return True
        self.epoch, self.batch_in_epoch = epoch + 1, 0
        if self.val_data is not None and validates(epoch, cfg.val_interval, cfg.save_interval):
            if self.is_main:
                result = self._validate()
                entry["map"] = float(result.map)
                log.info("[Epoch %d] Validation: \n%s", epoch, "\n".join(
                    f"{n}={v:.4f}" for n, v in zip(result.names, result.values)))
                self._save_gluoncv_files(epoch, float(result.map))
        self.history.append(entry)
        self._record(entry)
        self.save_checkpoint()
        if self.is_main:
            plot_curves(self.history, self.prefix + "_curves.png")
        return stopped

    def _validate(self):
        with self.engine.detector() as detector:
            return self.eval_fn(detector, self.val_data)


def plot_curves(history, path):
    """Training curves (loss terms, lr, validation mAP per epoch) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for key, label in (("loss", "total"), ("cls_loss", "CrossEntropy"), ("box_loss", "SmoothL1")):
        axes[0].plot(epochs, [h[key] for h in history], marker="o", label=label)
    axes[0].set(title="training loss (per image)", xlabel="epoch")
    axes[0].legend()
    axes[1].plot(epochs, [h["lr"] for h in history], marker="o")
    axes[1].set(title="learning rate", xlabel="epoch")
    maps = [(h["epoch"], h["map"]) for h in history if "map" in h]
    if maps:
        axes[2].plot(*zip(*maps), marker="o", color="tab:green")
    axes[2].set(title="validation mAP", xlabel="epoch", ylim=(0, 1))
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        with atomic_write(path, "wb") as f:
            fig.savefig(f, format="png", dpi=90)
    finally:
        plt.close(fig)
