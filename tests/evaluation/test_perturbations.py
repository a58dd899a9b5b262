"""Perturbations: Gaussian noise on [0, 1], background swap with masks, artifacts outside the lesion."""
from __future__ import annotations

import numpy as np
import pytest

from medattn.evaluation.perturbations import (add_artifacts, background_donors, background_plate, gaussian_noise,
                                              lesion_masks, swap_background)


def disc_masks(n: int, size: int = 32, radius: int = 8) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    m = ((yy - size // 2) ** 2 + (xx - size // 2) ** 2 <= radius**2).astype(np.uint8) * 255
    return np.repeat(m[None], n, axis=0)


def test_noise_zero_sigma_is_the_image_on_unit_scale():
    images = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    out = gaussian_noise(images, 0.0)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, images.astype(np.float32) / 255)


@pytest.mark.parametrize("sigma", [0.005, 0.05])
def test_noise_has_the_asked_standard_deviation_on_unit_scale(sigma):
    images = np.full((4, 64, 64, 3), 128, np.uint8)  # mid-grey: no clamping at these sigmas
    diff = gaussian_noise(images, sigma, seed=3) - 128 / 255
    assert abs(diff.mean()) < 0.02 * sigma
    assert diff.std() == pytest.approx(sigma, rel=0.02)


def test_noise_is_clamped_to_unit_range():
    images = np.zeros((2, 32, 32, 3), np.uint8)
    images[1] = 255
    out = gaussian_noise(images, 0.1, seed=0)
    assert out.min() == 0.0 and out.max() == 1.0
    # Half the draws are negative on black and are clamped to exactly 0 (and positive ones on white to 1).
    assert np.mean(out[0] == 0.0) == pytest.approx(0.5, abs=0.03)
    assert np.mean(out[1] == 1.0) == pytest.approx(0.5, abs=0.03)


def test_noise_is_seeded_per_image_independent_of_batching():
    images = np.random.default_rng(1).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    whole = gaussian_noise(images, 0.05, seed=7)
    np.testing.assert_array_equal(whole, gaussian_noise(images, 0.05, seed=7))
    np.testing.assert_array_equal(whole[2:4], gaussian_noise(images[2:4], 0.05, seed=7, offset=2))
    assert not np.array_equal(whole, gaussian_noise(images, 0.05, seed=8))


def test_noise_rejects_bad_input():
    with pytest.raises(ValueError, match="sigma must be a finite number >= 0, got -0.1"):
        gaussian_noise(np.zeros((1, 4, 4, 3), np.uint8), -0.1)
    with pytest.raises(ValueError, match=r"images must be N x H x W x 3 uint8, got \(4, 4, 3\)"):
        gaussian_noise(np.zeros((4, 4, 3), np.uint8), 0.1)


def test_background_plate_fills_the_lesion_with_the_nearest_background_pixel():
    image = np.zeros((5, 5, 3), np.uint8)
    image[:, :, 0] = np.arange(5)[None, :] * 10  # columns 0, 10, 20, 30, 40
    image[1:4, 1:4] = 200  # the lesion, to be replaced
    lesion = np.zeros((5, 5), bool)
    lesion[1:4, 1:4] = True
    plate = background_plate(image, lesion)
    # Edge-middle lesion pixels have one nearest background pixel (1 px away, straight out); the
    # corners are 1 px from two and the centre 2 px from four, so they only have to be background.
    assert plate[2, 1, 0] == 0 and plate[2, 3, 0] == 40
    assert plate[1, 2, 0] == 20 and plate[3, 2, 0] == 20
    assert plate[1, 1, 0] in (0, 10) and plate[3, 3, 0] in (30, 40) and plate[2, 2, 0] in (0, 20, 40)
    assert (plate != 200).all()
    np.testing.assert_array_equal(plate[~lesion], image[~lesion])


def test_swap_background_keeps_the_lesion_and_takes_the_donor_background():
    n, size = 6, 32
    masks = disc_masks(n, size)
    masks[3] = 0
    masks[3, 2:12, 2:12] = 1  # a lesion elsewhere: its donor's lesion must not leak into it
    images = np.zeros((n, size, size, 3), np.uint8)
    for i in range(n):
        images[i] = 10 * i + 5  # background colour of image i
        images[i][masks[i] != 0] = 200 + i  # lesion colour of image i
    out, donors = swap_background(images, masks, seed=0)
    assert (donors != np.arange(n)).all()
    lesion = lesion_masks(masks, images)
    for i in range(n):
        np.testing.assert_array_equal(out[i][lesion[i]], images[i][lesion[i]])
        # the whole new background is the donor's background colour, none of its lesion colour
        assert (out[i][~lesion[i]] == 10 * donors[i] + 5).all()
    np.testing.assert_array_equal(images[0][0, 0], [5, 5, 5])  # the input is not modified


def test_donors_come_from_another_class_and_images_without_background_never_donate():
    groups = np.array([0, 0, 0, 1, 1, 2])
    donors = background_donors(6, seed=0, groups=groups)
    assert (groups[donors] != groups).all()
    usable = np.array([True, True, False, True, True, True])
    for seed in range(5):
        d = background_donors(6, seed=seed, usable=usable)
        assert 2 not in d and (d != np.arange(6)).all()
    with pytest.raises(ValueError, match="needs at least 2 images with background; 1 have one"):
        background_donors(3, usable=np.array([True, False, False]))


def test_swap_background_accepts_per_class_masks_and_checks_shapes():
    images = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    per_class = np.zeros((3, 2, 16, 16), np.uint8)
    per_class[:, 0, 2:6, 2:6] = 1
    per_class[:, 1, 10:14, 10:14] = 1
    out, _ = swap_background(images, per_class, seed=1)
    union = per_class.max(axis=1) != 0
    np.testing.assert_array_equal(out[union], images[union])
    with pytest.raises(ValueError, match=r"masks of shape \(3, 8, 8\) do not match images of shape \(3, 16, 16, 3\)"):
        swap_background(images, np.zeros((3, 8, 8), np.uint8))


def test_artifacts_change_only_the_background(monkeypatch):
    from medattn.data import synthetic

    calls = []

    def painter(rng, image, mask, name):
        calls.append(name)
        assert image.dtype == np.float32 and image.max() <= 1.0  # the painter works on [0, 1] floats
        out = image.copy()
        out[:, ::3] = 0.2  # paints over everything, the lesion included
        return out

    monkeypatch.setattr(synthetic, "paint_artifact", painter)
    images = np.full((2, 32, 32, 3), 120, np.uint8)
    masks = disc_masks(2)
    out = add_artifacts(images, masks, ["ruler", "hair"], seed=0)
    lesion = masks != 0
    assert calls == ["ruler", "hair", "ruler", "hair"]
    assert (out[lesion] == 120).all()
    assert (out[~lesion] == 51).any() and (images == 120).all()  # 0.2 * 255
    with pytest.raises(ValueError, match="unknown artifact\\(s\\) 'glitter'; choose from ink, hair"):
        add_artifacts(images, masks, ["glitter"])


def test_real_artifacts_are_painted_outside_the_lesion_and_deterministic():
    images = np.full((2, 48, 48, 3), 200, np.uint8)
    masks = disc_masks(2, 48, 12)
    lesion = masks != 0
    for name in ("ruler", "ink", "hair"):
        out = add_artifacts(images, masks, [name], seed=4)
        assert (out[lesion] == 200).all(), name
        assert (out[~lesion] != 200).any(), f"{name} painted nothing"
        np.testing.assert_array_equal(out, add_artifacts(images, masks, [name], seed=4))


def test_mirror_fills_keep_one_region_and_say_what_they_could_not_fill():
    from medattn.evaluation.perturbations import remove_background, remove_lesion

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (3, 10, 10, 3), dtype=np.uint8)
    masks = np.zeros((3, 10, 10), np.uint8)
    masks[0, 3:7, 3:7] = 1
    masks[1] = 1  # the lesion fills the image: nothing to fill it with
    masks[2, 0:2, 0:2] = 1
    bg_only, kept = remove_lesion(images, masks)
    assert kept == 1 and np.array_equal(bg_only[1], images[1])
    assert np.array_equal(bg_only[0][masks[0] == 0], images[0][masks[0] == 0])  # background untouched
    assert not np.array_equal(bg_only[0][3:7, 3:7], images[0][3:7, 3:7])
    lesion_only, colour = remove_background(images, masks)
    expected = np.round(images[masks == 0].reshape(-1, 3).mean(axis=0)).astype(np.uint8)
    assert np.array_equal(colour, expected)
    assert (lesion_only[0][masks[0] == 0] == colour).all() and np.array_equal(lesion_only[1], images[1])
    with pytest.raises(ValueError, match="no image of the split has a background pixel"):
        remove_background(images[1:2], masks[1:2])
