"""One epoch of training, in the manner of torchvision's ``train_one_epoch``: it knows nothing about any
one method. The model computes its own named loss terms in ``forward_train``; the loop back-propagates
``losses["total"]`` and averages every term for the log."""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..models.base import LossContext
from .distributed import no_sync
from .optim import WarmupCosine
from .precision import Precision


def train_one_epoch(step_fn: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    batches: Iterable[tuple[Tensor, Tensor]], ctx: LossContext, schedule: WarmupCosine, step: int, *,
                    device: torch.device, precision: Precision, scaler: torch.amp.GradScaler | None = None,
                    grad_clip: float | None = None, channels_last: bool = True, accumulate: int = 1,
                    after_step: Callable[[int], None] | None = None, total: int | None = None, desc: str = "train",
                    progress: bool = True) -> tuple[dict[str, float], int]:
    """Train on every batch of ``batches``; returns (mean of every loss term, the next global step).

    ``step_fn(x, y, ctx)`` returns the named loss terms: ``distributed.TrainStep`` around the model,
    DDP-wrapped under torchrun so that its forward (and so every gradient) is synchronised.
    ``accumulate`` > 1 splits each batch into that many micro-batches (rows ``i::accumulate``, so
    labeled and unlabeled images stay mixed) whose gradients add up before one optimiser step;
    DDP all-reduces only after the last. ``after_step(step)`` runs after every optimiser step.
    """
    step_fn.train()
    sums: dict[str, float] = {}
    count = 0
    bar = tqdm(batches, total=total, desc=desc, disable=not progress, leave=False, unit="step")
    for x, y in bar:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        schedule.apply(optimizer, step)
        optimizer.zero_grad(set_to_none=True)
        micro = [(x, y)] if accumulate == 1 else [(x[i::accumulate], y[i::accumulate]) for i in range(accumulate)]
        for i, (xm, ym) in enumerate(micro):
            with no_sync(step_fn, i < len(micro) - 1):
                with precision.autocast():
                    losses = step_fn(xm, ym, ctx)
                loss = losses["total"]
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss is {loss.item()} at epoch {ctx.epoch + 1}, step {step}: "
                                             f"terms {({k: float(v) for k, v in losses.items()})}")
                if accumulate > 1:
                    loss = loss / accumulate
                (scaler.scale(loss) if scaler is not None else loss).backward()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) / len(micro)
        if scaler is not None:
            scaler.unscale_(optimizer)
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(step_fn.parameters(), grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        step += 1
        count += 1
        if after_step is not None:
            after_step(step)
        bar.set_postfix(loss=f"{sums['total'] / count:.4f}")
    return {k: v / max(count, 1) for k, v in sums.items()}, step
