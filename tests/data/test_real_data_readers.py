"""HAM10000, ISIC 2017 masks, ISIC 2019 and derm7pt readers on ../shared/data (opt-in: --realdata or
MEDATTN_REAL_DATA=1). Counts are those of ../shared/data/README.md. Images are decoded small or in
part, so the module stays fast on 2 cores."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from skimage.filters import threshold_otsu

from medattn.data import DataError, load_split
from medattn.data.derm7pt import CRITERIA
from medattn.data.ham10000 import HAM_CLASSES, read_metadata

pytestmark = pytest.mark.realdata
QUIET = {"progress": False, "cache": False}
HAM_COUNTS = {"akiec": 327, "bcc": 514, "bkl": 1099, "df": 115, "mel": 1113, "nv": 6705, "vasc": 142}
ISIC2019_COUNTS = {"MEL": 4522, "NV": 12875, "BCC": 3323, "AK": 867, "BKL": 2624, "DF": 239, "VASC": 253, "SCC": 628}
# ISIC 2019 labels of its 12,760 images that are in ham10000_200x150/ and isic2017_256/ (HAM's 327 akiec
# are AK 130 + SCC 197 there; its bkl 1099 plus the ISIC 2017 SK and other BKL make 1485).
SUBSET_COUNTS = {"MEL": 1634, "NV": 8543, "BCC": 514, "AK": 130, "BKL": 1485, "DF": 115, "VASC": 142, "SCC": 197}


def dark_region_iou(images: np.ndarray, masks: np.ndarray) -> float:
    """Median IoU of each mask with the Otsu-thresholded dark region of its grey image."""
    ious = []
    for img, m in zip(images, masks):
        grey = img.astype(np.float64).mean(axis=-1)
        dark, lesion = grey < threshold_otsu(grey), m > 0
        ious.append((dark & lesion).sum() / max((dark | lesion).sum(), 1))
    return float(np.median(ious))


def assert_masks_on_lesions(images: np.ndarray, masks: np.ndarray, at_least: float) -> tuple[float, float]:
    real = dark_region_iou(images, masks)
    shuffled = dark_region_iou(images, np.roll(masks, 1, axis=0))  # every mask on another image
    assert real > at_least and real > shuffled + 0.15, (real, shuffled)
    return real, shuffled


def _no_shared(parts: dict[str, set]) -> bool:
    names = list(parts)
    return all(not (parts[a] & parts[b]) for i, a in enumerate(names) for b in names[i + 1:])


def test_ham10000_200x150_counts_lesion_grouping_and_masks(shared_data):
    root = shared_data / "ham10000_200x150"
    meta = read_metadata(root / "HAM10000_metadata.csv")
    val = load_split("ham10000", str(root), "val", None, **QUIET)
    assert val.images.shape[1:] == (150, 200, 3) and val.masks.shape[1:] == (150, 200) and val.has_mask.all()
    ids = val.extra["splits"]["ids"]
    assert sorted(i for s in ids.values() for i in s) == sorted(meta.image_ids)
    assert sorted(os.path.splitext(f)[0] for f in os.listdir(root / "HAM10000_images")) == sorted(meta.image_ids)
    assert [len(ids[s]) for s in ("train", "val", "test")] == [7012, 1000, 2003]
    dx = dict(zip(meta.image_ids, (HAM_CLASSES[t] for t in meta.targets)))
    assert {c: sum(dx[i] == c for s in ids.values() for i in s) for c in HAM_CLASSES} == HAM_COUNTS
    lesion = dict(zip(meta.image_ids, meta.lesion_ids))
    assert _no_shared({s: {lesion[i] for i in members} for s, members in ids.items()})
    assert val.ids == ids["val"] and [HAM_CLASSES[t] for t in val.targets] == [dx[i] for i in val.ids]
    assert_masks_on_lesions(val.images[::3], val.masks[::3], at_least=0.3)


def test_isic2017_part1_masks_from_mask_dir(shared_data):
    root, masks = str(shared_data / "isic2017_256"), str(shared_data / "isic2017_256_masks")
    assert load_split("isic2017", root, "val", 32, **QUIET).masks is None  # none beside the images
    val = load_split("isic2017", root, "val", 128, masks=True, mask_dir=masks, **QUIET)
    assert val.masks.shape == (150, 128, 128) and val.has_mask.all()
    train_masks = os.listdir(shared_data / "isic2017_256_masks" / "ISIC-2017_Training_Part1_GroundTruth")
    assert len(train_masks) == 2000
    with pytest.raises(DataError, match=r"missing mask file, 71 of 600 images \(pass masks=available.*\) \[71\]"):
        load_split("isic2017", root, "test", 128, masks=True, mask_dir=masks, **QUIET)
    test = load_split("isic2017", root, "test", 128, masks="available", mask_dir=masks, **QUIET)
    assert len(test) == 600 and test.class_counts().tolist() == [117, 90, 393]  # classification keeps all 600
    assert int(test.has_mask.sum()) == 529 and not test.masks[~test.has_mask].any()
    listed = (shared_data / "isic2017_256_masks" / "ISIC-2017_Test_v2_Part1_ids_without_mask.txt").read_text().split()
    assert sorted(np.array(test.ids)[~test.has_mask].tolist()) == sorted(listed)
    assert_masks_on_lesions(val.images, val.masks, at_least=0.35)
    assert_masks_on_lesions(test.images[test.has_mask][::2], test.masks[test.has_mask][::2], at_least=0.35)


def _isic2019_subset_folder(shared_data, folder) -> int:
    # Links named as ISIC 2019 names them (some 2017 images as <id>_downsampled) to the copies here.
    listed = [ln.split(",")[0] for ln in
              (shared_data / "isic2019_labels" / "ISIC_2019_Training_GroundTruth.csv").read_text().splitlines()[1:]]
    here = {os.path.splitext(f)[0]: shared_data / "ham10000_200x150" / "HAM10000_images" / f
            for f in os.listdir(shared_data / "ham10000_200x150" / "HAM10000_images")}
    for part in ("Training", "Validation", "Test_v2"):
        d = shared_data / "isic2017_256" / f"ISIC-2017_{part}_Data"
        here.update({os.path.splitext(f)[0]: d / f for f in os.listdir(d) if not f.endswith("_superpixels.png")})
    folder.mkdir()
    n = 0
    for image in listed:
        src = here.get(image.replace("_downsampled", ""))
        if src is not None:
            os.symlink(src, folder / f"{image}{src.suffix}")
            n += 1
    return n


def test_isic2019_ground_truth_without_images_and_on_the_subset_here(shared_data, tmp_path):
    root = str(shared_data / "isic2019_labels")
    with pytest.raises(DataError, match="all 25331 images listed in ISIC_2019_Training_GroundTruth.csv are missing "
                                        r"\(e.g. ISIC_0000000\).*subset=available"):
        load_split("isic2019", root, "train", 32, **QUIET)
    assert _isic2019_subset_folder(shared_data, tmp_path / "subset") == 12760
    with pytest.raises(DataError, match=r"missing image file, 12571 of 25331 listed \(pass subset=available to use only "
                                        r"the 12760 present"):
        load_split("isic2019", root, "val", 32, image_dir=str(tmp_path / "subset"), **QUIET)
    val = load_split("isic2019", root, "val", 32, image_dir=str(tmp_path / "subset"), subset="available", **QUIET)
    gt = (shared_data / "isic2019_labels" / "ISIC_2019_Training_GroundTruth.csv").read_text().splitlines()
    cols = gt[0].split(",")[1:]
    record = val.extra["splits"]
    assert record["protocol"]["rows_used"] == 12760 and sum(map(len, record["ids"].values())) == 12760
    assert val.class_names == list(ISIC2019_COUNTS)  # every class has images here (HAM's akiec is AK or SCC)
    assert any("12571 of 25331 listed images" in n for n in val.extra["notes"])
    label = {r.split(",")[0]: cols[[float(v) for v in r.split(",")[1:]].index(1.0)] for r in gt[1:]}
    present = [label[i] for ids in record["ids"].values() for i in ids]
    assert {c: present.count(c) for c in ISIC2019_COUNTS} == SUBSET_COUNTS
    assert [val.class_names[t] for t in val.targets] == [label[i] for i in val.ids]
    meta = (shared_data / "isic2019_labels" / "ISIC_2019_Training_Metadata.csv").read_text().splitlines()
    lesion = {r.split(",")[0]: r.split(",")[3] for r in meta[1:] if r.split(",")[3]}
    assert _no_shared({s: {lesion[i] for i in members if i in lesion} for s, members in record["ids"].items()})
    counts = np.sum([[float(v) for v in r.split(",")[1:]] for r in gt[1:]], axis=0)
    assert dict(zip(cols, counts.astype(int).tolist())) == {**ISIC2019_COUNTS, "UNK": 0}
    assert abs(len(val) / 12760 - 0.1) < 0.01


DERM_LEVELS = {  # ../shared/data/README.md
    "pigment_network": {"absent": 400, "typical": 381, "atypical": 230},
    "streaks": {"absent": 653, "regular": 107, "irregular": 251},
    "pigmentation": {"absent": 588, "diffuse regular": 115, "localized regular": 3, "diffuse irregular": 265,
                     "localized irregular": 40},
    "regression_structures": {"absent": 758, "blue areas": 116, "white areas": 38, "combinations": 99},
    "dots_and_globules": {"absent": 229, "regular": 334, "irregular": 448},
    "blue_whitish_veil": {"absent": 816, "present": 195},
    "vascular_structures": {"absent": 823, "arborizing": 31, "comma": 23, "hairpin": 15, "within regression": 46,
                            "wreath": 2, "dotted": 53, "linear irregular": 18},
}


def test_derm7pt_384_levels_criteria_quirk_and_splits(shared_data, tmp_path):
    root = str(shared_data / "derm7pt_384")
    crit = [load_split("derm7pt", root, s, 16, **QUIET) for s in ("train", "val", "test")]
    assert [len(d) for d in crit] == [408, 204, 399]  # 40 / 20 / 40 % of each diagnosis
    assert _no_shared({k: set(d.ids) for k, d in zip("abc", crit)}) and sum(map(len, crit)) == 1011
    quirk = crit[0].extra["case_matched"]
    assert [(q["given"], q["file"]) for q in quirk] == [("FCl/Fcl068.jpg", "FCL/Fcl068.jpg")]
    assert "Fcl068" in {i for d in crit for i in d.ids}
    with pytest.raises(DataError, match="no training image .*vascular_structures:wreath; pass group_infrequent=true"):
        load_split("derm7pt", root, "train", 16, task="levels", group_infrequent=False, **QUIET)  # 2 cases, not in train
    everything = tmp_path / "all.json"  # every row in one split, to count each level over all 1011
    everything.write_text(json.dumps({"reader": "derm7pt", "ids": {"val": [i for d in crit for i in d.ids]}}))
    levels = load_split("derm7pt", root, "val", 16, task="levels", group_infrequent=False, split_file=str(everything), **QUIET)
    names, total = levels.class_names, levels.class_counts()
    assert {c: {lv: int(total[names.index(f"{c}:{lv}")]) for lv in DERM_LEVELS[c]} for c in DERM_LEVELS} == DERM_LEVELS
    positives = sum(d.class_counts() for d in crit)
    expected = {c.column: sum(n for lv, n in DERM_LEVELS[c.column].items() if c.levels[lv][1]) for c in CRITERIA}
    assert dict(zip((c.column for c in CRITERIA), positives.tolist())) == expected
    assert expected["vascular_structures"] == 71 and expected["regression_structures"] == 253
    diag = [load_split("derm7pt", root, s, 16, task="diagnosis", **QUIET) for s in ("train", "val", "test")]
    counts = sum(d.class_counts() for d in diag)
    assert diag[0].class_names == ["BCC", "NEV", "MEL", "MISC", "SK"]
    assert counts[[0, 2, 4]].tolist() == [42, 252, 45] and counts.sum() == 1011
    for d in diag:  # stratified by diagnosis: every split holds each group in the proportion of the whole set
        share = d.class_counts() / len(d)
        assert np.abs(share - counts / 1011).max() < 0.02, share
    assert 40 < crit[1].images.mean() < 220 and crit[1].images.std() > 10


@pytest.mark.parametrize("scheme, sizes, melanoma", [("asymmetric", (346, 171, 324), 252),
                                                     ("symmetric", (298, 135, 272), 116)])
def test_derm7pt_plus_index_splits(shared_data, scheme, sizes, melanoma):
    root = str(shared_data / "derm7pt_384")
    val = load_split("derm7pt", root, "val", 16, task="melanoma", split_scheme=scheme, **QUIET)
    rows = val.extra["splits"]["rows"]
    assert tuple(len(rows[s]) for s in ("train", "val", "test")) == sizes and len(val) == sizes[1]
    assert _no_shared({s: set(r) for s, r in rows.items()})
    meta = (shared_data / "derm7pt_384" / "meta" / "meta.csv").read_text().splitlines()[1:]
    assert sum(meta[i].startswith("melanoma") for r in rows.values() for i in r) == melanoma
    assert val.targets.tolist() == [int(meta[i].startswith("melanoma")) for i in rows["val"]]
