"""Thresholds chosen on validation for F1/recall/precision, and temperature scaling with ECE."""
import numpy as np
import pytest
import torch
from scipy.special import softmax

from medattn.data.dataset import ImageDataset
from medattn.engine.evaluate import evaluate_split
from medattn.metrics.classification import binary_task_metrics
from medattn.metrics.temperature import fit_temperature, scale_probabilities, temperature_report
from medattn.metrics.thresholds import class_thresholds, metrics_at_thresholds

NAMES = ["melanoma", "seborrheic_keratosis", "nevus"]


def _overconfident(n: int, t_true: float, seed: int):
    """Labels drawn from softmax(z / t_true), probabilities reported as softmax(z): T = t_true fits."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3, (n, 3))
    y = np.array([rng.choice(3, p=row) for row in softmax(z / t_true, axis=1)])
    return y, softmax(z, axis=1)


def test_temperature_recovers_the_scale_that_generated_the_labels():
    y, p = _overconfident(6000, 2.0, 0)
    assert fit_temperature(y, p) == pytest.approx(2.0, rel=0.08)


def test_scaling_keeps_the_argmax_and_t1_is_the_identity():
    _, p = _overconfident(200, 1.0, 1)
    np.testing.assert_allclose(scale_probabilities(p, 1.0), p, atol=1e-9)
    assert (scale_probabilities(p, 3.0).argmax(1) == p.argmax(1)).all()


def test_temperature_fitted_on_val_lowers_test_ece_and_nll():
    (yv, pv), (yt, pt) = _overconfident(3000, 2.5, 2), _overconfident(3000, 2.5, 3)
    rep = temperature_report(yv, pv, yt, pt, "val")
    assert rep["temperature"] > 1.5 and rep["fit_split"] == "val"
    assert rep["ece_scaled"] < rep["ece"] / 2 and rep["nll_scaled"] < rep["nll"]


def test_thresholds_on_val_maximise_the_rule_and_are_applied_unchanged():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 400)
    p = softmax(rng.normal(0, 1, (400, 3)) + 1.5 * np.eye(3)[y] * np.array([0.4, 1.0, 2.0]), axis=1)
    chosen = class_thresholds(y, p, NAMES, "f1")
    for c, name in enumerate(NAMES):  # no other cut of the scores gives a higher F1 on these data
        best = binary_task_metrics(y == c, p[:, c], chosen[name])["f1"]
        for t in np.unique(p[:, c])[::7]:
            assert binary_task_metrics(y == c, p[:, c], t)["f1"] <= best + 1e-12
    at = metrics_at_thresholds(y, p, NAMES, chosen, "f1", "val")
    assert at["per_class"]["melanoma"]["threshold"] == chosen["melanoma"]
    assert at["macro_f1"] == pytest.approx(np.mean([at["per_class"][c]["f1"] for c in NAMES]))
    youden = class_thresholds(y, p, NAMES, "youden")
    assert youden != chosen
    with pytest.raises(ValueError, match="threshold rule must be one of f1, youden"):
        class_thresholds(y, p, NAMES, "roc")


class _Colour(torch.nn.Module):
    """Logits from the mean colour of the image: a model predict_proba can run."""

    num_classes, task = 3, "multiclass"

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(8.0))

    def forward(self, x):
        return self.scale * x.mean(dim=(2, 3))


def _set(n: int, seed: int) -> ImageDataset:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    images = rng.integers(0, 120, (n, 8, 8, 3), dtype=np.uint8)
    images[np.arange(n), :, :, y] += rng.integers(0, 100, n, dtype=np.uint8)[:, None, None]
    return ImageDataset(images, y.astype(np.int64), NAMES, [f"i{seed}_{i}" for i in range(n)])


def test_evaluate_split_reports_val_thresholds_and_calibration_for_multiclass():
    test, val = _set(120, 5), _set(80, 6)
    metrics, probs = evaluate_split(_Colour(), test, NAMES, "multiclass", channels_last=False, threshold_data=val,
                                    threshold_rule="youden")
    at, cal = metrics["at_val_thresholds"], metrics["calibration"]
    assert at["rule"] == "youden" and at["split"] == "val" and set(at["thresholds"]) == set(NAMES)
    assert 0 <= at["macro_f1"] <= 1 and cal["temperature"] > 0
    plain, _ = evaluate_split(_Colour(), test, NAMES, "multiclass", channels_last=False)
    assert "at_val_thresholds" not in plain and plain["macro_auc"] == metrics["macro_auc"]
