"""Deterministic stratified splitting, optionally grouped (no group in two splits).

Used where a data set has no official split (HAM10000, ISIC 2019, folders, CSV tables). Each group
(a lesion, a patient, or a single image when there are no groups) belongs to one stratum: its most
frequent label. Within each stratum, groups are visited largest first (ties in a seeded random order)
and each goes to the split whose image count is furthest below its target (``fraction`` x the
stratum's images; ties go to ``train``). So every split holds each class in the proportion of the
whole set, up to one group, and tiny classes land in ``train`` first.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ._registry import DataError


def stratified_split(labels: Sequence | np.ndarray, fractions: Mapping[str, float], seed: int = 0,
                     groups: Sequence | np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Split N items into ``train`` plus the named ``fractions`` (e.g. ``{"val": 0.1, "test": 0.2}``).

    Args:
        labels: (N,) stratification key per item (class index or name; any sortable values).
        fractions: split name -> fraction of the items in (0, 1); ``train`` gets the rest.
        seed: seed of the order in which equally large groups are placed.
        groups: optional (N,) group id per item; all items of a group land in the same split.
    Returns:
        split name -> sorted int64 indices into ``labels``; together they cover every item once.
    """
    labels = np.asarray(labels)
    n = len(labels)
    names = ["train", *fractions]
    if "train" in fractions:
        raise DataError("split fractions name the remainder 'train' itself; give only the other splits")
    fr = np.array([float(f) for f in fractions.values()], dtype=np.float64)
    if (fr < 0).any() or fr.sum() >= 1.0:
        raise DataError(f"split fractions must be >= 0 and sum to less than 1, got {dict(fractions)}")
    target = np.concatenate([[1.0 - fr.sum()], fr])
    if groups is None:
        ginv = np.arange(n)
    else:
        groups = np.asarray(groups)
        if len(groups) != n:
            raise DataError(f"{n} labels but {len(groups)} group ids")
        _, ginv = np.unique(groups, return_inverse=True)
    _, linv = np.unique(labels, return_inverse=True)
    n_groups = int(ginv.max()) + 1 if n else 0
    size = np.bincount(ginv, minlength=n_groups)
    # stratum of a group = its most frequent label (argmax picks the smallest label on ties)
    pair_counts = np.zeros((n_groups, int(linv.max()) + 1 if n else 0), dtype=np.int64)
    np.add.at(pair_counts, (ginv, linv), 1)
    stratum = pair_counts.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    assign = np.zeros(n_groups, dtype=np.int64)
    for s in np.unique(stratum):
        members = np.flatnonzero(stratum == s)
        order = members[rng.permutation(len(members))]
        order = order[np.argsort(-size[order], kind="stable")]
        goal = target * size[members].sum()
        filled = np.zeros(len(names))
        for g in order:
            k = int(np.argmax(np.round(goal - filled, 9)))  # rounded: float noise must not break ties
            assign[g] = k
            filled[k] += size[g]
    item_split = assign[ginv]
    return {name: np.flatnonzero(item_split == k).astype(np.int64) for k, name in enumerate(names)}


def split_fractions(options: dict, defaults: tuple[float, float] = (0.1, 0.2)) -> dict[str, float]:
    """``{"val": val_fraction, "test": test_fraction}`` from reader options (defaults 0.1 / 0.2)."""
    return {"val": float(options.get("val_fraction", defaults[0])),
            "test": float(options.get("test_fraction", defaults[1]))}
