"""Skin and lesion renderers of the synthetic dermoscopy set (`medattn.data.synthetic.single_lesion`).

Each lesion class is carried by shape, colour and texture together (the dermoscopic criteria in
short), with jitter in size, position, rotation and colour so that no single cue such as the mean
colour separates the classes:

- nevus: round/oval and symmetric, smooth soft border, uniform brown, fine regular pigment network;
- melanoma: asymmetric notched border of varying sharpness, several colours (dark brown, black,
  blue-grey veil, reddish or whitish regression), broken thick network, irregular dots;
- seborrheic_keratosis: waxy tan to brown, sharp "stuck-on" border, cerebriform ridges and furrows,
  milia-like white dots and comedo-like dark openings;
- basal_cell_carcinoma: pink and pearly, arborizing red vessels (thin branching lines), sometimes
  blue-grey ovoid nests and a dark crust.

Public functions return H x W x 3 float32 RGB in [0, 1] (views of channel-first arrays: this keeps
the numpy inner loops contiguous) and are reusable by other generators (several lesions per image).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .draw import bezier, blend, draw_polylines, ellipses, fine_noise, pixel_grid, smooth_noise, smoothstep

_TABLE = 256  # samples of the border radius over the angle


def _lerp(a, b, t) -> np.ndarray:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return a + (b - a) * np.float32(t)


def render_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Skin: size x size x 3 float32 RGB in [0, 1]; tone from light to brown, smooth colour variation
    (brightness, redness, lighting gradient), fine grain and faint skin furrows. The result is a view
    of a fresh channel-first array: ``image.transpose(2, 0, 1)`` is contiguous and writable, the
    fast way to paint on it."""
    yy, xx = pixel_grid(size)
    skin = _lerp((0.95, 0.80, 0.74), (0.64, 0.46, 0.36), rng.uniform() ** 1.4)
    skin = skin * rng.uniform(0.96, 1.04, 3).astype(np.float32)
    low = smooth_noise(rng, size, 3, 2)
    gx, gy = (float(v) for v in rng.uniform(-0.06, 0.06, 2) / size)
    shade = 1.0 + 0.045 * low[0] + gx * (xx - size / 2) + gy * (yy - size / 2)
    shade += 0.022 * fine_noise(rng, size, 0.8) + 0.02 * fine_noise(rng, size, 3.0)
    if rng.uniform() < 0.6:  # skin furrows: faint lines along two directions
        a = rng.uniform(0, np.pi)
        period = size * rng.uniform(0.05, 0.09)
        warp = 0.8 * smooth_noise(rng, size, 4)[0]
        u = (xx * float(np.cos(a)) + yy * float(np.sin(a))) * float(np.pi / period) + warp
        shade -= 0.035 * np.exp(-np.sin(u) ** 2 / 0.03)
    chw = skin[:, None, None] * shade[None]
    red = np.maximum(smooth_noise(rng, size, 5)[0], 0.0) * rng.uniform(0.0, 0.05)
    chw += np.array([1.0, -0.6, -0.4], np.float32)[:, None, None] * red[None]
    return np.clip(chw, 0, 1).astype(np.float32, copy=False).transpose(1, 2, 0)


class _Geometry:
    """A lesion's shape and the pixel coordinates of its bounding box ``box`` = (y0, y1, x0, x1)
    (all per-pixel work happens in the box): ``t`` < 1 inside (1 on the border), ``theta`` the
    angle, ``u``/``v`` rotated coordinates in units of the mean radius ``radius`` (px), ``yy``/``xx``
    image coordinates; each box-shaped (h x w) float32."""

    def __init__(self, rng: np.random.Generator, size: int, radius: tuple[float, float], aspect: tuple[float, float],
                 harmonics: np.ndarray, max_edge: float) -> None:
        self.size = size
        # Python floats: numpy float64 scalars would turn the float32 pixel arithmetic into float64.
        self.radius = float(size * rng.uniform(*radius))
        self.cx, self.cy = (float(v) for v in size * (0.5 + rng.uniform(-0.09, 0.09, 2)))
        self.angle = float(rng.uniform(0, 2 * np.pi))
        aspect = float(rng.uniform(*aspect))
        k = np.arange(1, len(harmonics) + 1)
        phi = np.linspace(-np.pi, np.pi, _TABLE, endpoint=False)
        phases = rng.uniform(0, 2 * np.pi, len(k))
        self.table = (1.0 + (harmonics[:, None] * np.cos(k[:, None] * phi[None] + phases[:, None])).sum(0)).astype(np.float32)
        reach = self.radius * float(self.table.max()) * (1.0 + max_edge / 2) / aspect ** 0.5 + 2.0
        y0, y1 = max(int(self.cy - reach), 0), min(int(self.cy + reach) + 2, size)
        x0, x1 = max(int(self.cx - reach), 0), min(int(self.cx + reach) + 2, size)
        self.box = (y0, y1, x0, x1)
        self.shape = (y1 - y0, x1 - x0)
        self.yy, self.xx = (a[y0:y1, x0:x1] for a in pixel_grid(size))
        c, s = float(np.cos(self.angle)), float(np.sin(self.angle))
        dx, dy = self.xx - self.cx, self.yy - self.cy
        self.u = (dx * c + dy * s) * (1.0 / self.radius)
        self.v = (dy * c - dx * s) * (1.0 / self.radius)
        ue, ve = self.u * aspect ** -0.5, self.v * aspect ** 0.5
        self.theta = np.arctan2(ve, ue)
        index = ((self.theta + np.float32(np.pi)) * np.float32(_TABLE / (2 * np.pi))).astype(np.int32) & (_TABLE - 1)
        self.t = np.sqrt(ue * ue + ve * ve) / np.take(self.table, index)

    def alpha(self, edge: np.ndarray | float) -> np.ndarray:
        """Coverage: 1 inside, 0.5 on the border, falling to 0 over ``edge`` (in units of t)."""
        return 1.0 - smoothstep(self.t, 1.0 - edge / 2, 1.0 + edge / 2)

    def noise(self, rng: np.random.Generator, cells: int, channels: int = 1) -> np.ndarray:
        """`smooth_noise` over the box: channels x h x w."""
        return smooth_noise(rng, self.size, cells, channels, self.box)

    def crop(self, canvas: np.ndarray) -> np.ndarray:
        """The box of an image-sized canvas (a view)."""
        y0, y1, x0, x1 = self.box
        return canvas[..., y0:y1, x0:x1]

    def points_inside(self, rng: np.random.Generator, n: int, t_lo: float, t_hi: float):
        """x, y (px, image coordinates) of n random points with normalised radius in [t_lo, t_hi]."""
        a = rng.uniform(-np.pi, np.pi, n)
        r = rng.uniform(t_lo, t_hi, n)
        idx = ((a + np.pi) * (_TABLE / (2 * np.pi))).astype(int) % _TABLE
        r = r * self.table[idx] * self.radius * 0.9
        c, s = np.cos(self.angle), np.sin(self.angle)
        u, v = r * np.cos(a), r * np.sin(a)
        return self.cx + u * c - v * s, self.cy + u * s + v * c


def _network(rng, g: _Geometry, period: float, warp: float, cells: int, lo: float, hi: float) -> np.ndarray:
    """Pigment network: 1 on the lines, 0 in the holes of a honeycomb (sum of three plane waves at
    120 degrees, holes where it is high) warped by smooth noise; ``warp`` (radians of phase) and
    ``cells`` set how irregular the mesh is, ``lo``/``hi`` (in -3..3) how thick its lines are."""
    yy, xx = g.yy, g.xx
    w = warp * g.noise(rng, cells, 2)
    k = float(2 * np.pi / period)
    a0 = float(rng.uniform(0, np.pi))
    f = np.zeros_like(xx)
    for j, phase in enumerate((w[0], w[1], -w[0])):
        a = a0 + j * 2 * np.pi / 3
        f += np.cos((xx * float(np.cos(a)) + yy * float(np.sin(a))) * k + phase)
    return 1.0 - smoothstep(f, lo, hi)


def _dots(rng, g: _Geometry, n: int, t_range, r_px, color, chw, opacity=1.0) -> None:
    x, y = g.points_inside(rng, n, *t_range)
    r = rng.uniform(*r_px, n) * g.size / 128
    blend(chw, color, opacity * g.crop(ellipses(g.size, x, y, r, r * rng.uniform(0.75, 1.0, n), rng.uniform(0, np.pi, n))))


def _fill(color, g: _Geometry) -> np.ndarray:
    return np.broadcast_to(np.asarray(color, np.float32)[:, None, None], (3, *g.shape)).copy()


def _nevus(rng, size):
    harm = np.array([0.0, rng.uniform(0, 0.04), rng.uniform(0, 0.025)])
    g = _Geometry(rng, size, (0.15, 0.27), (0.72, 1.0), harm, max_edge=0.18)
    base = _lerp((0.68, 0.48, 0.34), (0.33, 0.20, 0.13), rng.uniform())
    if rng.uniform() < 0.15:  # lightly pigmented, pinkish-tan
        base = _lerp(base, (0.80, 0.60, 0.52), rng.uniform(0.4, 0.8))
    shade = 1.0 + rng.uniform(-0.15, 0.1) * (1.0 - np.minimum(g.t, 1.0) ** 2)
    chw = base[:, None, None] * shade[None]
    net = _network(rng, g, size * rng.uniform(0.032, 0.045), 1.0, 6, -1.5, 0.0) * (1.0 - 0.7 * smoothstep(g.t, 0.5, 1.0))
    chw *= 1.0 - rng.uniform(0.2, 0.32) * net
    return chw, g.alpha(rng.uniform(0.08, 0.18)), g


def _melanoma(rng, size):
    k = np.arange(1, 21)
    harm = np.where(k <= 6, rng.uniform(0.03, 0.12, 20) / np.sqrt(k), rng.uniform(0, 0.025, 20))
    g = _Geometry(rng, size, (0.18, 0.3), (0.65, 1.0), harm, max_edge=0.22)
    chw = _fill(_lerp((0.46, 0.29, 0.19), (0.26, 0.15, 0.10), rng.uniform()), g)
    zones = g.noise(rng, rng.integers(4, 8), 4)
    zones += 0.9 * np.float32(rng.uniform(-1, 1)) * (g.u + g.v)[None]  # one side differs: asymmetry
    colors = [((0.08, 0.06, 0.06), 0.9), ((0.50, 0.55, 0.64), 0.6),
              (((0.72, 0.44, 0.44) if rng.uniform() < 0.6 else (0.80, 0.74, 0.72)), 0.6), ((0.60, 0.40, 0.27), 0.8)]
    for i in rng.permutation(4)[: rng.integers(2, 5)]:
        color, opacity = colors[i]
        lo = rng.uniform(0.0, 0.6)
        blend(chw, color, opacity * smoothstep(zones[i], lo, lo + 1.2))
    net = _network(rng, g, size * rng.uniform(0.045, 0.065), 2.5, 9, -1.0, 0.5) * smoothstep(g.noise(rng, 6)[0], 0.0, 0.8)
    chw *= 1.0 - 0.3 * net
    _dots(rng, g, rng.integers(8, 30), (0.35, 1.0), (0.7, 2.2), (0.1, 0.06, 0.05), chw)
    edge = np.clip(0.12 + 0.1 * np.cos(g.theta * int(rng.integers(1, 4)) + rng.uniform(0, 6.3)), 0.02, None)
    return chw, g.alpha(edge), g


def _seborrheic_keratosis(rng, size):
    harm = np.array([0.0] + list(rng.uniform(0.01, 0.06, 3)))
    g = _Geometry(rng, size, (0.17, 0.29), (0.6, 0.95), harm, max_edge=0.035)
    base = _lerp((0.76, 0.62, 0.46), (0.40, 0.28, 0.19), rng.uniform() ** 1.2)
    field = g.noise(rng, rng.integers(8, 11), 2)
    chw = base[:, None, None] * (1.0 + 0.06 * field[1])[None]
    folds = np.exp(-np.cos(field[0] * np.float32(rng.uniform(3.5, 5.0) * np.pi)) ** 2 / 0.25)  # cerebriform
    chw *= 1.0 - rng.uniform(0.25, 0.4) * folds
    blend(chw, (0.93, 0.88, 0.8), 0.25 * smoothstep(field[1], 0.8, 1.6))  # waxy highlights
    _dots(rng, g, rng.integers(3, 12), (0.0, 0.9), (0.8, 1.8), (0.97, 0.95, 0.86), chw, 0.9)  # milia-like
    _dots(rng, g, rng.integers(0, 6), (0.0, 0.9), (0.8, 1.6), (0.22, 0.14, 0.09), chw, 0.8)  # comedo-like
    return chw, g.alpha(rng.uniform(0.015, 0.035)), g


def _vessel_tree(rng, g: _Geometry, scale: float, out: list) -> None:
    """Append (p0, control, p2, width) of the branches of one arborizing vessel to ``out``: a trunk
    from near the border towards the centre that forks three times, thinner at each fork."""
    x, y = g.points_inside(rng, 1, 0.75, 0.95)
    heading = math.atan2(g.cy - y[0], g.cx - x[0]) + rng.uniform(-0.7, 0.7)
    stack = [(float(x[0]), float(y[0]), heading, g.radius * rng.uniform(0.5, 0.9), rng.uniform(0.8, 1.3) * scale, 0)]
    while stack:
        x0, y0, h, length, width, depth = stack.pop()
        c, s = math.cos(h), math.sin(h)
        x2, y2 = x0 + length * c, y0 + length * s
        bend = rng.uniform(-0.35, 0.35) * length
        out.append(((x0, y0), ((x0 + x2) / 2 - bend * s, (y0 + y2) / 2 + bend * c), (x2, y2), width))
        if depth < 3:
            for side in (-1, 1):
                stack.append((x2, y2, h + side * rng.uniform(0.3, 0.9), length * rng.uniform(0.5, 0.7), width * 0.65, depth + 1))


def _basal_cell_carcinoma(rng, size):
    harm = np.array([0.0] + list(rng.uniform(0.02, 0.08, 4)))
    g = _Geometry(rng, size, (0.15, 0.27), (0.7, 1.0), harm, max_edge=0.16)
    pigmented = rng.uniform() < 0.35
    base = _lerp((0.93, 0.74, 0.73), (0.80, 0.55, 0.56), rng.uniform())
    if pigmented:
        base = _lerp(base, (0.52, 0.40, 0.38), rng.uniform(0.3, 0.7))
    field = g.noise(rng, 6, 2)
    chw = base[:, None, None] * (1.0 + 0.04 * field[1])[None]
    blend(chw, (0.97, 0.93, 0.93), 0.45 * smoothstep(field[0], 0.2, 1.2))  # pearly sheen
    if pigmented or rng.uniform() < 0.4:  # blue-grey ovoid nests
        n = rng.integers(1, 5) + 3 * pigmented
        x, y = g.points_inside(rng, n, 0.0, 0.65)
        r = g.radius * rng.uniform(0.12, 0.3, n)
        nests = ellipses(size, x, y, r, r * rng.uniform(0.5, 0.8, n), rng.uniform(0, np.pi, n), 2.0)
        blend(chw, (0.36, 0.40, 0.52), 0.85 * g.crop(nests))
    if rng.uniform() < 0.3:  # crust
        x, y = g.points_inside(rng, 1, 0.0, 0.4)
        r = g.radius * rng.uniform(0.15, 0.3)
        blend(chw, (0.42, 0.16, 0.12), 0.9 * g.crop(ellipses(size, x, y, r, r * 0.7, rng.uniform(0, np.pi), 1.5)))
    branches: list = []
    for _ in range(rng.integers(2, 5)):
        _vessel_tree(rng, g, size / 128, branches)
    p0, p1, p2, width = (np.array(v, np.float32) for v in zip(*branches))
    vessels = g.crop(draw_polylines(size, bezier(p0, p1, p2, 5), width)) * (1.0 - smoothstep(g.t, 0.9, 1.0))
    blend(chw, (0.78, 0.12, 0.16), 0.8 * vessels)
    return chw, g.alpha(rng.uniform(0.08, 0.16)), g


LESION_RENDERERS: dict[str, Callable] = {
    "nevus": _nevus,
    "melanoma": _melanoma,
    "seborrheic_keratosis": _seborrheic_keratosis,
    "basal_cell_carcinoma": _basal_cell_carcinoma,
}
"""Lesion classes the synthetic set can draw, by name."""


def lesion_layer(rng: np.random.Generator, cls: str, size: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """Like `render_lesion`, but only the lesion's bounding box: (rgb 3 x h x w, alpha h x w,
    box (y0, y1, x0, x1)); alpha is 0 outside the box."""
    if cls not in LESION_RENDERERS:
        raise ValueError(f"unknown lesion class {cls!r}; known: {', '.join(LESION_RENDERERS)}")
    chw, alpha, g = LESION_RENDERERS[cls](rng, size)
    chw *= rng.uniform(0.9, 1.08, 3).astype(np.float32)[:, None, None] * np.float32(rng.uniform(0.85, 1.1))
    chw += 0.025 * fine_noise(rng, size, 0.8, g.shape)[None]
    return np.clip(chw, 0, 1, out=chw), alpha.astype(np.float32, copy=False), g.box


def render_lesion(rng: np.random.Generator, cls: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One lesion of class ``cls`` (a key of `LESION_RENDERERS`) near the image centre.

    Returns (rgb, alpha): size x size x 3 float32 colour in [0, 1] (meaningful where alpha > 0) and
    size x size float32 coverage in [0, 1], 0.5 on the border: the lesion mask is ``alpha >= 0.5``.
    Composite with ``image * (1 - alpha) + rgb * alpha``."""
    chw, alpha, (y0, y1, x0, x1) = lesion_layer(rng, cls, size)
    rgb = np.zeros((3, size, size), np.float32)
    full = np.zeros((size, size), np.float32)
    rgb[:, y0:y1, x0:x1] = chw
    full[y0:y1, x0:x1] = alpha
    return rgb.transpose(1, 2, 0), full
