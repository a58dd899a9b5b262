"""Straightforward reference implementations the fast saliency code is checked against.

The metric functions are the first implementation of `medattn.metrics.saliency` (before the mask was
prepared once per image, distances came from KD-trees, SSIM shared its window means and the hull was
filled row by row), kept verbatim (``_segment``, unchanged, is the library's): distance transforms over the whole image, skimage's
`structural_similarity`, and the hull's half-plane test on every pixel of its bounding box.
``library_cams`` runs each CAM method through pytorch-grad-cam's own call (its forward and full
backward pass), and ``reference_rows`` is the whole of `medattn saliency` before CAMs shared a pass.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from skimage.metrics import structural_similarity

from medattn.engine.inference import probabilities
from medattn.engine.precision import Precision
from medattn.explain import cam_extractor, native_maps, select_targets
from medattn.explain.cams import CLASS_AGNOSTIC, _rounds
from medattn.explain.maps import cam_map_name
from medattn.metrics.saliency import _segment, binarize_otsu, boundary, diagonal, dice, energy_inside, iou


def ref_fill_convex_hull(region: np.ndarray) -> np.ndarray:
    region = np.asarray(region, bool)
    pts = np.argwhere(region)
    if len(pts) == 0:
        return np.zeros(region.shape, bool)
    centred = pts - pts.mean(axis=0)
    if len(pts) < 3 or np.linalg.matrix_rank(centred.astype(np.float64)) < 2:
        return _segment(region, pts)
    try:
        hull = ConvexHull(pts)
    except QhullError:
        return _segment(region, pts)
    (r0, c0), (r1, c1) = pts.min(axis=0), pts.max(axis=0)
    rr, cc = np.mgrid[r0:r1 + 1, c0:c1 + 1]
    grid = np.stack([rr.ravel(), cc.ravel()], axis=1).astype(np.float64)
    inside = (grid @ hull.equations[:, :2].T + hull.equations[:, 2] <= 1e-9).all(axis=1)
    out = np.zeros(region.shape, bool)
    out[r0:r1 + 1, c0:c1 + 1] = inside.reshape(rr.shape)
    return out | region


def ref_binarize_convex_hull(saliency: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    s = np.asarray(saliency, np.float64)
    if s.max() <= 0:
        return np.zeros(s.shape, bool)
    return ref_fill_convex_hull(s >= threshold)


def ref_surface_distances(pred, ref):
    bp, br = boundary(pred), boundary(ref)
    return ndimage.distance_transform_edt(~br)[bp], ndimage.distance_transform_edt(~bp)[br]


def ref_hd95(pred, ref, percentile=95.0):
    a, b = np.asarray(pred) != 0, np.asarray(ref) != 0
    if not a.any() and not b.any():
        return 0.0
    if not a.any() or not b.any():
        return diagonal(a.shape)
    d_ab, d_ba = ref_surface_distances(a, b)
    return float(np.percentile(np.concatenate([d_ab, d_ba]), percentile))


def ref_ssim(saliency, mask):
    s, m = np.asarray(saliency, np.float64), np.asarray(mask) != 0
    win = min(7, min(s.shape) - (1 - min(s.shape) % 2))
    return float(structural_similarity(s, m.astype(np.float64), data_range=1.0, win_size=win))


def ref_pointing_game(saliency, mask, tolerance=0.0):
    s, m = np.asarray(saliency, np.float64), np.asarray(mask) != 0
    if s.max() <= s.min() or not m.any():
        return 0.0
    r, c = np.unravel_index(int(np.argmax(s)), s.shape)
    if tolerance <= 0:
        return float(m[r, c])
    return float(ndimage.distance_transform_edt(~m)[r, c] <= tolerance)


def ref_score_map(saliency, mask, hull_threshold=0.5, pointing_tolerance=0.0):
    s, m = np.asarray(saliency, np.float64), np.asarray(mask) != 0
    continuous = {"ssim": ref_ssim(s, m), "pointing_game": ref_pointing_game(s, m, pointing_tolerance),
                  "energy_inside": energy_inside(s, m)}
    binary = {"otsu": binarize_otsu(s), "convex_hull": ref_binarize_convex_hull(s, hull_threshold)}
    out = {}
    for name, b in binary.items():
        h = ref_hd95(b, m)
        out[name] = {"dice": dice(b, m), "iou": iou(b, m), "hd95_px": h, "hd95_pct": 100.0 * h / diagonal(m.shape),
                     "ssim_binary": ref_ssim(b.astype(np.float64), m), **continuous}
    return out


def library_cams(model, x, targets, methods, precision=None):
    """Each method through pytorch-grad-cam's own call, as `compute_cams` did before the methods
    shared one pass."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    precision = precision or Precision(x.device, None)
    out = [{} for _ in range(len(x))]
    for method in methods:
        with cam_extractor(model, method) as cam, torch.enable_grad():
            if method in CLASS_AGNOSTIC:
                rounds = [(list(range(len(x))), [int(t[0]) if len(t) else 0 for t in targets])]
            else:
                rounds = list(_rounds(targets))
            for rows, classes in rounds:
                with precision.autocast():
                    maps = cam(input_tensor=x[rows], targets=[ClassifierOutputTarget(c) for c in classes])
                cam.outputs = None
                for row, cls, m in zip(rows, classes, maps):
                    out[row][(method, None if method in CLASS_AGNOSTIC else cls)] = np.asarray(m, np.float32)
    return out


def reference_rows(model, images, ids, masks, *, task, class_names, methods, batch_size, hull_threshold=0.5,
                   pointing_tolerance=0.0):
    """The rows `medattn saliency` wrote before: per batch a no-grad forward for the probabilities,
    the predicted classes, native maps, one library call per CAM method, the reference metrics."""
    from medattn.data.transforms import to_float_batch

    rows = []
    model.eval()
    for start in range(0, len(images), batch_size):
        x = to_float_batch(np.stack(images[start:start + batch_size]))
        with torch.no_grad():
            probs = probabilities(model(x), task).double().numpy()
        targets = select_targets(probs, task)
        per_class = task == "multilabel" or any(len(t) != 1 for t in targets)
        attn = native_maps(model, x)
        cams = library_cams(model, x, targets, methods)
        for i in range(len(x)):
            maps = {f"attn/{k}": m[i] for k, m in attn.items()}
            maps.update({cam_map_name(meth, cls, class_names, per_class): m for (meth, cls), m in cams[i].items()})
            for name, m in maps.items():
                for method, metrics in ref_score_map(m, masks[start + i], hull_threshold, pointing_tolerance).items():
                    rows.append({"image_id": ids[start + i], "map": name, "binarization": method, **metrics})
    return rows
