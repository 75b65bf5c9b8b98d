"""MXNet 1.9's SGD update rule in torch, so that a torch run reproduces a Gluon run's weights to the last bits.

:class:`MXNetSGD` applies the update of ``mxnet.optimizer.SGD`` as ``gluon.Trainer`` runs it (the
``sgd_mom_update`` / ``multi_sgd_mom_update`` kernels, no gradient clipping, no multi-precision), in the
kernels' float32 operation order. It differs from ``torch.optim.SGD`` where the learning rate changes: MXNet
multiplies the learning rate into the momentum buffer at each update, torch applies it to the buffer.

Importing this module needs only torch and numpy.
"""
from __future__ import annotations

import numpy as np
import torch

from .._cpu import kernels as cpu_kernels

__all__ = ["MXNetSGD"]


def _f32(value: float) -> float:
    """``value`` rounded to float32, as MXNet stores an optimizer's scalars (lr, wd, momentum)."""
    return float(np.float32(value))


class MXNetSGD(torch.optim.Optimizer):
    """SGD with MXNet 1.9's update rule, weight decay on every parameter.

    For each parameter with a gradient, with ``lr``, ``wd``, ``momentum`` and ``rescale_grad`` rounded
    to float32 and every operation below rounded to the parameter's dtype, in this order (MXNet's
    kernel computes ``mom = momentum*mom - lr*wd*w - lr*rescale_grad*grad; w += mom``)::

        mom = momentum * mom
        mom = mom - (lr * wd) * weight
        mom = mom - (lr * rescale_grad) * grad
        weight = weight + mom

    With ``momentum`` 0 there is no buffer: ``weight = weight - ((lr * wd) * weight + (lr *
    rescale_grad) * grad)``. The learning rate enters at each update (see :meth:`set_learning_rate`). On
    float32 CPU tensors the update runs as one kernel of :mod:`convert._cpu.kernels` (the same operations).

    Parameters
    ----------
    params : iterable
        Parameters or parameter groups, as for any torch optimizer.
    lr : float
        Learning rate.
    momentum : float, default 0
        Momentum; buffers are ``self.state[p]["momentum"]``, zeros at a parameter's first update.
    wd : float, default 0
        Weight decay, applied to all parameters (biases and BatchNorm included), as MXNet does.
    rescale_grad : float, default 1
        Factor on the gradients (gluon.Trainer's ``1 / batch_size`` of ``step(batch_size)``).
    """

    def __init__(self, params, lr: float, momentum: float = 0.0, wd: float = 0.0, rescale_grad: float = 1.0):
        if lr < 0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if momentum < 0:
            raise ValueError(f"momentum must be >= 0, got {momentum}")
        super().__init__(params, {"lr": lr, "momentum": momentum, "wd": wd, "rescale_grad": rescale_grad})

    def set_learning_rate(self, lr: float) -> None:
        """Set the learning rate of every parameter group (``gluon.Trainer.set_learning_rate``)."""
        for group in self.param_groups:
            group["lr"] = lr

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            weights, grads = [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("MXNetSGD does not support sparse gradients")
                weights.append(p)
                grads.append(p.grad)
            if not weights:
                continue
            lr = np.float32(group["lr"])
            # MXNet multiplies the float32 scalars first: (lr * wd) * w and (lr * rescale_grad) * g.
            lr_wd = float(lr * np.float32(group["wd"]))
            lr_rescale = float(lr * np.float32(group["rescale_grad"]))
            momentum = _f32(group["momentum"])
            bufs = None
            if momentum > 0:
                bufs = []
                for p in weights:
                    state = self.state[p]
                    if "momentum" not in state:
                        state["momentum"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    bufs.append(state["momentum"])
            if cpu_kernels.sgd_update(weights, grads, bufs, momentum, lr_wd, lr_rescale):
                continue  # the same operations in one pass (float32 CPU tensors)
            decay = torch._foreach_mul(weights, lr_wd)
            step = torch._foreach_mul(grads, lr_rescale)
            if bufs is not None:
                torch._foreach_mul_(bufs, momentum)
                torch._foreach_sub_(bufs, decay)
                torch._foreach_sub_(bufs, step)
                torch._foreach_add_(weights, bufs)
            else:
                # 0 - a - b equals -(a + b) exactly in IEEE arithmetic.
                torch._foreach_add_(decay, step)
                torch._foreach_sub_(weights, decay)
        return loss
