"""CPU kernels of the torch trainer (``kernels.c``): a fused training-mode BatchNorm + ReLU for float32
channels-last tensors, and MXNet's SGD update in one pass.

torch's eager CPU training step spends a MobileNet-SSD step's BatchNorm + ReLU in four kernels per layer
(batch_norm, relu_, threshold_backward, batch_norm_backward), six passes over memory; the fused kernel does
the layer's forward in two passes and its backward in two (BENCHMARKS.md, "Training the twin"). The ReLU that
follows a BatchNorm is folded into it by :func:`convert.nn.layers.fuse_relu` (``train_ssd.py --backend torch
--channels-last`` on the CPU), and :func:`convert.nn.layers.mxnet_batch_norm` runs such a BatchNorm with
:func:`batch_norm` where :func:`applies` says so. A BatchNorm with no ReLU after it keeps torch's kernel: with
the same number of passes (two each way) torch's is 5-50% faster than this one there (measured on ResNet-50's
shapes).
:func:`sgd_update` is :class:`convert.train.optim.MXNetSGD`'s update on the CPU: the same float32 operations in
the same order as its torch fallback (six passes over memory and two temporaries), in one pass. :func:`logf` is
the C library's logf, which MXNet's CPU log calls: the training targets' box size codes to MXNet's last bit.

The C source is compiled on first use with the system's C compiler (``$CC``, else ``cc``) into
``$GLUON_SSD_KERNEL_CACHE`` (default ``~/.cache/gluon_ssd/kernels``), one file per source, flags and CPU (it is
built for the CPU it runs on), written atomically. Without a compiler, or with ``GLUON_SSD_CPU_KERNELS=0``,
nothing changes: torch's own kernels run (:func:`library` returns None; the reason is logged once).

A leaf: it sees tensors, never modules, and imports nothing of the project.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

log = logging.getLogger(__name__)

__all__ = ["library", "applies", "batch_norm", "sgd_update", "logf"]

SOURCE = Path(__file__).with_name("kernels.c")
FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fopenmp", "-fPIC", "-shared"]
_state: dict = {}


def _cpu_key() -> str:
    """The CPU model and feature flags, which a -march=native build depends on."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [line for line in f if line.startswith(("model name", "flags"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor() or platform.machine()


def cache_dir() -> Path:
    return Path(os.environ.get("GLUON_SSD_KERNEL_CACHE") or Path.home() / ".cache" / "gluon_ssd" / "kernels")


def _build() -> Path:
    """The compiled library's path, compiling it if the cache has no build for this source, flags and CPU."""
    compiler = os.environ.get("CC") or "cc"
    if shutil.which(compiler) is None:
        raise OSError(f"no C compiler ({compiler!r} not found; set CC)")
    source = SOURCE.read_bytes()
    key = hashlib.sha1(source + " ".join([compiler, *FLAGS]).encode() + _cpu_key().encode()).hexdigest()[:16]
    target = cache_dir() / f"cpu_kernels-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        result = subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", tmp, "-lm"], capture_output=True, text=True,
                                timeout=120)
        if result.returncode:
            raise OSError(f"{compiler} failed on {SOURCE.name}: {result.stderr.strip()[-500:]}")
        os.replace(tmp, target)  # atomic: another process sees the old state or the whole library
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def library():
    """The loaded kernels (ctypes), or None where they cannot be built or are switched off (logged once)."""
    if "lib" in _state:
        return _state["lib"]
    lib = None
    if os.environ.get("GLUON_SSD_CPU_KERNELS", "1") == "0":
        log.info("CPU kernels (fused BatchNorm + ReLU, SGD, logf) switched off (GLUON_SSD_CPU_KERNELS=0): torch's "
                 "kernels run")
    else:
        try:
            lib = ctypes.CDLL(str(_build()))
            p, n = ctypes.c_void_p, ctypes.c_long
            lib.gs_batch_norm_forward.argtypes = [p, p, n, n, p, p, ctypes.c_double, ctypes.c_int, p, p, p]
            lib.gs_batch_norm_backward.argtypes = [p, p, p, n, n, p, p, p, p, ctypes.c_int, p, p]
            lib.gs_batch_norm_forward.restype = lib.gs_batch_norm_backward.restype = ctypes.c_int
            f = ctypes.c_float
            lib.gs_sgd_update.argtypes = [n, p, p, p, p, f, f, f]
            lib.gs_sgd_update.restype = None
            lib.gs_logf.argtypes = [p, p, n]
            lib.gs_logf.restype = None
        except (OSError, subprocess.SubprocessError) as err:
            log.info("CPU kernels (fused BatchNorm + ReLU, SGD, logf) unavailable (%s): torch's kernels run", err)
            lib = None
    _state["lib"] = lib
    return lib


def applies(x: torch.Tensor) -> bool:
    """Whether :func:`batch_norm` takes ``x``: float32, 4-D, channels-last, on the CPU, outside autocast, and
    the kernels are available."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4 and x.numel() > 0
            and x.is_contiguous(memory_format=torch.channels_last) and not _cpu_autocast() and library() is not None)


def _cpu_autocast() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


def _ptr(t: torch.Tensor | None):
    return None if t is None else ctypes.c_void_p(t.data_ptr())


class _BatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, eps, relu, stats):
        n, c, h, w = x.shape
        y = torch.empty_like(x, memory_format=torch.channels_last)
        mean, invstd = torch.empty(c), torch.empty(c)
        weight_ = None if weight is None else weight.detach().contiguous()
        bias_ = bias.detach().contiguous()
        if library().gs_batch_norm_forward(_ptr(x), _ptr(y), n * h * w, c, _ptr(weight_), _ptr(bias_), float(eps),
                                           int(relu), _ptr(mean), _ptr(invstd), _ptr(stats[1])):
            raise MemoryError("the fused BatchNorm kernel could not allocate its buffers")
        stats[0].copy_(mean)  # (the kernel wrote the biased variance into stats[1])
        ctx.save_for_backward(x, weight_, bias_, mean, invstd)
        ctx.relu = relu
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, bias, mean, invstd = ctx.saved_tensors
        n, c, h, w = x.shape
        dy = dy.contiguous(memory_format=torch.channels_last)
        dx = torch.empty_like(x, memory_format=torch.channels_last)
        dgamma = None if weight is None else torch.empty(c)
        dbeta = torch.empty(c)
        if library().gs_batch_norm_backward(_ptr(x), _ptr(dy), _ptr(dx), n * h * w, c, _ptr(weight), _ptr(bias),
                                            _ptr(mean), _ptr(invstd), int(ctx.relu), _ptr(dgamma), _ptr(dbeta)):
            raise MemoryError("the fused BatchNorm kernel could not allocate its buffers")
        return dx, dgamma, dbeta, None, None, None


def batch_norm(x: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor, weight: torch.Tensor | None,
               bias: torch.Tensor, momentum: float, eps: float, relu: bool = False) -> torch.Tensor:
    """Training-mode BatchNorm (then ReLU if ``relu``) of ``x`` (see :func:`applies`) with MXNet's statistics:
    the batch mean and biased variance normalize, and the running statistics move with that same biased
    variance (``running = (1 - momentum) * running + momentum * batch``, ``momentum`` in torch's sense)."""
    stats = torch.empty(2, x.shape[1], dtype=torch.float64)  # the batch mean and biased variance
    out = _BatchNorm.apply(x, weight, bias, eps, relu, stats)
    with torch.no_grad():
        mean, var = stats[0], stats[1]
        running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
        running_var.mul_(1 - momentum).add_(var.to(running_var.dtype), alpha=momentum)
    return out


def _dense(t: torch.Tensor) -> bool:
    return t.is_contiguous() or (t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last))


def sgd_update(weights, grads, buffers, momentum: float, lr_wd: float, lr_rescale: float) -> bool:
    """MXNet's SGD update (see :class:`convert.train.optim.MXNetSGD`) of every weight in one call; ``buffers``
    None without momentum. False (nothing done) unless all are dense float32 CPU tensors laid out alike and the
    kernels are available. The float32 scalars must be given already rounded (MXNet's ``lr * wd`` etc.)."""
    tensors = [*weights, *grads, *(buffers or ())]
    if not weights or library() is None or any(
            t.device.type != "cpu" or t.dtype != torch.float32 or not _dense(t) for t in tensors):
        return False
    groups = [weights, grads] + ([buffers] if buffers is not None else [])
    if any(a.shape != b.shape or a.stride() != b.stride() for group in groups[1:] for a, b in zip(weights, group)):
        return False

    def pointers(group):
        return (ctypes.c_void_p * len(group))(*[t.data_ptr() for t in group])

    sizes = (ctypes.c_long * len(weights))(*[t.numel() for t in weights])
    library().gs_sgd_update(len(weights), pointers(weights), pointers(grads),
                            pointers(buffers) if buffers is not None else None, sizes, momentum, lr_wd, lr_rescale)
    bump = getattr(torch.autograd.graph, "increment_version", None)  # torch >= 2.1
    for t in (*weights, *(buffers or ())) if bump else ():  # written through pointers: tell autograd
        bump(t)
    return True


def logf(x: torch.Tensor) -> torch.Tensor | None:
    """``log(x)`` by the C library's ``logf`` (MXNet's CPU log of float32, to the bit) for a float32 CPU tensor;
    None (nothing done) for any other tensor or where the kernels are unavailable."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or library() is None:
        return None
    x = x.contiguous()
    out = torch.empty_like(x)
    library().gs_logf(x.data_ptr(), out.data_ptr(), x.numel())
    return out
