"""The multi-label synthetic dermoscopy set: several lesion types in one image, a mask per class.

The embedded default of the multi-label path (no download). It reuses the lesion, skin and artifact
renderers of the single-lesion set (`medattn.data.synthetic.single_lesion`):

- labels: each class is present independently with probability ``label_rate`` (one number or one per
  class); an image with no class drawn gets one class drawn by those rates, so every image shows at
  least one lesion. A class appears at most once per image.
- layout: the image is cut into a 2 x 2 grid of slots; each present class takes a random free slot
  (so at most 4 classes) and its lesion, rendered on a canvas of ``lesion_scale * size`` pixels by
  `render_lesion`, is pasted with its centre jittered by up to ``jitter * size`` around the slot
  centre and clipped to the image. Where lesions overlap the later one covers the earlier; masks hold
  the visible part only.
- artifacts: class k's shortcut artifact (`SHORTCUTS`) is painted with probability ``spurious`` when
  k is present and ``artifact_rate`` when absent (train, val, test). In ``test_shifted`` (the same
  lesions and skin as ``test``) ``shift_mode="reversed"`` swaps the two rates (the shortcut appears
  when its class is absent), ``"random"`` paints it at its train frequency regardless of the labels.
  Hair and vignette appear independently (`RANDOM_ARTIFACT_RATES`).

Returns an `ImageDataset` with ``task="multilabel"``: targets N x K float32 0/1, masks N x K x H x W
uint8 (0/255, all zero for an absent class), ``extra["artifacts"]`` {name: (N,) bool}. Image
``index`` of a split depends only on (seed, split, index) and the options.
"""
from __future__ import annotations

import zlib
from typing import Sequence

import numpy as np

from .._registry import DataError, register_reader
from ..dataset import ImageDataset
from .single_lesion import (ARTIFACTS, RANDOM_ARTIFACT_RATES, SHORTCUTS, SPLITS, _rng, artifacts_to_paint, paint_artifact,
                        reader_arguments, render_background, render_lesion)
from .lesions import LESION_RENDERERS

DEFAULT_CLASSES: tuple[str, ...] = ("nevus", "melanoma", "seborrheic_keratosis", "basal_cell_carcinoma")
_SLOTS = ((0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75))  # (x, y) slot centres, fractions of size


def _split_key(split: str) -> int:
    return zlib.crc32(("multilabel/" + split).encode())


def _check(n, size, seed, split, names, rates, spurious, artifact_rate, shift_mode, lesion_scale, jitter) -> np.ndarray:
    if split not in SPLITS:
        raise DataError(f"synthetic_multilabel: unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    unknown = [c for c in names if c not in LESION_RENDERERS]
    if unknown:
        raise DataError(f"synthetic_multilabel: unknown class {unknown[0]!r} ({len(unknown) - 1} more); "
                        f"known: {', '.join(LESION_RENDERERS)}")
    if len(set(names)) != len(names) or not 2 <= len(names) <= len(_SLOTS):
        raise DataError(f"synthetic_multilabel: classes must be 2 to {len(_SLOTS)} distinct names, got {list(names)}")
    rates = np.broadcast_to(np.asarray(rates, np.float64), (len(names),)) if np.ndim(rates) == 0 else np.asarray(rates, np.float64)
    if rates.shape != (len(names),) or not np.all((rates > 0) & (rates <= 1)):
        raise DataError(f"synthetic_multilabel: label_rate must be one number or {len(names)} numbers in (0, 1], got {rates.tolist()}")
    if not 0 <= spurious <= 1 or not 0 <= artifact_rate <= 1:
        raise DataError(f"synthetic_multilabel: spurious and artifact_rate must be in [0, 1], got {spurious} and {artifact_rate}")
    if shift_mode not in ("reversed", "random"):
        raise DataError(f"synthetic_multilabel: shift_mode must be 'reversed' or 'random', got {shift_mode!r}")
    if int(size) < 32 or int(n) < 0 or int(seed) < 0:
        raise DataError(f"synthetic_multilabel: need size >= 32 and non-negative n and seed; got {size}, {n}, {seed}")
    if not 0.2 <= lesion_scale <= 1.0 or not 0 <= jitter <= 0.25:
        raise DataError(f"synthetic_multilabel: lesion_scale must be in [0.2, 1] and jitter in [0, 0.25], got {lesion_scale}, {jitter}")
    return rates


def _paste(s: int, size: int, cx: float, cy: float):
    """(image box, canvas box): where an s x s canvas centred at (cx, cy) px lands, clipped to the image."""
    x0, y0 = int(round(cx - s / 2)), int(round(cy - s / 2))
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + s, size), min(y0 + s, size)
    return (slice(iy0, iy1), slice(ix0, ix1)), (slice(iy0 - y0, iy1 - y0), slice(ix0 - x0, ix1 - x0))


def generate_synthetic_multilabel(n: int, size: int = 128, spurious: float = 0.8, seed: int = 0, split: str = "train",
                                  class_names: Sequence[str] | None = None, label_rate: float | Sequence[float] = 0.4,
                                  *, start: int = 0, artifact_rate: float = 0.05, shift_mode: str = "reversed",
                                  shifted: bool | None = None, lesion_scale: float = 0.6, jitter: float = 0.06,
                                  artifacts: bool | Sequence[str] = True) -> ImageDataset:
    """Images ``start .. start + n - 1`` of a split of the multi-label synthetic set (module docstring)."""
    names = list(class_names) if class_names is not None else list(DEFAULT_CLASSES)
    rates = _check(n, size, seed, split, names, label_rate, spurious, artifact_rate, shift_mode, lesion_scale, jitter)
    paint = artifacts_to_paint("synthetic_multilabel", artifacts)
    n, size, seed, start = int(n), int(size), int(seed), int(start)
    shifted = split == "test_shifted" if shifted is None else bool(shifted)
    scene_key = _split_key("test" if split == "test_shifted" else split)
    plan_key = _split_key(split)
    k = len(names)
    owner = {SHORTCUTS[c]: j for j, c in enumerate(names)}
    sub = max(16, int(round(lesion_scale * size)))

    images = np.empty((n, size, size, 3), np.uint8)
    masks = np.zeros((n, k, size, size), np.uint8)
    targets = np.zeros((n, k), np.float32)
    flags = np.zeros((len(ARTIFACTS), n), bool)
    for i in range(n):
        index = start + i
        scene = _rng(seed, scene_key, index, 0)
        present = scene.uniform(size=k) < rates
        if not present.any():
            present[min(int(np.searchsorted(np.cumsum(rates / rates.sum()), scene.uniform(), side="right")), k - 1)] = True
        slots = scene.permutation(len(_SLOTS))
        image = render_background(scene, size)
        chw = image.transpose(2, 0, 1)
        visible = np.zeros((k, size, size), bool)
        for order, cls in enumerate(np.flatnonzero(present)):
            rgb, alpha = render_lesion(scene, names[cls], sub)
            sx, sy = _SLOTS[slots[order]]
            cx, cy = (np.array([sx, sy]) + scene.uniform(-jitter, jitter, 2)) * size
            dst, src = _paste(sub, size, cx, cy)
            a = alpha[src]
            chw[:, dst[0], dst[1]] += (rgb[src].transpose(2, 0, 1) - chw[:, dst[0], dst[1]]) * a
            cover = np.zeros((size, size), bool)
            cover[dst] = a >= 0.5
            visible &= ~cover  # the new lesion hides what it covers
            visible[cls] = cover
        union = visible.any(axis=0)
        plan = _rng(seed, plan_key, index, 1).uniform(size=len(ARTIFACTS))
        for a_idx, name in enumerate(ARTIFACTS):
            j = owner.get(name)
            if j is None:
                p = RANDOM_ARTIFACT_RATES.get(name, artifact_rate)
            elif not shifted:
                p = spurious if present[j] else artifact_rate
            elif shift_mode == "reversed":
                p = artifact_rate if present[j] else spurious
            else:
                p = rates[j] * spurious + (1 - rates[j]) * artifact_rate
            if plan[a_idx] < p and name in paint:
                paint_artifact(_rng(seed, plan_key, index, 2, a_idx), image, union, name)
                flags[a_idx, i] = True
        chw *= np.float32(scene.uniform(0.9, 1.1))  # exposure
        np.clip(chw, 0.0, 1.0, out=chw)
        images[i] = (chw * 255.0 + 0.5).astype(np.uint8).transpose(1, 2, 0)
        masks[i] = visible * np.uint8(255)
        targets[i] = present
    return ImageDataset(
        images=images, targets=targets, class_names=names, task="multilabel",
        ids=[f"SYML_{SPLITS[split]}_{start + i:07d}" for i in range(n)], masks=masks,
        source=f"synthetic_multilabel(split={split}, seed={seed}, spurious={spurious})",
        extra={"artifacts": {name: flags[a] for a, name in enumerate(ARTIFACTS)},
               "shortcuts": {c: SHORTCUTS[c] for c in names}, "spurious": float(spurious), "shifted": shifted})


_READER_OPTIONS = {"n_train", "n_val", "n_test", "spurious", "seed", "classes", "label_rate", "artifact_rate",
                   "shift_mode", "lesion_scale", "jitter", "artifacts"}


@register_reader("synthetic_multilabel")
def read_synthetic_multilabel(root: str | None, split: str, image_size: int | None, **options) -> ImageDataset:
    """Generate one split in memory (``root`` is ignored). Options: n_train (1200), n_val (300), n_test
    (600, also test_shifted), spurious (0.8), seed (0), classes, label_rate (0.4), artifact_rate (0.05),
    shift_mode ("reversed"), lesion_scale (0.6), jitter (0.06), artifacts; size = image_size or 128."""
    n, classes = reader_arguments("synthetic_multilabel", split, options, _READER_OPTIONS)
    kwargs = {key: options[key] for key in ("artifact_rate", "shift_mode", "lesion_scale", "jitter", "artifacts") if key in options}
    return generate_synthetic_multilabel(n, size=int(image_size or 128), spurious=float(options.get("spurious", 0.8)),
                                         seed=int(options.get("seed", 0)), split=split, class_names=classes,
                                         label_rate=options.get("label_rate", 0.4), **kwargs)
