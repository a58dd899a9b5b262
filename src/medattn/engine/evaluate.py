"""Scoring a split with a model and writing its results (the metrics themselves: ``medattn.metrics``)."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ..data.dataset import ImageDataset

def write_predictions_csv(path: str | Path, dataset: ImageDataset, probs: np.ndarray, class_names: list[str]) -> None:
    """ISIC-style CSV of a dataset's predictions (see ``write_prediction_rows``)."""
    write_prediction_rows(path, dataset.ids, probs, dataset.onehot(), class_names)


def write_prediction_rows(path: str | Path, ids: list[str], probs: np.ndarray, truth: np.ndarray,
                          class_names: list[str]) -> None:
    """``image``, one probability column per class, then ``true_<class>`` columns; written atomically."""
    from .checkpoint import atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(["image", *class_names, *[f"true_{c}" for c in class_names]])
    for i, image_id in enumerate(ids):
        w.writerow([image_id, *[f"{p:.6f}" for p in probs[i]], *[f"{t:g}" for t in truth[i]]])
    atomic_write_text(path, buf.getvalue())
