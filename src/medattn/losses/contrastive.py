"""InfoNCE alignment of per-class features (the IBCA-style contrastive term, docs/ibca.md).

``info_nce(anchors, positives, tau)``: with a_i, p_i L2-normalised (N x D),

    L = -1/N sum_i log( exp(a_i . p_i / tau) / sum_j exp(a_i . p_j / tau) )

(van den Oord et al. 2018; the one-directional form of CLIP's loss). ``class_feature_nce`` applies it
to per-class features B x K x D: the anchor of (image b, class k) is the multi-head-attention feature,
its positive the Gaussian-mixture feature of the same image and class, and the negatives are the
Gaussian-mixture features of every other (image, class) pair that is kept by ``valid``. Computed in
float32.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def info_nce(anchors: Tensor, positives: Tensor, temperature: float = 0.1, normalize: bool = True) -> Tensor:
    """InfoNCE of N anchors against N positives (row i is the positive of anchor i): N x D -> scalar."""
    if anchors.shape != positives.shape or anchors.ndim != 2:
        raise ValueError(f"anchors and positives must both be N x D, got {tuple(anchors.shape)} and {tuple(positives.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    a, p = anchors.float(), positives.float()
    if normalize:
        a, p = F.normalize(a, dim=-1), F.normalize(p, dim=-1)
    logits = a @ p.T / temperature
    return F.cross_entropy(logits, torch.arange(len(a), device=a.device))


def class_feature_nce(anchors: Tensor, positives: Tensor, valid: Tensor | None = None,
                      temperature: float = 0.1) -> Tensor:
    """InfoNCE over the (image, class) pairs of B x K x D features; ``valid`` B x K bool selects the
    pairs that take part (as anchors and as negatives). Fewer than one valid pair gives a zero that
    keeps the graph."""
    if anchors.shape != positives.shape or anchors.ndim != 3:
        raise ValueError(f"anchors and positives must both be B x K x D, got {tuple(anchors.shape)} and {tuple(positives.shape)}")
    a, p = anchors.flatten(0, 1), positives.flatten(0, 1)
    if valid is not None:
        keep = valid.reshape(-1).to(torch.bool)
        if not keep.any():
            return anchors.sum() * 0.0 + positives.sum() * 0.0
        a, p = a[keep], p[keep]
    return info_nce(a, p, temperature)
