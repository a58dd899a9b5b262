"""Readers on tiny files in each layout: classes, targets, ids, masks and the splits they make."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medattn.data import DataError, load_split
from medattn.data.ham10000 import read_metadata, split_metadata
from medattn.data.splits import stratified_split
from readers_testkit import make_folder, make_ham, make_isic2017, make_isic2018, write_csv, write_image, write_mask

QUIET = {"progress": False, "cache": False}


def test_stratified_split_proportions_cover_and_determinism():
    labels = np.repeat([0, 1, 2], [500, 300, 200])
    parts = stratified_split(labels, {"val": 0.1, "test": 0.2}, seed=3)
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(1000))
    expected = {"train": [350, 210, 140], "val": [50, 30, 20], "test": [100, 60, 40]}
    for name, idx in parts.items():
        assert np.bincount(labels[idx], minlength=3).tolist() == expected[name]
    again = stratified_split(labels, {"val": 0.1, "test": 0.2}, seed=3)
    assert all(np.array_equal(parts[k], again[k]) for k in parts)
    other = stratified_split(labels, {"val": 0.1, "test": 0.2}, seed=4)
    assert not np.array_equal(parts["val"], other["val"])


def test_stratified_split_groups_never_cross_and_tiny_classes_train_first():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(400), rng.integers(1, 5, 400))
    labels = (groups % 4 == 0).astype(int)  # one label per group
    parts = stratified_split(labels, {"val": 0.1, "test": 0.2}, seed=0, groups=groups)
    seen = [set(groups[idx]) for idx in parts.values()]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    for idx in parts.values():
        assert abs(labels[idx].mean() - labels.mean()) < 0.02
    assert abs(len(parts["test"]) / len(labels) - 0.2) < 0.01
    tiny = stratified_split(np.array([0] * 20 + [1, 1]), {"val": 0.1, "test": 0.2})
    assert {20, 21} <= set(tiny["train"].tolist())  # two images of class 1: both in train
    with pytest.raises(DataError, match="sum to less than 1"):
        stratified_split(labels, {"val": 0.5, "test": 0.5})


def test_isic2017_tasks_masks_and_superpixels(tmp_path):
    rows = [(1, 0), (0, 1), (0, 0), (0, 0), (1, 0)]
    ids = make_isic2017(tmp_path, {"Training": rows, "Validation": [(0, 1)], "Test_v2": [(0, 0), (1, 0)]},
                        masks=True)
    ds = load_split("isic2017", str(tmp_path), "train", 8, **QUIET)
    assert ds.class_names == ["melanoma", "seborrheic_keratosis", "nevus"]
    assert ds.targets.tolist() == [0, 1, 2, 2, 0] and ds.ids == ids["Training"]
    assert ds.images.shape == (5, 8, 8, 3) and ds.masks.shape == (5, 8, 8)
    assert set(np.unique(ds.masks)) == {0, 255}
    sk = load_split("isic2017", str(tmp_path), "train", None, task="seborrheic_keratosis", masks=False, **QUIET)
    assert sk.class_names == ["other", "seborrheic_keratosis"] and sk.targets.tolist() == [0, 1, 0, 0, 0]
    assert sk.masks is None and sk.images.shape == (5, 10, 12, 3)
    test = load_split("isic2017", str(tmp_path), "test", 8, task="melanoma", **QUIET)
    assert test.ids == ids["Test_v2"] and test.targets.tolist() == [0, 1]


def test_isic2017_png_images_and_exact_pixels(tmp_path):
    ids = make_isic2017(tmp_path, {"Validation": [(0, 0), (0, 1)]}, ext=".png")["Validation"]
    ds = load_split("isic2017", str(tmp_path), "val", None, **QUIET)
    ref = np.asarray(Image.open(tmp_path / "ISIC-2017_Validation_Data" / f"{ids[1]}.png"))
    np.testing.assert_array_equal(ds.images[1], ref)


def test_isic2018_header_classes_csv_locations_and_extra_splits(tmp_path):
    classes = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    make_isic2018(tmp_path, "Training", classes, [0, 1, 2, 3, 4, 5, 6, 1], masks=True)
    make_isic2018(tmp_path, "Validation", classes, [1, 6], csv_in_folder=False, start=100)
    make_isic2018(tmp_path, "TestShifted", ["round", "spiky"], [1, 0, 1], start=200)
    tr = load_split("isic2018", str(tmp_path), "train", 6, **QUIET)
    assert tr.class_names == classes and tr.targets.tolist() == [0, 1, 2, 3, 4, 5, 6, 1]
    assert tr.masks.shape == (8, 6, 6) and tr.extra["split"] == "train"
    va = load_split("isic2018", str(tmp_path), "val", 6, **QUIET)
    assert va.ids == ["ISIC_0000100", "ISIC_0000101"] and va.targets.tolist() == [1, 6] and va.masks is None
    sh = load_split("isic2018", str(tmp_path), "test_shifted", 6, **QUIET)
    assert sh.class_names == ["round", "spiky"] and sh.targets.tolist() == [1, 0, 1]
    with pytest.raises(DataError, match=r"no folder ISIC2018_Task3_Test_Input .*found: TestShifted, Training, Validation"):
        load_split("isic2018", str(tmp_path), "test", 6, **QUIET)


def test_isic2019_split_unk_modes_and_lesion_groups(tmp_path):
    cols = ["MEL", "NV", "BCC", "UNK"]
    rows, meta = [], []
    for i in range(60):
        y = [0, 1, 1, 2][i % 4]
        rows.append([f"ISIC_{i:07d}", *[f"{float(k == y):.1f}" for k in range(4)]])
        meta.append([f"ISIC_{i:07d}", 50, "back", f"L{i // 3}" if i < 30 else "", "male"])
        write_image(tmp_path / "ISIC_2019_Training_Input" / f"ISIC_{i:07d}.jpg", size=(6, 6), seed=i)
    rows[37][1:] = ["0.0", "0.0", "0.0", "1.0"]
    write_csv(tmp_path / "ISIC_2019_Training_GroundTruth.csv", ["image", *cols], rows)
    write_csv(tmp_path / "ISIC_2019_Training_Metadata.csv", ["image", "age_approx", "anatom_site_general",
                                                             "lesion_id", "sex"], meta)
    parts = {s: load_split("isic2019", str(tmp_path), s, 6, unk="drop", **QUIET) for s in ("train", "val", "test")}
    ids = [i for d in parts.values() for i in d.ids]
    assert sorted(ids) == sorted(r[0] for r in rows if r[0] != "ISIC_0000037")
    assert parts["train"].class_names == ["MEL", "NV", "BCC"]
    lesion = {m[0]: m[3] for m in meta if m[3]}
    owners = [{lesion[i] for i in d.ids if i in lesion} for d in parts.values()]
    assert not (owners[0] & owners[1] or owners[0] & owners[2] or owners[1] & owners[2])
    again = load_split("isic2019", str(tmp_path), "val", 6, unk="drop", **QUIET)
    assert again.ids == parts["val"].ids
    keep = [load_split("isic2019", str(tmp_path), s, 6, unk="keep", **QUIET) for s in ("train", "val", "test")]
    assert keep[0].class_names == cols and sum(int(d.class_counts()[3]) for d in keep) == 1


def test_ham10000_grouped_split_over_two_folders(tmp_path):
    lesions = [(dx, 1 + i % 3) for i, dx in enumerate(["nv"] * 30 + ["mel"] * 10 + ["bkl"] * 10 + ["df", "akiec", "bcc", "vasc"] * 2)]
    rows = make_ham(tmp_path, lesions)
    parts = {s: load_split("ham10000", str(tmp_path), s, None, **QUIET) for s in ("train", "val", "test")}
    assert sorted(i for d in parts.values() for i in d.ids) == sorted(r[1] for r in rows)
    lesion_of = {r[1]: r[0] for r in rows}
    owners = [{lesion_of[i] for i in d.ids} for d in parts.values()]
    assert not (owners[0] & owners[1] or owners[0] & owners[2] or owners[1] & owners[2])
    assert parts["train"].class_names == ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    dx = {r[1]: r[2] for r in rows}
    assert all(parts["val"].class_names[t] == dx[i] for i, t in zip(parts["val"].ids, parts["val"].targets))
    meta_parts = split_metadata(read_metadata(tmp_path / "HAM10000_metadata.csv"))
    assert [rows[i][1] for i in meta_parts["test"]] == parts["test"].ids


def test_medmnist_grey_multilabel_names_and_resize(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "dermamnist_64.npz",
             train_images=rng.integers(0, 256, (7, 64, 64, 3), dtype=np.uint8), train_labels=np.arange(7)[:, None],
             val_images=rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8), val_labels=np.array([[4], [5]]))
    ds = load_split("medmnist", str(tmp_path), "val", None)
    assert ds.class_names[4] == "melanoma" and ds.targets.tolist() == [4, 5] and ds.ids == ["val_0", "val_1"]
    small = load_split("medmnist", str(tmp_path / "dermamnist_64.npz"), "train", 16)
    ref = np.asarray(Image.fromarray(np.load(tmp_path / "dermamnist_64.npz")["train_images"][3]).resize(
        (16, 16), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(small.images[3], ref)
    grey = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    chest = rng.integers(0, 2, (5, 14))
    (tmp_path / "sub").mkdir()
    np.savez(tmp_path / "sub" / "chestmnist.npz", train_images=grey, train_labels=chest)
    ml = load_split("medmnist", str(tmp_path / "sub"), "train", None)
    assert ml.task == "multilabel" and ml.targets.shape == (5, 14) and ml.class_names[0] == "atelectasis"
    np.testing.assert_array_equal(ml.images[2, :, :, 1], grey[2])
    named = load_split("medmnist", None, "val", None, npz=str(tmp_path / "dermamnist_64.npz"),
                       class_names=list("abcdefg"))
    assert named.class_names[5] == "f"


def test_folder_flat_split_and_split_folders(tmp_path):
    make_folder(tmp_path / "flat", {"b": 20, "a": 10})
    parts = {s: load_split("folder", str(tmp_path / "flat"), s, 4, **QUIET) for s in ("train", "val", "test")}
    assert [d.class_counts().tolist() for d in parts.values()] == [[7, 14], [1, 2], [2, 4]]
    assert parts["train"].class_names == ["a", "b"]
    make_folder(tmp_path / "s" / "train", {"x": 2, "y": 1})
    make_folder(tmp_path / "s" / "test", {"y": 2, "z": 1}, start=10)
    (tmp_path / "s" / "train" / "z").mkdir()
    write_image(tmp_path / "s" / "train" / "z" / "deep" / "z_5.png")
    tr = load_split("folder", str(tmp_path / "s"), "train", 4, **QUIET)
    assert tr.class_names == ["x", "y", "z"] and tr.class_counts().tolist() == [2, 1, 1] and "z_5" in tr.ids
    with pytest.raises(DataError, match="no split 'val'; available: test, train"):
        load_split("folder", str(tmp_path / "s"), "val", 4, **QUIET)


def test_folder_masks_by_stem(tmp_path):
    paths = make_folder(tmp_path / "d", {"a": 2, "b": 2}, size=(8, 6))
    write_mask(tmp_path / "m" / f"{paths[0].stem}_segmentation.png", size=(8, 6))
    for p in paths[1:]:
        write_mask(tmp_path / "m" / f"{p.stem}.png", size=(8, 6))
    ds = load_split("folder", str(tmp_path / "d"), "train", None, mask_dir=str(tmp_path / "m"),
                    val_fraction=0.0, test_fraction=0.0, **QUIET)
    assert ds.masks.shape == (4, 6, 8) and ds.masks[:, 3, 4].tolist() == [255] * 4


def test_csv_label_forms_split_col_and_unlabeled(tmp_path):
    for i in range(6):
        write_image(tmp_path / "img" / f"im{i}.jpg", seed=i)
    names = write_csv(tmp_path / "n.csv", ["filename", "label", "fold"],
                      [[f"im{i}", ["cat", "dog", ""][i % 3], ["train", "val"][i // 4]] for i in range(6)])
    ds = load_split("csv", str(tmp_path / "img"), "train", 8, csv=str(names), split_col="fold", **QUIET)
    assert ds.class_names == ["cat", "dog"] and ds.targets.tolist() == [0, 1, -1, 0] and ds.ids[0] == "im0"
    ints = write_csv(tmp_path / "i.csv", ["image", "y"], [[f"im{i}.jpg", i % 3] for i in range(6)])
    ds = load_split("csv", str(ints), "train", 8, image_dir=str(tmp_path / "img"), label_col="y",
                    val_fraction=0.0, test_fraction=0.0, **QUIET)
    assert ds.class_names == ["0", "1", "2"] and sorted(ds.targets.tolist()) == [0, 0, 1, 1, 2, 2]
    onehot = write_csv(tmp_path / "o.csv", ["image", "A", "B"], [[f"im{i}", int(i < 3), int(i >= 3)] for i in range(6)])
    ds = load_split("csv", str(tmp_path / "img"), "train", 8, csv=str(onehot), label_cols="A,B",
                    val_fraction=0.0, test_fraction=0.0, **QUIET)
    assert ds.class_names == ["A", "B"] and dict(zip(ds.ids, ds.targets.tolist()))["im4"] == 1
    ml = write_csv(tmp_path / "m.csv", ["image", "A", "B"], [[f"im{i}", 1, 1] if i else ["im0", "", ""] for i in range(6)])
    ds = load_split("csv", str(tmp_path / "img"), "train", 8, csv=str(ml), label_cols=["A", "B"], task="multilabel",
                    val_fraction=0.0, test_fraction=0.0, **QUIET)
    assert ds.task == "multilabel" and np.isnan(ds.targets[ds.ids.index("im0")]).all() and ds.labeled.sum() == 5
    bare = write_csv(tmp_path / "u.csv", ["image"], [[f"im{i}"] for i in range(6)])
    un = load_split("csv", str(tmp_path / "img"), "train", 8, csv=str(bare), **QUIET)
    assert len(un) == 6 and (un.targets == -1).all() and not un.labeled.any()
    with pytest.raises(DataError, match="only the split 'train'"):
        load_split("csv", str(tmp_path / "img"), "val", 8, csv=str(bare), **QUIET)
