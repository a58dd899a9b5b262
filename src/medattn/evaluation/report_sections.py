"""Sections of the run report: metrics, one section per split, training, robustness, saliency.

Each function returns the section's HTML body and writes its figures (PNG) into ``fig_dir``.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..metrics.summary import HEADLINE, headline_names, lookup_metric
from ..metrics.calibration import expected_calibration_error, reliability_curve
from . import report_figures as F
from . import report_html as H

_PER_CLASS = {
    "multiclass": [("n_positive", "n"), ("auc", "AUC"), ("ap", "AP"), ("sensitivity", "sensitivity@0.5"),
                   ("specificity", "specificity@0.5"), ("recall_argmax", "recall (argmax)"),
                   ("precision_argmax", "precision (argmax)"), ("f1_argmax", "F1 (argmax)")],
    "multilabel": [("n_positive", "n"), ("auc", "AUC"), ("ap", "AP"), ("precision", "precision"),
                   ("recall", "recall"), ("f1", "F1"), ("threshold", "threshold")],
}


def file_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def metrics_section(metrics: dict[str, dict], task: str) -> str:
    """Headline metrics (rows) of every split (columns), with 95% bootstrap intervals."""
    names = headline_names(task, list(metrics.values()))
    splits = list(metrics)
    rows = [["images scored", *[H.number(metrics[s].get("n")) for s in splits]]]
    for name in names:
        rows.append([H.esc(name), *[H.with_ci(lookup_metric(metrics[s], name), metrics[s].get("ci95", {}).get(name))
                                    for s in splits]])
    has_ci = any("ci95" in m for m in metrics.values())
    text = ("Grey brackets: 95% percentile bootstrap interval over images (resampled within each class for "
            "multi-class sets)." if has_ci else "No bootstrap intervals were computed.")
    return H.table(["metric", *splits], rows) + H.note(text)


def split_section(pred, metrics: dict, class_names: list[str], task: str, fig_dir: Path) -> str:
    """Per-class table, confusion matrix, ROC / PR curves and reliability diagram of one split."""
    lab = pred.labeled
    parts = [H.note(f"{len(pred.ids)} images, {int(lab.sum())} labeled.")]
    if not lab.any():
        return parts[0] + H.note("No labeled image: nothing to score.")
    onehot, probs = pred.onehot[lab], pred.probs[lab]
    per_class = metrics.get("per_class", {})
    cols = _PER_CLASS[task]
    rows = [[H.esc(c), *[H.number(per_class.get(c, {}).get(key)) for key, _ in cols]] for c in class_names]
    parts.append("<h3>Per class</h3>" + H.table(["class", *[label for _, label in cols]], rows))

    tag = file_safe(pred.split)
    figs = []
    if task == "multiclass":
        cm = metrics.get("confusion_matrix")
        if cm is None:
            cm = np.zeros((len(class_names),) * 2, np.int64)
            np.add.at(cm, (np.argmax(onehot, 1), np.argmax(probs, 1)), 1)
        F.save(F.confusion_figure(np.asarray(cm), class_names, f"Confusion matrix ({pred.split})"),
               fig_dir / f"confusion_{tag}.png")
        figs.append(H.figure(f"confusion_{tag}.png", "Rows: true class; columns: argmax prediction.",
                             f"confusion matrix {pred.split}"))
        y_cal, p_cal, xlabel = np.argmax(onehot, 1), probs, "confidence (top-class probability)"
    else:
        parts.append("<h3>Per-label decisions at the threshold</h3>" + _label_counts(onehot, probs, class_names,
                                                                                     per_class))
        y_cal, p_cal, xlabel = onehot.ravel(), probs.ravel(), "confidence (labels pooled)"
    ece = expected_calibration_error(y_cal, p_cal)
    curve = reliability_curve(y_cal, p_cal)
    F.save(F.reliability_figure(curve["confidence"], curve["accuracy"], curve["counts"], curve["bin_edges"], ece,
                                pred.split, xlabel), fig_dir / f"reliability_{tag}.png")
    figs.append(H.figure(f"reliability_{tag}.png", f"Reliability diagram, 15 bins; ECE = {ece:.3f}.",
                         f"reliability diagram {pred.split}"))
    auc = [per_class.get(c, {}).get("auc", np.nan) for c in class_names]
    ap = [per_class.get(c, {}).get("ap", np.nan) for c in class_names]
    F.save(F.roc_pr_figure(onehot, probs, class_names, auc, ap), fig_dir / f"roc_pr_{tag}.png")
    parts.append("<h3>Confusion and calibration</h3>" if task == "multiclass" else "<h3>Calibration</h3>")
    parts.append('<div class="figs">' + "".join(figs) + "</div>")
    parts.append("<h3>ROC and precision-recall curves</h3>" + H.figure(
        f"roc_pr_{tag}.png", "One-vs-rest per class; AUC and AP from the metrics above.", f"ROC and PR {pred.split}"))
    parts.append(_chosen_on_val(metrics, class_names))
    return "".join(parts)


def _chosen_on_val(metrics: dict, class_names: list[str]) -> str:
    """Each class vs rest at its threshold chosen on val, temperature scaling, the 7-point checklist:
    what the split's metrics hold of them."""
    parts = []
    at = metrics.get("at_val_thresholds")
    if at:
        rows = [[H.esc(c), *[H.number(at["per_class"][c].get(k)) for k in ("threshold", "f1", "recall", "precision",
                                                                          "specificity")]] for c in class_names]
        rows.append(["macro", "", *[H.number(at.get(f"macro_{k}")) for k in ("f1", "recall", "precision", "specificity")]])
        parts.append(f"<h3>Each class vs rest at thresholds chosen on {H.esc(at['split'])} ({H.esc(at['rule'])})</h3>"
                     + H.table(["class", "threshold", "F1", "recall", "precision", "specificity"], rows))
    cal = metrics.get("calibration")
    if cal:
        parts.append(H.note(f"Temperature scaling fitted on {H.esc(cal['fit_split'])}: T = {cal['temperature']:.3f}; "
                            f"ECE {cal['ece']:.3f} -> {cal['ece_scaled']:.3f}, NLL {cal['nll']:.3f} -> "
                            f"{cal['nll_scaled']:.3f} on this split."))
    checklist = metrics.get("checklist")
    if checklist:
        rows = [[H.esc(label), *[H.number((checklist.get(key) or {}).get(k)) for k in ("auc", "sensitivity", "specificity")]]
                for key, label in (("expected_score", "expected score (predicted criteria)"),
                                   ("decided_score", "decided criteria, score >= 3"),
                                   ("annotated_ceiling", "annotated criteria (ceiling)"))]
        parts.append("<h3>Melanoma by the 7-point checklist</h3>"
                     + H.table(["from", "melanoma AUC", "sensitivity", "specificity"], rows))
    return "".join(parts)


def _label_counts(onehot: np.ndarray, probs: np.ndarray, class_names: list[str], per_class: dict) -> str:
    rows = []
    for c, name in enumerate(class_names):
        thr = per_class.get(name, {}).get("threshold", 0.5)
        y, p = onehot[:, c] > 0.5, probs[:, c] >= thr
        rows.append([H.esc(name), *[str(int(v)) for v in ((y & p).sum(), (~y & p).sum(), (y & ~p).sum(),
                                                           (~y & ~p).sum())]])
    return H.table(["label", "TP", "FP", "FN", "TN"], rows)


def training_section(log: list[dict], select: str, task: str, fig_dir: Path) -> str:
    """Training curves of every loss term and the validation metrics, and the per-epoch table."""
    if not log:
        return H.note("No metrics.jsonl in the run directory.")
    val_names = [m for m in HEADLINE[task] if any(isinstance(e.get("val", {}).get(m), (int, float)) for e in log)]
    if select not in val_names and any(isinstance(lookup_metric(e.get("val", {}), select), (int, float)) for e in log):
        val_names.insert(0, select)
    F.save(F.training_curves_figure(log, select, val_names), fig_dir / "training.png")
    terms = list(dict.fromkeys(k for e in log for k in e.get("train", {})))
    rows = []
    for e in log:
        mark = " *" if e.get("selected") else ""
        rows.append([f"{e['epoch'] + 1}{mark}", *[H.number(e.get("train", {}).get(t), 4) for t in terms],
                     *[H.number(lookup_metric(e.get("val", {}), m)) for m in val_names], f"{e.get('lr', float('nan')):.2e}",
                     H.number(e.get("seconds"), 1)])
    header = ["epoch", *[f"train {t}" for t in terms], *[f"val {m}" for m in val_names], "lr", "seconds"]
    return (H.figure("training.png", "Every loss term logged during training (mean per epoch), validation "
                     "metrics and learning rate; dashed red line: the selected epoch.", "training curves")
            + "<h3>Per epoch</h3>" + H.table(header, rows)
            + H.note(f"* marks an epoch whose weights improved the selection metric ({H.esc(select)})."))


def robustness_section(result: dict, fig_dir: Path, stem: str) -> str:
    """The robustness table (change against the clean images) and plot."""
    from .robustness_results import condition_rows
    from .robustness_plot import save_robustness_plot

    names = result["headline"]
    (_, clean, _, _), *conditions = condition_rows(result)
    rows = [["clean", *[H.number(clean.get(n)) for n in names], ""]]
    for label, head, flip, delta in conditions:
        cells = [f"{H.number(head.get(n))} {H.signed(delta[n]) if n in delta else ''}" for n in names]
        rows.append([H.esc(label), *cells, "" if flip is None else f"{100 * flip:.1f}%"])
    png = f"{file_safe(stem)}.png"
    save_robustness_plot(result, fig_dir / png)
    notes = [f"{result['n_images']} images of split {H.esc(result.get('split', '?'))}; Gaussian noise on the [0, 1] "
             f"scale (seed {result['seed']}); 'flipped' = share of predictions that differ from the clean image's."]
    if result.get("background_note"):
        notes.append(("Background conditions skipped: " if result.get("background") is None else "Background conditions: ")
                     + f"{H.esc(result['background_note'])}; each change is against the clean predictions of the same images.")
    caption = "Metrics and flipped predictions against the noise level"
    if result.get("background"):
        caption += f"; change of {H.esc(names[0])} and flipped predictions under the background conditions"
    if result.get("shift"):
        caption += f"; change of {H.esc(names[0])} on the shifted split"
    return (H.table(["condition", *names, "flipped"], rows) + "".join(H.note(n) for n in notes)
            + H.figure(png, caption + ".", "robustness plot"))


_SALIENCY_GROUPS = [("convex_hull", "convex hull of the map", [("dice", "Dice"), ("iou", "IoU"),
                                                                  ("hd95_pct", "HD95 %")]),
                    ("otsu", "Otsu threshold", [("dice", "Dice"), ("hd95_pct", "HD95 %")]),
                    ("continuous", "continuous map", [("ssim", "SSIM"), ("pointing_game", "pointing game"),
                                                      ("energy_inside", "energy inside")])]


def saliency_section(summary: dict) -> str:
    """Agreement of each map with the lesion masks (means with 95% intervals)."""
    maps = summary.get("maps", {})
    cols = [(group, metric) for group, _, metrics in _SALIENCY_GROUPS for metric, _ in metrics]
    rows = []
    for name, node in maps.items():
        cells = []
        for group, metric in cols:
            v = (node.get(group) or {}).get(metric)
            cells.append("n/a" if v is None else H.with_ci(v.get("mean"), v.get("ci95")))
        rows.append([H.esc(name), *cells])
    header = ["map", *[label for _, _, metrics in _SALIENCY_GROUPS for _, label in metrics]]
    groups = [("", 1), *[(title, len(metrics)) for _, title, metrics in _SALIENCY_GROUPS]]
    text = (f"{summary.get('n_scored', '?')} images of split {H.esc(summary.get('split', '?'))} scored against their "
            f"lesion masks; maps explain the {H.esc(summary.get('explain_class', 'predicted'))} class. Convex hull of "
            f"the map >= {summary.get('hull_threshold', 0.5)}; HD95 in % of the image diagonal; grey: 95% bootstrap "
            "interval over images.")
    return H.table(header, rows, groups=groups, stacked=True) + H.note(text)
