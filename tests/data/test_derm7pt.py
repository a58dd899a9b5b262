"""derm7pt reader on tiny generated layouts: every level's mapping, the tasks, the case-insensitive
file match, the splits and the 7-point score."""
from __future__ import annotations

import numpy as np
import pytest

from medattn.data import DataError, load_split
from medattn.data.split_files import write_splits_json
from medattn.data.derm7pt import seven_point_score
from readers_testkit import make_derm7pt, write_image

QUIET = {"progress": False, "cache": False}

# Every level of every criterion and whether it is the criterion's melanoma-indicative level, written
# out from derm7pt's code (jeremykawahara/derm7pt, derm7pt/dataset.py, the `scores` column), with
# Kawahara et al.'s grouped level (Derm7PtDatasetGroupInfrequent) where they group.
LEVELS = {
    "pigment_network": [("absent", 0, "absent"), ("typical", 0, "typical"), ("atypical", 1, "atypical")],
    "blue_whitish_veil": [("absent", 0, "absent"), ("present", 1, "present")],
    "vascular_structures": [("absent", 0, "absent"), ("arborizing", 0, "regular"), ("comma", 0, "regular"),
                            ("hairpin", 0, "regular"), ("within regression", 0, "regular"), ("wreath", 0, "regular"),
                            ("dotted", 1, "irregular"), ("linear irregular", 1, "irregular")],
    "streaks": [("absent", 0, "absent"), ("regular", 0, "regular"), ("irregular", 1, "irregular")],
    "pigmentation": [("absent", 0, "absent"), ("diffuse regular", 0, "regular"), ("localized regular", 0, "regular"),
                     ("diffuse irregular", 1, "irregular"), ("localized irregular", 1, "irregular")],
    "dots_and_globules": [("absent", 0, "absent"), ("regular", 0, "regular"), ("irregular", 1, "irregular")],
    "regression_structures": [("absent", 0, "absent"), ("blue areas", 1, "present"), ("white areas", 1, "present"),
                              ("combinations", 1, "present")],
}
CRITERIA_ORDER = ["pigment_network", "blue_whitish_veil", "vascular_structures", "streaks", "pigmentation",
                  "dots_and_globules", "regression_structures"]


def _level_cases():
    cases = []
    for column, levels in LEVELS.items():
        for level, _, _ in levels:
            cases.append({column: level, "derm": f"F{len(cases) % 3}/im{len(cases):03d}.jpg"})
    return cases


def _all_in_train(root, n):
    make = {"train": list(range(n)), "valid": [], "test": []}
    for word, idx in make.items():
        (root / "splits").mkdir(parents=True, exist_ok=True)
        (root / "splits" / f"asymmetric_{word}_indexes_filtered.csv").write_text("indexes\n" + "".join(f"{i}\n" for i in idx))


def test_every_level_maps_to_its_criterion_flag_and_grouped_level(tmp_path):
    cases = _level_cases()
    make_derm7pt(tmp_path, cases)
    _all_in_train(tmp_path, len(cases))
    ds = load_split("derm7pt", str(tmp_path), "train", 8, split_scheme="asymmetric", **QUIET)
    assert ds.task == "multilabel" and ds.class_names == [
        "atypical_pigment_network", "blue_whitish_veil", "atypical_vascular_pattern", "irregular_streaks",
        "irregular_pigmentation", "irregular_dots_and_globules", "regression_structures"]
    lv = load_split("derm7pt", str(tmp_path), "train", 8, task="levels", split_scheme="asymmetric", **QUIET)
    full = load_split("derm7pt", str(tmp_path), "train", 8, task="levels", group_infrequent=False,
                      split_scheme="asymmetric", **QUIET)
    assert len(full.class_names) == sum(len(v) for v in LEVELS.values()) == 28 and len(lv.class_names) == 19
    k = 0
    for column, levels in LEVELS.items():
        for level, flag, grouped in levels:
            expected = np.zeros(7)
            expected[CRITERIA_ORDER.index(column)] = flag
            np.testing.assert_array_equal(ds.targets[k], expected, err_msg=f"{column}={level}")
            assert lv.targets[k, lv.class_names.index(f"{column}:{grouped}")] == 1, (column, level)
            assert full.targets[k, full.class_names.index(f"{column}:{level}")] == 1, (column, level)
            k += 1
    assert (lv.targets.reshape(len(lv), -1).sum(axis=1) == 7).all()  # one level per criterion
    assert (full.targets.sum(axis=1) == 7).all()
    cases[5]["diagnosis"] = "melanoma (in situ)"  # beside the criteria, the diagnosis: the checklist is scored on it
    make_derm7pt(tmp_path, cases)
    mel = load_split("derm7pt", str(tmp_path), "train", 8, split_scheme="asymmetric", **QUIET).extra["melanoma"]
    assert mel == [int(k == 5) for k in range(len(cases))]


def test_diagnosis_groups_and_melanoma(tmp_path):
    groups = {"basal cell carcinoma": "BCC", "blue nevus": "NEV", "clark nevus": "NEV", "combined nevus": "NEV",
              "congenital nevus": "NEV", "dermal nevus": "NEV", "recurrent nevus": "NEV",
              "reed or spitz nevus": "NEV", "melanoma": "MEL", "melanoma (in situ)": "MEL",
              "melanoma (less than 0.76 mm)": "MEL", "melanoma (0.76 to 1.5 mm)": "MEL",
              "melanoma (more than 1.5 mm)": "MEL", "melanoma metastasis": "MEL", "dermatofibroma": "MISC",
              "lentigo": "MISC", "melanosis": "MISC", "miscellaneous": "MISC", "vascular lesion": "MISC",
              "seborrheic keratosis": "SK"}
    cases = [{"diagnosis": d, "derm": f"D/x{k:02d}.jpg"} for k, d in enumerate(groups)]
    make_derm7pt(tmp_path, cases)
    _all_in_train(tmp_path, len(cases))
    ds = load_split("derm7pt", str(tmp_path), "train", 8, task="diagnosis", split_scheme="asymmetric", **QUIET)
    assert ds.task == "multiclass" and ds.class_names == ["BCC", "NEV", "MEL", "MISC", "SK"]
    assert [ds.class_names[t] for t in ds.targets] == list(groups.values())
    fifteen = load_split("derm7pt", str(tmp_path), "train", 8, task="diagnosis", group_infrequent=False,
                         split_scheme="asymmetric", **QUIET)
    assert len(fifteen.class_names) == 15 and fifteen.class_names[fifteen.targets[10]] == "MEL"
    assert fifteen.class_names[fifteen.targets[7]] == "RSN"
    mel = load_split("derm7pt", str(tmp_path), "train", 8, task="melanoma", split_scheme="asymmetric", **QUIET)
    assert mel.class_names == ["other", "melanoma"]
    assert mel.targets.tolist() == [int(g == "MEL") for g in groups.values()]


def test_case_insensitive_match_quirk_ambiguity_and_missing(tmp_path, capsys):
    cases = [{"derm": "FCl/Fcl068.jpg", "file": "FCL/Fcl068.jpg"}, {"derm": "FCL/FCL018.JPG"},
             {"derm": "NEL/nel026.jpg", "file": "NEL/Nel026.JPG"}]
    make_derm7pt(tmp_path, cases, splits={"asymmetric": {"train": [], "valid": [0, 1, 2], "test": []}})
    ds = load_split("derm7pt", str(tmp_path), "val", None, split_scheme="asymmetric", task="melanoma", **QUIET)
    assert ds.ids == ["Fcl068", "FCL018", "Nel026"] and len(ds) == 3  # no row dropped
    assert ds.extra["files"] == [str(tmp_path / "images" / f) for f in ("FCL/Fcl068.jpg", "FCL/FCL018.JPG", "NEL/Nel026.JPG")]
    assert ds.extra["case_matched"] == [{"row": 0, "given": "FCl/Fcl068.jpg", "file": "FCL/Fcl068.jpg"},
                                        {"row": 2, "given": "NEL/nel026.jpg", "file": "NEL/Nel026.JPG"}]
    assert ("derm7pt: 2 row(s) name their image in another letter case and were matched case-insensitively "
            "(e.g. FCl/Fcl068.jpg -> FCL/Fcl068.jpg)") in capsys.readouterr().err
    write_image(tmp_path / "images" / "nel" / "nel026.jpg")
    with pytest.raises(DataError) as e:
        load_split("derm7pt", str(tmp_path), "val", 8, split_scheme="asymmetric", **QUIET)
    assert "several files match one path case-insensitively" in str(e.value)
    assert "line 4, column 'derm': 'NEL/nel026.jpg' (NEL/Nel026.JPG, nel/nel026.jpg)" in str(e.value)
    (tmp_path / "images" / "nel" / "nel026.jpg").unlink()
    (tmp_path / "images" / "FCL" / "FCL018.JPG").unlink()
    with pytest.raises(DataError, match=r"image file not found in .*\[1\]: line 3, column 'derm': 'FCL/FCL018.JPG'"):
        load_split("derm7pt", str(tmp_path), "val", 8, split_scheme="asymmetric", **QUIET)


def test_unlisted_images_clinic_column_and_unknown_levels(tmp_path):
    cases = [{"derm": f"A/d{k}.jpg", "pigment_network": "atypical" if k % 2 else "typical"} for k in range(4)]
    make_derm7pt(tmp_path, cases)
    _all_in_train(tmp_path, 4)
    write_image(tmp_path / "images" / "A" / "stray.png")
    with pytest.raises(DataError, match=r"image file with no row in meta.csv \(pass ignore_unlisted=True.*stray.png"):
        load_split("derm7pt", str(tmp_path), "val", 8, split_scheme="asymmetric", **QUIET)
    assert len(load_split("derm7pt", str(tmp_path), "val", 8, split_scheme="asymmetric", ignore_unlisted=True, **QUIET)) == 0
    meta = tmp_path / "meta" / "meta.csv"
    lines = meta.read_text().splitlines()
    meta.write_text("\n".join([lines[0] + ",clinic", *[ln + ",A/stray.png" for ln in lines[1:]]]) + "\n")
    assert len(load_split("derm7pt", str(tmp_path), "val", 8, split_scheme="asymmetric", **QUIET)) == 0
    meta.write_text(meta.read_text().replace("atypical", "Atypical_", 1).replace(",typical,", ",striped,", 1))
    with pytest.raises(DataError) as e:
        load_split("derm7pt", str(tmp_path), "val", 8, split_scheme="asymmetric", **QUIET)
    assert str(e.value) == (f"{meta}: unknown level of pigment_network (expected one of absent, typical, atypical) "
                            "[1]: line 2, column 'pigment_network': 'striped'")


def _stratified_cases():
    diag = ["clark nevus"] * 40 + ["melanoma (in situ)"] * 20 + ["seborrheic keratosis"] * 10 + ["basal cell carcinoma"] * 10
    return [{"diagnosis": d, "derm": f"S/s{k:03d}.jpg", "pigment_network": "atypical" if k % 3 == 0 else "typical",
             "blue_whitish_veil": "present" if k % 4 == 0 else "absent",
             "vascular_structures": "dotted" if k % 5 == 0 else "absent",
             "streaks": "irregular" if k % 2 else "absent", "pigmentation": "diffuse irregular" if k % 3 else "absent",
             "dots_and_globules": "irregular" if k % 5 else "regular",
             "regression_structures": "white areas" if k % 6 == 0 else "absent"} for k, d in enumerate(diag)]


def test_stratified_split_by_diagnosis_records_rows_and_reads_index_files(tmp_path):
    cases = _stratified_cases()
    rows = make_derm7pt(tmp_path, cases, splits={"symmetric": {"train": [0, 1, 2, 40, 41, 60, 70], "valid": [3, 42],
                                                               "test": [4, 43, 61]}})
    parts = {s: load_split("derm7pt", str(tmp_path), s, 8, **QUIET) for s in ("train", "val", "test")}
    assert [len(d) for d in parts.values()] == [32, 16, 32]  # 40 / 20 / 40 % of every diagnosis
    diag = {f"s{k:03d}": c["diagnosis"] for k, c in enumerate(cases)}
    for d, frac in zip(parts.values(), (0.4, 0.2, 0.4)):
        counts = {x: sum(diag[i] == x for i in d.ids) for x in set(diag.values())}
        assert counts == {x: round(frac * n) for x, n in {"clark nevus": 40, "melanoma (in situ)": 20,
                                                           "seborrheic keratosis": 10, "basal cell carcinoma": 10}.items()}
    record = parts["test"].extra["splits"]
    assert record["protocol"] == {"stratify": "diagnosis", "val_fraction": 0.2, "test_fraction": 0.4, "seed": 0}
    assert [rows[i][-1][2:-4] for i in record["rows"]["val"]] == parts["val"].ids
    assert sorted(np.concatenate([record["rows"][k] for k in record["rows"]]).tolist()) == list(range(80))
    other = load_split("derm7pt", str(tmp_path), "test", 8, seed=1, **QUIET)
    assert other.ids != parts["test"].ids
    saved = write_splits_json(parts["test"], tmp_path / "run" / "splits.json")
    again = load_split("derm7pt", str(tmp_path), "test", 8, seed=1, split_file=str(saved), **QUIET)
    assert again.ids == parts["test"].ids and again.extra["splits"]["rows"] == record["rows"]
    sym = load_split("derm7pt", str(tmp_path), "val", 8, split_scheme="symmetric", task="melanoma", **QUIET)
    assert sym.ids == ["s003", "s042"] and sym.targets.tolist() == [0, 1]
    assert sym.extra["splits"]["rows"] == {"train": [0, 1, 2, 40, 41, 60, 70], "val": [3, 42], "test": [4, 43, 61]}


def test_index_file_errors_and_options(tmp_path):
    make_derm7pt(tmp_path, _stratified_cases(), splits={"asymmetric": {"train": [0, 1], "valid": [1], "test": [2]},
                                                        "symmetric": {"train": [0, 80], "valid": [], "test": []}})
    with pytest.raises(DataError, match="split_scheme asymmetric: a row is in two of the index files"):
        load_split("derm7pt", str(tmp_path), "val", 8, split_scheme="asymmetric", **QUIET)
    with pytest.raises(DataError, match=r"symmetric_train_indexes_filtered.csv: line 3, column 'indexes': '80' is not a "
                                        r"row of meta.csv \(0 to 79\)"):
        load_split("derm7pt", str(tmp_path), "val", 8, split_scheme="symmetric", **QUIET)
    with pytest.raises(DataError, match="CSV file not found: .*meta/valid_indexes.csv|CSV file not found: .*train_indexes"):
        load_split("derm7pt", str(tmp_path), "val", 8, split_scheme="official", **QUIET)
    with pytest.raises(DataError, match="split_scheme must be one of stratified, asymmetric, symmetric, official"):
        load_split("derm7pt", str(tmp_path), "val", 8, split_scheme="kfold", **QUIET)
    with pytest.raises(DataError, match="option task must be one of criteria, levels, diagnosis, melanoma"):
        load_split("derm7pt", str(tmp_path), "val", 8, task="score", **QUIET)
    ds = load_split("derm7pt", str(tmp_path), "val", 8, major_weight=3, minor_weight=0.5, **QUIET)
    assert ds.extra["seven_point_weights"] == [3, 3, 3, 0.5, 0.5, 0.5, 0.5] and ds.extra["seven_point_threshold"] == 3


def test_seven_point_score():
    flags = np.array([[1, 0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0, 1]])
    assert seven_point_score(flags).tolist() == [2, 3, 10, 1]
    assert seven_point_score(flags, major_weight=1, minor_weight=1).tolist() == [1, 3, 7, 1]
    assert seven_point_score(np.full((1, 7), 0.5)).tolist() == [5.0]
    with pytest.raises(ValueError, match=r"criteria must be N x 7"):
        seven_point_score(np.zeros((2, 6)))
