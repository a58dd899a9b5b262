"""Per-label maps of a multi-label model, and how distinct they are from one another.

A multi-label model that looks at a different place for each label (a criterion of the 7-point
checklist, say) has class-specific maps that differ; one that looks at the lesion as a whole for
every label has K copies of one map. Real data sets rarely have a mask per label (derm7pt has none),
so the measure here needs none: for each image, the K maps of one family are compared pairwise.

- ``correlation``: mean Pearson correlation of the K (K - 1) / 2 map pairs (1: the same map up to
  scale; near 0: unrelated). Pairs with a constant map are left out.
- ``top_iou``: mean IoU of the pairs' top regions (each map's ``top_fraction`` highest pixels, 20 % by
  default): do two labels point at the same place.

Families: ``gradcam`` (Grad-CAM of every label, for any model) and each native per-label family a
model exposes as ``attn/<prefix>_<k>`` (``mha`` for class_query and IBCA, ``gm`` for IBCA's
Gaussian-mixture branch). On the synthetic multi-label set, whose labels have their own masks,
``benchmarks/multilabel_synthetic.py`` measures the related mask-based specificity.
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import torch.nn as nn

from .maps import Explanation, explain_batch

_NATIVE = re.compile(r"^attn/(?P<family>[A-Za-z]+)_(?P<k>\d+)$")


def label_map_stack(e: Explanation, class_names: Sequence[str]) -> dict[str, np.ndarray]:
    """Family -> K x H x W: the families of ``e`` that have a map for every one of the K labels
    (Grad-CAM needs ``e`` explained for all labels, ``targets=[range(K)]``)."""
    k = len(class_names)
    found: dict[str, dict[int, np.ndarray]] = {}
    for name, m in e.maps.items():
        match = _NATIVE.match(name)
        if match:
            found.setdefault(match["family"], {})[int(match["k"])] = m
        elif name.startswith("gradcam/") and name[len("gradcam/"):] in class_names:
            found.setdefault("gradcam", {})[list(class_names).index(name[len("gradcam/"):])] = m
    return {fam: np.stack([maps[i] for i in range(k)]) for fam, maps in found.items() if set(maps) == set(range(k))}


def pairwise_distinctness(maps: np.ndarray, top_fraction: float = 0.2) -> dict[str, float]:
    """Mean pairwise ``correlation`` and ``top_iou`` of one image's K x H x W maps (module docstring);
    NaN where no pair can be scored."""
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 3 or maps.shape[0] < 2:
        raise ValueError(f"maps must be K x H x W with K >= 2, got shape {maps.shape}")
    if not 0.0 < top_fraction < 1.0:
        raise ValueError(f"top_fraction must be in (0, 1), got {top_fraction}")
    flat = maps.reshape(maps.shape[0], -1)
    centred = flat - flat.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(centred, axis=1)
    n_top = max(1, int(round(top_fraction * flat.shape[1])))
    # Top region by rank (ties broken by position), so a map with a plateau still has n_top pixels.
    top = np.zeros(flat.shape, dtype=bool)
    np.put_along_axis(top, np.argsort(-flat, axis=1, kind="stable")[:, :n_top], True, axis=1)
    corr, overlap = [], []
    for i in range(len(flat)):
        for j in range(i + 1, len(flat)):
            if norm[i] > 0 and norm[j] > 0:
                corr.append(float(centred[i] @ centred[j] / (norm[i] * norm[j])))
                overlap.append(float((top[i] & top[j]).sum() / (top[i] | top[j]).sum()))
    return {"correlation": float(np.mean(corr)) if corr else float("nan"),
            "top_iou": float(np.mean(overlap)) if overlap else float("nan"), "pairs": len(corr)}


def label_map_distinctness(model: nn.Module, images: np.ndarray, class_names: Sequence[str], *,
                           batch_size: int = 16, top_fraction: float = 0.2) -> dict[str, dict[str, float]]:
    """Family -> {correlation, top_iou (means over images), n_images (those with a pair to score)}
    for the per-label maps of a uint8 N x H x W x 3 batch, every label explained on every image."""
    k = len(class_names)
    rows: dict[str, list[dict[str, float]]] = {}
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        for e in explain_batch(model, batch, task="multilabel", class_names=class_names, methods=("gradcam",),
                               targets=[list(range(k))] * len(batch)):
            for fam, stack in label_map_stack(e, class_names).items():
                rows.setdefault(fam, []).append(pairwise_distinctness(stack, top_fraction))
    return {fam: {"correlation": _finite_mean([r["correlation"] for r in got]),
                  "top_iou": _finite_mean([r["top_iou"] for r in got]),
                  "n_images": sum(r["pairs"] > 0 for r in got)} for fam, got in rows.items()}


def _finite_mean(values: list[float]) -> float:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")
