"""Batched inference: probabilities for an in-memory data set or image array."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.dataset import ImageDataset
from ..errors import CheckpointError
from ..data.transforms import to_float_batch
from .precision import Precision


def probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    """Softmax over classes (multi-class) or per-label sigmoid (multi-label)."""
    logits = logits.float()
    return torch.sigmoid(logits) if task == "multilabel" else torch.softmax(logits, dim=1)


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th (0..7) of the 8 rotations/reflections of a B x C x H x W batch (k = 0: identity)."""
    x = torch.rot90(x, k % 4, dims=(2, 3))
    return torch.flip(x, dims=(3,)) if k >= 4 else x


def check_finite(probs: np.ndarray, ids: list[str]) -> None:
    """Refuse probabilities that are NaN or infinite (a damaged checkpoint or a diverged run) before
    they are written anywhere: one `CheckpointError` naming the first image and the count."""
    bad = np.flatnonzero(~np.isfinite(probs).all(axis=1))
    if bad.size:
        raise CheckpointError(f"the model gave NaN or infinite probabilities for {bad.size} of {len(probs)} images "
                              f"(first: {ids[bad[0]]!r}); nothing was written: the checkpoint is damaged or the "
                              f"training diverged")


TTA_VIEWS = {"none": 1, "flip": 2, "dihedral": 8}  # number of views averaged


@torch.no_grad()
def predict_proba(model: torch.nn.Module, data: ImageDataset | np.ndarray, batch_size: int = 64,
                  task: str | None = None, precision: Precision | None = None, progress: bool | str = False,
                  channels_last: bool = True, tta: str = "none",
                  to_input: Callable[[np.ndarray, int], torch.Tensor] | None = None) -> np.ndarray:
    """Class probabilities, (N, K) float64, for uint8 N x H x W x 3 images (or an ImageDataset).

    ``tta``: "none", "flip" (the image and its horizontal mirror) or "dihedral" (all 8 rotations and
    reflections; dermoscopy has no canonical orientation): the probabilities of the views are averaged.
    ``to_input(batch, start)``: turns the uint8 batch that starts at image ``start`` into the float
    B x 3 x H x W model input (default: scale to [0, 1]); a perturbation hooks in here.
    """
    if tta not in TTA_VIEWS:
        raise ValueError(f"tta must be one of {', '.join(TTA_VIEWS)}, got {tta!r}")
    views = [0, 4] if tta == "flip" else list(range(TTA_VIEWS[tta]))
    images = data.images if isinstance(data, ImageDataset) else data
    task = task or (data.task if isinstance(data, ImageDataset) else model.task)
    device = next(model.parameters()).device
    precision = precision or Precision(device, None)
    was_training = model.training
    model.eval()
    out = []
    starts = range(0, len(images), batch_size)
    bar = tqdm(starts, desc=progress if isinstance(progress, str) else "predict", disable=not progress, leave=False)
    try:
        for start in bar:
            batch = images[start:start + batch_size]
            x = to_input(batch, start).to(device) if to_input else to_float_batch(batch, device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            probs = 0.0
            for k in views:
                with precision.autocast():
                    logits = model(dihedral(x, k) if k else x)
                probs = probs + probabilities(logits, task).double()
            out.append((probs / len(views)).cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, model.num_classes))
