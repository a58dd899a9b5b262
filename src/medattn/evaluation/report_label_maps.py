"""Per-label maps of a multi-label run for its report: every label's map on a few test images, and
how distinct the labels' maps are (``medattn.explain.label_maps``).

A model with a map per label (class_query, IBCA) shows them natively (``attn/mha_<k>``, ``attn/gm_<k>``);
every model, the plain backbone included, gets Grad-CAM of each label. Needs the run's weights and
data; when either cannot be read the section says why instead.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import report_figures as F
from . import report_html as H
from .report_overlays import _heading, _unavailable
from .report_sections import file_safe


def label_maps_section(run_dir: Path, predictions: dict, class_names: list[str], fig_dir: Path,
                       n_examples: int = 2, n_images: int = 32) -> str:
    """HTML: the maps of every label on the ``n_examples`` labeled images with the most positive
    labels, and the distinctness table over the first ``n_images`` images of the split (``test`` if
    it has predictions, else the last split)."""
    from ..engine.data import read_split
    from ..engine.run import load_run

    split = "test" if "test" in predictions else list(predictions)[-1]
    try:
        run = load_run(run_dir)
        dataset = read_split(run.config, split)
    except Exception as err:  # optional content: the report is still useful without it
        return _unavailable(f"the model or the {split} split could not be read ({type(err).__name__}: {err})")
    from ..explain import explain_batch, overlay_figure
    from ..explain.label_maps import label_map_distinctness

    k = len(class_names)
    positives = np.where(dataset.labeled, np.nan_to_num(dataset.targets).sum(axis=1), -1)
    rows = [int(i) for i in np.argsort(-positives, kind="stable")[:n_examples] if positives[i] >= 0]
    figs = []
    explanations = explain_batch(run.model, dataset.images[rows], task="multilabel", class_names=class_names,
                                 ids=[dataset.ids[i] for i in rows], methods=("gradcam",),
                                 targets=[list(range(k))] * len(rows))
    for row, e in zip(rows, explanations):
        name = f"label_maps_{file_safe(split)}_{file_safe(e.image_id)}.png"
        truth = ", ".join(c for c, t in zip(class_names, dataset.targets[row]) if t == 1) or "none"
        fig = overlay_figure(e, class_names)
        fig.suptitle(f"{e.image_id}: true {truth}", fontsize=9)
        F.save(fig, fig_dir / name, dpi=90)
        figs.append(H.figure(name, f"{H.esc(e.image_id)}: true {H.esc(truth)}", f"per-label maps of {e.image_id}"))
    scores = label_map_distinctness(run.model, dataset.images[:n_images], class_names)
    table = H.table(["maps", "correlation", "top-20% IoU", "images"],
                    [[H.esc(fam), H.number(s["correlation"]), H.number(s["top_iou"]), str(s["n_images"])]
                     for fam, s in sorted(scores.items())])
    return (H.note("Every label's map on the images with the most positive labels (native per-label maps "
                   "attn/..., Grad-CAM per label), and how distinct the labels' maps are: the mean pairwise "
                   "Pearson correlation of an image's maps and the mean IoU of their top-20% regions, over the "
                   f"first {min(n_images, len(dataset))} {H.esc(split)} images (lower: more distinct; "
                   "1 and 1: one map for every label).")
            + _heading(split) + '<div class="figs gallery">' + "".join(figs) + "</div>" + table)
