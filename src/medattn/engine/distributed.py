"""Training on torch.distributed: one process per device, launched by ``torchrun``, gradients
synchronised by ``DistributedDataParallel`` (NCCL on CUDA, gloo on the CPU).

``Distributed.from_env`` reads what torchrun sets (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, the
rendezvous address) and joins the process group; without torchrun it is the one-process run of
before and nothing here does anything. What is sharded: the training batch (each rank takes its
``batch_size / world_size`` slice of the global batch, in the seeded epoch order every rank computes
alike) and the prediction of a split (each rank predicts a contiguous slice; the slices are gathered
in rank order, so every image is scored exactly once and metrics such as AUC are computed on all
predictions, never averaged over ranks).
"""
from __future__ import annotations

import hashlib
import json
import os
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..errors import ConfigError, RunError
from .precision import resolve_device


def launched_by_torchrun() -> bool:
    """True in a process that torchrun (or ``srun`` with the same variables) started with others."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@dataclass(frozen=True)
class Distributed:
    """This process's place in the run: ``rank`` of ``world_size`` (``local_rank`` on its node)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, logs, predictions and reports."""
        return self.rank == 0

    def describe(self) -> str:
        """``DDP gloo x2`` (or ``one process``), as the start line of a run says it."""
        return f"DDP {self.backend} x{self.world_size}" if self.enabled else "one process"

    def to_json(self) -> dict:
        nodes = int(os.environ.get("GROUP_WORLD_SIZE", os.environ.get("SLURM_NNODES", "1")) or 1)
        return {"backend": self.backend, "world_size": self.world_size, "nodes": nodes,
                "local_world_size": int(os.environ.get("LOCAL_WORLD_SIZE", self.world_size))}

    @classmethod
    def from_env(cls, device: str = "auto", timeout_s: float = 600.0) -> tuple["Distributed", torch.device]:
        """(this process's place, its device); joins the process group when launched by torchrun.

        CUDA (``device`` auto or cuda, a GPU present): ``cuda:<local rank>`` and NCCL; otherwise the
        CPU and gloo. ``timeout_s`` bounds every collective, so a dead rank is an error, not a hang.
        """
        if not launched_by_torchrun():
            return cls(), resolve_device(device)
        rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
        use_cuda = device in ("auto", "cuda") and torch.cuda.is_available()
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"train.device: {device!r} but this machine has no CUDA GPU")
        if use_cuda:
            torch.cuda.set_device(local)
        backend = "nccl" if use_cuda else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend, timeout=timedelta(seconds=float(timeout_s)))
        here = cls(rank, world, local, backend)
        return here, torch.device("cuda", local) if use_cuda else torch.device("cpu")

    # --- collectives (each is a no-op in one process) -------------------------------------------------

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_objects(self, value) -> list:
        """``value`` of every rank, in rank order."""
        if not self.enabled:
            return [value]
        out: list = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def check_same(self, value: str, what: str) -> None:
        """Refuse to go on when ranks disagree on ``value`` (e.g. the config): one clear error."""
        values = self.all_objects(value)
        differ = [r for r, v in enumerate(values) if v != values[0]]
        if differ:
            raise ConfigError(f"under DDP every rank must run the same {what}; rank(s) {differ} differ from rank 0 "
                              f"(launch every rank with the same --config and --set)")

    def shutdown(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def config_fingerprint(config_dict: dict) -> str:
    """SHA-256 of a config mapping (keys sorted at every level): equal on ranks that run the same config."""
    return hashlib.sha256(json.dumps(config_dict, sort_keys=True, default=str).encode()).hexdigest()


def per_rank_batch(batch_size: int, world_size: int, accumulate: int = 1) -> int:
    """The images one rank puts through one forward pass; the global ``batch_size`` must divide evenly."""
    parts = world_size * accumulate
    if batch_size % parts:
        raise ConfigError(f"train.batch_size: {batch_size} is the global batch and must divide evenly into "
                          f"{world_size} rank(s) x train.accumulate {accumulate} = {parts} parts; "
                          f"use a multiple of {parts}")
    return batch_size // parts


def shard_slice(n: int, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s contiguous slice of ``n`` items (sizes differ by at most one; nothing padded)."""
    bounds = np.linspace(0, n, world_size + 1).round().astype(int)
    return slice(int(bounds[rank]), int(bounds[rank + 1]))


def predict_sharded(where: Distributed, n: int, predict: Callable[[slice], np.ndarray]) -> np.ndarray:
    """Every rank predicts its ``shard_slice`` of ``n`` images (``predict(slice) -> (m, K)``); returns
    all ``n`` rows, in the original order, on every rank."""
    if not where.enabled:
        return predict(slice(0, n))
    parts = where.all_objects(predict(shard_slice(n, where.rank, where.world_size)))
    return np.concatenate(parts)


def weights_fingerprint(model: nn.Module) -> str:
    """SHA-256 of every parameter, in order (equal on every rank when DDP kept them in step). Buffers
    are left out: BatchNorm's running statistics are each rank's own until DDP broadcasts rank 0's at
    the next forward."""
    h = hashlib.sha256()
    for t in model.parameters():
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def check_replicas(where: Distributed, model: nn.Module, when: str) -> None:
    """Raise `RunError` when the ranks' weights differ (``when``: e.g. "after step 12")."""
    if not where.enabled:
        return
    prints = where.all_objects(weights_fingerprint(model))
    if len(set(prints)) > 1:
        raise RunError(f"DDP replicas diverged {when}: ranks hold different weights ({prints})")


class TrainStep(nn.Module):
    """The training step as a module's ``forward``, so that DDP wraps it: ``forward_train`` (with its
    second branches, Grad-CAM terms and unlabeled images) then runs inside DDP's forward and every
    gradient it makes is synchronised. Returns the dict of named loss terms."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor, ctx) -> dict[str, torch.Tensor]:
        return self.model.forward_train(x, y, ctx).losses


def training_module(model: nn.Module, where: Distributed, device: torch.device, sync_bn: bool = False) -> nn.Module:
    """``TrainStep(model)``, wrapped in DDP under torchrun. ``sync_bn`` turns the model's BatchNorm
    layers into SyncBatchNorm first (statistics over the global batch). DDP searches for parameters
    without a gradient (``find_unused_parameters``) only for models that say they leave some
    (``MedAttnModel.skips_parameters_in_training``)."""
    step = TrainStep(model)
    if not where.enabled:
        return step
    if sync_bn:
        step = nn.SyncBatchNorm.convert_sync_batchnorm(step)
    ids = [device.index] if device.type == "cuda" else None
    unused = bool(getattr(model, "skips_parameters_in_training", False))
    return nn.parallel.DistributedDataParallel(step, device_ids=ids, find_unused_parameters=unused)


def no_sync(module: nn.Module, skip: bool):
    """DDP's ``no_sync`` (gradient accumulation: no all-reduce until the last micro-batch) or nothing."""
    return module.no_sync() if skip and isinstance(module, nn.parallel.DistributedDataParallel) else nullcontext()
