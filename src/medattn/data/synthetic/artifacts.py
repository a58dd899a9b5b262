"""Background artifacts of the synthetic dermoscopy set (`medattn.data.synthetic.single_lesion`).

The artifacts of real dermoscopy collections that models are known to use as shortcuts: hair, ruler
marks, surgical ink dots, the dark circular border of the dermoscope (vignette), gel/air bubbles and
colour calibration stickers. `paint_artifact` draws one of them onto an image, away from the lesion
where that is where they occur in practice (ruler, ink, sticker), anywhere otherwise.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .draw import bezier, blend, draw_polylines, draw_segments, ellipses, pixel_grid, smoothstep

ARTIFACTS: tuple[str, ...] = ("ink", "hair", "bubbles", "ruler", "patch", "vignette")
"""Artifact names, in the order they are painted (later ones cover earlier ones)."""


def _lesion_extent(mask: np.ndarray) -> tuple[float, float, float, tuple[int, int, int, int]]:
    """(cx, cy, equivalent radius px, (top, bottom, left, right) free margins in px) of the lesion."""
    size = mask.shape[0]
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return size / 2, size / 2, 0.0, (size // 2, size // 2, size // 2, size // 2)
    ys, xs = np.nonzero(mask)
    radius = float(np.sqrt(ys.size / np.pi))
    return float(xs.mean()), float(ys.mean()), radius, (int(rows[0]), size - 1 - int(rows[-1]),
                                                        int(cols[0]), size - 1 - int(cols[-1]))


def _hair(rng, chw, mask) -> None:
    size = chw.shape[1]
    n = int(rng.integers(1, 9))
    mid = rng.uniform(0, size, (n, 2))
    a = rng.uniform(0, np.pi, n)
    direction = np.stack([np.cos(a), np.sin(a)], 1)
    half = size * rng.uniform(0.2, 0.6, n)[:, None] * direction
    bow = rng.uniform(-0.25, 0.25, n)[:, None] * np.abs(half).sum(1, keepdims=True) * direction[:, ::-1] * (-1, 1)
    width = np.maximum(0.5, rng.uniform(0.5, 1.3, n) * size / 128)
    color = np.array([0.11, 0.08, 0.06]) * rng.uniform(0.5, 1.5)
    coverage = draw_polylines(size, bezier(mid - half, mid + bow, mid + half, 9), width)
    blend(chw, color, rng.uniform(0.75, 0.95) * coverage)


def _ruler(rng, chw, mask) -> None:
    # Drawn in (along, depth) coordinates, depth = distance from the image edge with the widest
    # lesion-free margin, along = position parallel to that edge; then mapped to (x, y).
    size = chw.shape[1]
    side = int(np.argmax(_lesion_extent(mask)[3]))  # 0 top, 1 bottom, 2 left, 3 right
    tilt = float(rng.uniform(-0.12, 0.12))
    base = size * rng.uniform(0.03, 0.08)
    spacing = size * rng.uniform(0.035, 0.055)
    along = np.arange(-spacing * rng.uniform(0, 1), size + spacing, spacing)
    depth = base + np.tan(tilt) * (along - size / 2)
    length = np.where(np.arange(len(along)) % 5 == 0, 0.07, 0.035) * size
    p0 = np.stack([along, depth], 1)
    p1 = p0 + length[:, None] * np.array([-np.sin(tilt), np.cos(tilt)])
    p0 = np.concatenate([p0, p0[:1]])  # + the base line
    p1 = np.concatenate([p1, p0[-2:-1]])
    width = np.r_[np.full(len(along), 0.8), 1.0] * size / 128

    def to_xy(p):
        a, d = p[:, 0], (p[:, 1] if side in (0, 2) else size - 1 - p[:, 1])
        return np.stack([a, d] if side < 2 else [d, a], 1)

    if rng.uniform() < 0.5:  # the translucent body of the ruler
        yy, xx = pixel_grid(size)
        a_px, d_px = (xx, yy) if side < 2 else (yy, xx)
        if side in (1, 3):
            d_px = size - 1 - d_px
        edge = base + np.float32(np.tan(tilt)) * (a_px - size / 2) + 0.09 * size
        blend(chw, (0.93, 0.93, 0.9), rng.uniform(0.25, 0.45) * (1.0 - smoothstep(d_px, edge - 0.7, edge + 0.7)))
    blend(chw, (0.04, 0.04, 0.05), rng.uniform(0.8, 0.95) * draw_segments(size, to_xy(p0), to_xy(p1), width))


def _ink(rng, chw, mask) -> None:
    size = chw.shape[1]
    cx, cy, radius, _ = _lesion_extent(mask)
    n = rng.integers(3, 8)
    start = rng.uniform(0, 2 * np.pi)
    a = start + np.sort(rng.uniform(0, rng.uniform(np.pi / 2, 2 * np.pi), n))
    dist = max(radius, size * 0.15) * rng.uniform(1.3, 1.6) + 2.0
    x = np.clip(cx + dist * np.cos(a), 3, size - 4)
    y = np.clip(cy + dist * np.sin(a), 3, size - 4)
    r = rng.uniform(1.5, 3.5, n) * size / 128
    color = np.array([0.42, 0.22, 0.58]) * rng.uniform(0.8, 1.2, 3)
    blend(chw, np.clip(color, 0, 1), rng.uniform(0.75, 0.9) * ellipses(size, x, y, r, r * rng.uniform(0.7, 1.0, n), a, 1.5))


def _bubbles(rng, chw, mask) -> None:
    size = chw.shape[1]
    n = rng.integers(1, 6)
    x, y = rng.uniform(0, size, n), rng.uniform(0, size, n)
    r = size * rng.uniform(0.025, 0.09, n)
    body = ellipses(size, x, y, r, r, 0.0, 1.2)
    inner = ellipses(size, x, y, np.maximum(r - 1.2 * size / 128, 0.5), np.maximum(r - 1.2 * size / 128, 0.5), 0.0, 1.2)
    blend(chw, (1.0, 1.0, 1.0), 0.12 * inner)
    blend(chw, (0.25, 0.25, 0.27), 0.55 * (body - inner))  # the dark rim
    hx, hy = x - 0.45 * r, y - 0.45 * r
    blend(chw, (1.0, 1.0, 1.0), 0.85 * ellipses(size, hx, hy, 0.28 * r, 0.18 * r, np.pi / 4 * 3, 1.0))


_STICKER_COLORS = np.array([(0.10, 0.60, 0.85), (0.90, 0.20, 0.50), (0.95, 0.85, 0.10),
                            (0.20, 0.70, 0.30), (0.85, 0.25, 0.15), (0.25, 0.30, 0.80)], np.float32)


def _patch(rng, chw, mask) -> None:
    # A round colour-calibration sticker with 2-4 coloured sectors and a white rim, in the image
    # corner farthest from the lesion; drawn in its bounding box only.
    size = chw.shape[1]
    cx, cy, _, _ = _lesion_extent(mask)
    corners = np.array([(0, 0), (size, 0), (0, size), (size, size)], np.float32)
    far = corners[np.argmax(np.hypot(corners[:, 0] - cx, corners[:, 1] - cy))]
    r = float(size * rng.uniform(0.08, 0.13))
    inset = size * rng.uniform(0.06, 0.14, 2)
    px = float(far[0] + (inset[0] if far[0] == 0 else -inset[0]))
    py = float(far[1] + (inset[1] if far[1] == 0 else -inset[1]))
    y0, y1 = max(int(py - r) - 2, 0), min(int(py + r) + 3, size)
    x0, x1 = max(int(px - r) - 2, 0), min(int(px + r) + 3, size)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    d = np.sqrt((xx - px) ** 2 + (yy - py) ** 2)
    colors = _STICKER_COLORS[rng.permutation(len(_STICKER_COLORS))[: rng.integers(2, 5)]]
    turn = float(rng.uniform(0, 2 * np.pi))
    sector = ((np.arctan2(yy - py, xx - px) + (np.pi + turn)) * (len(colors) / (2 * np.pi))).astype(np.int32)
    region = chw[:, y0:y1, x0:x1]
    blend(region, (0.97, 0.97, 0.95), 1.0 - smoothstep(d, r - 0.6, r + 0.6))
    blend(region, colors[sector % len(colors)].transpose(2, 0, 1), 1.0 - smoothstep(d, 0.82 * r - 0.6, 0.82 * r + 0.6))


def _vignette(rng, chw, mask) -> None:
    size = chw.shape[1]
    yy, xx = pixel_grid(size)
    cx, cy = (float(v) for v in size * (0.5 + rng.uniform(-0.04, 0.04, 2)))
    rv = size * rng.uniform(0.5, 0.62)
    soft = size * rng.uniform(0.02, 0.06)
    d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
    chw *= 1.0 - 0.15 * smoothstep(d, 0.6 * rv, rv)  # light falls off towards the rim
    blend(chw, np.full(3, rng.uniform(0.01, 0.05)), smoothstep(d, rv - soft, rv + soft))


_PAINTERS: dict[str, Callable] = {"ink": _ink, "hair": _hair, "bubbles": _bubbles, "ruler": _ruler,
                                  "patch": _patch, "vignette": _vignette}


def paint_artifact(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, name: str) -> np.ndarray:
    """Paint artifact ``name`` (one of `ARTIFACTS`) onto ``image`` in place and return it.

    image: H x W x 3 float32 RGB in [0, 1] (H == W); mask: H x W lesion mask (nonzero = lesion),
    used to keep rulers, ink and stickers off the lesion. Draws from ``rng`` only."""
    if name not in _PAINTERS:
        raise ValueError(f"unknown artifact {name!r}; known: {', '.join(ARTIFACTS)}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] != image.shape[1] or image.dtype != np.float32:
        raise ValueError(f"image must be square H x W x 3 float32, got {image.shape} {image.dtype}")
    chw = image.transpose(2, 0, 1)
    _PAINTERS[name](rng, chw, np.asarray(mask) != 0)
    np.clip(chw, 0.0, 1.0, out=chw)
    return image
