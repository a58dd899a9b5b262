"""The fast saliency metrics give the numbers of the straightforward implementations (the first
implementation, kept in saliency_reference.py), bit for bit, on maps and masks like the real ones."""
from __future__ import annotations

import numpy as np
import pytest
from saliency_reference import (ref_fill_convex_hull, ref_hd95, ref_pointing_game, ref_score_map, ref_ssim,
                                ref_surface_distances)
from scipy import ndimage

from medattn.metrics.saliency import (MaskReference, fill_convex_hull, hd95, pointing_game, score_map, score_rows,
                                      ssim, surface_distances)

# ----------------------------------------------------------------------------- inputs like the real ones


def cam_like(rng: np.random.Generator, size: tuple[int, int], grid: int = 7) -> np.ndarray:
    """A coarse random map upsampled bilinearly and min-max scaled (what a CAM looks like)."""
    coarse = np.maximum(rng.normal(size=(grid, grid)), 0) ** rng.uniform(0.5, 3)
    m = ndimage.zoom(coarse, (size[0] / grid, size[1] / grid), order=1, mode="nearest")[:size[0], :size[1]]
    m = m - m.min()
    return (m / m.max() if m.max() > 0 else m).astype(np.float32)


def lesion_like(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A blob, sometimes touching the border, sometimes in several parts, as uint8 0/255."""
    field = ndimage.gaussian_filter(rng.random(size), rng.uniform(1, max(2.0, max(size) / 6)))
    return np.where(field > np.quantile(field, rng.uniform(0.3, 0.95)), 255, 0).astype(np.uint8)


def cases(n: int, seed: int):
    rng = np.random.default_rng(seed)
    for i in range(n):
        size = (224, 224) if i % 10 == 0 else tuple(int(v) for v in rng.integers(7, 80, 2))
        yield cam_like(rng, size, int(rng.integers(2, 9))), lesion_like(rng, size)


# ----------------------------------------------------------------------------- the checks


def test_score_map_equals_the_reference_on_cam_like_maps():
    for saliency, mask in cases(150, seed=0):
        got, want = score_map(saliency, mask), ref_score_map(saliency, mask)
        assert got == want  # every metric, bit for bit


@pytest.mark.parametrize("tolerance,threshold", [(3.0, 0.5), (0.0, 0.3), (1.5, 0.8)])
def test_score_map_equals_the_reference_for_other_thresholds_and_tolerances(tolerance, threshold):
    for saliency, mask in cases(30, seed=int(tolerance * 10 + threshold * 100)):
        assert score_map(saliency, mask, threshold, tolerance) == ref_score_map(saliency, mask, threshold, tolerance)


def test_convex_hull_fill_equals_the_per_pixel_test_on_random_regions():
    rng = np.random.default_rng(1)
    for i in range(400):
        h, w = (int(v) for v in rng.integers(1, 60, 2))
        kind = i % 4
        if kind == 0:  # scattered pixels
            region = rng.random((h, w)) < rng.uniform(0.001, 0.05)
        elif kind == 1:  # smooth blobs
            region = ndimage.gaussian_filter(rng.random((h, w)), 2.0) > 0.52
        elif kind == 2:  # a few pixels on one line, or nearly
            region = np.zeros((h, w), bool)
            r = rng.integers(0, h, 3)
            region[r, rng.integers(0, w, 3)] = True
        else:  # thin rows and columns
            region = np.zeros((h, w), bool)
            region[rng.integers(0, h), :] = rng.random(w) < 0.5
            region[:, rng.integers(0, w)] |= rng.random(h) < 0.2
        np.testing.assert_array_equal(fill_convex_hull(region), ref_fill_convex_hull(region), err_msg=f"case {i}")


def test_kd_tree_distances_equal_the_distance_transforms():
    for saliency, mask in cases(60, seed=2):
        pred = saliency > 0.4
        if not pred.any() or not mask.any():
            continue
        got, want = surface_distances(pred, mask), ref_surface_distances(pred, mask != 0)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
        assert hd95(pred, MaskReference.of(mask)) == hd95(pred, mask) == ref_hd95(pred, mask)


def test_ssim_equals_skimage_for_maps_binary_maps_and_small_images():
    for saliency, mask in cases(40, seed=3):
        ref = MaskReference.of(mask)
        assert ssim(saliency, mask) == ssim(saliency, ref) == ref_ssim(saliency, mask)
        binary = (saliency > 0.5).astype(np.float64)
        assert ssim(binary, ref) == ref_ssim(binary, mask)
    for shape in [(3, 3), (5, 6), (6, 5), (8, 7)]:
        s = np.random.default_rng(4).random(shape)
        m = s > 0.5
        assert ssim(s, m) == ref_ssim(s, m)


def test_pointing_game_with_a_tolerance_reuses_one_distance_transform():
    saliency, mask = next(cases(1, seed=5))
    ref = MaskReference.of(mask)
    assert pointing_game(saliency, ref, 2.0) == ref_pointing_game(saliency, mask, 2.0)
    first = ref.distance_to_lesion()
    assert ref.distance_to_lesion() is first  # computed once per mask


def test_score_rows_prepares_each_mask_once_and_per_class_masks_apart(monkeypatch):
    rng = np.random.default_rng(6)
    a, b = lesion_like(rng, (40, 40)), lesion_like(rng, (40, 40))
    maps = {"gradcam/x": cam_like(rng, (40, 40)), "gradcam/y": cam_like(rng, (40, 40)), "eigencam": cam_like(rng, (40, 40))}
    masks = {"gradcam/x": a, "gradcam/y": b, "eigencam": a}
    calls = []
    original = MaskReference.of.__func__
    monkeypatch.setattr(MaskReference, "of", classmethod(lambda cls, m: calls.append(1) or original(cls, m)))
    rows = score_rows("im", maps, masks)
    assert len(calls) == 2  # a and b
    for r in rows:
        want = ref_score_map(maps[r["map"]], masks[r["map"]])[r["binarization"]]
        assert {k: r[k] for k in want} == want
