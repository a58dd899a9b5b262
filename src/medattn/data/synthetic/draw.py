"""Fast drawing primitives for the synthetic dermoscopy set (`medattn.data.synthetic.single_lesion`).

Everything works on float32 arrays in [0, 1] and is vectorised over the whole image or over a batch
of small windows, so one 128 px image costs a few milliseconds on one core:
- smooth noise is a tiny grid of Gaussian numbers interpolated by two matrix products;
- fine texture is a random crop of a noise bank computed once per process (fixed seed);
- lines and curves are point samples splatted with bilinear weights (`np.bincount`);
- dots, ellipses and rings are drawn in small windows around their centres, all at once.
Coordinates are pixels: x is the column, y the row, (0, 0) the centre of the top-left pixel.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import ndimage

_BANK_SEED = 20250917  # fixed: the texture bank is part of the generator, not of the user's seed


@lru_cache(maxsize=8)
def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(yy, xx): size x size float32 row and column coordinates (read-only, cached)."""
    r = np.arange(size, dtype=np.float32)
    yy, xx = np.meshgrid(r, r, indexing="ij")
    yy.flags.writeable = xx.flags.writeable = False
    return yy, xx


@lru_cache(maxsize=32)
def _interpolation_matrix(size: int, cells: int) -> np.ndarray:
    # size x cells Gaussian interpolation weights, rows normalised so the field has unit variance.
    centres = np.linspace(-0.5, size - 0.5, cells) if cells > 1 else np.array([size / 2.0])
    spacing = size / max(cells - 1, 1)
    x = np.arange(size)[:, None]
    w = np.exp(-0.5 * ((x - centres[None, :]) / (0.6 * spacing)) ** 2)
    w /= np.sqrt((w ** 2).sum(axis=1, keepdims=True))
    return w.astype(np.float32)


def smooth_noise(rng: np.random.Generator, size: int, cells: int, channels: int = 1,
                 box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """channels x size x size float32 Gaussian field, unit variance per pixel, with features about
    ``size / cells`` pixels across (``cells`` = 2..40); with ``box`` = (y0, y1, x0, x1) only that
    part of the field (channels x (y1 - y0) x (x1 - x0))."""
    a = _interpolation_matrix(size, int(cells))
    g = rng.standard_normal((channels, int(cells), int(cells)), dtype=np.float32)
    if box is None:
        return a @ g @ a.T
    y0, y1, x0, x1 = box
    return a[y0:y1] @ g @ a[x0:x1].T


@lru_cache(maxsize=8)
def _noise_bank(side: int, sigma: float) -> np.ndarray:
    rng = np.random.default_rng([_BANK_SEED, side, int(sigma * 100)])
    bank = ndimage.gaussian_filter(rng.standard_normal((side, side)), sigma, mode="wrap")
    bank = (bank - bank.mean()) / bank.std()
    bank = bank.astype(np.float32)
    bank.flags.writeable = False
    return bank


def fine_noise(rng: np.random.Generator, size: int, sigma: float = 0.8, shape: tuple[int, int] | None = None) -> np.ndarray:
    """size x size (or ``shape``) float32 unit-variance texture with grain ``sigma`` pixels: a random
    crop of a noise bank cached per process (read-only view; use few distinct ``sigma`` values)."""
    h, w = shape or (size, size)
    side = max(512, 2 * size)
    bank = _noise_bank(side, float(sigma))
    r, c = rng.integers(0, side - size, size=2)
    return bank[r:r + h, c:c + w]


def smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """0 below ``lo``, 1 above ``hi``, a smooth cubic between (float32 for float32 ``x``)."""
    if np.ndim(lo) == 0 and np.ndim(hi) == 0:
        lo, hi = float(lo), float(hi)  # numpy float64 scalars would promote x to float64
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def blend(chw: np.ndarray, color, alpha: np.ndarray) -> None:
    """In place: ``chw = chw * (1 - alpha) + color * alpha``; chw 3 x H x W, color (3,) or
    3 x H x W, alpha H x W in [0, 1]."""
    color = np.asarray(color, dtype=np.float32)
    if color.ndim == 1:
        color = color[:, None, None]
    chw += (color - chw) * alpha


def splat(size: int, xs: np.ndarray, ys: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """size x size float32 canvas with each point's weight spread over its 4 nearest pixels
    (points outside the image land in a discarded border)."""
    side = size + 2  # one pixel of border on each side takes what falls outside
    xs = np.clip(np.asarray(xs, np.float32) + 1.0, 0.0, side - 1.001)
    ys = np.clip(np.asarray(ys, np.float32) + 1.0, 0.0, side - 1.001)
    x0, y0 = xs.astype(np.int32), ys.astype(np.int32)
    fx, fy = xs - x0, ys - y0
    i00 = y0 * side + x0
    w = np.asarray(weights, np.float32)
    idx = np.concatenate([i00, i00 + 1, i00 + side, i00 + side + 1])
    val = np.concatenate([w * (1 - fx) * (1 - fy), w * fx * (1 - fy), w * (1 - fx) * fy, w * fx * fy])
    flat = np.bincount(idx, val, minlength=side * side)
    return flat.reshape(side, side)[1:-1, 1:-1].astype(np.float32)


def draw_segments(size: int, p0: np.ndarray, p1: np.ndarray, width, step: float = 0.5) -> np.ndarray:
    """size x size coverage in [0, 1] of N straight strokes p0 -> p1 (N x 2, x/y px), ``width`` px
    wide (scalar or (N,)), anti-aliased: each stroke is sampled every <= ``step`` px along and
    across, the samples are splatted with weights that add up to its area, the sum clipped to 1."""
    p0, p1 = np.asarray(p0, np.float32).reshape(-1, 2), np.asarray(p1, np.float32).reshape(-1, 2)
    if len(p0) == 0:
        return np.zeros((size, size), np.float32)
    width = np.broadcast_to(np.asarray(width, np.float32), (len(p0),))
    d = p1 - p0
    length = np.maximum(np.sqrt(d[:, 0] ** 2 + d[:, 1] ** 2), 1e-3)
    n = np.maximum(np.ceil(length / step).astype(np.int64), 1)  # samples along each stroke
    seg = np.repeat(np.arange(len(p0)), n)
    k = np.arange(len(seg)) - np.repeat(np.cumsum(n) - n, n)
    s = (k + 0.5).astype(np.float32) / n[seg]
    lanes = max(int(np.ceil(float(width.max()) / step)), 1)
    o = ((np.arange(lanes) + 0.5) / lanes - 0.5).astype(np.float32)[:, None] * width[seg][None, :]
    nx, ny = (-d[:, 1] / length)[seg], (d[:, 0] / length)[seg]
    xs = p0[seg, 0] + s * d[seg, 0] + o * nx
    ys = p0[seg, 1] + s * d[seg, 1] + o * ny
    ws = np.broadcast_to(length[seg] * width[seg] / (n[seg] * lanes), xs.shape)
    return np.minimum(splat(size, xs.ravel(), ys.ravel(), ws.ravel()), 1.0)


def draw_polylines(size: int, points: np.ndarray, width) -> np.ndarray:
    """size x size coverage of polylines: ``points`` L x M x 2 (x/y px), ``width`` scalar or (L,)."""
    points = np.asarray(points, np.float32)
    w = np.broadcast_to(np.asarray(width, np.float32), points.shape[:1])
    m = points.shape[1] - 1
    return draw_segments(size, points[:, :-1].reshape(-1, 2), points[:, 1:].reshape(-1, 2), np.repeat(w, m))


def bezier(p0, p1, p2, n: int = 9) -> np.ndarray:
    """Points of quadratic Bezier curves p0 -> p2 with control point p1: p0, p1, p2 are 2 or L x 2
    (x/y); returns n x 2 or L x n x 2."""
    t = np.linspace(0.0, 1.0, n, dtype=np.float32)[:, None]
    p0, p1, p2 = (np.asarray(p, np.float32)[..., None, :] for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2


def windows(size: int, cx: np.ndarray, cy: np.ndarray, half: int):
    """Square windows of side 2*half+1 around each centre, for drawing many small shapes at once.

    Returns (index, valid, dx, dy), each N x w x w: flat pixel index, whether it lies in the image,
    and the offset from the (sub-pixel) centre in pixels."""
    cx, cy = np.asarray(cx, np.float32), np.asarray(cy, np.float32)
    o = np.arange(-half, half + 1)
    px = np.round(cx)[:, None, None].astype(np.int64) + o[None, None, :]
    py = np.round(cy)[:, None, None].astype(np.int64) + o[None, :, None]
    px, py = np.broadcast_arrays(px, py)
    valid = (px >= 0) & (px < size) & (py >= 0) & (py < size)
    dx = (px - cx[:, None, None]).astype(np.float32)
    dy = (py - cy[:, None, None]).astype(np.float32)
    return py * size + px, valid, dx, dy


def gather(size: int, index: np.ndarray, valid: np.ndarray, values: np.ndarray) -> np.ndarray:
    """size x size canvas: the sum of ``values`` over windows from `windows`, clipped to 1."""
    flat = np.bincount(index[valid], values[valid], minlength=size * size)
    return np.minimum(flat, 1.0).astype(np.float32).reshape(size, size)


def ellipses(size: int, cx, cy, rx, ry, angle=0.0, soft: float = 0.8) -> np.ndarray:
    """size x size coverage in [0, 1] of N filled ellipses (radii in px, angle in radians) with
    edges ``soft`` pixels wide."""
    cx = np.atleast_1d(np.asarray(cx, np.float32))
    if cx.size == 0:
        return np.zeros((size, size), np.float32)
    rx, ry, angle = (np.broadcast_to(np.asarray(v, np.float32), cx.shape)[:, None, None] for v in (rx, ry, angle))
    half = int(np.ceil(max(float(rx.max()), float(ry.max())) + soft)) + 1
    index, valid, dx, dy = windows(size, cx, cy, half)
    c, s = np.cos(angle), np.sin(angle)
    u, v = (dx * c + dy * s) / rx, (-dx * s + dy * c) / ry
    dist = (np.sqrt(u * u + v * v) - 1.0) * np.minimum(rx, ry)  # ~ signed distance in px
    # overlapping shapes add up (then clip): fine for the small dots and blobs drawn with it
    return gather(size, index, valid, 1.0 - smoothstep(dist, -soft / 2, soft / 2))
