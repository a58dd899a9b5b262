"""Figures of the run report (matplotlib Agg, no pyplot state): confusion matrix, ROC and
precision-recall curves per class, reliability diagram, training curves.

Each ``*_figure`` function returns a ``Figure``; ``save`` writes it as a PNG.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

from ..metrics.summary import lookup_metric

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG and free it; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    fig.clear()
    return path


def confusion_figure(cm: np.ndarray, class_names: Sequence[str], title: str = "") -> Figure:
    """Confusion matrix (rows truth, columns prediction): colour = share of the row, text = count."""
    cm = np.asarray(cm, dtype=np.int64)
    k = len(class_names)
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    # Long class names (seborrheic_keratosis) wrap at their underscores, so neighbouring labels never overlap.
    labels = [str(n).replace("_", "\n") for n in class_names]
    widest = max((len(line) for n in labels for line in n.split("\n")), default=1)
    side = max(3.2, 0.55 * k + 2.2, 0.09 * widest * k + 1.6)
    fig = new_figure(side + 0.6, side)
    ax = fig.subplots()
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{cm[i, j]}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=7 if k > 6 else 8,
                    color="white" if share[i, j] > 0.55 else "#222")
    rotate = k > 4
    ax.set_xticks(range(k), labels, rotation=45 if rotate else 0, ha="right" if rotate else "center", fontsize=8)
    ax.set_yticks(range(k), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "Confusion matrix", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    return fig


def roc_pr_figure(onehot: np.ndarray, probs: np.ndarray, class_names: Sequence[str],
                  auc: Sequence[float] | None = None, ap: Sequence[float] | None = None, title: str = "") -> Figure:
    """ROC (left) and precision-recall (right) curve of each class, one-vs-rest.

    ``onehot``: (N, K) 0/1 truth; ``probs``: (N, K). ``auc`` / ``ap`` label the legend (computed
    elsewhere, by the metrics module); classes without positives or negatives are left out.
    """
    fig = new_figure(10.5, 4.3)
    ax_roc, ax_pr = fig.subplots(1, 2)
    for c, name in enumerate(class_names):
        y = onehot[:, c] > 0.5
        if y.all() or not y.any():
            continue
        colour = PALETTE[c % len(PALETTE)]
        fpr, tpr, _ = roc_curve(y, probs[:, c])
        label = name + (f" (AUC {auc[c]:.3f})" if auc is not None and np.isfinite(auc[c]) else "")
        ax_roc.plot(fpr, tpr, color=colour, lw=1.6, label=label)
        precision, recall, _ = precision_recall_curve(y, probs[:, c])
        label = name + (f" (AP {ap[c]:.3f})" if ap is not None and np.isfinite(ap[c]) else "")
        ax_pr.step(recall, precision, where="post", color=colour, lw=1.6, label=label)
        ax_pr.axhline(y.mean(), color=colour, lw=0.8, ls=":", alpha=0.7)
    ax_roc.plot([0, 1], [0, 1], color="#999", lw=0.8, ls="--")
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
    ax_roc.set_title("ROC, one-vs-rest", fontsize=10)
    ax_pr.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01))
    ax_pr.set_title("Precision-recall (dotted: prevalence)", fontsize=10)
    for ax in (ax_roc, ax_pr):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right" if ax is ax_roc else "lower left")
        ax.set_aspect("equal")
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def reliability_figure(confidence: np.ndarray, accuracy: np.ndarray, counts: np.ndarray, edges: np.ndarray,
                       ece: float, title: str = "", xlabel: str = "confidence") -> Figure:
    """Reliability diagram: observed accuracy per confidence bin against the diagonal, the gap shaded,
    and the share of predictions per bin below. Arrays are per bin, ``edges`` has one more entry."""
    confidence, accuracy, counts, edges = map(np.asarray, (confidence, accuracy, counts, edges))
    fig = new_figure(4.6, 5.0)
    ax, ax_n = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    width = np.diff(edges)
    filled = counts > 0
    ax.bar(edges[:-1][filled], accuracy[filled], width=width[filled], align="edge", color="#4f81bd",
           edgecolor="white", label="observed accuracy")
    gap_lo = np.minimum(accuracy, confidence)[filled]
    ax.bar(edges[:-1][filled], np.abs(accuracy - confidence)[filled], bottom=gap_lo, width=width[filled],
           align="edge", facecolor="none", edgecolor="#c0504d", hatch="///", lw=0.8, label="gap to confidence")
    ax.plot([0, 1], [0, 1], color="#333", lw=0.9, ls="--", label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy")
    ax.set_title(f"{title + ': ' if title else ''}ECE = {ece:.3f}", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    total = max(int(counts.sum()), 1)
    ax_n.bar(edges[:-1], counts / total, width=width, align="edge", color="#7f7f7f", edgecolor="white")
    ax_n.set(xlabel=xlabel, ylabel="share")
    ax_n.grid(alpha=0.3, axis="y")
    return fig


def training_curves_figure(log: list[dict], select_metric: str | None = None,
                           val_metrics: Sequence[str] = ()) -> Figure:
    """One panel per loss term logged under ``train``, one for the validation metrics, one for the
    learning rate; the selected (best) epoch is marked on every panel."""
    epochs = np.array([e["epoch"] + 1 for e in log])
    terms = list(dict.fromkeys(k for e in log for k in e.get("train", {})))
    terms = ["total", *[t for t in terms if t != "total"]] if "total" in terms else terms
    if len(terms) == 2 and terms[0] == "total" and all(
            e.get("train", {}).get("total") == e.get("train", {}).get(terms[1]) for e in log):
        terms = terms[1:]  # a single loss term: its total is the same curve
    panels = [("loss", t) for t in terms]
    if val_metrics:
        panels.append(("val", None))
    if any("lr" in e for e in log):
        panels.append(("lr", None))
    cols = min(4, len(panels)) or 1
    rows = math.ceil(len(panels) / cols) or 1
    fig = new_figure(3.1 * cols, 2.5 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())
    selected = [e["epoch"] + 1 for e in log if e.get("selected")]
    for ax, (kind, name) in zip(axes, panels):
        if kind == "loss":
            ys = [_number(e.get("train", {}).get(name)) for e in log]
            ax.plot(epochs, ys, marker="o", ms=3, color="#1f77b4")
            ax.set_title(f"train {name}", fontsize=9)
        elif kind == "val":
            for i, m in enumerate(val_metrics):
                ys = [_number(lookup_metric(e.get("val", {}), m)) for e in log]
                ax.plot(epochs, ys, marker="o", ms=3, color=PALETTE[i % len(PALETTE)], label=m,
                        lw=2.2 if m == select_metric else 1.2)
            ax.set_title("validation", fontsize=9)
            ax.legend(fontsize=6)
        else:
            ax.plot(epochs, [e.get("lr", np.nan) for e in log], color="#7f7f7f")
            ax.set_title("learning rate", fontsize=9)
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        if selected:
            ax.axvline(selected[-1], color="#d62728", lw=0.8, ls="--")
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if len(epochs) <= 12:
            ax.set_xticks(epochs)
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    return fig


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) else np.nan
