"""explain_batch / overlays / npz, flat memory over 500 images, and the `explain` and `saliency`
commands end to end on a saved run."""
from __future__ import annotations

import csv
import json

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from medattn.cli import main
from medattn.data import DataError, ImageDataset
from medattn.explain import explain_batch, iter_explanations, load_npz, save_npz, save_overlay, select_targets
from medattn.models.base import MedAttnModel


class TinyAttnNet(MedAttnModel):
    """Two strided convs, a sigmoid spatial attention map, GAP and a linear head (fast, with a native map)."""

    def __init__(self, num_classes: int = 3):
        super().__init__(num_classes)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU())
        self.att = nn.Conv2d(16, 1, 1)
        self.fc = nn.Linear(16, num_classes)

    def attention_maps(self, x):
        return {"att": torch.sigmoid(self.att(self.body(x)))}

    def forward(self, x):
        f = self.body(x)
        return self.fc((f * torch.sigmoid(self.att(f))).mean(dim=(2, 3)))

    @property
    def cam_layer(self):
        return self.body


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return TinyAttnNet().eval()


def hooks_left(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def test_explain_batch_maps_probabilities_and_names(tiny):
    images = np.random.default_rng(0).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    ex = explain_batch(tiny, images, task="multiclass", class_names=["a", "b", "c"], ids=list("wxyz"))
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        probs = torch.softmax(tiny(x), 1).numpy()
        att = F.interpolate(tiny.attention_maps(x)["att"], size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    att = att.numpy()
    att = (att - att.min(axis=(1, 2), keepdims=True)) / np.ptp(att, axis=(1, 2), keepdims=True)
    for i, e in enumerate(ex):
        assert e.image_id == "wxyz"[i]
        np.testing.assert_allclose(e.probabilities, probs[i], atol=1e-6)
        assert e.explained == [int(probs[i].argmax())] and e.predicted == int(probs[i].argmax())
        assert list(e.maps) == ["attn/att", "gradcam", "gradcam++", "eigencam"]
        assert e.map_classes == {"attn/att": None, "gradcam": e.predicted, "gradcam++": e.predicted, "eigencam": None}
        np.testing.assert_allclose(e.maps["attn/att"], att[i], atol=1e-5)
        for m in e.maps.values():
            assert m.shape == (32, 32) and m.dtype == np.float32 and m.min() >= 0 and m.max() <= 1
    chosen = explain_batch(tiny, images[:2], task="multiclass", class_names=["a", "b", "c"], classes=[0, 2],
                           methods=["gradcam"], native=False)
    assert list(chosen[0].maps) == ["gradcam/a", "gradcam/c"] and chosen[0].explained == [0, 2]


def test_select_targets_multiclass_and_multilabel():
    p = np.array([[0.1, 0.7, 0.6], [0.2, 0.3, 0.1]])
    assert select_targets(p, "multiclass") == [[1], [1]]
    assert select_targets(p, "multilabel") == [[1, 2], [1]]  # none >= 0.5 in row 2: its argmax
    assert select_targets(p, "multilabel", threshold=0.15) == [[1, 2], [0, 1]]
    assert select_targets(p, "multiclass", classes=[2]) == [[2], [2]]


def test_overlay_png_and_npz_round_trip(tiny, tmp_path):
    images = np.random.default_rng(1).integers(0, 256, size=(1, 40, 40, 3), dtype=np.uint8)
    e = explain_batch(tiny, images, task="multilabel", class_names=["a", "b", "c"], ids=["img"], threshold=0.0)[0]
    assert list(e.maps) == ["attn/att", "gradcam/a", "gradcam/b", "gradcam/c", "gradcam++/a", "gradcam++/b",
                            "gradcam++/c", "eigencam"]
    png = save_overlay(e, tmp_path / "o" / "img.png", ["a", "b", "c"])
    pixels = mpimg.imread(png)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 300
    path = save_npz(e, tmp_path / "img.npz", ["a", "b", "c"])
    back, names = load_npz(path)
    assert names == ["a", "b", "c"] and back.image_id == "img" and back.explained == [0, 1, 2]
    np.testing.assert_array_equal(back.image, e.image)
    np.testing.assert_allclose(back.probabilities, e.probabilities)
    assert back.map_classes == e.map_classes
    for k in e.maps:
        np.testing.assert_array_equal(back.maps[k], e.maps[k])
    with np.load(path) as d:
        assert d["maps"].shape == (8, 40, 40) and list(d["map_classes"]) == [-1, 0, 1, 2, 0, 1, 2, -1]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def test_memory_stays_flat_over_500_images(tiny, tmp_path):
    images = np.random.default_rng(2).integers(0, 256, size=(500, 32, 32, 3), dtype=np.uint8)
    rss, n = {}, 0
    for e in iter_explanations(tiny, images, [f"i{i}" for i in range(500)], batch_size=25, progress=False,
                               task="multiclass", class_names=["a", "b", "c"]):
        n += 1
        if n % 100 == 0:
            save_npz(e, tmp_path / "last.npz", ["a", "b", "c"])
        if n in (100, 500):
            rss[n] = _rss_mb()
    assert n == 500
    assert rss[500] - rss[100] < 20.0, rss
    assert hooks_left(tiny) == 0
    assert all(p.grad is None for p in tiny.parameters())


# ----------------------------------------------------------------------------- commands end to end

CLASSES = ["nevus", "melanoma", "seborrheic_keratosis", "basal_cell_carcinoma"]  # run_dir's (conftest.py)


def _write_images(folder, n, size=80):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, size=(size, size + 10, 3), dtype=np.uint8)).save(folder / f"im{i}.png")
    return folder


def test_explain_command_writes_overlays_arrays_and_predictions(run_dir, tmp_path, capsys):
    imgs = _write_images(tmp_path / "imgs", 3)
    out = tmp_path / "out"
    assert main(["explain", str(run_dir), str(imgs), "--out", str(out), "--batch-size", "2"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["explain.json", "im0.npz", "im0.png", "im1.npz", "im1.png",
                                                     "im2.npz", "im2.png", "predictions.csv"]
    with open(out / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["image_id"] for r in rows] == ["im0", "im1", "im2"]
    e, names = load_npz(out / "im1.npz")
    assert names == CLASSES and e.image.shape == (64, 64, 3)
    assert {"attn/M", "attn/head_1", "gradcam", "gradcam++", "eigencam"} <= set(e.maps)
    assert rows[1]["predicted"] == CLASSES[e.predicted]
    assert float(rows[1][CLASSES[0]]) == pytest.approx(e.probabilities[0], abs=1e-6)
    assert sum(float(rows[1][c]) for c in CLASSES) == pytest.approx(1.0, abs=1e-5)

    # --class by name, one file, no PNG; then --resume leaves finished images alone
    out2 = tmp_path / "out2"
    assert main(["explain", str(run_dir), str(imgs / "im0.png"), "--out", str(out2), "--class", "melanoma",
                 "--no-png", "--cams", "gradcam"]) == 0
    e, _ = load_npz(out2 / "im0.npz")
    assert e.explained == [1] and set(e.maps) - {m for m in e.maps if m.startswith("attn/")} == {"gradcam"}
    stamp = (out / "im0.npz").stat().st_mtime_ns
    _write_images(imgs, 4)  # adds im3
    capsys.readouterr()
    assert main(["explain", str(run_dir), str(imgs), "--out", str(out), "--resume", "--no-png"]) == 0
    assert "3 image(s) already explained" in capsys.readouterr().out
    assert (out / "im0.npz").stat().st_mtime_ns == stamp and (out / "im3.npz").is_file()
    assert not (out / "im3.png").exists()
    with open(out / "predictions.csv") as f:
        assert [r["image_id"] for r in csv.DictReader(f)] == ["im0", "im1", "im2", "im3"]


def test_explain_command_reports_bad_inputs_before_work(run_dir, tmp_path, capsys):
    imgs = _write_images(tmp_path / "imgs", 1)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    rc = main(["explain", str(run_dir), str(imgs), str(tmp_path / "nope.png"), str(tmp_path / "notes.txt"),
               str(tmp_path / "broken.png"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "no such file or folder [1]" in err and "nope.png" in err
    assert "not an image file name [1]" in err and "unreadable image [1]" in err and "broken.png" in err
    assert not (tmp_path / "o").exists()
    rc = main(["explain", str(run_dir), str(imgs), "--out", str(tmp_path / "o"), "--class", "wart"])
    assert rc == 2 and "--class 'wart' is not one of the run's classes: nevus, melanoma" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["explain", str(run_dir), str(imgs), "--out", str(tmp_path / "o"), "--cams", "gradcam,gradcm"])
    assert exit_info.value.code == 2
    assert "argument --cams: unknown CAM method(s) 'gradcm'; choose from gradcam" in capsys.readouterr().err


def test_saliency_command_scores_every_map_against_the_masks(run_dir, tmp_path):
    out = tmp_path / "sal.json"
    assert main(["saliency", str(run_dir), "--data-format", "synthetic", "--split", "test", "--bootstrap", "50",
                 "--out", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["n_images"] == 5 and summary["n_scored"] == 5 and summary["split"] == "test"
    with open(out.with_suffix(".csv")) as f:
        rows = list(csv.DictReader(f))
    maps = list(summary["maps"])
    assert {"attn/M", "gradcam", "gradcam++", "eigencam"} <= set(maps)
    assert len(rows) == 5 * len(maps) * 2
    assert {r["binarization"] for r in rows} == {"otsu", "convex_hull"}
    for r in rows:
        assert 0.0 <= float(r["dice"]) <= 1.0 and 0.0 <= float(r["hd95_pct"]) <= 100.0
        assert float(r["pointing_game"]) in (0.0, 1.0) and 0.0 <= float(r["energy_inside"]) <= 1.0
    node = summary["maps"]["gradcam"]
    dice = [float(r["dice"]) for r in rows if r["map"] == "gradcam" and r["binarization"] == "otsu"]
    assert node["otsu"]["dice"]["mean"] == pytest.approx(np.mean(dice))
    assert node["otsu"]["dice"]["ci95"][0] <= node["otsu"]["dice"]["mean"] <= node["otsu"]["dice"]["ci95"][1]
    assert set(node["continuous"]) == {"ssim", "pointing_game", "energy_inside"}


def test_saliency_command_writes_the_numbers_of_the_reference_pipeline(run_dir, tmp_path):
    """The CSV of `medattn saliency` (CAMs sharing one pass, masks prepared once) holds, value for value,
    what the straightforward pipeline gives: a forward for the probabilities, one pytorch-grad-cam call
    per method, the reference metrics of saliency_reference.py."""
    import argparse

    from saliency_reference import reference_rows

    from medattn.commands._common import load_run_and_split

    out = tmp_path / "sal.json"
    assert main(["saliency", str(run_dir), "--data-format", "synthetic", "--split", "test", "--bootstrap", "0",
                 "--batch-size", "2", "--out", str(out)]) == 0
    with open(out.with_suffix(".csv")) as f:
        got = list(csv.DictReader(f))
    args = argparse.Namespace(run_dir=str(run_dir), checkpoint="best", data_format="synthetic", data_root=None,
                              overrides=[], split="test")
    run, _, data = load_run_and_split(args)
    assert all(data.masks[i].any() for i in range(len(data)))  # every image is scored
    want = reference_rows(run.model, [data.images[i] for i in range(len(data))], list(data.ids), data.masks,
                          task=run.task, class_names=run.class_names, methods=["gradcam", "gradcam++", "eigencam"],
                          batch_size=2)
    assert len(got) == len(want) == 5 * len({r["map"] for r in want}) * 2
    assert [{k: str(v) for k, v in r.items()} for r in want] == got  # the CSV's text: every digit


def test_saliency_mask_checks_and_per_class_references():
    from medattn.commands.saliency import check_masks, reference_masks

    data = ImageDataset(np.zeros((2, 8, 8, 3), np.uint8), np.array([0, 1]), ["a", "b"], ["p", "q"], source="x.csv")
    with pytest.raises(DataError, match="x.csv has no lesion masks; `medattn saliency` needs a data set with masks"):
        check_masks(data)
    per_class = np.zeros((1, 2, 4, 4), np.uint8)
    per_class[0, 0, 0, 0] = per_class[0, 1, 3, 3] = 255
    refs = reference_masks(per_class, 0, {"gradcam/b": 1, "attn/M": None})
    np.testing.assert_array_equal(refs["gradcam/b"], per_class[0, 1])
    np.testing.assert_array_equal(refs["attn/M"], per_class[0].max(axis=0))


@pytest.mark.realdata
def test_explain_real_full_size_jpegs(run_dir, shared_data, tmp_path):
    folder = shared_data / "isic_fullsize_samples"
    out = tmp_path / "real"
    assert main(["explain", str(run_dir), str(folder), "--out", str(out), "--no-png"]) == 0
    with open(out / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["image_id"] for r in rows] == [f"ISIC_000000{i}" for i in range(5)]
    e, _ = load_npz(out / "ISIC_0000000.npz")
    assert e.image.shape == (64, 64, 3) and e.image.std() > 5  # a real, resized photograph
    assert all(m.shape == (64, 64) for m in e.maps.values())
