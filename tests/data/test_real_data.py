"""Readers on the real data in ../shared/data (opt-in: --realdata or MEDATTN_REAL_DATA=1)."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from medattn.data import load_split
from medattn.data.ham10000 import HAM_CLASSES, read_metadata, split_metadata
from medattn.data.io import decode_images, read_image

pytestmark = pytest.mark.realdata
QUIET = {"progress": False, "cache": False}
# Counts from ../shared/data/README.md (ISIC 2017 Part 3 ground truth): images, melanoma, SK.
ISIC2017 = {"train": (2000, 374, 254), "val": (150, 30, 42), "test": (600, 117, 90)}


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_isic2017_256_three_class(shared_data, split):
    ds = load_split("isic2017", str(shared_data / "isic2017_256"), split, None, **QUIET)
    n, mel, sk = ISIC2017[split]
    assert ds.images.shape == (n, 256, 256, 3) and ds.images.dtype == np.uint8
    assert ds.class_counts().tolist() == [mel, sk, n - mel - sk]
    assert len(set(ds.ids)) == n and ds.masks is None
    assert 40 < ds.images.mean() < 220 and ds.images.std() > 10  # real pictures, not blank arrays


def test_isic2017_one_vs_rest_matches_three_class(shared_data):
    root = str(shared_data / "isic2017_256")
    three = load_split("isic2017", root, "val", 32, **QUIET)
    mel = load_split("isic2017", root, "val", 32, task="melanoma", **QUIET)
    sk = load_split("isic2017", root, "val", 32, task="seborrheic_keratosis", **QUIET)
    assert mel.class_names == ["other", "melanoma"] and mel.class_counts().tolist() == [120, 30]
    assert sk.class_names == ["other", "seborrheic_keratosis"] and sk.class_counts().tolist() == [108, 42]
    np.testing.assert_array_equal(mel.targets, (three.targets == 0).astype(int))
    np.testing.assert_array_equal(sk.targets, (three.targets == 1).astype(int))
    np.testing.assert_array_equal(mel.images, three.images)


def test_ham10000_metadata_split_is_grouped_and_stratified(shared_data):
    meta = read_metadata(shared_data / "ham10000_metadata" / "HAM10000_metadata.csv")
    assert len(meta.image_ids) == 10015 and len(set(meta.lesion_ids)) == 7470
    parts = split_metadata(meta, 0.1, 0.2, seed=0)
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(10015))
    lesions = {k: {meta.lesion_ids[i] for i in idx} for k, idx in parts.items()}
    assert not (lesions["train"] & lesions["val"] or lesions["train"] & lesions["test"] or lesions["val"] & lesions["test"])
    whole = np.bincount(meta.targets, minlength=7) / len(meta.targets)
    for name, frac in (("train", 0.7), ("val", 0.1), ("test", 0.2)):
        share = np.bincount(meta.targets[parts[name]], minlength=7) / len(parts[name])
        assert np.abs(share - whole).max() < 0.02, (name, dict(zip(HAM_CLASSES, share - whole)))
        assert abs(len(parts[name]) / 10015 - frac) < 0.01
    other = split_metadata(meta, 0.1, 0.2, seed=1)
    assert not np.array_equal(other["test"], parts["test"])


def test_fullsize_isic_jpegs_resize_to_224(shared_data, tmp_path):
    folder = shared_data / "isic_fullsize_samples"
    paths = sorted(folder.glob("ISIC_*.jpg"))
    assert len(paths) == 5
    img, full = read_image(paths[0], 224)
    ref = np.asarray(Image.open(paths[0]).convert("RGB").resize((224, 224), Image.Resampling.BILINEAR))
    assert img.shape == (224, 224, 3) and full == Image.open(paths[0]).size
    assert np.abs(img.astype(int) - ref).mean() < 1.0
    images, _ = decode_images(paths, 224, **QUIET)
    np.testing.assert_array_equal(images[0], img)
    table = tmp_path / "samples.csv"
    with open(table, "w", newline="") as f:
        csv.writer(f).writerows([["image"], *[[p.stem] for p in paths]])
    ds = load_split("csv", str(folder), "train", 224, csv=str(table), **QUIET)
    assert ds.ids == [p.stem for p in paths] and not ds.labeled.any()
    np.testing.assert_array_equal(ds.images, images)
