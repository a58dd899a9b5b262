"""Robustness of a trained model: Gaussian noise, background swap, painted artifacts, a shifted split.

``evaluate_robustness`` runs the model over perturbed copies of a split (see
``medattn.evaluation.perturbations``) and returns, for every condition, all metrics
(``medattn.engine.evaluate.compute_metrics``: ISIC metrics for multi-class sets, CP/CR/CF1/OP/OR/OF1/mAP
for multi-label ones), the change of the headline metrics against the clean images, and the fraction
of predictions that flip. A prediction is the argmax class (multi-class) or the set of labels with
probability >= 0.5 (multi-label); it flips when it differs from the clean image's. Metrics use the
labeled images; flips count every image. With lesion masks there is also the mirror test: the metrics
from the background alone (``lesion_removed``: each lesion filled with its nearest background pixels)
and from the lesion alone (``background_removed``: the background set to one colour for the whole
split). A model that leans on the background scores well on the first. ``write_robustness`` saves the result as JSON, a markdown
table and a plot (``medattn.evaluation.robustness_plot``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.dataset import ImageDataset
from ..metrics.summary import HEADLINE, compute_metrics
from ..engine.inference import predict_proba
from ..engine.precision import Precision
from .robustness_intervals import condition_intervals
from .robustness_results import headline, robustness_table
from .perturbations import (DEFAULT_ARTIFACTS, add_artifacts, gaussian_noise, remove_background, remove_lesion,
                            swap_background)

SIGMAS: tuple[float, ...] = (0.0, 0.005, 0.01, 0.05, 0.1)
"""Noise levels of the SIBnet protocol (standard deviation on the [0, 1] image scale)."""


def predict_noisy(model: torch.nn.Module, images: np.ndarray, sigma: float, seed: int = 0, batch_size: int = 64,
                  task: str = "multiclass", precision: Precision | None = None) -> np.ndarray:
    """Probabilities (N, K) float64 of uint8 N x H x W x 3 images with N(0, sigma^2) noise on [0, 1].

    The noisy batch goes to the model as float, without rounding to uint8.
    """
    def noisy(batch: np.ndarray, start: int) -> torch.Tensor:
        return torch.from_numpy(gaussian_noise(batch, sigma, seed, offset=start)).permute(0, 3, 1, 2)

    return predict_proba(model, images, batch_size=batch_size, task=task, precision=precision, to_input=noisy)


def decisions(probs: np.ndarray, task: str, threshold: float = 0.5) -> np.ndarray:
    """Multi-class: (N,) argmax class; multi-label: (N, K) bool labels at or above ``threshold``."""
    return probs >= threshold if task == "multilabel" else np.argmax(probs, axis=1)


def flip_fraction(clean: np.ndarray, perturbed: np.ndarray, task: str) -> float:
    """Share of images whose prediction (see ``decisions``) changed; probabilities are (N, K)."""
    a, b = decisions(clean, task), decisions(perturbed, task)
    changed = (a != b).any(axis=1) if task == "multilabel" else a != b
    return float(changed.mean()) if len(changed) else float("nan")


def _condition(dataset: ImageDataset, probs: np.ndarray, clean: np.ndarray | None, names: Sequence[str],
               clean_headline: dict[str, float] | None, n_boot: int = 0, seed: int = 0) -> dict:
    lab = dataset.labeled
    metrics = compute_metrics(dataset.targets[lab], probs[lab], dataset.class_names, dataset.task)
    node = {"metrics": metrics}
    if clean is not None:
        head = headline(metrics, names)
        node["delta"] = {k: head[k] - v for k, v in clean_headline.items() if k in head}
        node["flip_fraction"] = flip_fraction(clean, probs, dataset.task)
        node["mean_abs_probability_change"] = float(np.abs(probs - clean).mean())
        if n_boot > 0:
            node["paired"] = condition_intervals(dataset.targets, clean, probs, dataset.task, dataset.class_names,
                                                 n_boot, seed)
    return node


def evaluate_robustness(model: torch.nn.Module, dataset: ImageDataset, *, sigmas: Sequence[float] = SIGMAS,
                        artifacts: Sequence[str] = DEFAULT_ARTIFACTS, shifted: ImageDataset | None = None,
                        shifted_split: str = "test_shifted", seed: int = 0, batch_size: int = 64,
                        precision: Precision | None = None, progress: bool = False, n_boot: int = 1000) -> dict:
    """Metrics of ``model`` on ``dataset`` under noise, background swap, artifacts and a shifted split.

    Args:
        model: a medattn model (``forward(x) -> logits`` on [0, 1] batches), any device.
        dataset: the split; lesion masks enable the background conditions (else they are skipped
            and ``background_note`` says why).
        sigmas: noise standard deviations on the [0, 1] scale.
        artifacts: artifact names painted outside the lesion, one condition each, plus all together.
        shifted: optional second split with the same classes (e.g. the synthetic ``test_shifted``).
        seed: seed of the noise, the donor draw and the artifacts (and of the bootstrap).
        n_boot: resamples of the paired bootstrap of each perturbed condition (``paired``: the change
            of the AUC metrics and the flip fraction with 95% intervals; 0: none).

    Returns:
        A JSON-ready dict: ``clean``, ``noise`` (one entry per sigma), ``background`` (or None),
        ``shift`` (or None); see ``docs/evaluation.md``.
    """
    task = dataset.task
    if not dataset.labeled.any():
        raise ValueError(f"{dataset.source or 'the split'} has no labeled image; robustness needs labels")
    if shifted is not None and shifted.class_names != dataset.class_names:
        raise ValueError(f"the shifted split's classes {shifted.class_names} differ from {dataset.class_names}")
    names = HEADLINE[task]
    run = lambda images: predict_proba(model, images, batch_size, task=task, precision=precision)  # noqa: E731
    steps = len(sigmas) + 1 + (len(artifacts) + 4 if dataset.masks is not None else 0) + (shifted is not None)
    bar = tqdm(total=steps, desc="robustness", disable=not progress, leave=False)

    clean_probs = run(dataset.images)
    clean = _condition(dataset, clean_probs, None, names, None)
    clean_head = headline(clean["metrics"], names)
    bar.update()
    result = {"task": task, "class_names": list(dataset.class_names), "n_images": len(dataset),
              "n_labeled": int(dataset.labeled.sum()), "seed": seed, "headline": list(names), "clean": clean,
              "noise": [], "background": None, "background_note": None, "shift": None}
    for sigma in sigmas:
        # sigma 0 is the clean split (as float): its predictions are already there.
        probs = clean_probs if sigma == 0 else predict_noisy(model, dataset.images, float(sigma), seed, batch_size,
                                                             task, precision)
        node = _condition(dataset, probs, clean_probs, names, clean_head, n_boot if sigma else 0, seed)
        result["noise"].append({"sigma": float(sigma), **node})
        bar.update()

    if dataset.masks is None:
        result["background_note"] = "the split has no lesion masks"
    else:
        # Images without a mask (masks: available) have no known background: they are left out of the
        # background conditions, which are compared with the clean predictions of the same images.
        with_mask = np.ones(len(dataset), bool) if dataset.has_mask is None else np.asarray(dataset.has_mask, bool)
        bg = dataset if with_mask.all() else dataset.subset(with_mask)
        bg_clean = clean_probs[with_mask]
        bg_head = clean_head if with_mask.all() else headline(_condition(bg, bg_clean, None, names, None)["metrics"], names)
        if not with_mask.all():
            result["background_note"] = (f"{int((~with_mask).sum())} of {len(dataset)} images have no lesion mask and "
                                         f"are left out of the background conditions")
        result["background_n_images"] = len(bg)
        groups = bg.targets if task == "multiclass" else None
        swapped, donors = swap_background(bg.images, bg.masks, seed, groups=groups)
        background = {"swap": _condition(bg, run(swapped), bg_clean, names, bg_head, n_boot, seed)}
        background["swap"]["donor_other_class"] = (
            float(np.mean(groups[donors] != groups)) if groups is not None else None)
        bar.update()
        combos = [[a] for a in artifacts] + ([list(artifacts)] if len(artifacts) > 1 else [])
        for combo in combos:
            painted = add_artifacts(bg.images, bg.masks, combo, seed)
            key = "artifact_" + ("all" if len(combo) > 1 else combo[0])
            background[key] = _condition(bg, run(painted), bg_clean, names, bg_head, n_boot, seed)
            background[key]["artifacts"] = combo
            bar.update()
        # The mirror test: what the model scores from the background alone, and from the lesion alone.
        background_only, kept = remove_lesion(bg.images, bg.masks)
        background["lesion_removed"] = _condition(bg, run(background_only), bg_clean, names, bg_head, n_boot, seed)
        background["lesion_removed"]["n_unchanged"] = kept
        bar.update()
        lesion_only, colour = remove_background(bg.images, bg.masks)
        background["background_removed"] = _condition(bg, run(lesion_only), bg_clean, names, bg_head, n_boot, seed)
        background["background_removed"]["fill_colour"] = colour.tolist()
        bar.update()
        result["background"] = background

    if shifted is not None:
        probs = run(shifted.images)
        node = _condition(shifted, probs, None, names, None)
        node["delta"] = {k: v - clean_head[k] for k, v in headline(node["metrics"], names).items() if k in clean_head}
        result["shift"] = {"split": shifted_split, "n_images": len(shifted), **node}
        bar.update()
    bar.close()
    return result


def write_robustness(result: dict, out: str | Path) -> tuple[Path, Path, Path]:
    """Write ``out`` (JSON), the table beside it (``.md``) and the plot (``.png``); returns the three paths."""
    import json

    from ..files import atomic_write_text
    from .robustness_plot import save_robustness_plot

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=1, default=float))
    md = out.with_suffix(".md")
    atomic_write_text(md, f"# Robustness ({result['n_images']} images)\n\n{robustness_table(result)}\n")
    png = save_robustness_plot(result, out.with_suffix(".png"))
    return out, md, png
