"""Multi-label criteria registered as ``loss.name``: ``focal`` and ``asl`` (``bce`` with per-class
``pos_weight`` lives in ``medattn.losses.classification``).

Both take logits B x K and 0/1 targets B x K (a row of NaN = unlabeled, ignored), compute in float32,
and by default average over the labeled rows and the K labels, so that with their focusing turned off
they equal ``F.binary_cross_entropy_with_logits`` (mean reduction).

- Focal loss (Lin et al., ICCV 2017): -alpha_t (1 - p_t)^gamma log p_t, with p_t = p for a positive
  and 1 - p for a negative, alpha_t = alpha / 1 - alpha (``alpha=None``: no balancing). RetinaNet
  divides the sum by the number of positives; here it is the mean, so gamma = 0 gives BCE.
- Asymmetric loss (Ridnik et al., ICCV 2021): positives -(1 - p)^gamma_pos log p; negatives
  -p_m^gamma_neg log(1 - p_m) with the shifted probability p_m = max(p - clip, 0). Defaults
  gamma_neg=4, gamma_pos=1, clip=0.05, eps=1e-8 and a focusing weight without gradient are the
  reference class's defaults; it sums over every element (``reduction="sum"``), the mean is the default
  here (a learning rate tuned for BCE then still fits). log p is ``logsigmoid`` (the reference clamps
  p at eps before the log: the same above logits of about -18); eps clamps 1 - p_m.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from ._registry import Criterion, register_criterion
from .classification import ignoring_unlabeled, require_task

REDUCTIONS = ("mean", "sum")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    return loss.mean() if reduction == "mean" else loss.sum()


def focal_loss(logits: Tensor, targets: Tensor, gamma: float = 2.0, alpha: float | None = None,
               reduction: str = "mean") -> Tensor:
    """Sigmoid focal loss of labeled logits/targets B x K (no NaN) -> scalar, float32."""
    x, y = logits.float(), targets.float()
    bce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    p = torch.sigmoid(x)
    p_t = p * y + (1 - p) * (1 - y)
    loss = (1 - p_t).pow(gamma) * bce if gamma else bce
    if alpha is not None:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    return _reduce(loss, reduction)


def asymmetric_loss(logits: Tensor, targets: Tensor, gamma_neg: float = 4.0, gamma_pos: float = 1.0,
                    clip: float = 0.05, eps: float = 1e-8, detach_focusing: bool = True,
                    reduction: str = "mean") -> Tensor:
    """ASL of labeled logits/targets B x K (no NaN) -> scalar, float32."""
    x, y = logits.float(), targets.float()
    p = torch.sigmoid(x)
    if clip > 0:
        p_neg = (1 - p + clip).clamp(max=1.0)   # 1 - p_m
        log_neg = torch.log(p_neg.clamp(min=eps))
    else:
        p_neg = 1 - p
        log_neg = F.logsigmoid(-x)               # exact log(1 - p), no eps needed
    log_pos = F.logsigmoid(x)
    loss = -(y * log_pos + (1 - y) * log_neg)
    if gamma_neg or gamma_pos:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not detach_focusing):
            p_t = p * y + p_neg * (1 - y)
            weight = (1 - p_t).pow(gamma_pos * y + gamma_neg * (1 - y))
        loss = loss * weight
    return _reduce(loss, reduction)


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


@register_criterion("focal")
def focal(task: str, class_weights: Tensor | None = None, gamma: float = 2.0, alpha: float | None = None,
          reduction: str = "mean") -> Criterion:
    """Sigmoid focal loss for multi-label data (``loss.options``: gamma, alpha, reduction)."""
    require_task(task, "multilabel", "focal")
    _check_reduction(reduction)
    if gamma < 0:
        raise ValueError(f"focal gamma must be >= 0, got {gamma}")
    if alpha is not None and not 0 <= alpha <= 1:
        raise ValueError(f"focal alpha must be in [0, 1] or null, got {alpha}")
    return ignoring_unlabeled(partial(focal_loss, gamma=float(gamma), alpha=None if alpha is None else float(alpha),
                                      reduction=reduction))


@register_criterion("asl")
def asl(task: str, class_weights: Tensor | None = None, gamma_neg: float = 4.0, gamma_pos: float = 1.0,
        clip: float = 0.05, eps: float = 1e-8, detach_focusing: bool = True, reduction: str = "mean") -> Criterion:
    """Asymmetric loss for multi-label data (``loss.options``: gamma_neg, gamma_pos, clip, eps,
    detach_focusing, reduction)."""
    require_task(task, "multilabel", "asl")
    _check_reduction(reduction)
    if gamma_neg < 0 or gamma_pos < 0:
        raise ValueError(f"asl gammas must be >= 0, got gamma_neg={gamma_neg}, gamma_pos={gamma_pos}")
    if not 0 <= clip < 1:
        raise ValueError(f"asl clip must be in [0, 1), got {clip}")
    return ignoring_unlabeled(partial(asymmetric_loss, gamma_neg=float(gamma_neg), gamma_pos=float(gamma_pos),
                                      clip=float(clip), eps=float(eps), detach_focusing=bool(detach_focusing),
                                      reduction=reduction))
