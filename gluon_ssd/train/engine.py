"""The MXNet engine of the training loop (:mod:`.loop`): data-parallel over devices, optionally over machines
(kvstore or horovod), float16 with ``--amp``.

Targets are computed for the whole batch on the training devices (not in the data workers). Checkpoints are
:mod:`.checkpoint`'s archives; GluonCV's ``.params`` files are ``net.save_parameters``.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

import numpy as np

from .. import params as param_files
from .._mxnet import mx
from ..data.batchify import batchify_detection
from ..devices import mxnet_contexts, parse_gpu_ids
from ..model_zoo import norm_layer_error
from ..specs import MODEL_SPECS
from . import checkpoint as ckpt
from .loop import TrainingError, weights_file_classes, weights_file_error
from .loss import SSDMultiBoxLoss
from .target import batch_targets

log = logging.getLogger(__name__)

NUM_POS_KEY = 1 << 30  # kvstore key for the global positive count (far above the Trainer's param keys)
CHECKSUM_KEY = NUM_POS_KEY + 1  # kvstore key for the workers' weight checksums (see _sync_initial_weights)


def checksums_disagree(sums, squares, n, rtol=1e-4):
    """Which parameters differ across ``n`` workers, from the sums over workers of a per-worker checksum
    ``c`` (``sums``) and of ``c**2`` (``squares``): their spread ``E[c^2] - E[c]^2`` must be ~0 relative to
    ``E[c]^2`` (float32 sums of a few workers carry ~1e-7 relative error; one worker holding zeros gives 1)."""
    mean = np.asarray(sums, np.float64) / n
    spread = np.asarray(squares, np.float64) / n - mean * mean
    return spread > rtol * (mean * mean + 1e-30)


def training_contexts(cfg) -> list:
    """The devices of ``--gpus`` / ``--cpu-contexts`` (:func:`gluon_ssd.devices.mxnet_contexts`)."""
    try:
        return mxnet_contexts(parse_gpu_ids(cfg.gpus), cfg.cpu_contexts)
    except ValueError as err:
        flags = f"--gpus {str(cfg.gpus)!r}" + (f" --cpu-contexts {cfg.cpu_contexts}" if cfg.cpu_contexts else "")
        raise TrainingError(f"{flags}: {err}; --gpus '' trains on the CPU") from None


def check_syncbn(cfg, ctx) -> None:
    """``--syncbn`` with MXNet: GluonCV passes SyncBatchNorm as the backbone's norm layer when there are several
    devices. Here that is possible for no BatchNorm backbone (:func:`gluon_ssd.model_zoo.norm_layer_error`): a
    TrainingError saying why; with one device or on VGG16 (no BatchNorm) it changes nothing, as in GluonCV."""
    if not cfg.syncbn:
        return
    if len(ctx) < 2:
        log.info("--syncbn: one device, nothing to synchronize (GluonCV uses SyncBatchNorm only with several)")
        return
    reason = norm_layer_error(MODEL_SPECS[cfg.model_name].backbone)
    if reason is None:
        log.info("--syncbn: %s has no BatchNorm layer, nothing to synchronize", cfg.model_name)
        return
    raise TrainingError(
        f"--syncbn with {len(ctx)} devices: {reason}. Train without --syncbn (each device then computes the BatchNorm "
        f"statistics of its own share of every batch), or with --backend torch, whose --syncbn computes them over "
        f"all torchrun processes")


def check_amp_devices(ctx) -> None:
    """MXNet's --amp is float16 on GPUs (its float16 convolutions have no CPU kernels): a TrainingError on CPUs."""
    if all(c.device_type == "cpu" for c in ctx):
        raise TrainingError("--amp (float16 mixed precision) needs GPUs; drop --amp on CPU")


def _split(batch, ctx_list):
    return mx.gluon.utils.split_and_load(batch, ctx_list, batch_axis=0, even_split=True)


class MXNetEngine:
    """The gluon SSD trained with ``mx.gluon.Trainer`` (see :class:`gluon_ssd.train.loop.Engine`).

    Parameters
    ----------
    cfg : :class:`gluon_ssd.train.config.TrainConfig`.
    net : the initialized gluon SSD, on the training devices.
    classes : the class names trained.
    """

    def __init__(self, cfg, net, classes):
        self.cfg, self.net, self.classes = cfg, net, classes
        self.ctx = training_contexts(cfg)
        self.rank, self.parts = 0, 1
        self.kv = None
        self.hvd = None
        self._loss = SSDMultiBoxLoss()
        self._join_workers()
        self.devices = len(self.ctx)

    @staticmethod
    def check_config(cfg) -> None:
        """The devices, --batch-size over them, --amp (float16 on GPUs), --syncbn and the torch-only options."""
        ctx = training_contexts(cfg)
        if cfg.batch_size % len(ctx):
            raise TrainingError(f"--batch-size {cfg.batch_size} does not divide evenly over {len(ctx)} devices")
        if cfg.amp:
            check_amp_devices(ctx)
        if cfg.amp_dtype not in ("", "fp16", "float16"):
            raise TrainingError(f"--amp-dtype {cfg.amp_dtype}: MXNet's --amp is float16 (bf16 is --backend torch)")
        check_syncbn(cfg, ctx)
        if cfg.channels_last or cfg.compile:
            raise TrainingError("--channels-last and --compile are options of --backend torch")

    # -- set-up -----------------------------------------------------------------------------------
    def _join_workers(self):
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

    def setup(self) -> None:
        """The Trainer (with amp's loss scaler under --amp) and the anchors."""
        cfg = self.cfg
        self.trainer = self._make_trainer()
        if cfg.amp:
            from mxnet.contrib import amp  # why: only --amp needs it (and it patches mxnet's operators)

            amp.init_trainer(self.trainer)
        with mx.autograd.train_mode():
            # Like GluonCV, anchors come from a training-mode forward on zeros. It moves BatchNorm running
            # statistics, so it runs before a resume restores them.
            zeros = mx.nd.zeros((1, 3, cfg.data_shape, cfg.data_shape), ctx=self.ctx[0])
            anchors = self.net(zeros)[2]
        self.anchors = [anchors.as_in_context(c) for c in self.ctx]

    def start(self) -> None:
        """The workers' weight check (kvstore) and the hybridized graph."""
        if self.kv is not None:
            self._sync_initial_weights()
        # static_alloc: ~22% faster steps on CPU. Its cached graph writes BatchNorm's running statistics without
        # telling the engine, so reading them (checkpoints, validation, saving) waits for all work first.
        self.net.hybridize(static_alloc=True, static_shape=True)

    def loader(self, dataset, sampler):
        return mx.gluon.data.DataLoader(dataset, batch_sampler=sampler, batchify_fn=batchify_detection,
                                        num_workers=self.cfg.num_workers, thread_pool=False)

    def close(self) -> None:
        """Nothing to leave: kvstore and horovod workers end with their processes."""

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

    # -- checkpoints and files --------------------------------------------------------------------
    def save_checkpoint(self, path: str, meta: dict) -> None:
        mx.nd.waitall()  # see start(): running statistics are written behind the engine's back
        ckpt.save_checkpoint(path, self.net, self.trainer, meta)

    def load_checkpoint(self, path: str, accept: Callable[[dict], None]) -> dict:
        """Parameters and optimizer state of a ``{prefix}_last.ckpt``, after ``accept(meta)``."""
        state = ckpt.load_checkpoint(path)
        accept(state.meta)
        params = self.net._collect_params_with_prefix()
        for key, value in state.params.items():
            params[key]._load_init(value, self.ctx)
        ckpt.restore_trainer(self.trainer, state.trainer_states)
        mx.nd.waitall()
        return state.meta

    def load_weights(self, path: str) -> None:
        """Load the weights of MXNet parameter file ``path`` (both GluonCV key formats, ours) into the network,
        with the shape checks of :mod:`gluon_ssd.params`; anchors stored in the file are honoured as
        :func:`gluon_ssd.params.load_ssd_parameters` honours them. The optimizer keeps its fresh state."""
        try:
            loaded = param_files.to_structural(self.net, param_files.read_param_file(path), path)
        except ValueError as err:
            raise TrainingError(f"--resume {path}: {err}") from None
        params = self.net._collect_params_with_prefix()
        try:
            param_files.check_fit(self.net, loaded, path)
        except ValueError as err:
            classes = weights_file_classes({k: v.shape for k, v in loaded.items()},
                                           {k: p.shape for k, p in params.items()},
                                           self.net.anchor_generators[0].num_depth)
            raise weights_file_error(self.cfg, self.classes, path, err, classes) from None
        for key, value in loaded.items():
            params[key]._load_init(value, self.ctx)
        param_files.sync_anchors(self.net, path)
        if any(gen.use_stored for gen in self.net.anchor_generators):
            # The targets must match against the anchors the network now predicts with. Predict mode: the
            # BatchNorm statistics stay the file's.
            with mx.autograd.predict_mode():
                zeros = mx.nd.zeros((1, 3, self.cfg.data_shape, self.cfg.data_shape), ctx=self.ctx[0])
                anchors = self.net(zeros)[2]
            self.anchors = [anchors.as_in_context(c) for c in self.ctx]
        mx.nd.waitall()

    def write_params(self, path: str) -> None:
        self.net.save_parameters(path)

    def write_best(self, prefix: str, epoch: int, current_map: float) -> None:
        self.write_params(f"{prefix}_best.params")

    @contextlib.contextmanager
    def detector(self) -> Iterator:
        mx.nd.waitall()  # see start()
        yield self.net

    # -- one step ---------------------------------------------------------------------------------
    def set_learning_rate(self, lr: float) -> None:
        self.trainer.set_learning_rate(lr)

    def _global_num_pos(self, local):
        if self.kv is not None:
            value = mx.nd.array([local])
            self.kv.push(NUM_POS_KEY, value)
            self.kv.pull(NUM_POS_KEY, out=value)
            return float(value.asscalar())
        if self.hvd is not None:
            return float(self.hvd.allreduce(mx.nd.array([local]), average=False, name="num_pos").asscalar())
        return float(local)

    def step(self, images, labels) -> list[float]:
        """images (B, 3, H, W), labels (B, M, 6) NDArrays of this worker: split over its devices."""
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
                from mxnet.contrib import amp  # why: only --amp needs it (and it patches mxnet's operators)

                with amp.scale_loss(total, self.trainer) as scaled:
                    mx.autograd.backward(scaled)
            else:
                mx.autograd.backward(total)
        # Losses are already normalized by the positives of the whole (global) batch: step(1).
        self.trainer.step(1.0 / self.parts if self.hvd is not None else 1)
        return [sum(float(v.sum().asscalar()) for v in part) for part in (total, cls_loss, box_loss)]
