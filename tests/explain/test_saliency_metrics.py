"""Saliency-vs-mask metrics on maps with known answers (distances checked by brute force)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from medattn.metrics.saliency import (binarize_convex_hull, binarize_otsu, dice, energy_inside,
                                      fill_convex_hull, hd95, iou, pointing_game, score_map, score_rows, ssim,
                                      summarize_rows)


def disk(size: int, centre: tuple[int, int], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2


def brute_boundary(region: np.ndarray) -> np.ndarray:
    """Pixels of the region with a 4-neighbour outside it or outside the image, by explicit loops."""
    h, w = region.shape
    out = np.zeros_like(region)
    for r in range(h):
        for c in range(w):
            if not region[r, c]:
                continue
            for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                rr, cc = r + dr, c + dc
                if not (0 <= rr < h and 0 <= cc < w) or not region[rr, cc]:
                    out[r, c] = True
    return out


def brute_hd95(a: np.ndarray, b: np.ndarray) -> float:
    pa, pb = np.argwhere(brute_boundary(a)), np.argwhere(brute_boundary(b))
    d = cdist(pa, pb)  # all pairs, O(n^2)
    return float(np.percentile(np.concatenate([d.min(axis=1), d.min(axis=0)]), 95))


def test_identical_map_is_perfect_for_both_binarisations():
    m = disk(48, (24, 20), 9)
    scores = score_map(m.astype(float), m)
    for method in ("otsu", "convex_hull"):
        s = scores[method]
        assert s["dice"] == 1.0 and s["iou"] == 1.0
        assert s["hd95_px"] == 0.0 and s["hd95_pct"] == 0.0
        assert s["ssim_binary"] == pytest.approx(1.0)
        assert s["ssim"] == pytest.approx(1.0)
        assert s["energy_inside"] == 1.0


@pytest.mark.parametrize("shift", [(1, 0), (0, 3), (5, 0), (0, 8)])
def test_hd95_of_shifted_disk_matches_brute_force(shift):
    a = disk(64, (30, 30), 10)
    b = disk(64, (30 + shift[0], 30 + shift[1]), 10)
    expected = brute_hd95(a, b)
    assert hd95(a, b) == pytest.approx(expected, abs=1e-9)
    assert hd95(b, a) == pytest.approx(expected, abs=1e-9)
    d = max(shift)
    assert 0.8 * d <= expected <= d  # sanity: at most the shift, and close to it


def test_hd95_of_parallel_lines_is_their_offset():
    a = np.zeros((40, 40), bool)
    b = np.zeros((40, 40), bool)
    a[10, 5:35] = True
    b[17, 5:35] = True  # every boundary pixel is exactly 7 px from the other line
    assert hd95(a, b) == pytest.approx(7.0)
    s = score_map(b.astype(float), a)["otsu"]
    assert s["hd95_px"] == pytest.approx(7.0)
    assert s["hd95_pct"] == pytest.approx(700.0 / np.hypot(40, 40))
    assert s["dice"] == 0.0 and s["iou"] == 0.0


def test_dice_and_iou_by_hand():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[0:4, 0:5] = True  # 20 px
    b[2:6, 0:5] = True  # 20 px, 10 in common
    assert dice(a, b) == pytest.approx(2 * 10 / 40)
    assert iou(a, b) == pytest.approx(10 / 30)


def test_empty_inputs_follow_the_documented_conventions():
    empty = np.zeros((20, 30), bool)
    lesion = disk(30, (10, 10), 4)[:20]
    assert dice(empty, empty) == 1.0 and iou(empty, empty) == 1.0 and hd95(empty, empty) == 0.0
    assert dice(empty, lesion) == 0.0 and iou(empty, lesion) == 0.0
    assert hd95(empty, lesion) == pytest.approx(np.hypot(20, 30))
    zero_map = np.zeros((20, 30))
    assert not binarize_otsu(zero_map).any()
    assert not binarize_convex_hull(zero_map).any()
    assert pointing_game(zero_map, lesion) == 0.0
    assert energy_inside(zero_map, lesion) == 0.0
    s = score_map(zero_map, lesion)["convex_hull"]
    assert s["dice"] == 0.0 and s["hd95_pct"] == pytest.approx(100.0)


def test_convex_hull_of_an_l_shape_fills_the_triangle():
    region = np.zeros((12, 12), bool)
    region[1:11, 1] = True   # vertical bar, column 1
    region[10, 1:11] = True  # horizontal bar, row 10
    hull = fill_convex_hull(region)
    rr, cc = np.mgrid[:12, :12]
    triangle = (rr >= 1) & (rr <= 10) & (cc >= 1) & (cc <= rr)  # vertices (1,1), (10,1), (10,10)
    np.testing.assert_array_equal(hull, triangle)


def test_convex_hull_of_degenerate_regions():
    one = np.zeros((8, 8), bool)
    one[3, 4] = True
    np.testing.assert_array_equal(fill_convex_hull(one), one)
    diag = np.zeros((8, 8), bool)
    diag[1, 1] = diag[6, 6] = True  # two pixels: the digital segment between them
    np.testing.assert_array_equal(fill_convex_hull(diag), np.eye(8, dtype=bool) & (np.arange(8) >= 1)[:, None]
                                  & (np.arange(8) <= 6)[:, None])
    row = np.zeros((8, 8), bool)
    row[2, [0, 3, 7]] = True  # collinear: the whole row between the ends
    expected = np.zeros((8, 8), bool)
    expected[2, :] = True
    np.testing.assert_array_equal(fill_convex_hull(row), expected)
    assert not fill_convex_hull(np.zeros((5, 5), bool)).any()


def test_convex_hull_binarisation_thresholds_then_fills():
    m = np.zeros((20, 20))
    m[5, 5] = m[5, 14] = m[14, 5] = 1.0  # three corners of a right triangle
    m[10, 10] = 0.4                      # below the threshold
    b = binarize_convex_hull(m, threshold=0.5)
    rr, cc = np.mgrid[:20, :20]
    np.testing.assert_array_equal(b, (rr >= 5) & (cc >= 5) & ((rr - 5) + (cc - 5) <= 9))


def test_otsu_separates_a_bimodal_map():
    m = np.full((16, 16), 0.2)
    m[4:9, 3:12] = 0.8
    np.testing.assert_array_equal(binarize_otsu(m), m > 0.5)


def test_pointing_game_on_a_known_argmax():
    mask = np.zeros((20, 20), bool)
    mask[5:10, 5:10] = True
    m = np.zeros((20, 20))
    m[7, 8] = 1.0
    assert pointing_game(m, mask) == 1.0
    m = np.zeros((20, 20))
    m[7, 12] = 1.0  # 3 px right of the mask's last column (9)
    assert pointing_game(m, mask) == 0.0
    assert pointing_game(m, mask, tolerance=3) == 1.0
    assert pointing_game(m, mask, tolerance=2.9) == 0.0


def test_energy_fraction():
    mask = np.zeros((32, 32), bool)
    mask[:, :8] = True
    m = np.zeros((32, 32))
    m[:, :16] = 1.0  # half of the map's mass lies on the mask
    assert energy_inside(m, mask) == pytest.approx(0.5)
    m[:, :8] = 3.0   # 3 * 8 inside vs 1 * 8 outside per row
    assert energy_inside(m, mask) == pytest.approx(0.75)


def test_ssim_of_map_against_mask_uses_data_range_one():
    mask = disk(32, (16, 16), 8)
    assert ssim(mask.astype(float), mask) == pytest.approx(1.0)
    assert ssim(0.5 * mask, mask) < 1.0
    assert ssim(np.zeros((5, 6)), np.zeros((5, 6), bool)) == pytest.approx(1.0)  # small images: 5 x 5 window


def test_mismatched_shapes_raise():
    with pytest.raises(ValueError, match=r"one size, got \(4, 4\) and \(4, 5\)"):
        score_map(np.zeros((4, 4)), np.zeros((4, 5)))


def test_summary_means_and_bootstrap_intervals():
    mask = disk(32, (16, 16), 6)
    rows = score_rows("a", {"m": mask.astype(float)}, {"m": mask}) + score_rows("b", {"m": np.zeros((32, 32))}, {"m": mask})
    assert [(r["image_id"], r["binarization"]) for r in rows] == [("a", "otsu"), ("a", "convex_hull"),
                                                                   ("b", "otsu"), ("b", "convex_hull")]
    summary = summarize_rows(rows, n_boot=200)
    assert set(summary["m"]) == {"otsu", "convex_hull", "continuous"}
    assert summary["m"]["otsu"]["dice"]["mean"] == pytest.approx(0.5)
    assert summary["m"]["otsu"]["dice"]["n"] == 2
    assert summary["m"]["continuous"]["energy_inside"]["mean"] == pytest.approx(0.5)
    assert "dice" not in summary["m"]["continuous"] and "ssim" not in summary["m"]["otsu"]
    lo, hi = summary["m"]["convex_hull"]["hd95_pct"]["ci95"]
    assert lo == pytest.approx(0.0) and hi == pytest.approx(100.0)  # two images: 0 and 100
    assert summarize_rows(rows[:2], n_boot=200)["m"]["otsu"]["dice"]["ci95"] is None  # one image
    assert summarize_rows(rows, n_boot=0)["m"]["otsu"]["dice"]["ci95"] is None

    # many images: the percentile interval of a mean is close to the normal one, 1.96 sd / sqrt(n)
    rng = np.random.default_rng(1)
    dice_values = rng.uniform(0.2, 1.0, size=300)
    fake = [{"image_id": str(i), "map": "m", "binarization": b, "dice": d, "iou": d, "hd95_px": 0.0, "hd95_pct": 0.0,
             "ssim_binary": d, "ssim": d, "pointing_game": 1.0, "energy_inside": d}
            for i, d in enumerate(dice_values) for b in ("otsu", "convex_hull")]
    node = summarize_rows(fake, n_boot=2000)["m"]["otsu"]["dice"]
    lo, hi = node["ci95"]
    assert node["mean"] == pytest.approx(dice_values.mean())
    assert lo < node["mean"] < hi
    assert (hi - lo) / 2 == pytest.approx(1.96 * dice_values.std(ddof=1) / np.sqrt(300), rel=0.15)
