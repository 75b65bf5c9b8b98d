"""``train_ssd.py --backend torch``: the PyTorch twin trained with gluon_ssd's recipe, step for step.

:class:`TorchEngine` is an engine of gluon_ssd's training loop (:class:`gluon_ssd.train.loop.TrainingLoop`), as
MXNet's is: the loop, shared, owns the datasets, augmentation, sampler and seeds (the same data pipeline feeds both;
its batches come through PyTorch's DataLoader), the learning-rate schedule, the epochs with their logs,
metrics.jsonl, curves PNG, NaN stop and validation. None of it needs MXNet (see :mod:`gluon_ssd._mxnet`), and
importing this module does not import it. What is PyTorch:

- the start: with MXNet installed, the gluon SSD that ``prepare()`` builds and initializes for ``--seed``
  (``--pretrained-base``, ``--transfer`` included) goes through the same anchor forward as the MXNet engine's
  set-up and is then converted (:func:`convert.weights.mapping.gluon_to_torch`): both backends start from the same
  weights. Without MXNet (today's GPU machines) the twin is initialized in torch with the same distributions
  (:mod:`convert.train.start`, seeded by ``--seed``) and ``--pretrained-base`` / ``--transfer`` files are read with
  :mod:`gluon_ssd.ndfile`: the same recipe, not the same numbers;
- the targets: :func:`convert.train.target.batch_targets` (gluon_ssd's matching and encoding) on the training
  device, from the same anchors;
- the loss (:class:`convert.train.loss.SSDLoss`) and SGD with MXNet's update rule (:class:`MXNetSGD`);
  BatchNorm trains as MXNet's (:func:`convert.nn.layers.mxnet_batch_norm`);
- scale-out: torch.distributed under ``torchrun`` (gloo on CPU, NCCL on GPUs, one process per GPU), the
  positive count all-reduced, gradients summed (DDP averages, so the loss is scaled by the world size),
  ``--syncbn`` sharing BatchNorm statistics;
- speed options: ``--amp`` (bf16 autocast, or fp16 with a gradient scaler on CUDA), ``--channels-last``
  (on the CPU with BatchNorm + ReLU fused, :mod:`convert._cpu.kernels`), ``--compile``;
- ``--resume``: the checkpoint exactly, or a parameter file (GluonCV's or ours) for its weights alone;
- files: the checkpoint ``{prefix}_last.ckpt`` (a zip of meta.json and a torch state), and GluonCV's
  ``_best.params`` / ``_{epoch}_{map}.params`` written as gluon_ssd parameters through the reverse mapping,
  with a ``_best.pth`` beside them.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import zipfile
from collections.abc import Iterator

import numpy as np
import torch

from gluon_ssd.devices import parse_gpu_ids
from gluon_ssd.fileio import atomic_write
from gluon_ssd.train.loop import TrainingError, weights_file_classes, weights_file_error

from .._cpu import kernels as cpu_kernels
from ..nn.layers import fuse_relu
from ..nn.ssd import get_torch_model
from ..runtime.inference import reuse_freed_memory
from ..weights.mapping import (
    gluon_to_torch,
    ignored_gluon_keys,
    key_map,
    read_gluon_file,
    save_torch_model,
    write_gluon_file,
)
from .loss import SSDLoss, train_step
from .optim import MXNetSGD
from .start import start_model
from .target import batch_targets

log = logging.getLogger(__name__)

FORMAT = "gluon_ssd-torch-checkpoint-1"
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) for a plain process."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))


def torch_device(cfg) -> torch.device:
    """The device of this process: ``--gpus ''`` the CPU, else ``cuda:{gpus[LOCAL_RANK]}``."""
    try:
        gpus = parse_gpu_ids(cfg.gpus)
    except ValueError as err:
        raise TrainingError(f"--gpus {cfg.gpus!r}: {err}") from None
    if not gpus:
        return torch.device("cpu")
    _, world, local = _world()
    if len(gpus) > 1 and world == 1:
        raise TrainingError(f"--backend torch drives one GPU per process: run torchrun --nproc-per-node "
                            f"{len(gpus)} train_ssd.py ... --gpus {cfg.gpus} (README, 'Training the PyTorch twin')")
    if not torch.cuda.is_available():
        raise TrainingError(f"--gpus {cfg.gpus}: this torch sees no CUDA GPU; --gpus '' trains on the CPU")
    if local >= len(gpus):
        raise TrainingError(f"process {local} on this machine has no GPU in --gpus {cfg.gpus}: list one per "
                            f"process (--nproc-per-node)")
    if gpus[local] >= torch.cuda.device_count():
        raise TrainingError(f"--gpus {cfg.gpus}: GPU {gpus[local]} does not exist (this torch sees "
                            f"{torch.cuda.device_count()})")
    return torch.device("cuda", gpus[local])


class _LiveDetector:
    """The model being trained as a detector of :mod:`gluon_ssd.predict` (numpy batch in), for validation."""

    def __init__(self, model, device, amp_dtype):
        self.model, self.device, self.amp_dtype = model, device, amp_dtype
        self.classes = tuple(model.classes)

    def __call__(self, batch):
        images = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        with torch.no_grad(), torch.autocast(self.device.type, self.amp_dtype or torch.bfloat16,
                                             enabled=self.amp_dtype is not None):
            cls_preds, box_preds, anchors = self.model.raw(images)
        ids, scores, boxes = self.model.postprocess(cls_preds.float(), box_preds.float(), anchors.float())
        return ids[..., 0].cpu().numpy(), scores[..., 0].cpu().numpy(), boxes.cpu().numpy()


class TorchEngine:
    """The twin trained by gluon_ssd's loop (see :class:`gluon_ssd.train.loop.Engine`).

    Parameters
    ----------
    cfg : :class:`gluon_ssd.train.config.TrainConfig`.
    net : the initialized gluon SSD on the CPU (its weights are converted), or None where MXNet is not installed
        (the twin is initialized in torch, :mod:`convert.train.start`).
    classes : the class names trained.
    """

    def __init__(self, cfg, net, classes):
        self.cfg, self.net, self.classes = cfg, net, classes
        self.check_config(cfg)
        self.device = torch_device(cfg)
        if self.device.type == "cpu" and reuse_freed_memory():
            log.debug("malloc keeps large freed blocks for reuse (fewer page faults per step)")
        self.dist = None
        self.rank, self.parts, self.devices = 0, 1, 1  # one device per process
        self._loss = SSDLoss()  # a caller may set its own before the first step
        self._join_workers()
        self.amp_dtype = AMP_DTYPES[cfg.amp_dtype or "bf16"] if cfg.amp else None

    @staticmethod
    def check_config(cfg) -> None:
        if cfg.horovod or "dist" in cfg.kvstore:
            raise TrainingError("--horovod and --kvstore dist_* are MXNet's scale-out; with --backend torch "
                                "launch one process per GPU (or CPU worker) with torchrun (README)")
        if cfg.cpu_contexts > 1:
            raise TrainingError("--cpu-contexts splits a batch over MXNet CPU contexts; with --backend torch use "
                                "torchrun --nproc-per-node N for several CPU processes")
        device = torch_device(cfg)
        if cfg.amp_dtype and not cfg.amp:
            raise TrainingError(f"--amp-dtype {cfg.amp_dtype} needs --amp")
        if cfg.amp and cfg.amp_dtype == "fp16" and device.type != "cuda":
            raise TrainingError("--amp-dtype fp16 needs a CUDA GPU; on the CPU use --amp-dtype bf16")

    # -- set-up -----------------------------------------------------------------------------------
    def _join_workers(self):
        rank, world, _ = _world()
        if world > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                if self.device.type == "cuda":
                    torch.cuda.set_device(self.device)
                dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
            self.dist = dist
            self.rank, self.parts = dist.get_rank(), dist.get_world_size()
        if self.cfg.batch_size % self.parts:
            raise TrainingError(f"--batch-size {self.cfg.batch_size} is the global batch; it must divide evenly "
                                f"over {self.parts} processes")

    def loader(self, dataset, sampler):
        from gluon_ssd.data.batchify import torch_loader  # why: gluon_ssd.data.batchify imports MXNet if installed

        # Persistent workers: an item depends only on its (epoch, index) key, which the sampler hands out.
        return torch_loader(dataset, sampler, _collate, self.cfg.num_workers,
                            pin_memory=self.device.type == "cuda", persistent=True)

    def _start_from_gluon(self):
        """The twin holding the initialized gluon network's weights, and the anchors (see the module docstring)."""
        from gluon_ssd._mxnet import mx  # why: only this start needs MXNet (the gluon network exists)

        cfg = self.cfg
        with mx.autograd.train_mode():
            # As the MXNet engine: anchors from a training-mode forward on zeros (which moves BatchNorm
            # statistics), then the weights are converted, so both backends hold the same state.
            zeros = mx.nd.zeros((1, 3, cfg.data_shape, cfg.data_shape))
            anchors = torch.from_numpy(self.net(zeros)[2].asnumpy())
        model = get_torch_model(cfg.model_name, classes=self.classes)
        arrays = {k: p.data().asnumpy() for k, p in self.net._collect_params_with_prefix().items()}
        state, self.ignored = gluon_to_torch(model, arrays, source="the initialized network")
        model.load_state_dict(state, strict=True)
        return model, anchors

    def _start_in_torch(self):
        """Without MXNet: the twin initialized as gluon_ssd initializes the network (convert.train.start), then the
        same training-mode forward on zeros for the anchors."""
        from gluon_ssd.train.run import (
            start_weights,  # why: run imports MXNet where installed; this start runs where not
        )

        cfg = self.cfg
        try:
            model, self.ignored = start_model(cfg.model_name, self.classes, cfg.seed, *start_weights(cfg))
        except (ValueError, FileNotFoundError) as err:
            flag = f"--transfer {cfg.transfer}" if cfg.transfer else f"--pretrained-base {cfg.pretrained_base}"
            raise TrainingError(f"{flag}: {err}") from None
        with torch.no_grad():
            # Two images, not one: torch's BatchNorm refuses one value per channel in training mode (the 1x1
            # extra layers); two copies of an image have the batch mean and (biased) variance of one.
            anchors = model.raw(torch.zeros(2, 3, cfg.data_shape, cfg.data_shape))[2]
        return model, anchors

    def setup(self) -> None:
        """The twin (from the gluon network, or initialized in torch), anchors, optimizer and grad scaler."""
        cfg = self.cfg
        model, anchors = self._start_from_gluon() if self.net is not None else self._start_in_torch()
        self.torch_anchors = anchors.to(self.device)  # for convert.train.target
        self.model = model.to(self.device).train()
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
            if self.device.type == "cpu" and cpu_kernels.library() is not None:
                # BatchNorm + ReLU as one kernel (float32; under --amp torch's bf16 kernels run as before)
                log.info("CPU kernels: %d BatchNorm + ReLU pairs fused", fuse_relu(self.model))
        if cfg.syncbn and self.parts > 1:
            for module in self.model.modules():
                if hasattr(module, "sync"):
                    module.sync = True
        self.optimizer = MXNetSGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum, wd=cfg.wd)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None

    def start(self) -> None:
        """DistributedDataParallel over torchrun's processes, torch.compile with --compile."""
        self.forward_model = self.model
        if self.dist is not None:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward_model = DistributedDataParallel(self.model, device_ids=ids, broadcast_buffers=False)
        if self.cfg.compile:
            self.forward_model = torch.compile(self.forward_model)

    def close(self) -> None:
        if self.dist is not None and self.dist.is_initialized():
            self.dist.destroy_process_group()

    # -- one step ---------------------------------------------------------------------------------
    def set_learning_rate(self, lr: float) -> None:
        self.optimizer.set_learning_rate(lr)

    def _global_num_pos(self, local):
        if self.dist is None:
            return float(local)
        value = torch.tensor([float(local)], dtype=torch.float64,
                             device=self.device if self.device.type == "cuda" else "cpu")
        self.dist.all_reduce(value)
        return float(value.item())

    def _to_device(self, array, dtype=torch.float32):
        if not isinstance(array, torch.Tensor):
            from gluon_ssd._mxnet import as_numpy  # why: an NDArray batch comes only where MXNet is installed

            array = torch.from_numpy(np.ascontiguousarray(as_numpy(array)))
        return array.to(self.device, dtype, non_blocking=True)

    def step(self, images, labels) -> list[float]:
        """images (B, 3, H, W), labels (B, M, 6) of this process (tensors, or NDArrays)."""
        # The targets of convert.train.target (gluon_ssd's matching and encoding in torch) on the training device.
        cls_t, box_t = batch_targets(self.torch_anchors, self._to_device(labels))
        num_pos = self._global_num_pos(float((cls_t > 0).sum().item()))
        x = self._to_device(images)
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        losses = train_step(self.forward_model, self._loss, self.optimizer, x, cls_t, box_t, num_pos,
                            self.amp_dtype, self.scaler, grad_factor=self.parts)
        return losses.double().cpu().tolist()

    # -- checkpoints and files --------------------------------------------------------------------
    def save_checkpoint(self, path: str, meta: dict) -> None:
        buffer = io.BytesIO()
        torch.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "ignored": self.ignored}, buffer)
        meta = dict(meta, format=FORMAT, backend="torch")
        with atomic_write(path, "wb") as raw, zipfile.ZipFile(raw, "w") as zf:
            zf.writestr("meta.json", json.dumps(meta, indent=1, default=str))
            zf.writestr("torch_state.pt", buffer.getvalue())

    def load_checkpoint(self, path: str, accept) -> dict:
        state, meta = load_checkpoint(path)
        accept(meta)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.ignored = state.get("ignored", self.ignored)
        return meta

    def load_weights(self, path: str) -> None:
        """The weights of MXNet parameter file ``path`` in the twin: read by
        :func:`convert.weights.mapping.read_gluon_file`
        (without MXNet through :mod:`gluon_ssd.ndfile`: structural keys only), converted by name and shape, stored
        anchors checked against the twin's formula (:func:`convert.weights.mapping.gluon_to_torch`). The optimizer keeps
        its fresh state."""
        try:
            arrays = read_gluon_file(self.model, path)
        except ValueError as err:
            raise TrainingError(f"--resume {path}: {err}") from None
        try:
            state, ignored = gluon_to_torch(self.model, arrays, source=path)
        except ValueError as err:
            own = self.model.state_dict()
            classes = weights_file_classes({k: np.shape(v) for k, v in arrays.items()},
                                           {g: tuple(own[t].shape) for t, g in key_map(self.model).items()},
                                           self.model.anchor_generators[0].num_anchors,
                                           optional=ignored_gluon_keys(self.model))
            raise weights_file_error(self.cfg, self.classes, path, err, classes) from None
        self.model.load_state_dict(state, strict=True)
        self.ignored = ignored

    def write_params(self, path: str) -> None:
        write_gluon_file(self.model, self.model.state_dict(), path, self.ignored)

    def write_best(self, prefix: str, epoch: int, current_map: float) -> None:
        """``{prefix}_best.params`` (gluon_ssd's format) and the twin's ``{prefix}_best.pth``."""
        self.write_params(f"{prefix}_best.params")
        save_torch_model(self.model, f"{prefix}_best.pth", self.ignored,
                         source=f"train_ssd.py --backend torch, epoch {epoch}, mAP {current_map:.4f}")

    @contextlib.contextmanager
    def detector(self) -> Iterator[_LiveDetector]:
        self.model.eval()
        nms = (self.model.nms_thresh, self.model.nms_topk, self.model.post_nms)
        self.model.set_nms(0.45, 400, 100)  # GluonCV's evaluation settings, as the MXNet engine's
        try:
            yield _LiveDetector(self.model, self.device, self.amp_dtype)
        finally:
            self.model.set_nms(*nms)
            self.model.train()


def _collate(samples):
    """The batch of :func:`batchify_detection` as CPU tensors (a worker's tensors travel in shared memory)."""
    from gluon_ssd.data.batchify import batchify_detection  # why: gluon_ssd.data.batchify imports MXNet if there

    return tuple(torch.from_numpy(field) for field in batchify_detection(samples, numpy=True))


def load_checkpoint(path) -> tuple[dict, dict]:
    """(torch state, meta) of a ``--backend torch`` checkpoint; a clear TrainingError for anything else."""
    path = os.fspath(path)
    try:
        with zipfile.ZipFile(path) as zf:
            meta = json.loads(zf.read("meta.json"))
            if meta.get("format") != FORMAT:
                raise TrainingError(f"--resume {path} is a checkpoint of the {meta.get('backend', 'mxnet')} "
                                    f"backend; resume it with --backend {meta.get('backend', 'mxnet')}")
            state = torch.load(io.BytesIO(zf.read("torch_state.pt")), map_location="cpu", weights_only=True)
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, RuntimeError) as err:
        if isinstance(err, TrainingError):
            raise
        raise TrainingError(f"{path} is not a readable --backend torch checkpoint ({err}); use the *_last.ckpt "
                            f"file a run wrote") from None
    return state, meta
