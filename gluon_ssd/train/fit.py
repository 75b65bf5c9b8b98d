"""The SSD training loop: data-parallel over devices, optionally over machines (kvstore or horovod).

What makes a run exact and resumable:
- every random choice of an epoch derives from (seed, epoch, sample index): the shuffle, each image's
  augmentation, mxnet's own RNG (reseeded per epoch), whichever worker process decodes the image;
- the learning rate is a pure function of the fractional epoch;
- checkpoints carry parameters, optimizer state, the position (epoch, batch) and the best metric.
``--resume`` also takes a parameter file (GluonCV's ``.params`` or ours): its weights alone, at ``--start-epoch``,
as GluonCV's train_ssd.py resumes; the optimizer state, the data order position and the best metric start fresh.
Targets are computed for the whole batch on the training device (not in the data workers).

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
import re
import struct
import time
import zipfile

import numpy as np

from .._mxnet import Dataset, default_backend, mx
from ..data.batchify import batchify_detection
from ..fileio import atomic_write
from ..ndfile import LIST_MAGIC
from . import checkpoint as ckpt
from .schedule import learning_rate, parse_decay_epochs, saves_params, validates

log = logging.getLogger(__name__)

NUM_POS_KEY = 1 << 30  # kvstore key for the global positive count (far above the Trainer's param keys)
CHECKSUM_KEY = NUM_POS_KEY + 1  # kvstore key for the workers' weight checksums (see _sync_initial_weights)


class TrainingError(RuntimeError):
    """A training run cannot go on; the message says why and what is kept."""


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
    if head is None or body(file_shapes) != body(own_shapes) or head[0] % anchors_per_cell:
        return None
    return head[0] // anchors_per_cell - 1


@dataclasses.dataclass
class TrainConfig:
    """Everything a run depends on (the CLI flags of train_ssd.py, GluonCV's names and defaults)."""

    network: str = "vgg16_atrous"
    data_shape: int = 300
    batch_size: int = 32
    dataset: str = "voc"
    dataset_root: str = "~/.mxnet/datasets/"
    num_workers: int = 4
    gpus: str = "0"
    cpu_contexts: int = 0
    epochs: int = 240
    resume: str = ""
    start_epoch: int = 0
    lr: float = 0.001
    lr_decay: float = 0.1
    lr_decay_epoch: str = "160,200"
    lr_mode: str = "step"
    warmup_epochs: float = 0.0
    momentum: float = 0.9
    wd: float = 0.0005
    log_interval: int = 100
    save_prefix: str = ""
    save_interval: int = 10
    val_interval: int = 1
    seed: int = 233
    syncbn: bool = False
    amp: bool = False
    horovod: bool = False
    kvstore: str = "device"
    pretrained_base: str = "True"
    transfer: str = ""
    classes_file: str = "classes.txt"
    synthetic_train: int = 1000
    synthetic_val: int = 200
    synthetic_seed: int = 0
    max_iterations: int = 0
    checkpoint_interval: int = 0
    val_batch_size: int = 0
    max_expand: float = 4.0
    progress: bool = True
    # mxnet (where MXNet is installed; the default there) or a registered training backend: torch trains the
    # PyTorch twin (convert/; the default where MXNet is not installed)
    backend: str = dataclasses.field(default_factory=default_backend)
    amp_dtype: str = ""  # --amp precision: mxnet float16; torch bf16 (default) or fp16 (CUDA, grad scaler)
    channels_last: bool = False  # torch backend: NHWC memory format
    compile: bool = False  # torch backend: torch.compile the network
    model_name: str = ""  # filled in by prepare()


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


class SeededAugmentation(Dataset):
    """dataset[(epoch, i)] -> the i-th item augmented with an RNG seeded by (seed, epoch, i)."""

    def __init__(self, dataset, transform, seed):
        self._dataset, self._transform, self._seed = dataset, transform, seed

    def __len__(self):
        return len(self._dataset)

    def __getitem__(self, key):
        epoch, idx = key
        img, label = self._dataset[idx]
        rng = np.random.default_rng([self._seed, epoch, idx])
        return self._transform(img, label, rng=rng)


def checksums_disagree(sums, squares, n, rtol=1e-4):
    """Which parameters differ across ``n`` workers, from the sums over workers of a per-worker checksum
    ``c`` (``sums``) and of ``c**2`` (``squares``): their spread ``E[c^2] - E[c]^2`` must be ~0 relative to
    ``E[c]^2`` (float32 sums of a few workers carry ~1e-7 relative error; one worker holding zeros gives 1)."""
    mean = np.asarray(sums, np.float64) / n
    spread = np.asarray(squares, np.float64) / n - mean * mean
    return spread > rtol * (mean * mean + 1e-30)


def _contexts(cfg: TrainConfig):
    """The devices of ``--gpus`` / ``--cpu-contexts`` (:func:`gluon_ssd.devices.mxnet_contexts`)."""
    from ..devices import mxnet_contexts, parse_gpu_ids

    try:
        return mxnet_contexts(parse_gpu_ids(cfg.gpus), cfg.cpu_contexts)
    except ValueError as err:
        flags = f"--gpus {str(cfg.gpus)!r}" + (f" --cpu-contexts {cfg.cpu_contexts}" if cfg.cpu_contexts else "")
        raise TrainingError(f"{flags}: {err}; --gpus '' trains on the CPU") from None


def _split(batch, ctx_list):
    return mx.gluon.utils.split_and_load(batch, ctx_list, batch_axis=0, even_split=True)


class Trainer:
    """One training run (see :func:`train`)."""

    def __init__(self, cfg: TrainConfig, net, train_data, val_data, classes, eval_fn):
        self.cfg, self.net, self.classes = cfg, net, classes
        self.train_data, self.val_data, self.eval_fn = train_data, val_data, eval_fn
        self.ctx = self._data_contexts()
        self.rank, self.parts = 0, 1
        self.kv = None
        self.hvd = None
        try:
            self.decay_epochs = parse_decay_epochs(cfg.lr_decay_epoch)
        except ValueError as err:
            raise TrainingError(str(err)) from None
        self._setup_distribution()
        self.prefix = cfg.save_prefix + cfg.model_name
        self.is_main = self.rank == 0
        self.best_map = -math.inf
        self.epoch, self.batch_in_epoch, self.iteration = cfg.start_epoch, 0, 0
        self.history: list[dict] = []

    # -- set-up -----------------------------------------------------------------------------------
    def _data_contexts(self):
        """Where batches are split to and the targets computed: the training devices."""
        return _contexts(self.cfg)

    def _setup_distribution(self):
        cfg = self.cfg
        if cfg.horovod:
            try:
                import horovod.mxnet as hvd
            except ImportError:
                raise TrainingError("--horovod needs horovod built with MXNet support; see README "
                                    "('Distributed training') for the build command") from None
            hvd.init()
            self.hvd = hvd
            self.rank, self.parts = hvd.rank(), hvd.size()
            if mx.context.num_gpus():
                self.ctx = [mx.gpu(hvd.local_rank())]
        elif "dist" in cfg.kvstore:
            self.kv = mx.kv.create(cfg.kvstore)
            self.rank, self.parts = self.kv.rank, self.kv.num_workers
            self.kv.init(NUM_POS_KEY, mx.nd.zeros((1,)))
        if cfg.batch_size % (self.parts * len(self.ctx)):
            raise TrainingError(f"--batch-size {cfg.batch_size} is the global batch; it must divide evenly over "
                                f"{self.parts} worker(s) x {len(self.ctx)} device(s)")

    def _make_trainer(self):
        cfg = self.cfg
        params = self.net.collect_params()
        opt = {"learning_rate": cfg.lr, "wd": cfg.wd, "momentum": cfg.momentum}
        if self.hvd is not None:
            self.hvd.broadcast_parameters(params, root_rank=0)
            return self.hvd.DistributedTrainer(params, "sgd", opt)
        kvstore = self.kv if self.kv is not None else cfg.kvstore
        # Workers apply the summed gradients themselves, so every worker holds the same weights.
        update_on_kv = False if (self.kv is not None or cfg.amp) else None
        return mx.gluon.Trainer(params, "sgd", opt, kvstore=kvstore, update_on_kvstore=update_on_kv)

    def _loader(self, sampler):
        return mx.gluon.data.DataLoader(self.train_data, batch_sampler=sampler, batchify_fn=batchify_detection,
                                        num_workers=self.cfg.num_workers, thread_pool=False)

    # -- checkpoints ------------------------------------------------------------------------------
    def _meta(self):
        return {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "iteration": self.iteration,
                "best_map": self.best_map if math.isfinite(self.best_map) else None,
                "model_name": self.cfg.model_name, "classes": list(self.classes),
                "config": dataclasses.asdict(self.cfg), "history": self.history}

    def save_checkpoint(self):
        mx.nd.waitall()  # see setup(): running statistics are written behind the engine's back
        # Every worker writes one (identical weights; atomic rename makes a shared path safe), so any rank
        # can resume and a test can compare the workers.
        ckpt.save_checkpoint(self.prefix + "_last.ckpt", self.net, self.trainer, self._meta())

    def check_resumable(self, path, meta):
        """Refuse a checkpoint of another model or class list (TrainingError naming both)."""
        if meta["model_name"] != self.cfg.model_name or tuple(meta["classes"]) != tuple(self.classes):
            raise TrainingError(f"--resume {path} is a checkpoint of {meta['model_name']} with "
                                f"{len(meta['classes'])} classes, this run trains {self.cfg.model_name} with "
                                f"{len(self.classes)}: pass the matching --network/--data-shape/--dataset")

    def restore_position(self, path, meta):
        """The RNG states, position, best metric and history of a checkpoint's meta."""
        ckpt.restore_rng_states(meta.get("rng"))
        self.epoch, self.batch_in_epoch = meta["epoch"], meta["batch_in_epoch"]
        self.iteration = meta["iteration"]
        self.best_map = meta["best_map"] if meta["best_map"] is not None else -math.inf
        self.history = meta.get("history", [])
        log.info("resumed from %s at epoch %d, batch %d (iteration %d)", path, self.epoch,
                 self.batch_in_epoch, self.iteration)

    def resume(self, path):
        """Continue from ``path``: a checkpoint exactly (:meth:`resume_checkpoint`); a parameter file from its
        weights alone (:meth:`resume_weights`), at ``--start-epoch`` with a fresh optimizer state and best mAP."""
        if resume_kind(path) == "checkpoint":
            self.resume_checkpoint(path)
            return
        self.resume_weights(path)
        cfg = self.cfg
        # GluonCV names its files {prefix}_{epoch:04d}_{map:.4f}.params after the epoch just trained.
        written = re.search(r"_(\d{4})_\d+\.\d{4}\.params$", os.path.basename(path))
        hint = (f"; its name says it was written after epoch {int(written.group(1))}: --start-epoch "
                f"{int(written.group(1)) + 1} continues after it" if written and cfg.start_epoch == 0 else "")
        log.warning("--resume %s is a parameter file, so this is not an exact resume: weights only; the optimizer "
                    "momentum, the data order position and the best mAP start fresh. Training goes on at epoch %d "
                    "(--start-epoch%s), learning rate %g. For an exact resume use the _last.ckpt file a run writes.",
                    path, self.epoch, hint, self._lr(self.epoch, 0, 1))

    def weights_file_error(self, path, problem, file_classes) -> TrainingError:
        """The error for a ``--resume`` parameter file that does not fit this run.

        ``problem`` is the loader's message; ``file_classes`` the file's class count when only its class heads
        differ (:func:`weights_file_classes`), else None."""
        cfg, count = self.cfg, len(self.classes)
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

    def resume_weights(self, path):
        """Load the weights of MXNet parameter file ``path`` (both GluonCV key formats, ours) into the network,
        with the shape checks of :mod:`gluon_ssd.params`; anchors stored in the file are honoured as
        :func:`gluon_ssd.params.load_ssd_parameters` honours them. The optimizer keeps its fresh state."""
        from ..params import check_fit, read_param_file, sync_anchors, to_structural

        try:
            loaded = to_structural(self.net, read_param_file(path), path)
        except ValueError as err:
            raise TrainingError(f"--resume {path}: {err}") from None
        params = self.net._collect_params_with_prefix()
        try:
            check_fit(self.net, loaded, path)
        except ValueError as err:
            classes = weights_file_classes({k: v.shape for k, v in loaded.items()},
                                           {k: p.shape for k, p in params.items()},
                                           self.net.anchor_generators[0].num_depth)
            raise self.weights_file_error(path, err, classes) from None
        for key, value in loaded.items():
            params[key]._load_init(value, self.ctx)
        sync_anchors(self.net, path)
        if any(gen.use_stored for gen in self.net.anchor_generators):
            # The targets must match against the anchors the network now predicts with. Predict mode: the
            # BatchNorm statistics stay the file's.
            with mx.autograd.predict_mode():
                zeros = mx.nd.zeros((1, 3, self.cfg.data_shape, self.cfg.data_shape), ctx=self.ctx[0])
                anchors = self.net(zeros)[2]
            self.anchors = [anchors.as_in_context(c) for c in self.ctx]
        mx.nd.waitall()

    def resume_checkpoint(self, path):
        """Parameters, optimizer state, RNG states and position of a ``{prefix}_last.ckpt``: continues exactly."""
        state = ckpt.load_checkpoint(path)
        self.check_resumable(path, state.meta)
        params = self.net._collect_params_with_prefix()
        for key, value in state.params.items():
            params[key]._load_init(value, self.ctx)
        ckpt.restore_trainer(self.trainer, state.trainer_states)
        mx.nd.waitall()
        self.restore_position(path, state.meta)

    def write_params(self, path):
        """GluonCV's parameter file of the network being trained."""
        self.net.save_parameters(path)

    def write_best(self, epoch, current_map):
        self.write_params(f"{self.prefix}_best.params")

    def _save_gluoncv_files(self, epoch, current_map):
        """GluonCV's files after the validation of ``epoch``: ``_best.params`` and a line of ``_best_map.log`` when
        the mAP beats the best so far and 0 (GluonCV starts its best at 0), ``_{epoch:04d}_{map:.4f}.params`` on
        the saving epochs (:func:`gluon_ssd.train.schedule.saves_params`)."""
        if not self.is_main:
            return
        if current_map > max(self.best_map, 0.0):
            self.best_map = current_map
            self.write_best(epoch, current_map)
            with open(self.prefix + "_best_map.log", "a") as f:
                f.write(f"{epoch:04d}:\t{current_map:.4f}\n")
        if saves_params(epoch, self.cfg.save_interval):
            self.write_params(f"{self.prefix}_{epoch:04d}_{current_map:.4f}.params")

    def _sync_initial_weights(self):
        """Every worker starts from rank 0's weights, and the workers check that they do.

        MXNet's Trainer broadcasts rank 0's weights through the kvstore at its first step. Once (a CI run on
        2 busy cores, MXNet 1.9.1 CPU dist_sync) a worker came out of that broadcast holding zeros for a
        parameter, silently. So the broadcast runs here, before any gradient is pushed, and then the workers
        compare per-parameter checksums; if they differ, every worker pulls the weights again (the server
        still holds rank 0's), and a second mismatch stops the run.
        """
        trainer, kv = self.trainer, self.kv
        trainer._init_kvstore()  # MXNet 1.x private methods: the calls the Trainer's first step would make
        trainer._init_params()
        params = [p for p in trainer._params if p._data is not None]
        kv.init(CHECKSUM_KEY, mx.nd.zeros((2 * len(params),)))
        for attempt in range(2):
            mx.nd.waitall()
            kv._barrier()
            sums = mx.nd.concat(*[p.data(self.ctx[0]).abs().sum().as_in_context(mx.cpu()) for p in params], dim=0)
            both = mx.nd.concat(sums, sums * sums, dim=0)
            kv.push(CHECKSUM_KEY, both)
            kv.pull(CHECKSUM_KEY, out=both)
            total = both.asnumpy().astype(np.float64)
            bad = checksums_disagree(total[:len(params)], total[len(params):], self.parts)
            if not bad.any():
                return
            names = ", ".join(params[i].name for i in np.flatnonzero(bad)[:3])
            if attempt:
                raise TrainingError(f"the {self.parts} workers hold different weights after pulling them twice "
                                    f"from the kvstore server ({names}, ...); nothing was trained or written")
            log.warning("the workers' weights differ after the kvstore broadcast (%s, ...): pulling them again",
                        names)
            for p in params:
                kv.pull(trainer._param2idx[p.name], out=p.list_data())

    # -- one step ---------------------------------------------------------------------------------
    def _global_num_pos(self, local):
        if self.kv is not None:
            value = mx.nd.array([local])
            self.kv.push(NUM_POS_KEY, value)
            self.kv.pull(NUM_POS_KEY, out=value)
            return float(value.asscalar())
        if self.hvd is not None:
            return float(self.hvd.allreduce(mx.nd.array([local]), average=False, name="num_pos").asscalar())
        return float(local)

    def step(self, images, labels):
        from .loss import SSDMultiBoxLoss
        from .target import batch_targets

        if not hasattr(self, "_loss"):
            self._loss = SSDMultiBoxLoss()
        data, label_parts = _split(images, self.ctx), _split(labels, self.ctx)
        cls_t, box_t = [], []
        for lab, anchors in zip(label_parts, self.anchors):
            c, b = batch_targets(anchors, lab)
            cls_t.append(c)
            box_t.append(b)
        local_pos = sum(float((c > 0).sum().asscalar()) for c in cls_t)
        num_pos = self._global_num_pos(local_pos)
        with mx.autograd.record():
            cls_p, box_p = [], []
            for x in data:
                c, b, _ = self.net(x)
                cls_p.append(c)
                box_p.append(b)
            total, cls_loss, box_loss = self._loss(cls_p, box_p, cls_t, box_t, num_pos)
            if self.cfg.amp:
                from mxnet.contrib import amp

                with amp.scale_loss(total, self.trainer) as scaled:
                    mx.autograd.backward(scaled)
            else:
                mx.autograd.backward(total)
        # Losses are already normalized by the positives of the whole (global) batch: step(1).
        self.trainer.step(1.0 / self.parts if self.hvd is not None else 1)
        values = [sum(float(v.sum().asscalar()) for v in part) for part in (total, cls_loss, box_loss)]
        return values, images.shape[0]

    # -- the run ----------------------------------------------------------------------------------
    def setup(self):
        """Optimizer, anchors, the resumed state and the hybridized graph: everything before the first step."""
        cfg = self.cfg
        self.trainer = self._make_trainer()
        if cfg.amp:
            from mxnet.contrib import amp

            amp.init_trainer(self.trainer)
        with mx.autograd.train_mode():
            # Like GluonCV, anchors come from a training-mode forward on zeros. It moves BatchNorm running
            # statistics, so it runs before a resume restores them.
            zeros = mx.nd.zeros((1, 3, cfg.data_shape, cfg.data_shape), ctx=self.ctx[0])
            anchors = self.net(zeros)[2]
        self.anchors = [anchors.as_in_context(c) for c in self.ctx]
        if cfg.resume:
            self.resume(cfg.resume)
        if self.kv is not None:
            self._sync_initial_weights()
        # static_alloc: ~22% faster steps on CPU. Its cached graph writes BatchNorm's running statistics without
        # telling the engine, so reading them (checkpoints, validation, saving) waits for all work first.
        self.net.hybridize(static_alloc=True, static_shape=True)

    def fit(self):
        cfg = self.cfg
        self.setup()
        sampler = EpochBatchSampler(len(self.train_data), cfg.batch_size, cfg.seed, self.rank, self.parts)
        if len(self.train_data) < cfg.batch_size:
            raise TrainingError(f"the training set has {len(self.train_data)} images, fewer than one batch "
                                f"({cfg.batch_size}): lower --batch-size")
        loader = self._loader(sampler)
        iters_per_epoch = len(self.train_data) // cfg.batch_size
        self.trainer.set_learning_rate(self._lr(self.epoch, self.batch_in_epoch, iters_per_epoch))
        log.info("training %s on %s: %d images, %d iterations per epoch, global batch %d over %d worker(s) x "
                 "%d device(s)", cfg.model_name, cfg.dataset, len(self.train_data), iters_per_epoch,
                 cfg.batch_size, self.parts, len(self.ctx))
        stop = False
        while self.epoch < cfg.epochs and not stop:
            stop = self._run_epoch(loader, sampler, iters_per_epoch)
        return self.history

    def _lr(self, epoch, batch, iters_per_epoch):
        cfg = self.cfg
        return learning_rate(epoch + batch / max(iters_per_epoch, 1), cfg.lr, cfg.lr_mode, cfg.lr_decay,
                             self.decay_epochs, cfg.warmup_epochs, cfg.epochs)

    def _run_epoch(self, loader, sampler, iters_per_epoch):
        from tqdm import tqdm

        cfg, epoch = self.cfg, self.epoch
        sampler.epoch, sampler.start_batch = epoch, self.batch_in_epoch
        if mx is not None:
            mx.random.seed(cfg.seed + epoch)
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
            self.trainer.set_learning_rate(lr)
            (loss, cls_loss, box_loss), n = self.step(images, labels)
            if not all(math.isfinite(v) for v in (loss, cls_loss, box_loss)):
                kept = self.prefix + "_last.ckpt"
                raise TrainingError(
                    f"the loss became {loss} (CrossEntropy={cls_loss}, SmoothL1={box_loss}) at epoch {epoch}, "
                    f"iteration {self.batch_in_epoch} (global {self.iteration}); the last good checkpoint is "
                    f"{kept if os.path.exists(kept) else 'none yet'}. Lower --lr or add --warmup-epochs.")
            sums += (loss, cls_loss, box_loss)
            meters += (n * self.parts * cls_loss, n * self.parts * box_loss)
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
                 "seconds": seconds, "samples_per_sec": seen * self.parts / max(seconds, 1e-9)}
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
        mx.nd.waitall()
        return self.eval_fn(self.net, self.val_data)

    def _record(self, entry):
        if self.is_main:
            with open(self.prefix + "_metrics.jsonl", "a") as f:
                f.write(json.dumps(entry) + "\n")


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
