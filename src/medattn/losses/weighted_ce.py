"""Cross-entropy weighted by inverse class frequency within the batch (BIIGMA-Net's ``WeightedXCE``).

Official code (methods.md A.2): n_k = number of rows of class k in the batch, w_b = 1 / n_{y_b} and
L = (1/B) sum_b w_b CE_b, which equals (1/B) * sum over the classes present of that class's mean CE.
Its scale depends on B (and on how many classes a batch holds). ``normalize="classes"`` divides by
the number of classes present instead of B: the mean over present classes of the per-class mean CE.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

NORMALIZE = ("batch", "classes")


def _check_targets(logits: Tensor, targets: Tensor) -> None:
    if logits.ndim != 2:
        raise ValueError(f"logits must be B x K, got shape {tuple(logits.shape)}")
    if targets.ndim != 1 or targets.shape[0] != logits.shape[0]:
        raise ValueError(f"targets must be ({logits.shape[0]},) class indices (-1 = unlabeled), got shape "
                         f"{tuple(targets.shape)}; multi-label targets need the configured criterion "
                         f"(BIIGMA option ce_mode='criterion')")
    k = logits.shape[1]
    bad = (targets < -1) | (targets >= k)
    if bool(bad.any()):
        rows = bad.nonzero().flatten().tolist()
        raise ValueError(f"targets must be in [-1, {k - 1}]; row {rows[0]} holds {int(targets[rows[0]])}"
                         f" ({len(rows) - 1} more rows out of range)")


def batch_inverse_ce(logits: Tensor, targets: Tensor, class_weights: Tensor | None = None,
                     normalize: str = "batch") -> Tensor:
    """Class-balanced cross-entropy of logits B x K against targets (B,) (-1 = unlabeled, ignored).

    - ``class_weights=None``: batch inverse class frequency, as the official code; ``normalize``
      "batch" divides by the number of labeled rows (official), "classes" by the classes present.
    - ``class_weights`` (K,): data-set class weights instead, PyTorch's weighted mean
      sum_b w_{y_b} CE_b / sum_b w_{y_b} (``normalize`` is then unused).

    Computed in float32 from log-softmax (Keras clips probabilities at 1e-7, capping one row's CE at
    16.1; the two agree below that). Returns a scalar; 0 with a graph when no row is labeled.
    """
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize must be one of {NORMALIZE}, got {normalize!r}")
    _check_targets(logits, targets)  # the step's one host sync: bad targets get a clear error
    # Masks instead of boolean indexing, so that no further value has to reach the host (GPU steps).
    keep = targets >= 0
    ce = F.cross_entropy(logits.float(), targets, reduction="none", ignore_index=-1)  # 0 on unlabeled rows
    y = targets.clamp_min(0)
    if class_weights is not None:
        w = class_weights.to(device=ce.device, dtype=ce.dtype)
        if w.shape != (logits.shape[1],):
            raise ValueError(f"class_weights must have shape ({logits.shape[1]},), got {tuple(w.shape)}")
        wb = w[y] * keep
        return (wb * ce).sum() / wb.sum().clamp_min(1e-12)
    counts = torch.zeros(logits.shape[1], dtype=ce.dtype, device=ce.device).scatter_add_(0, y, keep.to(ce.dtype))
    per_row = ce / counts[y].clamp_min(1.0)
    denom = keep.sum() if normalize == "batch" else (counts > 0).sum()
    return per_row.sum() / denom.clamp_min(1).to(ce.dtype)
