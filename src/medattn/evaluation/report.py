"""The HTML report of a run: one self-contained page with PNG figures beside it.

``write_report(run_dir)`` reads what the run directory holds (``config.yaml``, ``classes.json``,
``metrics.jsonl``, ``predictions_<split>.csv``, ``eval_<split>.json``, ``robustness*.json``,
``saliency*.json``, ``MODEL_CARD.md``) and writes ``run_dir/report/index.html``: metrics with 95% bootstrap intervals,
confusion matrix, ROC and precision-recall curves per class, reliability diagram and ECE, training
curves of every loss term, attention overlays of right and wrong predictions (when the run's data
can be read), and the robustness and saliency results when they exist. Nothing on the page is
fetched from the network; every figure is a PNG file next to it.
"""
from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import Config
from ..metrics.summary import default_select_metric
from . import report_html as H


@dataclass
class SplitPredictions:
    """One ``predictions_<split>.csv``: ids (N), probabilities (N, K), truth (N, K) 0/1; unlabeled
    images have a row of NaN (multi-label) or of zeros (multi-class)."""

    split: str
    ids: list[str]
    probs: np.ndarray
    onehot: np.ndarray
    task: str = "multiclass"

    @property
    def labeled(self) -> np.ndarray:
        labeled = ~np.isnan(self.onehot).any(axis=1)
        return labeled if self.task == "multilabel" else labeled & (self.onehot.sum(axis=1) > 0)

    @property
    def targets(self) -> np.ndarray:
        """As ``compute_metrics`` takes them: (N,) class indices (-1 unlabeled) or the (N, K) 0/1 matrix."""
        if self.task == "multilabel":
            return self.onehot
        return np.where(self.labeled, np.argmax(np.nan_to_num(self.onehot), axis=1), -1)


def read_predictions(path: str | Path, class_names: list[str], task: str = "multiclass") -> SplitPredictions:
    """Read a prediction CSV (``image``, one column per class, ``true_<class>`` columns)."""
    path = Path(path)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{path}: empty file")
    header = rows[0]
    wanted = ["image", *class_names, *[f"true_{c}" for c in class_names]]
    missing = [c for c in wanted if c not in header]
    if missing:
        raise ValueError(f"{path}: column {missing[0]!r} is missing ({len(missing) - 1} more); expected {wanted}")
    cols = [header.index(c) for c in wanted]
    body = [r for r in rows[1:] if r]
    values = np.empty((len(body), 2 * len(class_names)))
    bad = []
    for i, r in enumerate(body):
        try:
            values[i] = [float(r[c]) for c in cols[1:]]
        except (ValueError, IndexError):
            bad.append(i + 2)
    if bad:
        raise ValueError(f"{path}: row {bad[0]} has a missing or non-numeric value ({len(bad) - 1} more rows)")
    k = len(class_names)
    split = path.stem.removeprefix("predictions_")
    return SplitPredictions(split, [r[cols[0]] for r in body], values[:, :k], values[:, k:], task)


def read_metrics_log(path: Path) -> list[dict]:
    """The epochs of ``metrics.jsonl`` (a later line for the same epoch replaces an earlier one)."""
    if not path.is_file():
        return []
    epochs: dict[int, dict] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            epochs[int(entry["epoch"])] = entry
    return [epochs[e] for e in sorted(epochs)]


def _split_order(name: str) -> tuple[int, str]:
    return ({"test": 0, "val": 2}.get(name, 1), name)


def selection(run_dir: Path, cfg: Config | None, task: str) -> tuple[str, int | None, float | None]:
    """(selection metric, 0-based best epoch, its value) from ``best.json``, else from the config."""
    best_file = run_dir / "best.json"
    meta = json.loads(best_file.read_text()) if best_file.is_file() else {}
    metric = meta.get("select_metric") or (cfg.train.select_metric if cfg else "auto")
    if metric == "auto":
        metric = default_select_metric(task)
    return metric, meta.get("epoch"), meta.get("value")


def _header_facts(run_dir: Path, cfg: Config | None, class_names: list[str], task: str, log: list[dict]) -> str:
    metric, best_epoch, value = selection(run_dir, cfg, task)
    best_text = "n/a" if best_epoch is None else f"{best_epoch + 1} ({H.esc(metric)} {H.number(value)} on val)"
    seconds = sum(float(e.get("seconds", 0.0)) for e in log)
    if cfg is None:
        setup = [("config", "config.yaml is missing")]
    else:
        options = ", ".join(f"{k}={v}" for k, v in cfg.data.options.items())
        setup = [("model", H.esc(cfg.model.name)), ("backbone", H.esc(cfg.model.backbone or "default")),
                 ("data", H.esc(f"{cfg.data.format} {cfg.data.root or ''}".strip())),
                 ("image size", H.esc(cfg.data.image_size)), ("data options", H.esc(options or "none")),
                 ("pretrained", H.esc(cfg.model.pretrained))]
    return H.facts([
        *setup, ("task", H.esc(task)), ("classes", H.esc(", ".join(class_names))),
        ("epochs run", str(len(log))), ("best epoch", best_text),
        ("training time", f"{seconds / 60:.1f} min" if log else "n/a"), ("run directory", H.esc(run_dir)),
    ])


def _result_title(kind: str, stem: str) -> str:
    """'Robustness: test' for ``robustness_test.json``; the file name when it does not follow that pattern."""
    prefix = kind.lower() + "_"
    return f"{kind}: {stem.removeprefix(prefix)}" if stem.startswith(prefix) else f"{kind} ({stem})"


def write_report(run_dir: str | Path, out: str | Path | None = None, *, n_boot: int = 1000,
                 overlays: bool = True, n_examples: int = 3) -> Path:
    """Write the HTML report of ``run_dir`` (default ``run_dir/report/index.html``); returns its path.

    ``n_boot``: bootstrap resamples for the 95% intervals of splits whose ``eval_<split>.json`` has
    none. ``overlays``: draw attention overlays of ``n_examples`` right and ``n_examples`` wrong
    predictions per split (needs the model and the run's data; left out with a note otherwise).
    """
    from .report_sections import (metrics_section, robustness_section, saliency_section, split_section,
                                  training_section)

    from ..engine.run import read_run_classes, read_run_config

    run_dir = Path(run_dir)
    class_names, task = read_run_classes(run_dir)
    cfg = read_run_config(run_dir) if (run_dir / "config.yaml").is_file() else None
    out = Path(out) if out is not None else run_dir / "report" / "index.html"
    fig_dir = out.parent
    fig_dir.mkdir(parents=True, exist_ok=True)

    log = read_metrics_log(run_dir / "metrics.jsonl")
    splits = sorted((p.stem.removeprefix("predictions_") for p in run_dir.glob("predictions_*.csv")), key=_split_order)
    predictions = {s: read_predictions(run_dir / f"predictions_{s}.csv", class_names, task) for s in splits}
    evals = {}
    for s in splits:
        path = run_dir / f"eval_{s}.json"
        evals[s] = json.loads(path.read_text()) if path.is_file() else None

    sections = [("run", "Run", _header_facts(run_dir, cfg, class_names, task, log))]
    if predictions:
        metrics = {s: split_metrics(predictions[s], evals[s], class_names, task, n_boot) for s in splits}
        sections.append(("metrics", "Metrics", metrics_section(metrics, task)))
        for s in splits:
            sections.append((f"split-{s}", f"Split: {s}", split_section(predictions[s], metrics[s], class_names,
                                                                         task, fig_dir)))
    else:
        sections.append(("metrics", "Metrics", H.note("No predictions_&lt;split&gt;.csv in the run directory: "
                                                     "run <code>medattn evaluate RUN_DIR</code> first.")))
    # Performance first (metrics, splits, robustness), then how the model was trained, then what it looks at.
    for path in sorted(run_dir.glob("robustness*.json")):
        sections.append((path.stem, _result_title("Robustness", path.stem),
                         robustness_section(json.loads(path.read_text()), fig_dir, path.stem)))
    sections.append(("training", "Training", training_section(log, selection(run_dir, cfg, task)[0], task, fig_dir)))
    if overlays and predictions:
        from .report_overlays import overlays_section

        sections.append(("attention", "Attention", overlays_section(run_dir, predictions, class_names, task,
                                                                    fig_dir, n_examples)))
        if task == "multilabel":
            from .report_label_maps import label_maps_section

            sections.append(("label-maps", "Per-label maps", label_maps_section(run_dir, predictions, class_names,
                                                                                fig_dir)))
    for path in sorted(run_dir.glob("saliency*.json")):
        sections.append((path.stem, _result_title("Saliency", path.stem),
                         saliency_section(json.loads(path.read_text()))))
    card = run_dir / "MODEL_CARD.md"
    if card.is_file():  # written by `medattn card`

        sections.append(("model-card", "Model card", H.card_html(card.read_text(encoding="utf-8"))))

    from .. import __version__

    title = f"medattn report: {run_dir.resolve().name}"
    subtitle = H.esc(f"{cfg.model.name if cfg else 'model'} on {cfg.data.format if cfg else 'data'}, "
                     f"{len(class_names)} classes, {task}")
    footer = H.esc(f"medattn {__version__} - generated {time.strftime('%Y-%m-%d %H:%M:%S')}")
    out.write_text(H.page(title, subtitle, sections, footer), encoding="utf-8")
    return out


def split_metrics(pred: SplitPredictions, stored: dict | None, class_names: list[str], task: str,
                  n_boot: int) -> dict:
    """The split's metrics: ``eval_<split>.json`` when present, else computed from the predictions;
    with ``ci95`` intervals (bootstrapped here when the stored metrics have none)."""
    from ..metrics.summary import compute_metrics, with_confidence_intervals

    lab = pred.labeled
    if not lab.any():
        return dict(stored or {})
    y = pred.targets[lab]
    metrics = dict(stored) if stored else compute_metrics(y, pred.probs[lab], class_names, task)
    if "ci95" not in metrics and n_boot:
        metrics = with_confidence_intervals(metrics, y, pred.probs[lab], class_names, task, n_boot=n_boot)
    return metrics
