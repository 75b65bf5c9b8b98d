"""Leaf layers of the PyTorch twin that know the MXNet parameter names they hold.

Every layer with parameters carries ``gluon_key``: the prefix of its parameters in a gluon_ssd/GluonCV
file (``features.resnetv10_stage1_conv0_`` for backbones built as a SymbolBlock,
``features.stages.0.0.`` for structural Gluon blocks). ``GLUON_NAMES`` maps each torch parameter or
buffer name of the layer to the MXNet suffix. The conversion table is read off these attributes
(:func:`convert.weights.mapping.key_map`), so weights are matched by name, never by position.
:class:`LayerNames` numbers layers as MXNet does, :func:`assign_structural_keys` names Gluon-style blocks.

:func:`fuse_relu` folds the ReLU after a BatchNorm into it (the fused CPU kernel of :mod:`convert._cpu.kernels`
then runs both in one); it walks modules here so that the kernels themselves only see tensors.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._cpu import kernels as cpu_kernels


class LayerNames:
    """MXNet's per-scope layer numbering: ``names('conv')`` -> '<prefix>conv0_', then 'conv1_', ... per hint."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.counts: dict[str, int] = {}

    def __call__(self, hint: str) -> str:
        n = self.counts.get(hint, 0)
        self.counts[hint] = n + 1
        return f"{self.prefix}{hint}{n}_"


def assign_structural_keys(module: nn.Module, root: str) -> None:
    """Gluon blocks: a layer's MXNet key prefix is its path (the torch modules mirror the Gluon tree)."""
    for path, layer in module.named_modules():
        if hasattr(layer, "gluon_names"):
            layer.gluon_key = f"{root}.{path}." if path else f"{root}."


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` with its MXNet name."""

    def __init__(self, *args, gluon_key: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.gluon_key = gluon_key

    def gluon_names(self) -> dict[str, str]:
        names = {"weight": "weight"}
        if self.bias is not None:
            names["bias"] = "bias"
        return names


def mxnet_batch_norm(x: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor,
                     weight: torch.Tensor | None, bias: torch.Tensor, momentum: float, eps: float,
                     sync: bool = False, relu: bool = False) -> torch.Tensor:
    """Training-mode BatchNorm as MXNet computes it (then a ReLU if ``relu``).

    The batch is normalized with its mean and biased variance, and the running statistics move with that
    same biased variance (torch's own BatchNorm moves them with the unbiased one): ``running = (1 -
    momentum) * running + momentum * batch``, ``momentum`` in torch's sense (0.1 = MXNet's 0.9). With
    ``sync`` (``--syncbn`` under torch.distributed) the statistics are those of the batch over all processes:
    per-channel sums are all-reduced, with gradients flowing through the reduction. With ``relu``, float32
    channels-last input on the CPU goes through the fused kernel of :mod:`convert._cpu.kernels` where it is
    available (without a ReLU to fold in, torch's own BatchNorm kernel is the faster).
    """
    if relu and not sync and cpu_kernels.applies(x):
        return cpu_kernels.batch_norm(x, running_mean, running_var, weight, bias, momentum, eps, relu)
    out = _mxnet_batch_norm(x, running_mean, running_var, weight, bias, momentum, eps, sync)
    return torch.relu_(out) if relu else out


def _mxnet_batch_norm(x, running_mean, running_var, weight, bias, momentum, eps, sync):
    if sync:
        import torch.distributed.nn.functional as dist_fn

        # Statistics in float32 at least (bf16/fp16 activations under autocast); float64 stays float64.
        xf = x if x.dtype in (torch.float32, torch.float64) else x.float()
        channels = x.shape[1]
        local = torch.cat([xf.sum((0, 2, 3)), (xf * xf).sum((0, 2, 3)),
                           xf.new_full((1,), float(x.numel() // channels))])
        total = dist_fn.all_reduce(local)
        count = total[-1]
        mean = total[:channels] / count
        var = (total[channels:2 * channels] / count - mean * mean).clamp_min(0)
        shape = (1, channels, 1, 1)
        out = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + eps)
        if weight is not None:
            out = out * weight.view(shape)
        out = (out + bias.view(shape)).to(x.dtype)
        with torch.no_grad():
            running_mean.mul_(1 - momentum).add_(mean.detach().to(running_mean.dtype), alpha=momentum)
            running_var.mul_(1 - momentum).add_(var.detach().to(running_var.dtype), alpha=momentum)
        return out
    # torch's kernel moves running_var with the unbiased variance u: (1 - m) * old + m * u. MXNet's rule wants
    # m * u * (n - 1) / n there, i.e. m * u / n less, and m * u is what the kernel added. (A separate
    # var_mean pass would cost 15-25% of a MobileNet training step on the CPU.)
    # The kernel gets a copy of running_var (autograd keeps what the kernel was given, unmodified).
    count = x.numel() // x.shape[1]
    moved = running_var.clone()
    out = F.batch_norm(x, running_mean, moved, weight, bias, True, momentum, eps)
    with torch.no_grad():
        running_var.copy_(moved - (moved - (1 - momentum) * running_var) / count)
    return out


class BatchNorm2d(nn.BatchNorm2d):
    """A Gluon ``nn.BatchNorm`` (eps 1e-5, momentum 0.9 in MXNet terms = 0.1 in torch terms).

    ``stats`` is 'running' for Gluon blocks and 'moving' for ``mx.sym.BatchNorm`` layers. In training mode the
    statistics follow MXNet (:func:`mxnet_batch_norm`); ``sync = True`` shares them across processes.
    """

    def __init__(self, channels: int, eps: float = 1e-5, gluon_key: str = "", stats: str = "running"):
        super().__init__(channels, eps=eps, momentum=0.1)
        self.gluon_key = gluon_key
        self.stats = stats
        self.sync = False
        self.relu = False  # a ReLU folded in by fuse_relu

    def gluon_names(self) -> dict[str, str]:
        return {"weight": "gamma", "bias": "beta", "running_mean": f"{self.stats}_mean",
                "running_var": f"{self.stats}_var"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self._train_forward(x)
        out = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, self.momentum,
                           self.eps)
        return F.relu(out) if self.relu else out

    @torch.jit.unused
    def _train_forward(self, x):  # training is not scripted (TorchScript models are for inference)
        return mxnet_batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.momentum,
                                self.eps, self.sync, self.relu)


class FixedGammaBatchNorm2d(nn.Module):
    """BatchNorm with gamma fixed to 1 (MXNet ``fix_gamma=True``): there is no scale to learn.

    MXNet stores a gamma for these layers and ignores it; here it does not exist. This is the
    ``mx.sym.BatchNorm`` default (eps 1e-3) of the SSD extra layers and the input BatchNorm of ResNet v2
    (``scale=False``, eps 1e-5). The shift (beta) is used, as MXNet does.
    """

    def __init__(self, channels: int, eps: float, gluon_key: str = "", stats: str = "moving",
                 momentum: float = 0.1):
        super().__init__()
        self.num_features = channels
        self.eps = eps
        self.momentum = momentum
        self.gluon_key = gluon_key
        self.stats = stats
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.sync = False
        self.relu = False  # a ReLU folded in by fuse_relu

    def gluon_names(self) -> dict[str, str]:
        return {"bias": "beta", "running_mean": f"{self.stats}_mean", "running_var": f"{self.stats}_var"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self._train_forward(x)
        out = F.batch_norm(x, self.running_mean, self.running_var, None, self.bias, False, self.momentum,
                           self.eps)
        return F.relu(out) if self.relu else out

    @torch.jit.unused
    def _train_forward(self, x):
        return mxnet_batch_norm(x, self.running_mean, self.running_var, None, self.bias, self.momentum, self.eps,
                                self.sync, self.relu)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, gamma fixed to 1"


class L2Norm(nn.Module):
    """Per-position L2 normalization over channels times a learned per-channel scale.

    MXNet ``L2Normalization(mode='channel')``: x / sqrt(sum_c x^2 + eps).
    """

    def __init__(self, channels: int, eps: float = 1e-5, gluon_key: str = ""):
        super().__init__()
        self.eps = eps
        self.gluon_key = gluon_key
        self.scale = nn.Parameter(torch.full((1, channels, 1, 1), 20.0))

    def gluon_names(self) -> dict[str, str]:
        return {"scale": "scale"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = torch.sqrt((x * x).sum(dim=1, keepdim=True) + self.eps)
        return x / norm * self.scale


class Unit(nn.Sequential):
    """A sequence of layers used as one step of a tapped backbone: returns (output, output)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        for layer in self:
            x = layer(x)
        return x, x


def conv_bn_relu(cin: int, cout: int, kernel: int, stride: int, pad: int, groups: int, conv_key: str,
                 bn_key: str) -> Unit:
    """conv (no bias) -> Gluon BatchNorm -> ReLU, as MobileNet's ``_add_conv``."""
    return Unit(Conv2d(cin, cout, kernel, stride, pad, groups=groups, bias=False, gluon_key=conv_key),
                BatchNorm2d(cout, gluon_key=bn_key), nn.ReLU(inplace=True))


def fuse_relu(model: nn.Module) -> int:
    """Fold each ReLU that directly follows a BatchNorm in an ``nn.Sequential`` into that BatchNorm (its
    ``relu`` attribute; the ReLU's slot becomes an Identity, so parameter names do not change). The network
    computes the same function; returns how many were folded. :func:`unfuse_relu` undoes it."""
    folded = 0
    for seq, bn, slot in _neighbours(model):
        if isinstance(bn, (BatchNorm2d, FixedGammaBatchNorm2d)) and type(seq._modules[slot]) is nn.ReLU:
            bn.relu = True
            seq._modules[slot] = _FoldedReLU()
            folded += 1
    return folded


def unfuse_relu(model: nn.Module) -> int:
    """Put back the ReLUs :func:`fuse_relu` folded; returns how many."""
    restored = 0
    for seq, bn, slot in _neighbours(model):
        if isinstance(seq._modules[slot], _FoldedReLU):
            bn.relu = False
            seq._modules[slot] = nn.ReLU(inplace=True)
            restored += 1
    return restored


def _neighbours(model: nn.Module):
    """(sequential, module, name of the next slot) for each pair of neighbours in the model's nn.Sequentials."""
    for seq in list(model.modules()):
        if isinstance(seq, nn.Sequential):
            names = list(seq._modules)
            for first, second in zip(names, names[1:]):
                yield seq, seq._modules[first], second


class _FoldedReLU(nn.Identity):
    """The slot of a ReLU that :func:`fuse_relu` folded into the BatchNorm before it."""
