"""One epoch of training, in the manner of torchvision's ``train_one_epoch``: it knows nothing about any
one method. The model computes its own named loss terms in ``forward_train``; the loop back-propagates
``losses["total"]`` and averages every term for the log."""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..models.base import LossContext
from .optim import WarmupCosine
from .precision import Precision


def train_one_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: Iterable[tuple[Tensor, Tensor]],
                    ctx: LossContext, schedule: WarmupCosine, step: int, *, device: torch.device,
                    precision: Precision, scaler: torch.amp.GradScaler | None = None, grad_clip: float | None = None,
                    channels_last: bool = True, total: int | None = None, desc: str = "train",
                    progress: bool = True) -> tuple[dict[str, float], int]:
    """Train on every batch of ``batches``; returns (mean of every loss term, the next global step)."""
    model.train()
    sums: dict[str, float] = {}
    count = 0
    bar = tqdm(batches, total=total, desc=desc, disable=not progress, leave=False, unit="step")
    for x, y in bar:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        schedule.apply(optimizer, step)
        with precision.autocast():
            losses = model.forward_train(x, y, ctx).losses
        loss = losses["total"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at epoch {ctx.epoch + 1}, step {step}: "
                                     f"terms {({k: float(v) for k, v in losses.items()})}")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        step += 1
        count += 1
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        bar.set_postfix(loss=f"{sums['total'] / count:.4f}")
    return {k: v / max(count, 1) for k, v in sums.items()}, step
