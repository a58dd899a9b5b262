"""Agreement between a saliency / attention map and a lesion mask.

All functions take 2-D arrays of one image: ``saliency`` H x W float in [0, 1] (min-max scaled, as
`medattn.explain` makes them) and ``mask`` H x W, lesion where non-zero. Distances are in pixels.

- Binarisation of the map: ``binarize_otsu`` (skimage Otsu threshold) and ``binarize_convex_hull``
  (the filled convex hull of the region at or above a threshold, with ``scipy.spatial.ConvexHull``
  as in the SIBnet evaluation, Mahapatra & Reyes 2022; the paper names no threshold, 0.5 here).
- Overlap of the binary map with the mask: ``dice``, ``iou``; boundary distance: ``hd95`` (the 95th
  percentile of the boundary-to-boundary distances of both directions pooled, as MedPy's ``hd95``).
- On the continuous map: ``ssim`` (skimage, ``data_range=1``), ``pointing_game`` (is the map's
  maximum on the lesion, Zhang et al. 2016), ``energy_inside`` (share of the map's mass on the lesion).

Speed without changing a number: what depends on the mask only (its boundary, a KD-tree of it, its
SSIM window means) is prepared once per image in a ``MaskReference`` and shared by every map and
binarisation; nearest boundary distances come from ``scipy.spatial.cKDTree`` (the exact Euclidean
distances a distance transform gives, on the boundary pixels only); SSIM is skimage's formula on
window means computed once per array; the convex hull is filled row by row from its half-planes.
tests/explain/test_saliency_speed_equivalence.py checks every metric against the straightforward
implementation (distance transforms, ``structural_similarity``, the hull test on every pixel).

Conventions for empty inputs (documented, never NaN): both empty gives Dice = IoU = 1 and HD95 = 0;
one empty gives Dice = IoU = 0 and HD95 = the image diagonal (the largest distance possible, the usual
penalty); a map that is all zeros or constant has no maximum (pointing game 0) and no mass (energy 0).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError, cKDTree
from skimage.draw import line
from skimage.filters import threshold_otsu

BINARIZATIONS = ("otsu", "convex_hull")
BINARY_METRICS = ("dice", "iou", "hd95_px", "hd95_pct", "ssim_binary")
CONTINUOUS_METRICS = ("ssim", "pointing_game", "energy_inside")


def _check(saliency: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    saliency, mask = np.asarray(saliency), np.asarray(mask)
    if saliency.ndim != 2 or saliency.shape != mask.shape:
        raise ValueError(f"saliency and mask must be H x W of one size, got {saliency.shape} and {mask.shape}")
    return saliency.astype(np.float64), mask != 0


def diagonal(shape: tuple[int, ...]) -> float:
    """Length of the image diagonal in pixels, sqrt(H^2 + W^2)."""
    return float(np.hypot(shape[0], shape[1]))


def binarize_otsu(saliency: np.ndarray) -> np.ndarray:
    """Pixels above the Otsu threshold of the map (bool H x W); a constant map gives an empty mask."""
    s = np.asarray(saliency, np.float64)
    if s.max() <= s.min():
        return np.zeros(s.shape, bool)
    return s > threshold_otsu(s)


def fill_convex_hull(region: np.ndarray) -> np.ndarray:
    """The filled convex hull of the pixel centres of a bool H x W region: every pixel whose centre
    satisfies all of the hull's half-planes (``scipy.spatial.ConvexHull`` equations, 1e-9 slack
    for centres on an edge), and the region itself.

    Degenerate regions: no pixel gives an empty mask, one pixel itself, collinear pixels the digital
    line between the two extreme ones.
    """
    region = np.asarray(region, bool)
    rows = np.flatnonzero(region.any(axis=1))
    if len(rows) == 0:
        return np.zeros(region.shape, bool)
    # The hull of a region is that of the first and last pixel of each of its rows.
    first = region[rows].argmax(axis=1)
    last = region.shape[1] - 1 - region[rows, ::-1].argmax(axis=1)
    ends = np.stack([np.repeat(rows, 2), np.stack([first, last], axis=1).ravel()], axis=1)
    ends = ends[np.r_[True, (np.diff(ends, axis=0) != 0).any(axis=1)]]  # one point where first == last
    centred = ends - ends.mean(axis=0)
    if len(ends) < 3 or np.linalg.matrix_rank(centred.astype(np.float64)) < 2:
        return _segment(region, np.argwhere(region))
    try:
        hull = ConvexHull(ends)
    except QhullError:  # numerically flat despite the rank test
        return _segment(region, np.argwhere(region))
    return _fill_half_planes(region.shape, hull.equations, rows[0], rows[-1], ends[:, 1].min(),
                             ends[:, 1].max()) | region


def _fill_half_planes(shape: tuple[int, ...], equations: np.ndarray, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """Pixels (r, c) of the box [r0, r1] x [c0, c1] with a r + b c + offset <= 1e-9 for every row
    (a, b, offset) of ``equations``: per image row, the interval of columns between the bounds.

    Pixel centres are integers and hull vertices are pixel centres, so a centre is either on an
    edge's line (|value| ~ 1e-13) or at least 1/317 px from it: the slack decides no other pixel.
    """
    r = np.arange(r0, r1 + 1, dtype=np.float64)[:, None]
    a, b, offset = equations[:, 0], equations[:, 1], equations[:, 2]
    lo = np.full(len(r), float(c0))
    hi = np.full(len(r), float(c1))
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = (1e-9 - offset - a * r) / b  # c <= bound where b > 0, c >= bound where b < 0
    if (b > 0).any():
        hi = np.minimum(hi, np.floor(bound[:, b > 0]).min(axis=1))
    if (b < 0).any():
        lo = np.maximum(lo, np.ceil(bound[:, b < 0]).max(axis=1))
    if (b == 0).any():  # an edge along the columns: whole rows in or out
        hi[(a * r + offset > 1e-9)[:, b == 0].any(axis=1)] = -1.0
    cols = np.arange(c0, c1 + 1)
    out = np.zeros(shape, bool)
    out[r0:r1 + 1, c0:c1 + 1] = (cols >= lo[:, None]) & (cols <= hi[:, None])
    return out


def _segment(region: np.ndarray, pts: np.ndarray) -> np.ndarray:
    out = region.copy()
    if len(pts) > 1:
        direction = pts[-1] - pts[0]
        t = pts @ direction
        a, b = pts[np.argmin(t)], pts[np.argmax(t)]
        out[line(int(a[0]), int(a[1]), int(b[0]), int(b[1]))] = True
    return out


def binarize_convex_hull(saliency: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """The filled convex hull of the pixels where the map is >= ``threshold`` (bool H x W).

    An all-zero map gives an empty mask (not the whole image, which ``>= 0`` would select).
    """
    s = np.asarray(saliency, np.float64)
    if s.max() <= 0:
        return np.zeros(s.shape, bool)
    return fill_convex_hull(s >= threshold)


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """2 |A n B| / (|A| + |B|) of two binary masks (1 when both are empty)."""
    a, b = np.asarray(pred) != 0, np.asarray(ref) != 0
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def iou(pred: np.ndarray, ref: np.ndarray) -> float:
    """|A n B| / |A u B| of two binary masks (1 when both are empty)."""
    a, b = np.asarray(pred) != 0, np.asarray(ref) != 0
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def boundary(region: np.ndarray) -> np.ndarray:
    """Pixels of the region with a 4-neighbour outside it (the image border counts as outside)."""
    region = np.asarray(region, bool)
    cross = ndimage.generate_binary_structure(2, 1)
    return region & ~ndimage.binary_erosion(region, structure=cross, border_value=0)


def _window(shape: tuple[int, ...]) -> int:
    win = min(7, min(shape) - (1 - min(shape) % 2))
    if win < 3:
        raise ValueError(f"SSIM needs images of at least 3 x 3 pixels, got {shape}")
    return win


@dataclass
class MaskReference:
    """A lesion mask prepared for scoring many maps against it (see the module notes).

    Attributes:
        mask: H x W bool; ``points``: its boundary pixels (n x 2 row, column), ``tree`` a KD-tree
        of them (None for an empty mask); ``mean``: the mask's SSIM window means (H x W float64;
        None under 3 x 3 pixels).
    """

    mask: np.ndarray
    points: np.ndarray
    tree: cKDTree | None
    mean: np.ndarray | None
    _distance: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def of(cls, mask: np.ndarray) -> "MaskReference":
        m = np.asarray(mask) != 0
        if m.ndim != 2:
            raise ValueError(f"a mask must be H x W, got shape {m.shape}")
        points = np.argwhere(boundary(m))
        mean = ndimage.uniform_filter(m.astype(np.float64), size=_window(m.shape)) if min(m.shape) >= 3 else None
        return cls(m, points, cKDTree(points) if len(points) else None, mean)

    def distance_to_lesion(self) -> np.ndarray:
        """Euclidean distance (pixels) of every pixel to the nearest lesion pixel (computed once)."""
        if self._distance is None:
            self._distance = ndimage.distance_transform_edt(~self.mask)
        return self._distance


def _reference(mask: "np.ndarray | MaskReference") -> MaskReference:
    return mask if isinstance(mask, MaskReference) else MaskReference.of(mask)


def surface_distances(pred: np.ndarray, ref: "np.ndarray | MaskReference") -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distance (pixels) from each boundary pixel of ``pred`` to the nearest boundary pixel
    of ``ref``, and the other way round (row-major order of the pixels); both masks must be non-empty."""
    ref = _reference(ref)
    points = np.argwhere(boundary(pred))
    return ref.tree.query(points)[0], cKDTree(points).query(ref.points)[0]


def hd95(pred: np.ndarray, ref: "np.ndarray | MaskReference", percentile: float = 95.0) -> float:
    """95th percentile Hausdorff distance in pixels between two binary masks (see the module notes)."""
    ref = _reference(ref)
    a, b = np.asarray(pred) != 0, ref.mask
    if a.shape != b.shape:
        raise ValueError(f"masks of different sizes: {a.shape} and {b.shape}")
    if not a.any() and not b.any():
        return 0.0
    if not a.any() or not b.any():
        return diagonal(a.shape)
    d_ab, d_ba = surface_distances(a, ref)
    return float(np.percentile(np.concatenate([d_ab, d_ba]), percentile))


def _ssim(x: np.ndarray, ux: np.ndarray, uxx: np.ndarray, ref: MaskReference) -> float:
    """skimage's ``structural_similarity(x, mask, data_range=1)`` (uniform window, sample covariance,
    K1 = 0.01, K2 = 0.03) from the window means of x and x^2; the mask's are ``ref.mean`` (m^2 = m)."""
    win = _window(x.shape)
    uy = uyy = ref.mean
    uxy = ndimage.uniform_filter(x * ref.mask.astype(np.float64), size=win)
    cov_norm = win ** 2 / (win ** 2 - 1)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1, c2 = (0.01 * 1.0) ** 2, (0.03 * 1.0) ** 2
    a1, a2, b1, b2 = 2 * ux * uy + c1, 2 * vxy + c2, ux ** 2 + uy ** 2 + c1, vx + vy + c2
    s = (a1 * a2) / (b1 * b2)
    pad = (win - 1) // 2
    return float(s[pad:s.shape[0] - pad, pad:s.shape[1] - pad].mean(dtype=np.float64))


def _ssim_of(x: np.ndarray, ref: MaskReference, binary: bool = False) -> float:
    win = _window(x.shape)
    ux = ndimage.uniform_filter(x, size=win)
    uxx = ux if binary else ndimage.uniform_filter(x * x, size=win)  # a 0/1 map is its own square
    return _ssim(x, ux, uxx, ref)


def ssim(saliency: np.ndarray, mask: "np.ndarray | MaskReference") -> float:
    """SSIM between a [0, 1] map and the 0/1 mask, ``data_range=1`` (the span of both), 7 x 7 uniform
    window (smaller, odd, for images under 7 pixels): ``skimage.metrics.structural_similarity``'s value."""
    ref = _reference(mask)
    s, _ = _check(saliency, ref.mask)
    return _ssim_of(s, ref)


def pointing_game(saliency: np.ndarray, mask: "np.ndarray | MaskReference", tolerance: float = 0.0) -> float:
    """1.0 if the map's maximum (first in row-major order) lies on the lesion or within ``tolerance``
    pixels of it, else 0.0; a constant map scores 0."""
    ref = _reference(mask)
    s, m = _check(saliency, ref.mask)
    if s.max() <= s.min() or not m.any():
        return 0.0
    r, c = np.unravel_index(int(np.argmax(s)), s.shape)
    if tolerance <= 0:
        return float(m[r, c])
    return float(ref.distance_to_lesion()[r, c] <= tolerance)


def energy_inside(saliency: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's total mass that lies on the lesion, sum(s * m) / sum(s) (0 for a zero map)."""
    s, m = _check(saliency, mask)
    s = np.clip(s, 0.0, None)
    total = s.sum()
    return 0.0 if total <= 0 else float(s[m].sum() / total)


def score_map(saliency: np.ndarray, mask: "np.ndarray | MaskReference", hull_threshold: float = 0.5,
              pointing_tolerance: float = 0.0) -> dict[str, dict[str, float]]:
    """Every metric of one map against one mask (an array, or a ``MaskReference`` shared by the maps
    of one image).

    Returns ``{"otsu": {...}, "convex_hull": {...}}``; each holds the binary metrics of that
    binarisation (``dice``, ``iou``, ``hd95_px``, ``hd95_pct`` = HD95 in % of the image diagonal,
    ``ssim_binary``) and the continuous ones (``ssim``, ``pointing_game``, ``energy_inside``), which
    are the same for both.
    """
    ref = _reference(mask)
    s, m = _check(saliency, ref.mask)
    continuous = {"ssim": _ssim_of(s, ref), "pointing_game": pointing_game(s, ref, pointing_tolerance),
                  "energy_inside": energy_inside(s, m)}
    binary = {"otsu": binarize_otsu(s), "convex_hull": binarize_convex_hull(s, hull_threshold)}
    out = {}
    for name, b in binary.items():
        h = hd95(b, ref)
        out[name] = {"dice": dice(b, m), "iou": iou(b, m), "hd95_px": h, "hd95_pct": 100.0 * h / diagonal(m.shape),
                     "ssim_binary": _ssim_of(b.astype(np.float64), ref, binary=True), **continuous}
    return out


def score_rows(image_id: str, maps: dict[str, np.ndarray], reference: dict[str, np.ndarray],
               hull_threshold: float = 0.5, pointing_tolerance: float = 0.0) -> list[dict]:
    """Table rows for one image: one per map x binarisation, with ``image_id``, ``map``,
    ``binarization`` and every metric of ``score_map``. ``reference[name]`` is the mask for map
    ``name`` (per-class masks let each class map have its own); maps given the same mask array
    share one ``MaskReference``."""
    prepared: dict[int, MaskReference] = {}
    rows = []
    for name, m in maps.items():
        mask = reference[name]
        if not isinstance(mask, MaskReference):
            if id(mask) not in prepared:
                prepared[id(mask)] = MaskReference.of(mask)
            mask = prepared[id(mask)]
        for method, metrics in score_map(m, mask, hull_threshold, pointing_tolerance).items():
            rows.append({"image_id": image_id, "map": name, "binarization": method, **metrics})
    return rows


def summarize_rows(rows: list[dict], n_boot: int = 1000, seed: int = 0) -> dict:
    """Mean and 95% percentile-bootstrap interval (resampling images) of every metric, per map.

    Returns ``{map: {"otsu": {metric: {"mean", "ci95": [lo, hi], "n"}}, "convex_hull": {...},
    "continuous": {...}}}``; the continuous metrics (the same in every binarisation row) are
    summarised once, under ``continuous``. ``ci95`` is None with ``n_boot`` 0 or fewer than two
    images. The metrics of one group share their resamples (`medattn.metrics.bootstrap`).
    """
    from .bootstrap import bootstrap_ci

    out: dict = {}
    for name in dict.fromkeys(r["map"] for r in rows):
        node = out.setdefault(name, {})
        for method in BINARIZATIONS:
            sel = [r for r in rows if r["map"] == name and r["binarization"] == method]
            if not sel:
                continue
            groups = {method: BINARY_METRICS}
            if method == BINARIZATIONS[0]:
                groups["continuous"] = CONTINUOUS_METRICS
            for group, metrics in groups.items():
                values = np.array([[r[m] for m in metrics] for r in sel], np.float64)
                ci = None
                if n_boot > 0 and len(values) > 1:
                    ci = bootstrap_ci(lambda v, _: {m: v[:, j].mean() for j, m in enumerate(metrics)}, values, values,
                                      n_boot=n_boot, seed=seed, stratified=False)
                node[group] = {m: {"mean": float(values[:, j].mean()), "ci95": list(ci[m]) if ci else None,
                                   "n": len(values)} for j, m in enumerate(metrics)}
    return out


def summary_table(maps: dict) -> str:
    """Markdown: one row per map; Dice/HD95% per binarisation, then the continuous metrics."""
    cols = [("convex_hull", "dice"), ("convex_hull", "hd95_pct"), ("otsu", "dice"), ("otsu", "hd95_pct"),
            ("continuous", "ssim"), ("continuous", "pointing_game"), ("continuous", "energy_inside")]
    lines = ["| map | " + " | ".join(f"{g}.{m}" for g, m in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, node in maps.items():
        cells = []
        for g, m in cols:
            v = node.get(g, {}).get(m)
            cells.append("n/a" if v is None else f"{v['mean']:.3f}" + (
                f" [{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}]" if v["ci95"] else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
