"""Inference helpers for the PyTorch twin: device, precision, memory layout, BatchNorm folding.

Needs only torch (and numpy): usable on a machine without mxnet.
"""
from __future__ import annotations

import contextlib
import copy
import ctypes
import sys

import torch
from torch import nn

from ..nn.features import BasicBlockV1, BottleneckV1, BottleneckV2
from ..nn.layers import BatchNorm2d, FixedGammaBatchNorm2d
from ..nn.resnetv1b import BasicBlockV1b
from ..nn.ssd import SSD, to_torchvision

DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# Images per network call on CPU. Measured with torch 2.13 on two cores (BENCHMARKS.md): a batch of 8 run one
# image at a time is 7-50% faster than in one call (ResNet-50 at 512: 3.1 vs 2.2 images/s eager) with glibc's
# default malloc, which hands each big tensor fresh pages; after reuse_freed_memory() the whole batch is the
# faster (the --backend torch detector then passes micro_batch=0). GPUs take the whole batch.
CPU_MICRO_BATCH = 1


def reuse_freed_memory(limit: int = 1 << 30) -> bool:
    """Make glibc's malloc keep freed blocks below ``limit`` bytes for reuse; True if it took the settings.

    By default glibc serves each large block (above a threshold that starts at 128 KiB and rises to at
    most 32 MiB) with its own mmap and unmaps it when freed, so every activation and gradient of a CPU
    training step or detection batch arrives as fresh pages that the kernel zeroes on first touch: 0.3-0.66
    million page faults per MobileNet-512 batch-8 training step here, 0.1 million per batch-8 detection
    (MXNet, with its own memory pool: a few hundred). With the mmap and trim thresholds at ``limit`` the
    heap keeps what a step freed and the next step reuses it (6-8 thousand faults per training step).

    In exchange the process holds on to its peak memory, and the heap grows for the first few steps until
    the blocks of a step fit into what earlier steps freed (a MobileNet-256 batch-16 training step's
    resident size: stable at 1.5-1.6 GB over 40 steps); a workload whose block sizes never repeat would keep
    fragmenting, which the fixed shapes of training and detection do not do. The setting is process-wide:
    ``train_ssd.py``, ``eval_ssd.py`` and ``demo_ssd.py`` with ``--backend torch`` make it on the CPU.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    # Some glibc versions refuse a threshold above 32 MiB (HEAP_MAX_SIZE / 2): then take that.
    took = bool(mallopt(m_mmap_threshold, int(limit)) or mallopt(m_mmap_threshold, 32 << 20))
    return bool(mallopt(m_trim_threshold, int(limit))) and took


def resolve_device(device) -> torch.device:
    """``device`` as a torch.device, with a clear error when CUDA is asked for and absent."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} was asked for, but torch {torch.__version__} sees no CUDA GPU: "
                         "use --device cpu")
    return device


@contextlib.contextmanager
def _tf32(allowed: bool):
    """TensorFloat-32 convolutions and matmuls on or off (torch enables it for cuDNN convolutions by
    default, which costs about 1e-3 in the scores on Ampere and later GPUs)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def autocast(device, dtype: str):
    """A context running the network in ``dtype``: 'fp32' (strict float32, TF32 off), 'tf32' (float32
    storage, TensorFloat-32 math on GPUs that have it), 'fp16' or 'bf16' (torch.autocast)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    if dtype in ("fp32", "tf32"):
        return _tf32(dtype == "tf32")
    return torch.autocast(device_type=torch.device(device).type, dtype=DTYPES[dtype])


def _fold(conv: nn.Conv2d, bn: nn.Module) -> None:
    """Fold an inference-mode BatchNorm that follows ``conv`` into the conv's weight and bias."""
    if getattr(bn, "relu", False):
        raise ValueError("this BatchNorm has a ReLU folded into it (convert.nn.layers.fuse_relu); "
                         "call convert.nn.layers.unfuse_relu(model) before folding")
    with torch.no_grad():
        std = torch.sqrt(bn.running_var + bn.eps)
        gamma = bn.weight if isinstance(bn, BatchNorm2d) else torch.ones_like(std)
        scale = gamma / std
        bias = conv.bias if conv.bias is not None else torch.zeros_like(std)
        conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
        new_bias = (bias - bn.running_mean) * scale + bn.bias
        conv.bias = nn.Parameter(new_bias)


# Blocks whose (conv, BatchNorm) attribute pairs are conv -> BN directly.
_BLOCK_PAIRS = {BasicBlockV1: (("conv1", "bn1"), ("conv2", "bn2")),
                BasicBlockV1b: (("conv1", "bn1"), ("conv2", "bn2")),
                BottleneckV1: (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")),
                BottleneckV2: (("conv1", "bn2"), ("conv2", "bn3"))}
_BN_TYPES = (BatchNorm2d, FixedGammaBatchNorm2d)


def fuse_batchnorm(model: SSD) -> SSD:
    """A copy of ``model`` for inference with every conv -> BatchNorm pair folded into the conv.

    Only for eval mode (the folded model has no BatchNorm statistics to train); state-dict keys change,
    so convert and save the unfused model. The pre-activation BatchNorms of ResNet v2 (BN before conv)
    stay.
    """
    fused = copy.deepcopy(model).eval()
    for module in fused.modules():
        pairs = _BLOCK_PAIRS.get(type(module), ())
        for conv_name, bn_name in pairs:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, _BN_TYPES):
                _fold(conv, bn)
                setattr(module, bn_name, nn.Identity())
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                if isinstance(module[i], nn.Conv2d) and isinstance(module[i + 1], _BN_TYPES):
                    _fold(module[i], module[i + 1])
                    module[i + 1] = nn.Identity()
    return fused


def prepare(model: SSD, device="cpu", channels_last: bool | None = None, fuse_bn: bool = False) -> SSD:
    """``model`` in eval mode on ``device``; channels_last memory (default: on CPU) and optional BN folding.

    Like ``nn.Module.to``, this changes ``model`` itself (except with ``fuse_bn``, which folds a copy).
    """
    device = resolve_device(device)
    model = model.eval()
    if fuse_bn:
        model = fuse_batchnorm(model)
    model = model.to(device)
    if channels_last is None:
        channels_last = device.type == "cpu"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def uses_channels_last(model: nn.Module) -> bool:
    """Whether the model's convolution weights are in channels_last memory format."""
    weight = next((p for p in model.parameters() if p.dim() == 4), None)
    return weight is not None and weight.is_contiguous(memory_format=torch.channels_last) and \
        not weight.is_contiguous()


def predict(model: SSD, images: torch.Tensor, device="cpu", dtype: str = "fp32", output: str = "tuple",
            micro_batch: int | None = None):
    """Detections for a preprocessed batch (B, 3, H, W): the network under ``dtype`` autocast on
    ``device``, the post-processing in float32.

    output : 'tuple' -> (ids, scores, boxes) (B, K, ...) float32; 'torchvision' -> list of dicts.
    micro_batch : images per network call (0: the whole batch); default :data:`CPU_MICRO_BATCH` on CPU,
        the whole batch elsewhere. The post-processing always runs on the whole batch at once.
    """
    device = resolve_device(device)
    images = images.to(device, non_blocking=True)
    if uses_channels_last(model):
        images = images.contiguous(memory_format=torch.channels_last)
    if micro_batch is None:
        micro_batch = CPU_MICRO_BATCH if device.type == "cpu" else 0
    with torch.inference_mode():
        with autocast(device, dtype):
            parts = [model.raw(part) for part in (images.split(micro_batch) if micro_batch > 0 else [images])]
        # Predictions are per image; the anchors (1, N, 4) are the same for every part.
        cls_preds, box_preds = (torch.cat([p[k] for p in parts]).float() for k in (0, 1))
        ids, scores, boxes = model.postprocess(cls_preds, box_preds, parts[0][2].float())
    if output == "torchvision":
        return to_torchvision(ids, scores, boxes)
    if output != "tuple":
        raise ValueError(f"output={output!r}: expected 'tuple' or 'torchvision'")
    return ids, scores, boxes


def raw_outputs(model: SSD, images: torch.Tensor, device="cpu", dtype: str = "fp32") -> list[torch.Tensor]:
    """(cls_preds, box_preds, anchors) float32 for a batch, under ``dtype`` autocast on ``device``."""
    device = resolve_device(device)
    with torch.inference_mode(), autocast(device, dtype):
        return [r.float() for r in model.raw(images.to(device))]
