"""Robustness evaluation: metrics per noise level, background swap, artifacts, shifted split, outputs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from medattn.data import ImageDataset
from medattn.metrics.summary import compute_metrics
from medattn.evaluation.perturbations import gaussian_noise
from medattn.evaluation.robustness import evaluate_robustness, flip_fraction, predict_noisy, write_robustness
from medattn.evaluation.robustness_results import robustness_table

SIZE = 32


class RegionModel(nn.Module):
    """Logits = 10 x the mean of each colour channel over a fixed region: the disc centre ("lesion"),
    its centre pixel ("pixel") or the four corners ("background"). A known shortcut or invariance."""

    def __init__(self, region: str):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))
        self.num_classes = 3
        c = SIZE // 2
        sel = torch.zeros(SIZE, SIZE, dtype=torch.bool)
        if region == "lesion":
            sel[c - 3:c + 3, c - 3:c + 3] = True
        elif region == "pixel":
            sel[c, c] = True
        else:
            for rs in (slice(0, 4), slice(-4, None)):
                for cs in (slice(0, 4), slice(-4, None)):
                    sel[rs, cs] = True
        self.register_buffer("sel", sel)

    def forward(self, x):
        return self.scale * x[:, :, self.sel].mean(dim=2)


def coloured_set(n: int = 24, seed: int = 0, background_follows_class: bool = True) -> ImageDataset:
    """Class c: lesion bright in channel c; background bright in channel c too (the shortcut) or in
    a random channel."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    mask = ((yy - SIZE // 2) ** 2 + (xx - SIZE // 2) ** 2 <= 8**2).astype(np.uint8)
    targets = np.arange(n) % 3
    images = np.full((n, SIZE, SIZE, 3), 40, np.uint8)
    for i, c in enumerate(targets):
        bg = c if background_follows_class else rng.integers(0, 3)
        images[i, :, :, bg] = 160
        images[i][mask != 0] = 40
        images[i][mask != 0, c] = 220
    return ImageDataset(images, targets.astype(np.int64), ["a", "b", "c"], [f"im{i}" for i in range(n)],
                        masks=np.repeat(mask[None] * 255, n, axis=0))


def no_artifacts(monkeypatch):
    from medattn.data import synthetic

    monkeypatch.setattr(synthetic, "paint_artifact", lambda rng, image, mask, name: image, raising=False)


def test_flip_fraction_by_hand():
    clean = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    pert = np.array([[0.8, 0.2], [0.7, 0.3], [0.4, 0.6], [0.1, 0.9]])
    assert flip_fraction(clean, pert, "multiclass") == 0.5
    # multi-label: an image flips when any label crosses 0.5
    assert flip_fraction(clean, pert, "multilabel") == 0.5
    assert flip_fraction(clean, np.array([[0.9, 0.6], *pert[1:]]), "multilabel") == 0.75


def test_noisy_predictions_match_a_direct_computation():
    model = RegionModel("lesion").eval()
    data = coloured_set(5)
    probs = predict_noisy(model, data.images, 0.05, seed=3, batch_size=2)
    x = torch.from_numpy(gaussian_noise(data.images, 0.05, seed=3)).permute(0, 3, 1, 2)
    with torch.no_grad():
        expected = torch.softmax(model(x), dim=1).double().numpy()
    np.testing.assert_allclose(probs, expected, rtol=0, atol=1e-12)


def test_lesion_model_is_invariant_to_background_shift_and_shortcut_model_is_not(monkeypatch):
    no_artifacts(monkeypatch)
    data = coloured_set(24)
    lesion = evaluate_robustness(RegionModel("lesion"), data, sigmas=(0.0, 0.1), artifacts=("ruler",), seed=1)
    shortcut = evaluate_robustness(RegionModel("background"), data, sigmas=(0.0,), artifacts=(), seed=1)

    assert lesion["clean"]["metrics"]["balanced_accuracy"] == 1.0
    swap = lesion["background"]["swap"]
    assert swap["flip_fraction"] == 0.0 and swap["delta"]["balanced_accuracy"] == 0.0
    assert swap["donor_other_class"] == 1.0
    assert lesion["background"]["artifact_ruler"]["mean_abs_probability_change"] == 0.0  # painter is a no-op
    # Shortcut model: perfect on clean images (backgrounds follow the class), and every donor comes
    # from another class, so the swapped background points every image to the donor's class.
    assert shortcut["clean"]["metrics"]["balanced_accuracy"] == 1.0
    s = shortcut["background"]["swap"]
    assert s["flip_fraction"] == 1.0 and s["metrics"]["balanced_accuracy"] == 0.0
    assert s["delta"]["balanced_accuracy"] == -1.0


def test_mirror_test_background_alone_and_lesion_alone(monkeypatch):
    no_artifacts(monkeypatch)
    data, unrelated = coloured_set(24), coloured_set(24, seed=2, background_follows_class=False)
    lesion = evaluate_robustness(RegionModel("lesion"), unrelated, sigmas=(0.0,), artifacts=(), seed=1)["background"]
    shortcut = evaluate_robustness(RegionModel("background"), data, sigmas=(0.0,), artifacts=(), seed=1)["background"]
    # The lesion model, where backgrounds say nothing of the class: from the background alone (the
    # lesion filled with background pixels) it guesses, from the lesion alone it is still perfect...
    assert lesion["lesion_removed"]["metrics"]["balanced_accuracy"] < 0.7
    assert lesion["lesion_removed"]["flip_fraction"] > 0.3
    assert lesion["background_removed"]["metrics"]["balanced_accuracy"] == 1.0
    assert lesion["background_removed"]["flip_fraction"] == 0.0
    # ... and the background shortcut the other way round.
    assert shortcut["lesion_removed"]["metrics"]["balanced_accuracy"] == 1.0
    assert shortcut["lesion_removed"]["flip_fraction"] == 0.0 and shortcut["lesion_removed"]["n_unchanged"] == 0
    gone = shortcut["background_removed"]["metrics"]  # every image looks the same to it: a three-way tie
    assert gone["macro_auc"] == 0.5 and gone["n_undecided"] == 24 and gone["balanced_accuracy"] == 0.0
    # One fill colour for the split: the mean background colour (channel c at 160 for a third of the images).
    assert shortcut["background_removed"]["fill_colour"] == [80, 80, 80]


def test_every_noise_level_has_all_metrics_and_sigma_zero_equals_clean(monkeypatch):
    no_artifacts(monkeypatch)
    data = coloured_set(24)
    model = RegionModel("pixel")
    result = evaluate_robustness(model, data, sigmas=(0.0, 0.01, 0.5), artifacts=(), seed=2)
    assert [n["sigma"] for n in result["noise"]] == [0.0, 0.01, 0.5]
    zero = result["noise"][0]
    assert zero["metrics"] == result["clean"]["metrics"] and zero["flip_fraction"] == 0.0
    assert set(zero["delta"]) == set(result["headline"]) and all(v == 0.0 for v in zero["delta"].values())
    # Each level's metrics are the metrics of that level's probabilities, recomputed independently.
    probs = predict_noisy(model, data.images, 0.5, seed=2)
    assert result["noise"][2]["metrics"] == compute_metrics(data.targets, probs, data.class_names, "multiclass")
    # One pixel, channels 0.7 apart: sigma 0.01 moves no prediction, sigma 0.5 moves many.
    assert result["noise"][1]["flip_fraction"] == 0.0 and result["noise"][2]["flip_fraction"] > 0.2
    assert result["noise"][2]["delta"]["accuracy"] < 0
    assert set(result["noise"][2]["metrics"]) >= {"balanced_accuracy", "macro_auc", "per_class", "confusion_matrix"}


def test_unlabeled_images_count_for_flips_not_metrics_and_shift_delta(monkeypatch):
    no_artifacts(monkeypatch)
    data = coloured_set(24)
    data.targets[:3] = -1
    shifted = coloured_set(12, seed=5, background_follows_class=False)
    result = evaluate_robustness(RegionModel("background"), data, sigmas=(0.0,), artifacts=(), shifted=shifted)
    assert result["n_labeled"] == 21 and result["clean"]["metrics"]["n"] == 21
    shift = result["shift"]
    assert shift["split"] == "test_shifted" and shift["n_images"] == 12
    clean_ba = result["clean"]["metrics"]["balanced_accuracy"]
    assert shift["delta"]["balanced_accuracy"] == pytest.approx(shift["metrics"]["balanced_accuracy"] - clean_ba)
    assert shift["metrics"]["balanced_accuracy"] < 0.9


def test_no_masks_skips_background_with_a_reason():
    data = coloured_set(9)
    data.masks = None
    result = evaluate_robustness(RegionModel("lesion"), data, sigmas=(0.0,))
    assert result["background"] is None and result["background_note"] == "the split has no lesion masks"
    data.targets[:] = -1
    with pytest.raises(ValueError, match="has no labeled image"):
        evaluate_robustness(RegionModel("lesion"), data)


def test_outputs_json_table_and_plot(tmp_path, monkeypatch):
    no_artifacts(monkeypatch)
    data = coloured_set(12)
    result = evaluate_robustness(RegionModel("background"), data, sigmas=(0.0, 0.05), artifacts=("ruler", "ink"),
                                 shifted=coloured_set(6, 3, False))
    json_path, md, png = write_robustness(result, tmp_path / "r" / "robustness_test.json")
    loaded = json.loads(json_path.read_text())
    assert loaded["noise"][1]["sigma"] == 0.05 and set(loaded["background"]) == {
        "swap", "artifact_ruler", "artifact_ink", "artifact_all", "lesion_removed", "background_removed"}
    table = md.read_text()
    rows = [ln for ln in table.splitlines() if ln.startswith("| ")]
    assert [r.split(" | ")[0] for r in rows[1:]] == [
        "| clean", "| noise sigma=0", "| noise sigma=0.05", "| background swap", "| artifact: ruler",
        "| artifact: ink", "| artifact: all", "| background alone (lesion removed)",
        "| lesion alone (background removed)", "| shifted split (test_shifted)"]
    assert "| background swap | 0.0000 (-1.0000) |" in table
    # the change of macro AUC and the flips with their paired bootstrap interval
    swap = loaded["background"]["swap"]["paired"]
    assert swap["flip_fraction"] == {"value": 1.0, "ci95": [1.0, 1.0]}
    assert swap["delta.macro_auc"]["value"] == pytest.approx(loaded["background"]["swap"]["delta"]["macro_auc"])
    assert "| 100.0% [100.0%, 100.0%] |" in table and " [-" in table.split("| background swap |")[1].splitlines()[0]
    assert "paired" not in loaded["noise"][0]  # sigma 0 is the clean split
    assert robustness_table(result) in table
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 800


def test_baseline_model_runs_through_every_condition(monkeypatch):
    import medattn

    no_artifacts(monkeypatch)
    torch.manual_seed(0)
    model = medattn.create_model("baseline", backbone="resnet10t", pretrained=False, num_classes=3)
    result = evaluate_robustness(model, coloured_set(6), sigmas=(0.0, 0.1), artifacts=("hair",), batch_size=4)
    assert len(result["noise"]) == 2 and set(result["background"]) == {"swap", "artifact_hair", "lesion_removed",
                                                                  "background_removed"}
    assert 0.0 <= result["noise"][1]["flip_fraction"] <= 1.0


def test_robustness_command_end_to_end(tmp_path, capsys):
    """`medattn robustness RUN_DIR` on a saved synthetic run: noise, painted artifacts and the shifted
    split, written as JSON (plus table and plot) next to the run; the data format comes from the run."""
    import json

    import medattn
    from medattn.cli import main
    from medattn.config import load_config
    from medattn.engine.run import save_run

    cfg = load_config("demo", ["model.backbone=resnet10t", "model.pretrained=false", "data.image_size=48",
                               "data.options.n_test=6"])
    torch.manual_seed(0)
    model = medattn.create_model("baseline", backbone="resnet10t", pretrained=False, num_classes=4)
    save_run(tmp_path, model, cfg, ["nevus", "melanoma", "seborrheic_keratosis", "basal_cell_carcinoma"], "multiclass")
    assert main(["robustness", str(tmp_path), "--sigmas", "0,0.1", "--artifacts", "ruler", "--limit", "4",
                 "--device", "cpu"]) == 0
    result = json.loads((tmp_path / "robustness_test.json").read_text())
    assert result["data_format"] == "synthetic" and result["split"] == "test" and result["n_images"] == 4
    assert [c["sigma"] for c in result["noise"]] == [0.0, 0.1] and result["noise"][0]["flip_fraction"] == 0.0
    assert result["shift"]["n_images"] == 4  # test_shifted is compared by default for the synthetic set
    assert "sigma" in capsys.readouterr().out


def test_images_without_a_mask_are_left_out_of_the_background_conditions_only(monkeypatch):
    no_artifacts(monkeypatch)
    data = coloured_set(24)
    data.has_mask = np.arange(24) >= 6  # masks: available, six images without one
    data.masks[:6] = 0
    result = evaluate_robustness(RegionModel("lesion"), data, sigmas=(0.0,), artifacts=(), seed=1)
    assert result["clean"]["metrics"]["n"] == 24  # classification scores keep every image
    assert result["background_n_images"] == 18
    assert result["background_note"] == "6 of 24 images have no lesion mask and are left out of the background conditions"
    swap = result["background"]["swap"]
    assert swap["metrics"]["n"] == 18 and swap["flip_fraction"] == 0.0 and swap["delta"]["balanced_accuracy"] == 0.0
    row = next(r for r in robustness_table(result).splitlines() if r.startswith("| background swap"))
    assert "(+0.0000)" in row and "(-" not in row  # the change against the same 18 images, not all 24
