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
from ..metrics.multilabel import tune_thresholds
from ..metrics.summary import compute_metrics, with_confidence_intervals
from ..files import atomic_write_text
from .distributed import Distributed, predict_sharded
from .inference import check_finite, predict_proba
from .precision import Precision


def evaluate_split(model: torch.nn.Module, dataset: ImageDataset, class_names: list[str], task: str, *,
                   precision: Precision | None = None, batch_size: int = 64, channels_last: bool = True,
                   tta: str = "none", n_boot: int = 0, threshold_data: ImageDataset | None = None,
                   threshold_split: str = "val", progress: bool | str = False,
                   shards: Distributed | None = None) -> tuple[dict, np.ndarray]:
    """(metrics, probabilities (N, K)) of ``model`` on ``dataset``.

    Multi-label: with ``threshold_data`` (e.g. the validation split) per-class thresholds are tuned on
    it (best F1) and the metrics at those thresholds go under ``tuned``. ``n_boot`` > 0 adds 95%
    bootstrap intervals of the headline metrics (``ci95``). ``tta`` as ``predict_proba``. ``shards``
    (under DDP): every rank predicts its slice and all predictions are gathered before any metric.
    """
    def predict(data: ImageDataset, bar: bool | str) -> np.ndarray:
        return predict_sharded(shards or Distributed(), len(data), lambda part: predict_proba(
            model, data.images[part], batch_size, task=task, precision=precision, channels_last=channels_last,
            tta=tta, progress=bar))

    probs = predict(dataset, progress)
    metrics = compute_metrics(dataset.targets, probs, class_names, task)
    if task == "multilabel" and threshold_data is not None:
        lab = threshold_data.labeled
        thresholds = tune_thresholds(threshold_data.targets[lab], predict(threshold_data, False)[lab])
        metrics["tuned"] = compute_metrics(dataset.targets, probs, class_names, task, thresholds=thresholds)
        metrics["tuned"]["thresholds"] = [float(t) for t in thresholds]
        metrics["tuned"]["threshold_split"] = threshold_split
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
