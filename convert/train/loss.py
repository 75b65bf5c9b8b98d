"""The SSD multibox loss of gluon_ssd in torch (twin of :mod:`gluon_ssd.train.loss`), and one training step.

* :class:`SSDLoss` is gluon_ssd.train.loss ``SSDMultiBoxLoss`` (GluonCV's) for one device: softmax
  cross-entropy over the positives and the hardest negatives plus smooth L1 on the positives.
* :func:`train_step`: forward, loss, backward and update of one batch, as ``train_ssd.py --backend torch``
  runs it (and bench/bench_train_cuda.py times it), with the optimizer of :mod:`convert.train.optim`.

Importing this module needs only torch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SSDLoss", "train_step"]


class SSDLoss(nn.Module):
    """SSD multibox loss, equal to gluon_ssd's (and GluonCV's) ``SSDMultiBoxLoss`` on one device: the same
    definition and parameters (see :class:`gluon_ssd.train.loss.SSDMultiBoxLoss`), on torch tensors.

    Notes
    -----
    Hard negatives are ranked as MXNet does, by ``cross_entropy * (positive - 1)`` ascending (positives
    at 0, after every negative), with the cut at rank < quota. Equal cross-entropies go to the lower
    anchor index first (a stable sort). MXNet's CPU ``argsort`` (``std::sort``) orders ties in an
    implementation-defined way, so where a group of exactly equal cross-entropies straddles the cut,
    the same number of them is selected (same loss values) but not necessarily the same anchors.
    """

    def __init__(self, negative_mining_ratio: float = 3, rho: float = 1.0, lambd: float = 1.0,
                 min_hard_negatives: int = 0):
        super().__init__()
        if rho <= 0:
            raise ValueError(f"rho must be positive, got {rho}")
        self.negative_mining_ratio = max(0.0, float(negative_mining_ratio))
        self.rho = float(rho)
        self.lambd = float(lambd)
        self.min_hard_negatives = max(0, int(min_hard_negatives))

    def forward(self, cls_preds: torch.Tensor, box_preds: torch.Tensor, cls_targets: torch.Tensor,
                box_targets: torch.Tensor, num_positives: float | None = None):
        """Losses of a batch.

        Parameters
        ----------
        cls_preds : Tensor, (B, N, C+1)
            Raw class scores.
        box_preds : Tensor, (B, N, 4)
            Box offsets.
        cls_targets : Tensor, (B, N), integer or float
            0 for background, class + 1 for positives.
        box_targets : Tensor, (B, N, 4)
            Encoded offsets.
        num_positives : float, optional
            Positives of the whole global batch; by default those of ``cls_targets`` (a device sync).

        Returns
        -------
        (sum_loss, cls_loss, box_loss), each (B,): ``sum_loss = cls_loss + lambd * box_loss``. Without
        any positive (and ``min_hard_negatives`` 0) all are zeros that still depend on the predictions.
        """
        if num_positives is None:
            num_positives = (cls_targets > 0).sum().item()
        num_positives = float(num_positives)
        if num_positives < 1 and self.min_hard_negatives < 1:
            cls_loss = (cls_preds * 0).flatten(1).sum(1)
            box_loss = (box_preds * 0).flatten(1).sum(1)
            return cls_loss + box_loss, cls_loss, box_loss

        denominator = max(1.0, num_positives)
        positive = cls_targets > 0
        # MXNet's pick truncates float indices and clips them into [0, C].
        index = cls_targets.long().clamp(0, cls_preds.shape[-1] - 1)
        cross_entropy = -F.log_softmax(cls_preds, dim=-1).gather(-1, index.unsqueeze(-1)).squeeze(-1)
        selected = positive | self.hard_negatives(cross_entropy.detach(), positive)
        cls_loss = torch.where(selected, cross_entropy, torch.zeros_like(cross_entropy)).sum(1) / denominator

        diff = (box_preds.reshape(box_targets.shape) - box_targets).abs()
        smooth_l1 = torch.where(diff > self.rho, diff - 0.5 * self.rho, (0.5 / self.rho) * diff.square())
        # A product with the mask, as MXNet: non-finite offsets of negatives propagate.
        box_loss = (smooth_l1 * positive.unsqueeze(-1).to(smooth_l1.dtype)).flatten(1).sum(1) / denominator
        return cls_loss + self.lambd * box_loss, cls_loss, box_loss

    def hard_negatives(self, cross_entropy: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
        """Bool mask (B, N) of the anchors ranked below each image's quota (positives may be in it).

        ``cross_entropy`` (B, N) should be detached; ``positive`` is the (B, N) bool mask.
        """
        key = cross_entropy * (positive.to(cross_entropy.dtype) - 1)
        order = torch.argsort(key, dim=1, stable=True)  # anchors, hardest negative first
        num_anchors = key.shape[1]
        ranks = torch.arange(num_anchors, device=key.device).expand_as(order)
        rank_of = torch.empty_like(order).scatter_(1, order, ranks)  # inverse permutation
        # float32, as MXNet computes the quota from the float32 mask.
        quota = (positive.sum(1, keepdim=True).to(torch.float32) * self.negative_mining_ratio).clamp_min(
            float(self.min_hard_negatives))
        return rank_of.to(torch.float32) < quota


def train_step(network, loss_fn, optimizer, images, cls_targets, box_targets, num_positives, amp_dtype=None,
               scaler=None, grad_factor: float = 1.0) -> torch.Tensor:
    """One training step: forward, :class:`SSDLoss`, backward, optimizer update.

    Parameters
    ----------
    network : callable
        images -> (cls_preds, box_preds, anchors): the twin in training mode (or its DDP / compiled wrapper).
    loss_fn : SSDLoss
    optimizer : torch optimizer (:class:`convert.train.optim.MXNetSGD`)
    images : Tensor, (B, 3, H, W) on the network's device.
    cls_targets, box_targets : Tensor, (B, N) and (B, N, 4), on the same device.
    num_positives : float
        Positives of the whole global batch (the loss is normalized by it).
    amp_dtype : torch.dtype, optional
        Autocast the forward to this dtype (bf16, or fp16 with ``scaler``); the loss is float32 (float64 for a
        float64 network).
    scaler : torch.amp.GradScaler, optional
    grad_factor : float
        The objective is ``grad_factor`` times the summed loss: the world size under DDP, which averages
        gradients where the globally normalized loss needs their sum.

    Returns
    -------
    Tensor (3,): the batch's summed total, class and box losses (detached, on the device; no host sync).
    """
    device_type = images.device.type
    with torch.autocast(device_type, amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
        cls_preds, box_preds, _ = network(images)
    wide = torch.promote_types(cls_preds.dtype, torch.float32)  # float32, or float64 for a float64 network
    total, cls_loss, box_loss = loss_fn(cls_preds.to(wide), box_preds.to(wide), cls_targets, box_targets,
                                        num_positives)
    objective = total.sum() * grad_factor
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(objective).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        objective.backward()
        optimizer.step()
    return torch.stack([total.sum(), cls_loss.sum(), box_loss.sum()]).detach()
