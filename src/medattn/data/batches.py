"""The training batches of a run, epoch by epoch: a seeded epoch order (random or class-balanced),
unlabeled images mixed into every batch, batch augmentation, prepared one step ahead.

Every epoch draws all its randomness from one generator seeded from (seed, epoch), so epoch e of a
resumed run sees exactly the batches of epoch e of a straight run.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError
from .dataset import UNLABELED, ImageDataset
from .prefetch import Prefetch
from .transforms import BatchAugment, to_float_batch

SAMPLERS = ("random", "balanced")


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch`` (0-based) of a run seeded ``seed``."""
    return (int(seed) * 1_000_003 + int(epoch) * 7919 + 17) % (2**63 - 1)


class TrainBatches:
    """Augmented training batches (float B x 3 x H x W in [0, 1], targets) of one epoch at a time.

    ``batch_size`` labeled images per step, plus ``round(batch_size * unlabeled_ratio)`` images drawn
    at random from ``unlabeled`` (target -1, or a row of NaN for multi-label sets). ``sampler``:
    "random" (a permutation per epoch) or "balanced" (classes drawn equally often, with replacement;
    multi-class only). An epoch has ``len(train) // batch_size`` steps (at least 1), at most
    ``max_steps``.

    Under DDP (``world_size`` > 1) ``batch_size`` is the global batch: every rank computes the same
    epoch order and takes its ``rank``-th slice of ``batch_size / world_size`` images of each step
    (and its share of the unlabeled images); augmentation and unlabeled draws come from a generator
    seeded from (seed, epoch, rank). With one process the batches are exactly those of before.

    On a CUDA ``device`` the uint8 batch is copied to the GPU (pinned, non-blocking) and converted
    and augmented there, so the CPU only indexes and copies bytes.
    """

    def __init__(self, train: ImageDataset, batch_size: int, seed: int, augment: BatchAugment,
                 sampler: str = "random", unlabeled: ImageDataset | None = None, unlabeled_ratio: float = 0.5,
                 max_steps: int | None = None, rank: int = 0, world_size: int = 1,
                 device: torch.device | None = None):
        if sampler not in SAMPLERS:
            raise ConfigError(f"train.sampler: {sampler!r} must be one of {', '.join(SAMPLERS)}")
        if sampler == "balanced" and train.task != "multiclass":  # one class per image is needed to balance
            raise ConfigError("train.sampler=balanced needs a multi-class task; use weighted losses "
                              "(e.g. loss.name=bce with pos_weight) for multi-label data")
        self.train, self.unlabeled = train, unlabeled
        self.batch_size, self.seed, self.augment, self.sampler = int(batch_size), int(seed), augment, sampler
        self.rank, self.world_size, self.device = int(rank), int(world_size), device
        if self.batch_size % self.world_size:
            raise ConfigError(f"train.batch_size: {batch_size} is the global batch and must divide evenly into "
                              f"{world_size} ranks")
        self.local_batch = self.batch_size // self.world_size
        n = len(train)
        if self.world_size > 1 and n < self.batch_size:
            raise ConfigError(f"the training split has {n} images, fewer than the global batch of {batch_size}: "
                              f"under DDP every rank needs its share of every step")
        self.n_unlabeled = int(round(self.local_batch * float(unlabeled_ratio))) if unlabeled is not None else 0
        self.steps_per_epoch = max(1, n // self.batch_size) if n >= self.batch_size else 1
        if max_steps:
            self.steps_per_epoch = min(self.steps_per_epoch, int(max_steps))

    def order(self, g: torch.Generator) -> np.ndarray:
        """The image order of one epoch (indices into ``train``)."""
        train = self.train
        n = len(train)
        if self.sampler == "balanced":
            counts = train.class_counts()
            w = np.where(train.labeled, 1.0 / np.maximum(counts[np.maximum(train.targets, 0)], 1), 0.0)
            return torch.multinomial(torch.tensor(w), n, replacement=True, generator=g).numpy()
        return torch.randperm(n, generator=g).numpy()

    def _make(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        g = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        order = self.order(g)
        if self.world_size > 1:  # the order above is every rank's; what each rank draws next is its own
            g = torch.Generator().manual_seed((epoch_seed(self.seed, epoch) + 104_729 * (self.rank + 1)) % (2**63 - 1))
        bs, train, unl = self.batch_size, self.train, self.unlabeled
        lo, hi = self.rank * self.local_batch, (self.rank + 1) * self.local_batch
        for step in range(self.steps_per_epoch):
            idx = order[step * bs:(step + 1) * bs][lo:hi]
            images, targets = train.images[idx], train.targets[idx]
            if self.n_unlabeled:
                uidx = torch.randint(0, len(unl), (self.n_unlabeled,), generator=g).numpy()
                images = np.concatenate([images, unl.images[uidx]])
                fill = np.full((self.n_unlabeled, *targets.shape[1:]), np.nan if train.task == "multilabel" else UNLABELED,
                               targets.dtype)
                targets = np.concatenate([targets, fill])
            yield self.augment(to_float_batch(images, self.device), g), torch.as_tensor(targets)

    def first_batch(self) -> tuple[Tensor, Tensor]:
        """The first batch of epoch 0, made on the spot (no thread), e.g. to time a training step."""
        return next(iter(self._make(0)))

    def epoch(self, epoch: int) -> Prefetch[tuple[Tensor, Tensor]]:
        """The batches of ``epoch`` (0-based), prepared one step ahead in a background thread;
        ``.wait_seconds`` of the returned iterator is the time the loop waited for data."""
        return Prefetch(self._make(epoch), depth=2)
