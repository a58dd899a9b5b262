"""Readers that make their own split record it (``extra["splits"]``); `write_splits_json` saves it
and option ``split_file`` reads it back. ISIC 2019 on a folder holding part of its images."""
from __future__ import annotations

import json

import pytest

from medattn.data import DataError, load_split
from medattn.data.split_files import write_splits_json
from readers_testkit import make_ham, write_csv, write_image

QUIET = {"progress": False, "cache": False}
HAM = [(dx, 1 + i % 3) for i, dx in enumerate(["nv"] * 30 + ["mel"] * 10 + ["bkl"] * 6 + ["df", "akiec", "bcc", "vasc"] * 2)]


def test_ham10000_records_all_splits_and_reads_them_back(tmp_path):
    rows = make_ham(tmp_path / "ham", HAM)
    root = str(tmp_path / "ham")
    val = load_split("ham10000", root, "val", None, seed=3, **QUIET)
    record = val.extra["splits"]
    assert record["reader"] == "ham10000" and record["protocol"] == {
        "stratify": "dx", "group": "lesion_id", "val_fraction": 0.1, "test_fraction": 0.2, "seed": 3}
    assert record["ids"]["val"] == val.ids
    assert sorted(i for ids in record["ids"].values() for i in ids) == sorted(r[1] for r in rows)
    assert [rows[i][1] for i in record["rows"]["test"]] == record["ids"]["test"]
    path = write_splits_json(val, tmp_path / "run" / "splits.json")
    assert json.loads(path.read_text()) == record
    assert write_splits_json(load_split("ham10000", root, "train", None, seed=3, **QUIET), path) == path  # same split
    with pytest.raises(FileExistsError, match="already holds another split"):
        write_splits_json(load_split("ham10000", root, "val", None, seed=4, **QUIET), path)
    again = load_split("ham10000", root, "val", None, split_file=str(path), **QUIET)  # seed 0 would split otherwise
    assert again.ids == val.ids and again.extra["splits"]["ids"] == record["ids"]
    assert load_split("ham10000", root, "val", None, **QUIET).ids != val.ids


def test_split_file_naming_unknown_ids_or_another_reader(tmp_path):
    make_ham(tmp_path, HAM)
    bad = tmp_path / "splits.json"
    bad.write_text(json.dumps({"reader": "ham10000", "ids": {"train": ["ISIC_0000000", "ISIC_9999999"]}}))
    with pytest.raises(DataError, match=r"id of split 'train' not in the data \[1\]: 'ISIC_9999999'"):
        load_split("ham10000", str(tmp_path), "train", None, split_file=str(bad), **QUIET)
    bad.write_text(json.dumps({"reader": "isic2019", "ids": {"train": []}}))
    with pytest.raises(DataError, match="a split of reader 'isic2019', not 'ham10000'"):
        load_split("ham10000", str(tmp_path), "train", None, split_file=str(bad), **QUIET)
    bad.write_text("[1, 2]")
    with pytest.raises(DataError, match="is not a splits.json"):
        load_split("ham10000", str(tmp_path), "train", None, split_file=str(bad), **QUIET)


def test_dataset_without_own_split_writes_nothing(tmp_path):
    from readers_testkit import make_isic2017

    make_isic2017(tmp_path, {"Validation": [(0, 0), (1, 0)]})
    ds = load_split("isic2017", str(tmp_path), "val", 8, **QUIET)
    assert write_splits_json(ds, tmp_path / "splits.json") is None and not (tmp_path / "splits.json").exists()


def _isic2019(root, n=40, on_disk=range(40)):
    cols = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
    rows, meta = [], []
    for i in range(n):
        y = [0, 1, 1, 2][i % 4]
        rows.append([f"ISIC_{i:07d}", *[float(k == y) for k in range(9)]])
        meta.append([f"ISIC_{i:07d}", 50, "back", f"L{i // 2}", "male"])
        if i in on_disk:
            write_image(root / "ISIC_2019_Training_Input" / f"ISIC_{i:07d}.jpg", size=(6, 6), seed=i)
    write_csv(root / "ISIC_2019_Training_GroundTruth.csv", ["image", *cols], rows)
    write_csv(root / "ISIC_2019_Training_Metadata.csv", ["image", "age_approx", "anatom_site_general", "lesion_id",
                                                         "sex"], meta)
    return [r[0] for r in rows]


def test_isic2019_refuses_a_partial_folder_unless_subset_available(tmp_path, capsys):
    ids = _isic2019(tmp_path, on_disk=set(range(40)) - {1, 5, 6, 7, 20, 21, 33})
    with pytest.raises(DataError) as e:
        load_split("isic2019", str(tmp_path), "train", 6, **QUIET)
    msg = str(e.value)
    assert ("missing image file, 7 of 40 listed (pass subset=available to use only the 33 present; the split is "
            "then made over them) [7]: ISIC_0000001 (line 3) not in") in msg and msg.endswith("(and 2 more)")
    parts = {s: load_split("isic2019", str(tmp_path), s, 6, subset="available", **QUIET) for s in ("train", "val", "test")}
    err = capsys.readouterr().err
    assert "subset=available: 7 of 40 listed images are not in" in err
    assert "no present image of class(es) AK, BKL, DF, VASC, SCC; they are left out of the classes (MEL, NV, BCC)" in err
    assert parts["train"].class_names == ["MEL", "NV", "BCC"]
    assert sum(d.class_counts() for d in parts.values()).tolist() == [9, 15, 9]  # the 33 present, by class
    got = sorted(i for d in parts.values() for i in d.ids)
    assert got == sorted(set(ids) - {ids[k] for k in (1, 5, 6, 7, 20, 21, 33)})
    record = parts["val"].extra["splits"]
    assert record["protocol"]["rows_used"] == 33 and record["protocol"]["subset"] == "available"
    assert record["ids"]["val"] == parts["val"].ids and any("7 of 40" in n for n in parts["val"].extra["notes"])
    lesion = {f"ISIC_{i:07d}": f"L{i // 2}" for i in range(40)}
    owners = [{lesion[i] for i in d.ids} for d in parts.values()]
    assert not (owners[0] & owners[1] or owners[0] & owners[2] or owners[1] & owners[2])
    with pytest.raises(DataError, match="option subset must be one of all, available, got 'some'"):
        load_split("isic2019", str(tmp_path), "train", 6, subset="some", **QUIET)


def test_isic2019_without_images_and_with_image_dir(tmp_path):
    _isic2019(tmp_path / "labels", on_disk=())
    with pytest.raises(DataError, match=r"image folder .*ISIC_2019_Training_Input does not exist, so all 40 images "
                                        r"listed in ISIC_2019_Training_GroundTruth.csv are missing \(e.g. ISIC_0000000\);"
                                        r" point option image_dir .* or pass subset=available"):
        load_split("isic2019", str(tmp_path / "labels"), "train", 6, **QUIET)
    for i in (0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13):
        write_image(tmp_path / "some" / f"ISIC_{i:07d}.png", size=(6, 6), seed=i)
    with pytest.raises(DataError, match="missing image file, 28 of 40 listed"):
        load_split("isic2019", str(tmp_path / "labels"), "train", 6, image_dir=str(tmp_path / "some"), **QUIET)
    parts = [load_split("isic2019", str(tmp_path / "labels"), s, 6, image_dir=str(tmp_path / "some"),
                        subset="available", val_fraction=0.25, test_fraction=0.25, **QUIET) for s in ("train", "val", "test")]
    assert sum(len(d) for d in parts) == 12
    saved = write_splits_json(parts[0], tmp_path / "splits.json")
    same = load_split("isic2019", str(tmp_path / "labels"), "test", 6, image_dir=str(tmp_path / "some"),
                      subset="available", split_file=str(saved), **QUIET)
    assert same.ids == parts[2].ids
    for i in (0, 1, 2, 3, 4, 5):
        write_image(tmp_path / "fewer" / f"ISIC_{i:07d}.png", size=(6, 6), seed=i)
    with pytest.raises(DataError, match=r"names 6 image\(s\) that are not read here \(e.g. ISIC_00000(08|09|1[0-3]):"):
        load_split("isic2019", str(tmp_path / "labels"), "test", 6, image_dir=str(tmp_path / "fewer"),
                   subset="available", split_file=str(saved), **QUIET)


def test_isic2019_subset_available_with_no_image_found(tmp_path):
    _isic2019(tmp_path, on_disk=())
    (tmp_path / "ISIC_2019_Training_Input").mkdir()
    with pytest.raises(DataError, match="subset=available, but none of the 40 images listed"):
        load_split("isic2019", str(tmp_path), "train", 6, subset="available", **QUIET)
