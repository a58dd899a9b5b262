"""Attention overlays of right and wrong predictions for the run report.

For each split with predictions, the most confident right and the most confident wrong predictions
are explained with ``medattn.explain`` (the model's native attention maps and Grad-CAM of the
predicted class) and drawn as overlays. This needs the run's weights and data; when either cannot be
read the section says why instead (the rest of the report does not depend on it).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from . import report_figures as F
from . import report_html as H
from .report_sections import file_safe


def pick_examples(pred, task: str, n: int) -> dict[str, list[int]]:
    """Row indices of the ``n`` most confident right and ``n`` most confident wrong predictions.

    Right: argmax equals the true class (multi-class), or every label decision at 0.5 is right
    (multi-label). Confidence: the top probability (multi-class), the mean distance of the label
    probabilities from 0.5 (multi-label). Unlabeled rows are never picked.
    """
    lab = pred.labeled
    if task == "multilabel":
        right = ((pred.probs >= 0.5) == (pred.onehot > 0.5)).all(axis=1)
        confidence = np.abs(pred.probs - 0.5).mean(axis=1)
    else:
        right = np.argmax(pred.probs, axis=1) == np.argmax(pred.onehot, axis=1)
        confidence = pred.probs.max(axis=1)
    order = np.argsort(-confidence, kind="stable")
    return {"right": [int(i) for i in order if lab[i] and right[i]][:n],
            "wrong": [int(i) for i in order if lab[i] and not right[i]][:n]}


def _labels(row: np.ndarray, class_names: list[str], task: str) -> str:
    if task == "multilabel":
        return ", ".join(c for c, v in zip(class_names, row) if v >= 0.5) or "none"
    return class_names[int(np.argmax(row))]


def overlays_section(run_dir: Path, predictions: dict, class_names: list[str], task: str,
                     fig_dir: Path, n_examples: int = 3) -> str:
    """HTML of the overlays (PNG files written to ``fig_dir``), or a note saying why there are none."""
    from ..engine.data import read_split
    from ..engine.run import load_run

    try:
        run = load_run(run_dir)
    except Exception as err:  # optional content: the report is still useful without it
        return _unavailable(f"the model could not be loaded ({type(err).__name__}: {err})")
    from ..explain import explain_batch, overlay_figure  # pytorch-grad-cam imports slowly: only when needed
    parts = []
    for split, pred in predictions.items():
        picks = pick_examples(pred, task, n_examples)
        if not picks["right"] and not picks["wrong"]:
            continue
        try:
            dataset = read_split(run.config, split)
        except Exception as err:  # e.g. the data root is not on this machine
            parts.append(_heading(split) + _unavailable(
                f"the {split} split could not be read ({type(err).__name__}: {err})"))
            continue
        index = {image_id: i for i, image_id in enumerate(dataset.ids)}
        rows = [r for kind in ("right", "wrong") for r in picks[kind]]
        missing = [pred.ids[r] for r in rows if pred.ids[r] not in index]
        if missing:
            parts.append(_heading(split) + _unavailable(
                f"image {missing[0]!r} of predictions_{split}.csv is not in the {split} split "
                f"({len(missing) - 1} more)"))
            continue
        images = dataset.images[[index[pred.ids[r]] for r in rows]]
        explanations = explain_batch(run.model, images, task=task, class_names=class_names,
                                     ids=[pred.ids[r] for r in rows], methods=("gradcam",), native=True)
        figs, counts = [], {"right": 0, "wrong": 0}
        for r, e in zip(rows, explanations):
            # Tag and caption from the model's probabilities now (the CSV's may come from other weights
            # or another precision); the truth from the CSV.
            truth = _labels(pred.onehot[r], class_names, task)
            predicted = _labels(e.probabilities, class_names, task)
            kind = "right" if truth == predicted else "wrong"
            name = f"overlay_{file_safe(split)}_{kind}_{counts[kind]}.png"
            counts[kind] += 1
            fig = overlay_figure(e, class_names)
            fig.suptitle(f"true: {truth}   predicted: {predicted} ({e.probabilities.max():.2f})", fontsize=9)
            F.save(fig, fig_dir / name, dpi=100)
            caption = (f'<span class="tag {kind}">{kind}</span> {H.esc(e.image_id)}: true {H.esc(truth)}; '
                       f"predicted {H.esc(predicted)} ({e.probabilities.max():.2f})")
            figs.append(H.figure(name, caption, f"{kind} prediction {e.image_id}"))
        parts.append(_heading(split, f" ({counts['right']} right, {counts['wrong']} wrong)")
                     + '<div class="figs gallery">' + "".join(figs) + "</div>")
    if not parts:
        return H.note("No labeled predictions to explain.")
    return (H.note("The most confident right and wrong predictions of each split: the image, the model's native "
                   "attention maps (attn/...) and Grad-CAM of the predicted class, each scaled to [0, 1].")
            + "".join(parts))


def _heading(split: str, extra: str = "") -> str:
    # Split names are shown as spelled (h3 is upper case otherwise).
    return f'<h3><span class="name">{H.esc(split + extra)}</span></h3>'


def _unavailable(reason: str) -> str:
    print(f"medattn report: no attention overlays: {reason}", file=sys.stderr)
    return H.note(f"No attention overlays: {H.esc(reason)}.")
