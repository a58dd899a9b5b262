"""Scoring a split with a model, and writing the results (the metrics themselves: ``medattn.metrics``).

``evaluate_split`` is the one evaluation of a split that both the trainer (after training) and
``medattn evaluate`` run: predict, compute every metric, tune multi-label thresholds on another split
where one is given, bootstrap the headline metrics. ``write_split_results`` writes
``eval_<name>.json`` and ``predictions_<name>.csv`` atomically.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import torch

from ..data.dataset import ImageDataset
from ..metrics.checklist import checklist_melanoma
from ..metrics.multilabel import tune_thresholds
from ..metrics.temperature import temperature_report
from ..metrics.thresholds import class_thresholds, metrics_at_thresholds
from ..metrics.summary import compute_metrics, with_confidence_intervals
from ..files import atomic_write_text
from .distributed import Distributed, predict_sharded
from .inference import check_finite, predict_proba
from .precision import Precision


def evaluate_split(model: torch.nn.Module, dataset: ImageDataset, class_names: list[str], task: str, *,
                   precision: Precision | None = None, batch_size: int = 64, channels_last: bool = True,
                   tta: str = "none", n_boot: int = 0, threshold_data: ImageDataset | None = None,
                   threshold_split: str = "val", threshold_rule: str = "f1", progress: bool | str = False,
                   shards: Distributed | None = None) -> tuple[dict, np.ndarray]:
    """(metrics, probabilities (N, K)) of ``model`` on ``dataset``.

    With ``threshold_data`` (e.g. the validation split), decisions are also made at thresholds chosen
    on it. Multi-label: per-class thresholds (best F1), metrics under ``tuned``. Multi-class: each
    class vs rest at the threshold that maximises ``threshold_rule`` ("f1" or "youden") on it, under
    ``at_val_thresholds`` (``metrics.thresholds``), and temperature scaling fitted on it with the
    ECE before and after, under ``calibration`` (``metrics.temperature``). A split that carries the
    7-point checklist (derm7pt criteria: ``extra["melanoma"]``, ``extra["seven_point_weights"]``) also
    gets the checklist's melanoma decision, under ``checklist`` (``metrics.checklist``). ``n_boot`` > 0 adds 95%
    bootstrap intervals of the headline metrics (``ci95``). ``tta`` as ``predict_proba``. ``shards``
    (under DDP): every rank predicts its slice and all predictions are gathered before any metric.
    """
    def predict(data: ImageDataset, bar: bool | str) -> np.ndarray:
        return predict_sharded(shards or Distributed(), len(data), lambda part: predict_proba(
            model, data.images[part], batch_size, task=task, precision=precision, channels_last=channels_last,
            tta=tta, progress=bar))

    probs = predict(dataset, progress)
    metrics = compute_metrics(dataset.targets, probs, class_names, task)
    if threshold_data is not None:
        lab = threshold_data.labeled
        fit_y, fit_p = threshold_data.targets[lab], predict(threshold_data, False)[lab]
        if task == "multilabel":
            thresholds = tune_thresholds(fit_y, fit_p)
            metrics["tuned"] = compute_metrics(dataset.targets, probs, class_names, task, thresholds=thresholds)
            metrics["tuned"]["thresholds"] = [float(t) for t in thresholds]
            metrics["tuned"]["threshold_split"] = threshold_split
        else:
            chosen = class_thresholds(fit_y, fit_p, class_names, threshold_rule)
            metrics["at_val_thresholds"] = {**metrics_at_thresholds(dataset.targets, probs, class_names, chosen,
                                                                    threshold_rule, threshold_split),
                                            "thresholds": chosen}
            metrics["calibration"] = temperature_report(fit_y, fit_p, dataset.targets, probs, threshold_split)
    extra = dataset.extra
    if task == "multilabel" and "melanoma" in extra and "seven_point_weights" in extra:  # derm7pt criteria
        metrics["checklist"] = checklist_melanoma(
            probs, np.asarray(extra["melanoma"]), np.asarray(extra["seven_point_weights"]),
            criteria_thresholds=np.asarray(metrics.get("tuned", {}).get("thresholds", 0.5)),
            criteria_truth=dataset.targets, threshold=float(extra.get("seven_point_threshold", 3)))
    if n_boot:
        metrics = with_confidence_intervals(metrics, dataset.targets, probs, class_names, task, n_boot=n_boot)
    metrics["tta"] = tta
    return metrics, probs


def write_split_results(json_path: str | Path, csv_path: str | Path, dataset: ImageDataset, probs: np.ndarray,
                        class_names: list[str], metrics: dict) -> None:
    """Write the metrics to ``json_path`` and the predictions (``write_predictions_csv``) to ``csv_path``."""
    Path(json_path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json_path, json.dumps(metrics, indent=1, default=float))
    write_predictions_csv(csv_path, dataset, probs, class_names)


def write_predictions_csv(path: str | Path, dataset: ImageDataset, probs: np.ndarray, class_names: list[str]) -> None:
    """ISIC-style CSV of a dataset's predictions (see ``write_prediction_rows``)."""
    write_prediction_rows(path, dataset.ids, probs, dataset.onehot(), class_names)


def write_prediction_rows(path: str | Path, ids: list[str], probs: np.ndarray, truth: np.ndarray,
                          class_names: list[str]) -> None:
    """``image``, one probability column per class, then ``true_<class>`` columns; written atomically
    (NaN or infinite probabilities are refused, see ``check_finite``)."""
    check_finite(probs, ids)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(["image", *class_names, *[f"true_{c}" for c in class_names]])
    for i, image_id in enumerate(ids):
        w.writerow([image_id, *[f"{p:.6f}" for p in probs[i]], *[f"{t:g}" for t in truth[i]]])
    atomic_write_text(path, buf.getvalue())
