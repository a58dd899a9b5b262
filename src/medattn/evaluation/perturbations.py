"""Perturbations of a test split for the robustness evaluation.

- ``gaussian_noise``: additive Gaussian noise, mean 0 and standard deviation ``sigma`` on the [0, 1]
  image scale, clamped back to [0, 1] (the SIBnet noise protocol, Mahapatra & Reyes 2022). The result
  stays float so that small sigmas (0.005 is 1.3 grey levels) are not erased by rounding to uint8.
  Each image draws from its own generator seeded by ``(seed, index)``: the noise of an image does not
  depend on the batch it is in.
- ``swap_background``: every pixel outside an image's lesion mask is replaced by the background of
  another image (by default one of another class, so a background shortcut points the wrong way).
  The donor's own lesion is first filled with its nearest background pixels, so no lesion tissue of
  the donor leaks into the new background.
- ``add_artifacts``: ruler marks, ink dots or hair painted outside the lesion with the synthetic
  generator's ``paint_artifact``; the lesion pixels are guaranteed unchanged.

Images are N x H x W x 3 uint8; masks N x H x W (lesion where non-zero) or N x K x H x W per-class
masks (their union is the lesion).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

DEFAULT_ARTIFACTS: tuple[str, ...] = ("ruler", "ink", "hair")
"""Artifacts painted by default; any name of ``medattn.data.synthetic.ARTIFACTS`` can be asked for."""


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be N x H x W x 3 uint8, got {images.shape} {images.dtype}")
    return images


def lesion_masks(masks: np.ndarray, images: np.ndarray) -> np.ndarray:
    """Bool N x H x W lesion masks (per-class N x K x H x W masks are merged), checked against the images."""
    masks = np.asarray(masks)
    if masks.ndim == 4:
        masks = masks.max(axis=1)
    if masks.ndim != 3 or masks.shape != images.shape[:3]:
        raise ValueError(f"masks of shape {masks.shape} do not match images of shape {images.shape}; "
                         f"expected N x H x W or N x K x H x W with the images' N, H and W")
    return masks != 0


def gaussian_noise(images: np.ndarray, sigma: float, seed: int = 0, offset: int = 0) -> np.ndarray:
    """Images plus N(0, sigma^2) noise on the [0, 1] scale, clamped to [0, 1].

    Args:
        images: N x H x W x 3 uint8.
        sigma: standard deviation on the [0, 1] scale (0 returns the images unchanged, as float).
        seed: base seed; image ``i`` uses the generator ``default_rng((seed, offset + i))``.
        offset: index of ``images[0]`` in the whole split (for batch-wise calls).

    Returns:
        N x H x W x 3 float32 in [0, 1].
    """
    images = _check_images(images)
    if not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma}")
    out = images.astype(np.float32) / np.float32(255.0)
    if sigma == 0:
        return out
    for i in range(len(out)):
        rng = np.random.default_rng((int(seed), int(offset) + i))
        out[i] += rng.normal(0.0, sigma, size=out[i].shape).astype(np.float32)
    return np.clip(out, 0.0, 1.0, out=out)


def background_plate(image: np.ndarray, lesion: np.ndarray) -> np.ndarray:
    """The image with its lesion filled by the nearest background pixel (H x W x 3 uint8)."""
    if lesion.all():
        raise ValueError("the image has no background pixel to fill its lesion with")
    if not lesion.any():
        return image.copy()
    # For every lesion pixel, the index of the nearest background pixel (Euclidean distance).
    _, (rows, cols) = ndimage.distance_transform_edt(lesion, return_indices=True)
    return image[rows, cols]


def remove_lesion(images: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, int]:
    """The background alone: every lesion filled with its nearest background pixels
    (``background_plate``). Returns (N x H x W x 3 uint8, how many images were left unchanged because
    their mask covers the whole image)."""
    images = _check_images(images)
    lesion = lesion_masks(masks, images)
    out, kept = images.copy(), 0
    for i in range(len(images)):
        if lesion[i].all():
            kept += 1
        else:
            out[i] = background_plate(images[i], lesion[i])
    return out, kept


def remove_background(images: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The lesion alone: every pixel outside the lesion set to one colour, the mean background colour
    of the whole split, so that the background carries no information about the image. Returns
    (N x H x W x 3 uint8, that colour (3,) uint8)."""
    images = _check_images(images)
    lesion = lesion_masks(masks, images)
    background = ~lesion
    if not background.any():
        raise ValueError("no image of the split has a background pixel outside its lesion mask")
    colour = np.round(images[background].reshape(-1, 3).mean(axis=0)).astype(np.uint8)
    return np.where(lesion[..., None], images, colour), colour


def background_donors(n: int, seed: int = 0, groups: np.ndarray | None = None,
                      usable: np.ndarray | None = None) -> np.ndarray:
    """For each of ``n`` images, the index of another image whose background it receives.

    Donors are drawn at random (fixed ``seed``) among the ``usable`` images other than the image
    itself; with ``groups`` (e.g. class labels, -1 for none), among images of another group where
    there is one. Returns (n,) int64.
    """
    rng = np.random.default_rng(seed)
    usable = np.ones(n, bool) if usable is None else np.asarray(usable, bool)
    if usable.sum() < 2:
        raise ValueError(f"background swap needs at least 2 images with background; {int(usable.sum())} have one")
    donors = np.empty(n, np.int64)
    for i in range(n):
        pool = usable.copy()
        pool[i] = False
        if groups is not None and groups[i] >= 0:
            other = pool & (groups != groups[i])
            if other.any():
                pool = other
        donors[i] = rng.choice(np.flatnonzero(pool))
    return donors


def swap_background(images: np.ndarray, masks: np.ndarray, seed: int = 0,
                    groups: np.ndarray | None = None, donors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Replace each image's background (outside its lesion mask) by another image's background.

    Args:
        images: N x H x W x 3 uint8.
        masks: N x H x W (or N x K x H x W) lesion masks.
        seed: seed of the donor draw.
        groups: optional (N,) int labels; donors then come from another group where possible.
        donors: optional (N,) donor indices (overrides the draw).

    Returns:
        (N x H x W x 3 uint8 swapped images, (N,) int64 donor indices). Lesion pixels are unchanged.
    """
    images = _check_images(images)
    lesion = lesion_masks(masks, images)
    has_background = ~lesion.reshape(len(images), -1).all(axis=1)
    if donors is None:
        donors = background_donors(len(images), seed, groups, usable=has_background)
    donors = np.asarray(donors, np.int64)
    if donors.shape != (len(images),) or (donors < 0).any() or (donors >= len(images)).any():
        raise ValueError(f"donors must be {len(images)} indices in [0, {len(images)}), got shape {donors.shape}")
    plates: dict[int, np.ndarray] = {}
    out = images.copy()
    for i, j in enumerate(donors):
        if j not in plates:
            plates[j] = background_plate(images[j], lesion[j])
        out[i] = np.where(lesion[i][..., None], images[i], plates[j])
    return out, donors


def add_artifacts(images: np.ndarray, masks: np.ndarray, names: Sequence[str] = DEFAULT_ARTIFACTS,
                  seed: int = 0) -> np.ndarray:
    """Paint the named artifacts outside each image's lesion (N x H x W x 3 uint8, a new array).

    The painter is the synthetic generator's ``paint_artifact`` (square images). Image ``i`` draws
    from ``default_rng((seed, i))``; whatever the painter does, the lesion pixels are restored
    afterwards, so only the background changes.
    """
    from ..data.synthetic import ARTIFACTS, paint_artifact

    unknown = [n for n in names if n not in ARTIFACTS]
    if unknown:
        raise ValueError(f"unknown artifact(s) {', '.join(map(repr, unknown))}; choose from {', '.join(ARTIFACTS)}")
    images = _check_images(images)
    lesion = lesion_masks(masks, images)
    if names and images.shape[1] != images.shape[2]:
        raise ValueError(f"artifacts are painted on square images; these are {images.shape[1]} x {images.shape[2]}")
    out = images.copy()
    for i in range(len(out)):
        rng = np.random.default_rng((int(seed), i))
        canvas = images[i].astype(np.float32) / np.float32(255.0)
        for name in names:
            result = paint_artifact(rng, canvas, lesion[i], name)
            canvas = canvas if result is None else result
        painted = np.rint(np.clip(canvas, 0.0, 1.0) * 255.0).astype(np.uint8)
        out[i] = np.where(lesion[i][..., None], images[i], painted)
    return out
