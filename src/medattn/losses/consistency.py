"""Consistency terms of BIIGMA-Net: map distance (RMS) and KL between branches at a temperature."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def map_distance(a: Tensor, b: Tensor) -> Tensor:
    """Root mean square difference sqrt(mean((a - b)^2)) of two maps of equal shape; scalar float32.

    The official code takes ``sqrt(reduce_mean(square(map1 - map2)))``; the mean square is clamped at
    1e-12 so the gradient stays finite when the maps coincide.
    """
    if a.shape != b.shape:
        raise ValueError(f"maps must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    diff = a.float() - b.float()
    return (diff * diff).mean().clamp_min(1e-12).sqrt()


def kl_consistency(logits_p: Tensor, logits_q: Tensor, temperature: float = 2.0, multilabel: bool = False) -> Tensor:
    """KL(p^T || q^T) averaged over the batch, p^T = softmax(z_p / T), q^T = softmax(z_q / T).

    As Keras' ``KLDivergence(y_true=p^T, y_pred=q^T)`` in the official notebook: sum over classes, mean
    over rows, no T^2 factor, gradients to both sides. Computed from log-softmax in float32 (Keras clips
    the probabilities at 1e-7 instead; the two differ only for probabilities below 1e-7).
    ``multilabel=True`` uses per-class Bernoulli distributions sigmoid(z / T), summed over classes.
    Inputs B x K logits; returns a scalar.
    """
    if logits_p.shape != logits_q.shape:
        raise ValueError(f"logits must have the same shape, got {tuple(logits_p.shape)} and {tuple(logits_q.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    zp = logits_p.float() / temperature
    zq = logits_q.float() / temperature
    if multilabel:
        lp1, lp0 = F.logsigmoid(zp), F.logsigmoid(-zp)
        lq1, lq0 = F.logsigmoid(zq), F.logsigmoid(-zq)
        kl = lp1.exp() * (lp1 - lq1) + lp0.exp() * (lp0 - lq0)
        return kl.sum(dim=1).mean()
    lp = F.log_softmax(zp, dim=1)
    lq = F.log_softmax(zq, dim=1)
    return (lp.exp() * (lp - lq)).sum(dim=1).mean()

