"""The synthetic dermoscopy set: determinism, labels, masks, the spurious knob, artifact flags vs.
pixels, the reader, speed, and the `medattn synth` writer."""
from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from medattn.data import DataError
from medattn.data._registry import READERS
from medattn.data.synthetic.single_lesion import (ARTIFACTS, CLASS_PROPORTIONS, SHORTCUTS, _rng, _split_key, generate_synthetic,
                                                  paint_artifact, plan_synthetic, read_synthetic, render_background, render_lesion)

S = 48  # small images keep the file fast


@pytest.fixture(scope="module")
def train():
    return generate_synthetic(24, size=S, seed=5, split="train")


def test_same_arguments_same_bytes_and_chunks_do_not_matter(train):
    again = generate_synthetic(24, size=S, seed=5, split="train")
    assert np.array_equal(again.images, train.images) and np.array_equal(again.masks, train.masks)
    a = generate_synthetic(10, size=S, seed=5, split="train")
    b = generate_synthetic(14, size=S, seed=5, split="train", start=10)
    assert np.array_equal(np.concatenate([a.images, b.images]), train.images)
    assert np.array_equal(np.concatenate([a.targets, b.targets]), train.targets)
    assert a.ids + b.ids == train.ids == [f"SYN_TR_{i:07d}" for i in range(24)]
    for name in ARTIFACTS:
        assert np.array_equal(np.concatenate([a.extra["artifacts"][name], b.extra["artifacts"][name]]),
                              train.extra["artifacts"][name])


def test_seed_and_split_change_the_images(train):
    other_seed = generate_synthetic(24, size=S, seed=6, split="train")
    test = generate_synthetic(24, size=S, seed=5, split="test")
    for other in (other_seed, test):
        same = [np.array_equal(x, y) for x, y in zip(other.images, train.images)]
        assert not any(same)
    assert len(set(test.ids) & set(train.ids)) == 0


def test_shifted_test_has_the_same_lesions_as_test_but_other_artifacts():
    test = generate_synthetic(40, size=S, seed=1, split="test", artifacts=False)
    shifted = generate_synthetic(40, size=S, seed=1, split="test_shifted", artifacts=False)
    assert np.array_equal(test.targets, shifted.targets) and np.array_equal(test.masks, shifted.masks)
    assert np.array_equal(test.images, shifted.images)  # without artifacts the scenes are identical
    full_test, full_shifted = plan_synthetic(40, seed=1, split="test")[1], plan_synthetic(40, seed=1, split="test_shifted")[1]
    assert any(not np.array_equal(full_test[a], full_shifted[a]) for a in ARTIFACTS)


def test_class_proportions_match_the_requested_shares():
    n = 1000
    targets, _ = plan_synthetic(n, seed=0, split="train")
    counts = np.bincount(targets, minlength=4)
    p = np.array(list(CLASS_PROPORTIONS.values()))
    # each count is binomial(n, p_k): within 4 standard deviations
    assert np.all(np.abs(counts - n * p) < 4 * np.sqrt(n * p * (1 - p))), counts
    targets2, _ = plan_synthetic(600, seed=0, split="val", class_names=["melanoma", "nevus"], proportions=[1, 1])
    assert abs(np.mean(targets2 == 0) - 0.5) < 4 * np.sqrt(0.25 / 600)


def test_plan_agrees_with_the_generated_images(train):
    targets, flags = plan_synthetic(24, seed=5, split="train")
    assert np.array_equal(targets, train.targets)
    for name in ARTIFACTS:
        assert np.array_equal(flags[name], train.extra["artifacts"][name])


def test_masks_cover_one_lesion_that_differs_from_the_skin():
    ds = generate_synthetic(40, size=64, seed=2, artifacts=False)
    assert set(np.unique(ds.masks)) <= {0, 255}
    for image, mask in zip(ds.images, ds.masks):
        lesion = mask > 0
        assert 0.02 < lesion.mean() < 0.5
        assert ndimage.label(lesion)[1] == 1  # one connected lesion
        assert not lesion[[0, 0, -1, -1], [0, -1, 0, -1]].any()  # corners are skin
        ys, xs = np.nonzero(lesion)
        assert 16 < ys.mean() < 48 and 16 < xs.mean() < 48  # near the centre
        inside, outside = image[lesion].astype(float).mean(0), image[~lesion].astype(float).mean(0)
        assert np.abs(inside - outside).max() > 10  # the lesion stands out from the skin (0..255)


def test_generator_is_the_composition_of_the_public_renderers():
    ds = generate_synthetic(6, size=S, seed=3, artifacts=False)
    for i in range(6):
        scene = _rng(3, _split_key("train"), i, 0)
        scene.uniform()  # the class draw
        background = render_background(scene, S)
        rgb, alpha = render_lesion(scene, ds.class_names[ds.targets[i]], S)
        assert background.shape == rgb.shape == (S, S, 3) and alpha.shape == (S, S)
        assert np.array_equal(alpha >= 0.5, ds.masks[i] > 0)
        assert 0.0 <= alpha.min() and alpha.max() <= 1.0 and alpha[alpha >= 0.5].size > 0


def test_with_spurious_one_every_image_carries_its_shortcut():
    targets, flags = plan_synthetic(300, spurious=1.0, seed=0, split="train")
    names = list(CLASS_PROPORTIONS)
    for k, name in enumerate(names):
        assert flags[SHORTCUTS[name]][targets == k].all()


def test_shifted_split_breaks_the_shortcut():
    def own_rate(split, **kw):
        targets, flags = plan_synthetic(800, spurious=0.9, seed=0, split=split, **kw)
        own = np.array([flags[SHORTCUTS[n]][i] for i, n in enumerate(np.array(list(CLASS_PROPORTIONS))[targets])])
        return own.mean()

    assert own_rate("train") > 0.85 and own_rate("test") > 0.85
    assert own_rate("test_shifted") < 0.12  # reversed: own shortcut only at artifact_rate (0.05)
    assert own_rate("test_shifted", shift_mode="random") < 0.5


def test_artifact_flags_agree_with_the_pixels():
    clean = generate_synthetic(24, size=S, seed=4, artifacts=False)
    full = generate_synthetic(24, size=S, seed=4)
    none_flagged = ~np.any([full.extra["artifacts"][a] for a in ARTIFACTS], axis=0)
    assert none_flagged.any() and np.array_equal(full.images[none_flagged], clean.images[none_flagged])
    for name in ARTIFACTS:
        only = generate_synthetic(24, size=S, seed=4, artifacts=[name])
        flagged = only.extra["artifacts"][name]
        assert np.array_equal(flagged, full.extra["artifacts"][name])
        assert flagged.any(), name
        for i in range(24):
            changed = np.any(only.images[i] != clean.images[i], axis=-1)
            if flagged[i]:
                assert changed[clean.masks[i] == 0].sum() >= 5, (name, i)  # painted off the lesion
            else:
                assert not changed.any(), (name, i)


def test_paint_artifact_checks_its_input():
    image = np.zeros((32, 32, 3), np.float32)
    with pytest.raises(ValueError, match="unknown artifact 'tattoo'"):
        paint_artifact(np.random.default_rng(0), image, np.zeros((32, 32)), "tattoo")
    with pytest.raises(ValueError, match="float32"):
        paint_artifact(np.random.default_rng(0), image.astype(np.float64), np.zeros((32, 32)), "hair")


def test_reader_options_and_errors():
    reader = READERS.get("synthetic")
    assert reader is read_synthetic
    ds = read_synthetic(None, "val", 32, n_val=7, seed=1, spurious=0.5, classes="nevus,melanoma")
    assert len(ds) == 7 and ds.images.shape[1:] == (32, 32, 3) and ds.class_names == ["nevus", "melanoma"]
    assert len(read_synthetic(None, "test_shifted", 32, n_test=5)) == 5
    with pytest.raises(DataError, match="unknown option 'n_trian'"):
        read_synthetic(None, "train", 32, n_trian=10)
    with pytest.raises(DataError, match="unknown split 'dev'"):
        read_synthetic(None, "dev", 32)
    with pytest.raises(DataError, match="unknown class 'wart'"):
        generate_synthetic(2, size=32, class_names=["nevus", "wart"])
    with pytest.raises(DataError, match=r"spurious and artifact_rate must be in \[0, 1\]"):
        generate_synthetic(2, size=32, spurious=1.5)
    with pytest.raises(DataError, match="proportions must be 2 positive numbers"):
        generate_synthetic(2, size=32, class_names=["nevus", "melanoma"], proportions=[1.0])


def test_generation_rate_at_128px():
    # A regression guard, not a benchmark (docs/synthetic.md has the measurement): CPU time, so
    # waiting for a busy core does not count, and the best of two runs.
    generate_synthetic(5, size=128)
    best = 0.0
    for _ in range(2):
        t0 = time.process_time()
        generate_synthetic(100, size=128, start=100)
        best = max(best, 100 / (time.process_time() - t0))
    assert best > 100, f"{best:.0f} images per CPU-second"


# --- medattn synth ------------------------------------------------------------------------------

def _synth(out: Path, *extra: str) -> int:
    from medattn.commands import synth

    parser = argparse.ArgumentParser()
    synth.add_arguments(parser)
    return synth.run(parser.parse_args(["--out", str(out), "--n", "6", "--n-val", "3", "--n-test", "4",
                                        "--size", "32", "--quiet", *extra]))


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_synth_writes_the_isic2018_layout(tmp_path):
    out = tmp_path / "syn"
    assert _synth(out) == 0
    expected = {"Training": ("train", 6, "TR"), "Validation": ("val", 3, "VA"), "Test": ("test", 4, "TE"),
                "TestShifted": ("test_shifted", 4, "TS")}
    for part, (split, n, prefix) in expected.items():
        images = sorted((out / f"ISIC2018_Task3_{part}_Input").iterdir())
        assert [p.name for p in images] == [f"SYN_{prefix}_{i:07d}.png" for i in range(n)]
        rows = (out / f"ISIC2018_Task3_{part}_GroundTruth" / f"ISIC2018_Task3_{part}_GroundTruth.csv").read_text().splitlines()
        assert rows[0] == "image,nevus,melanoma,seborrheic_keratosis,basal_cell_carcinoma"
        truth = generate_synthetic(n, size=32, split=split)
        for i, row in enumerate(rows[1:]):
            cells = row.split(",")
            assert cells[0] == truth.ids[i] and sorted(cells[1:]) == ["0.0", "0.0", "0.0", "1.0"]
            assert cells[1 + truth.targets[i]] == "1.0"
            assert np.array_equal(np.asarray(Image.open(images[i])), truth.images[i])
            mask = np.asarray(Image.open(out / f"ISIC2018_Task1_{part}_GroundTruth" / f"{truth.ids[i]}_segmentation.png"))
            assert np.array_equal(mask, truth.masks[i])
        flags = (out / f"artifacts_{split}.csv").read_text().splitlines()
        assert flags[0] == "image," + ",".join(ARTIFACTS) and len(flags) == n + 1
        assert flags[1].split(",")[1:] == [str(int(truth.extra["artifacts"][a][0])) for a in ARTIFACTS]
    assert (out / "README.md").is_file() and (out / "synth.json").is_file()
    assert not list(tmp_path.glob(".syn.*"))  # the temporary folder is gone


def test_synth_same_seed_same_bytes_and_refuses_to_clobber(tmp_path):
    _synth(tmp_path / "a")
    _synth(tmp_path / "b")
    _synth(tmp_path / "c", "--seed", "1")
    a, b, c = (_hashes(tmp_path / d) for d in "abc")
    assert a == b
    assert a.keys() == c.keys() and a != c
    with pytest.raises(DataError, match="is not empty; pass --overwrite"):
        _synth(tmp_path / "a", "--seed", "1")
    assert _hashes(tmp_path / "a") == a
    assert _synth(tmp_path / "a", "--seed", "1", "--overwrite") == 0
    assert _hashes(tmp_path / "a") == c
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not written by `medattn synth`"):
        _synth(user, "--overwrite")
    assert (user / "notes.txt").read_text() == "mine"


def test_synth_folder_reads_back_with_the_isic2018_reader(tmp_path):
    pytest.importorskip("medattn.data.isic")
    from medattn.data.isic import read_isic2018

    _synth(tmp_path / "syn", "--n", "12", "--classes", "melanoma,nevus", "--proportions", "1,1")
    for split, n in (("train", 12), ("test_shifted", 4)):
        disk = read_isic2018(str(tmp_path / "syn"), split, 32, masks=True)
        mem = generate_synthetic(n, size=32, split=split, class_names=["melanoma", "nevus"], proportions=[1, 1])
        assert disk.ids == mem.ids and disk.class_names == mem.class_names
        assert np.array_equal(disk.images, mem.images) and np.array_equal(disk.targets, mem.targets)
        assert np.array_equal(disk.masks > 0, mem.masks > 0)
