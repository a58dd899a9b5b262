"""Every bad-input case stops with one DataError naming the file / line / column and the count of
further offenders, before any image is decoded."""
from __future__ import annotations

import re

import numpy as np
import pytest

from medattn.data import DataError, load_split
from medattn.data import io
from readers_testkit import make_folder, make_ham, make_isic2017, make_isic2018, write_csv, write_image, write_mask

QUIET = {"progress": False, "cache": False}


def _error(fmt, root, split="train", size=8, **options) -> str:
    with pytest.raises(DataError) as e:
        load_split(fmt, str(root), split, size, **QUIET, **options)
    return str(e.value)


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if any image is decoded (validation must come first)."""
    def boom(*a, **k):
        raise AssertionError("an image was decoded before validation finished")
    monkeypatch.setattr(io, "read_image", boom)


def test_missing_image_files_are_named_with_line_and_count(tmp_path, no_decoding):
    ids = make_isic2017(tmp_path, {"Training": [(0, 0)] * 10})["Training"]
    for i in ids[2:9]:
        (tmp_path / "ISIC-2017_Training_Data" / f"{i}.jpg").unlink()
    msg = _error("isic2017", tmp_path)
    assert msg.startswith(str(tmp_path / "ISIC-2017_Training_Part3_GroundTruth.csv") + ": missing image file [7]: ")
    assert f"{ids[2]} (line 4) not in {tmp_path / 'ISIC-2017_Training_Data'}" in msg
    assert ids[6] in msg and ids[7] not in msg
    assert msg.endswith("(and 2 more)")


def test_truncated_and_unreadable_images_are_named(tmp_path):
    paths = make_folder(tmp_path, {"a": 4, "b": 4})
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) // 2])
    paths[5].write_bytes(b"\x89PNG garbage")
    msg = _error("folder", tmp_path, split="train", val_fraction=0.0, test_fraction=0.0)
    assert "unreadable or truncated image [1]: " + str(paths[1]) in msg
    assert "unreadable image [1]: " + str(paths[5]) in msg
    assert msg.startswith(f"{tmp_path}: 2 kinds of problems:")


def test_csv_without_expected_columns(tmp_path, no_decoding):
    make_isic2017(tmp_path, {"Training": [(0, 0)] * 3})
    csv = tmp_path / "ISIC-2017_Training_Part3_GroundTruth.csv"
    write_csv(csv, ["image_id", "melanoma", "sk"], [["ISIC_0000000", 0, 0]])
    msg = _error("isic2017", tmp_path)
    assert msg == f"{csv}: missing column(s) 'seborrheic_keratosis' (found: image_id, melanoma, sk)"


def test_onehot_rows_with_zero_or_two_positives(tmp_path, no_decoding):
    make_isic2018(tmp_path, "Training", ["MEL", "NV", "BCC"], [0, 1, 2, 0, 1, 2, 0, 1])
    csv = tmp_path / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_GroundTruth.csv"
    lines = csv.read_text().splitlines()
    lines[2] = lines[2].split(",")[0] + ",0.0,0.0,0.0"
    lines[4] = lines[4].split(",")[0] + ",1.0,1.0,0.0"
    for k in (5, 6, 7, 8):
        lines[k] = lines[k].split(",")[0] + ",1.0,0.0,1.0"
    csv.write_text("\n".join(lines) + "\n")
    msg = _error("isic2018", tmp_path)
    assert msg.startswith(f"{csv}: one-hot row without exactly one positive [6]: line 3: 0 positives; "
                          "line 5: 2 positives (MEL, NV); line 6: 2 positives (MEL, BCC)")
    assert msg.endswith("(and 1 more)")


def test_unknown_class_name_with_classes_option(tmp_path, no_decoding):
    for i in range(4):
        write_image(tmp_path / f"im{i}.png")
    csv = write_csv(tmp_path / "t.csv", ["image", "label"],
                    [["im0", "cat"], ["im1", "dog"], ["im2", "zebra"], ["im3", "cat"]])
    msg = _error("csv", tmp_path, csv=str(csv), classes=["cat", "dog"])
    assert msg == f"{csv}: unknown class (classes: cat, dog) [1]: line 4, column 'label': 'zebra'"


def test_class_without_training_image_only_for_train(tmp_path, no_decoding):
    make_folder(tmp_path / "train", {"a": 2, "b": 2})
    (tmp_path / "train" / "c").mkdir()
    make_folder(tmp_path / "val", {"a": 1, "c": 1}, start=50)
    assert _error("folder", tmp_path) == f"{tmp_path}: class with no training image [1]: c"


def test_class_without_training_image_is_fine_for_val(tmp_path):
    make_folder(tmp_path / "train", {"a": 2, "b": 2, "c": 1})
    make_folder(tmp_path / "val", {"a": 1, "c": 1}, start=50)
    ds = load_split("folder", str(tmp_path), "val", 8, **QUIET)
    assert ds.class_names == ["a", "b", "c"] and ds.class_counts().tolist() == [1, 0, 1]


def test_duplicated_image_ids(tmp_path, no_decoding):
    make_isic2018(tmp_path, "Training", ["A", "B"], [0, 1, 0, 1])
    csv = tmp_path / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_GroundTruth.csv"
    csv.write_text(csv.read_text() + "ISIC_0000001,1.0,0.0\n")
    msg = _error("isic2018", tmp_path)
    assert msg == f"{csv}: duplicated image id [1]: 'ISIC_0000001' at line 3, line 6"
    # the same file name in two class folders of a folder data set
    make_folder(tmp_path / "f", {"a": 2})
    write_image(tmp_path / "f" / "b" / "a_001.png")
    msg = _error("folder", tmp_path / "f", val_fraction=0.0, test_fraction=0.0)
    assert f"duplicated image id [1]: 'a_001' at {tmp_path / 'f' / 'a' / 'a_001.png'}, {tmp_path / 'f' / 'b' / 'a_001.png'}" in msg


def test_mask_size_different_from_image(tmp_path):
    ids = make_isic2017(tmp_path, {"Validation": [(0, 0), (1, 0), (0, 1)]}, masks=True)["Validation"]
    bad = tmp_path / "ISIC-2017_Validation_Part1_GroundTruth" / f"{ids[1]}_segmentation.png"
    write_mask(bad, size=(10, 12))
    msg = _error("isic2017", tmp_path, split="val")
    assert msg == (f"{tmp_path}: mask size different from its image [1]: {bad} is 10x12, image "
                   f"{tmp_path / 'ISIC-2017_Validation_Data' / (ids[1] + '.jpg')} is 12x10")


def test_missing_mask_names_the_count_and_masks_available(tmp_path, no_decoding):
    ids = make_isic2017(tmp_path, {"Validation": [(0, 0), (1, 0)]}, masks=True)["Validation"]
    (tmp_path / "ISIC-2017_Validation_Part1_GroundTruth" / f"{ids[0]}_segmentation.png").unlink()
    msg = _error("isic2017", tmp_path, split="val")
    assert ("missing mask file, 1 of 2 images (pass masks=available to keep every image and read the masks that "
            "exist, or masks=false to read none) [1]: ") in msg
    assert f"{ids[0]}_segmentation (line 2)" in msg


def test_image_over_pixel_limit(tmp_path):
    make_folder(tmp_path, {"a": 2, "b": 2}, size=(20, 10))
    msg = _error("folder", tmp_path, val_fraction=0.0, test_fraction=0.0, max_pixels=199)
    assert msg.startswith(f"{tmp_path}: image over the pixel limit max_pixels=199 (raise the option max_pixels "
                          f"if you trust the file) [4]: {tmp_path / 'a' / 'a_000.png'} (20x10 = 200 pixels)")
    assert len(load_split("folder", str(tmp_path), "train", 8, max_pixels=200, val_fraction=0.0,
                          test_fraction=0.0, **QUIET)) == 4


def test_images_without_a_row_are_not_skipped_silently(tmp_path, no_decoding):
    make_isic2018(tmp_path, "Training", ["A", "B"], [0, 1])
    extra = write_image(tmp_path / "ISIC2018_Task3_Training_Input" / "ISIC_9999999.png") is not None
    assert extra
    msg = _error("isic2018", tmp_path)
    assert "image file with no row in ISIC2018_Task3_Training_GroundTruth.csv (pass ignore_unlisted=True" in msg
    assert "ISIC_9999999.png" in msg


def test_unlisted_images_can_be_ignored_explicitly(tmp_path):
    make_isic2018(tmp_path, "Training", ["A", "B"], [0, 1])
    write_image(tmp_path / "ISIC2018_Task3_Training_Input" / "ISIC_9999999.png")
    assert len(load_split("isic2018", str(tmp_path), "train", 8, ignore_unlisted=True, **QUIET)) == 2


def test_label_values_and_unknown_options(tmp_path, no_decoding):
    make_isic2017(tmp_path, {"Training": [(0, 0)] * 3})
    csv = tmp_path / "ISIC-2017_Training_Part3_GroundTruth.csv"
    csv.write_text("image_id,melanoma,seborrheic_keratosis\nISIC_0000000,0.5,0\nISIC_0000001,1,1\nISIC_0000002,,0\n")
    msg = _error("isic2017", tmp_path)
    assert "label is not 0 or 1 [2]: line 2, column 'melanoma': '0.5'; line 4, column 'melanoma': ''" in msg
    assert "image marked both melanoma and seborrheic_keratosis [1]: line 3" in msg
    assert _error("isic2017", tmp_path, tsak="melanoma").startswith("isic2017: unknown option(s) tsak;")
    assert "option task must be one of 3class, melanoma, seborrheic_keratosis" in _error("isic2017", tmp_path, task="x")


def test_ham10000_unknown_dx_and_empty_lesion(tmp_path, no_decoding):
    rows = make_ham(tmp_path, [("nv", 2), ("mel", 1), ("bkl", 1)])
    rows[1][2] = "nevus"
    rows[3][0] = ""
    write_csv(tmp_path / "HAM10000_metadata.csv",
              ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization", "dataset"], rows)
    msg = _error("ham10000", tmp_path)
    assert "unknown dx (expected one of akiec, bcc, bkl, df, mel, nv, vasc) [1]: line 3, column 'dx': 'nevus'" in msg
    assert "empty lesion_id [1]: line 5, column 'lesion_id'" in msg


def test_isic2019_unk_rows(tmp_path, no_decoding):
    cols = ["MEL", "NV", "UNK"]
    rows = [[f"ISIC_{i:07d}", *(["1.0", "0.0", "0.0"] if i % 2 else ["0.0", "1.0", "0.0"])] for i in range(10)]
    rows[3] = [rows[3][0], "0.0", "0.0", "1.0"]
    write_csv(tmp_path / "ISIC_2019_Training_GroundTruth.csv", ["image", *cols], rows)
    for r in rows:
        write_image(tmp_path / "ISIC_2019_Training_Input" / f"{r[0]}.jpg")
    msg = _error("isic2019", tmp_path)
    assert re.search(r"row labelled UNK \(pass unk=drop .*\) \[1\]: line 5, column 'UNK'$", msg)


def test_csv_multilabel_row_half_empty_and_bad_values(tmp_path, no_decoding):
    for i in range(3):
        write_image(tmp_path / f"im{i}.png")
    csv = write_csv(tmp_path / "t.csv", ["path", "a", "b"], [["im0.png", 1, ""], ["im1", 1, 0], ["im2", "yes", 1]])
    msg = _error("csv", tmp_path, csv=str(csv), label_cols=["a", "b"], task="multilabel")
    assert "value is not 0 or 1 [1]: line 4, column 'a': 'yes'" in msg
    assert "row with some label cells empty (leave all empty for an unlabeled image) [1]: line 2, column 'b'" in msg


def test_medmnist_labels_out_of_range(tmp_path):
    np.savez(tmp_path / "breastmnist.npz", train_images=np.zeros((4, 28, 28), np.uint8),
             train_labels=np.array([[0], [1], [2], [1]]))
    msg = _error("medmnist", tmp_path / "breastmnist.npz")
    assert msg == f"{tmp_path / 'breastmnist.npz'}: train_labels outside 0..1 (classes: 2) [1]: row 2: 2"


def test_csv_reader_column_errors(tmp_path, no_decoding):
    write_image(tmp_path / "a.png")
    csv = write_csv(tmp_path / "t.csv", ["name", "diagnosis"], [["a", "x"]])
    assert _error("csv", tmp_path, csv=str(csv)) == (
        f"{csv}: no image column (found: name, diagnosis); name it with option image_col "
        "(default: the first of image, image_id, filename, file, path, image_path)")
    assert _error("csv", tmp_path, csv=str(csv), image_col="name", label_col="dx") == (
        f"{csv}: missing column(s) 'dx' (found: name, diagnosis)")
