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

Conventions for empty inputs (documented, never NaN): both empty gives Dice = IoU = 1 and HD95 = 0;
one empty gives Dice = IoU = 0 and HD95 = the image diagonal (the largest distance possible, the usual
penalty); a map that is all zeros or constant has no maximum (pointing game 0) and no mass (energy 0).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from skimage.draw import line
from skimage.filters import threshold_otsu
from skimage.metrics import structural_similarity

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
    """The filled convex hull of the pixel centres of a bool H x W region.

    Degenerate regions: no pixel gives an empty mask, one pixel itself, collinear pixels the digital
    line between the two extreme ones.
    """
    region = np.asarray(region, bool)
    pts = np.argwhere(region)
    if len(pts) == 0:
        return np.zeros(region.shape, bool)
    centred = pts - pts.mean(axis=0)
    if len(pts) < 3 or np.linalg.matrix_rank(centred.astype(np.float64)) < 2:
        return _segment(region, pts)
    try:
        hull = ConvexHull(pts)
    except QhullError:  # numerically flat despite the rank test
        return _segment(region, pts)
    (r0, c0), (r1, c1) = pts.min(axis=0), pts.max(axis=0)
    rr, cc = np.mgrid[r0:r1 + 1, c0:c1 + 1]
    grid = np.stack([rr.ravel(), cc.ravel()], axis=1).astype(np.float64)
    # hull.equations: rows (n, offset) with n . p + offset <= 0 inside; small slack for centres on an edge.
    inside = (grid @ hull.equations[:, :2].T + hull.equations[:, 2] <= 1e-9).all(axis=1)
    out = np.zeros(region.shape, bool)
    out[r0:r1 + 1, c0:c1 + 1] = inside.reshape(rr.shape)
    return out | region


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


def surface_distances(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distance (pixels) from each boundary pixel of ``pred`` to the nearest boundary pixel
    of ``ref``, and the other way round; both masks must be non-empty."""
    bp, br = boundary(pred), boundary(ref)
    to_ref = ndimage.distance_transform_edt(~br)
    to_pred = ndimage.distance_transform_edt(~bp)
    return to_ref[bp], to_pred[br]


def hd95(pred: np.ndarray, ref: np.ndarray, percentile: float = 95.0) -> float:
    """95th percentile Hausdorff distance in pixels between two binary masks (see the module notes)."""
    a, b = np.asarray(pred) != 0, np.asarray(ref) != 0
    if a.shape != b.shape:
        raise ValueError(f"masks of different sizes: {a.shape} and {b.shape}")
    if not a.any() and not b.any():
        return 0.0
    if not a.any() or not b.any():
        return diagonal(a.shape)
    d_ab, d_ba = surface_distances(a, b)
    return float(np.percentile(np.concatenate([d_ab, d_ba]), percentile))


def ssim(saliency: np.ndarray, mask: np.ndarray) -> float:
    """SSIM between a [0, 1] map and the 0/1 mask, ``data_range=1`` (the span of both), 7 x 7 uniform
    window (smaller, odd, for images under 7 pixels)."""
    s, m = _check(saliency, mask)
    win = min(7, min(s.shape) - (1 - min(s.shape) % 2))
    if win < 3:
        raise ValueError(f"SSIM needs images of at least 3 x 3 pixels, got {s.shape}")
    return float(structural_similarity(s, m.astype(np.float64), data_range=1.0, win_size=win))


def pointing_game(saliency: np.ndarray, mask: np.ndarray, tolerance: float = 0.0) -> float:
    """1.0 if the map's maximum (first in row-major order) lies on the lesion or within ``tolerance``
    pixels of it, else 0.0; a constant map scores 0."""
    s, m = _check(saliency, mask)
    if s.max() <= s.min() or not m.any():
        return 0.0
    r, c = np.unravel_index(int(np.argmax(s)), s.shape)
    if tolerance <= 0:
        return float(m[r, c])
    return float(ndimage.distance_transform_edt(~m)[r, c] <= tolerance)


def energy_inside(saliency: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's total mass that lies on the lesion, sum(s * m) / sum(s) (0 for a zero map)."""
    s, m = _check(saliency, mask)
    s = np.clip(s, 0.0, None)
    total = s.sum()
    return 0.0 if total <= 0 else float(s[m].sum() / total)


def score_map(saliency: np.ndarray, mask: np.ndarray, hull_threshold: float = 0.5,
              pointing_tolerance: float = 0.0) -> dict[str, dict[str, float]]:
    """Every metric of one map against one mask.

    Returns ``{"otsu": {...}, "convex_hull": {...}}``; each holds the binary metrics of that
    binarisation (``dice``, ``iou``, ``hd95_px``, ``hd95_pct`` = HD95 in % of the image diagonal,
    ``ssim_binary``) and the continuous ones (``ssim``, ``pointing_game``, ``energy_inside``), which
    are the same for both.
    """
    s, m = _check(saliency, mask)
    continuous = {"ssim": ssim(s, m), "pointing_game": pointing_game(s, m, pointing_tolerance),
                  "energy_inside": energy_inside(s, m)}
    binary = {"otsu": binarize_otsu(s), "convex_hull": binarize_convex_hull(s, hull_threshold)}
    out = {}
    for name, b in binary.items():
        h = hd95(b, m)
        out[name] = {"dice": dice(b, m), "iou": iou(b, m), "hd95_px": h, "hd95_pct": 100.0 * h / diagonal(m.shape),
                     "ssim_binary": ssim(b.astype(np.float64), m), **continuous}
    return out


def score_rows(image_id: str, maps: dict[str, np.ndarray], reference: dict[str, np.ndarray],
               hull_threshold: float = 0.5, pointing_tolerance: float = 0.0) -> list[dict]:
    """Table rows for one image: one per map x binarisation, with ``image_id``, ``map``,
    ``binarization`` and every metric of ``score_map``. ``reference[name]`` is the mask for map
    ``name`` (per-class masks let each class map have its own)."""
    rows = []
    for name, m in maps.items():
        for method, metrics in score_map(m, reference[name], hull_threshold, pointing_tolerance).items():
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
