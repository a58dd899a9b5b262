"""Option ``masks: available`` (keep every image, mark which have a mask), ``mask_dir`` and the
HAM10000 layouts, on tiny generated files."""
from __future__ import annotations

import numpy as np
import pytest

from medattn.data import DataError, ImageDataset, load_split
from readers_testkit import make_ham, make_isic2017, make_isic2018, write_image, write_mask

QUIET = {"progress": False, "cache": False}


def _drop_masks(folder, ids):
    for i in ids:
        (folder / f"{i}_segmentation.png").unlink()


def test_isic2017_masks_available_keeps_every_image_and_flags_the_missing(tmp_path, capsys):
    ids = make_isic2017(tmp_path, {"Test_v2": [(1, 0), (0, 1), (0, 0), (0, 0), (1, 0)]}, masks=True)["Test_v2"]
    _drop_masks(tmp_path / "ISIC-2017_Test_v2_Part1_GroundTruth", [ids[1], ids[3]])
    with pytest.raises(DataError) as e:
        load_split("isic2017", str(tmp_path), "test", 8, masks=True, **QUIET)
    msg = str(e.value)
    assert "missing mask file, 2 of 5 images (pass masks=available" in msg and "[2]:" in msg
    assert f"{ids[1]}_segmentation (line 3)" in msg and f"{ids[3]}_segmentation (line 5)" in msg
    full = load_split("isic2017", str(tmp_path), "test", 8, masks=False, **QUIET)
    ds = load_split("isic2017", str(tmp_path), "test", 8, masks="available", **QUIET)
    assert ds.ids == ids and ds.targets.tolist() == full.targets.tolist()   # no image dropped, same order
    np.testing.assert_array_equal(ds.images, full.images)
    assert ds.has_mask.tolist() == [True, False, True, False, True]
    assert not ds.masks[[1, 3]].any() and (ds.masks[[0, 2, 4]].max(axis=(1, 2)) == 255).all()
    line = "masks=available: 2 of 5 images have no mask file"
    assert line in capsys.readouterr().err and any(line in n for n in ds.extra["notes"])
    sub = ds.subset(np.array([3, 0]))
    assert sub.has_mask.tolist() == [False, True] and sub.ids == [ids[3], ids[0]]


def test_masks_available_without_any_mask_and_with_all(tmp_path):
    ids = make_isic2017(tmp_path, {"Validation": [(0, 0), (1, 0)]}, masks=True)["Validation"]
    every = load_split("isic2017", str(tmp_path), "val", None, masks="available", **QUIET)
    assert every.has_mask.tolist() == [True, True] and every.masks.shape == (2, 10, 12)
    _drop_masks(tmp_path / "ISIC-2017_Validation_Part1_GroundTruth", ids)
    none = load_split("isic2017", str(tmp_path), "val", None, masks="available", **QUIET)
    assert none.has_mask.tolist() == [False, False] and none.masks.shape == (2, 10, 12) and not none.masks.any()


def test_masks_available_needs_the_folder_and_same_sized_images(tmp_path):
    ids = make_isic2017(tmp_path, {"Validation": [(0, 0), (1, 0)]})["Validation"]
    with pytest.raises(DataError, match="masks=available but the mask folder .*ISIC-2017_Validation_Part1_GroundTruth"
                                        " does not exist"):
        load_split("isic2017", str(tmp_path), "val", 8, masks="available", **QUIET)
    write_mask(tmp_path / "ISIC-2017_Validation_Part1_GroundTruth" / f"{ids[0]}_segmentation.png", size=(6, 6))
    write_image(tmp_path / "ISIC-2017_Validation_Data" / f"{ids[0]}.jpg", size=(6, 6))
    with pytest.raises(DataError, match="images with a mask are 6x6, those without 12x10; set image_size"):
        load_split("isic2017", str(tmp_path), "val", None, masks="available", **QUIET)
    assert load_split("isic2017", str(tmp_path), "val", 8, masks="available", **QUIET).has_mask.tolist() == [True, False]
    with pytest.raises(DataError, match="option masks must be 'auto', 'available', true or false, got 'some'"):
        load_split("isic2017", str(tmp_path), "val", 8, masks="some", **QUIET)


def test_isic2017_mask_dir_holding_the_part1_folders(tmp_path):
    ids = make_isic2017(tmp_path / "data", {"Training": [(0, 0), (1, 0), (0, 1)]})["Training"]
    folder = tmp_path / "masks" / "ISIC-2017_Training_Part1_GroundTruth"
    for i in ids[:2]:
        write_mask(folder / f"{i}_segmentation.png")
    assert load_split("isic2017", str(tmp_path / "data"), "train", 8, **QUIET).masks is None  # none beside the images
    ds = load_split("isic2017", str(tmp_path / "data"), "train", 8, masks="available", mask_dir=str(tmp_path / "masks"),
                    **QUIET)
    assert ds.has_mask.tolist() == [True, True, False]
    with pytest.raises(DataError, match="missing mask file, 1 of 3 images"):
        load_split("isic2017", str(tmp_path / "data"), "train", 8, masks=True, mask_dir=str(tmp_path / "masks"), **QUIET)


def test_isic2018_task1_masks_for_part_of_task3(tmp_path):
    ids = make_isic2018(tmp_path, "Training", ["A", "B"], [0, 1, 0, 1], masks=True)
    _drop_masks(tmp_path / "ISIC2018_Task1_Training_GroundTruth", ids[2:])
    ds = load_split("isic2018", str(tmp_path), "train", 8, masks="available", **QUIET)
    assert len(ds) == 4 and ds.has_mask.tolist() == [True, True, False, False]


@pytest.mark.parametrize("images, masks", [("HAM10000_images", "HAM10000_segmentations"),
                                           ("HAM10000_images_part_1", "HAM10000_segmentations_lesion_tschandl")])
def test_ham10000_both_layouts_with_masks(tmp_path, images, masks):
    rows = make_ham(tmp_path, [(dx, 2) for dx in ["nv"] * 8 + ["mel", "bkl", "df", "akiec", "bcc", "vasc"] * 2],
                    folders=(images,), mask_folder=masks)
    parts = {s: load_split("ham10000", str(tmp_path), s, None, **QUIET) for s in ("train", "val", "test")}
    assert sorted(i for d in parts.values() for i in d.ids) == sorted(r[1] for r in rows)
    assert all(d.masks.shape == (len(d), 6, 8) and d.has_mask.all() for d in parts.values())
    (tmp_path / masks / f"{rows[0][1]}_segmentation.png").unlink()
    with pytest.raises(DataError, match=f"missing mask file, 1 of {len(rows)} images"):
        load_split("ham10000", str(tmp_path), "train", None, **QUIET)
    kept = [load_split("ham10000", str(tmp_path), s, None, masks="available", **QUIET) for s in ("train", "val", "test")]
    assert sum(len(d) for d in kept) == len(rows) and sum(int((~d.has_mask).sum()) for d in kept) == 1


def test_image_dataset_has_mask_is_checked():
    images = np.zeros((2, 4, 4, 3), np.uint8)
    ds = ImageDataset(images=images, targets=np.array([0, 1]), class_names=["a", "b"], ids=["x", "y"],
                      masks=np.zeros((2, 4, 4), np.uint8))
    assert ds.has_mask.tolist() == [True, True]
    assert ImageDataset(images=images, targets=np.array([0, 1]), class_names=["a", "b"], ids=["x", "y"]).has_mask is None
    with pytest.raises(ValueError, match="has_mask is given but there are no masks"):
        ImageDataset(images=images, targets=np.array([0, 1]), class_names=["a", "b"], ids=["x", "y"],
                     has_mask=np.array([True, False]))
    with pytest.raises(ValueError, match=r"2 images but has_mask of shape \(3,\)"):
        ImageDataset(images=images, targets=np.array([0, 1]), class_names=["a", "b"], ids=["x", "y"],
                     masks=np.zeros((2, 4, 4), np.uint8), has_mask=np.ones(3, bool))
