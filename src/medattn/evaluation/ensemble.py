"""Average the saved predictions of several runs on one split (a seed or method ensemble).

Each member is a run directory that already holds ``predictions_<split>.csv`` (written by ``medattn
evaluate``; ``predictions_<split>_tta-<mode>.csv`` with test-time augmentation). The members must
agree on the class names, the task, the images and their truth; rows are matched by image id, so
their order may differ. The ensemble's probability is the plain mean of the members' probabilities,
the usual way ISIC challenge entries combine models. Nothing is re-run: an ensemble of finished runs
costs a CSV read per member.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..engine.run import read_run_classes
from ..errors import DataError, RunError
from .report import SplitPredictions, read_predictions


def predictions_name(split: str, tta: str = "none") -> str:
    """The stem ``medattn evaluate`` gives a split's files: ``test`` or ``test_tta-dihedral``."""
    return split if tta == "none" else f"{split}_tta-{tta}"


def read_member(run_dir: str | Path, split: str, tta: str = "none") -> tuple[SplitPredictions, list[str]]:
    """(predictions, class names) of one run's split; a clear error when they were never written."""
    run_dir = Path(run_dir)
    class_names, task = read_run_classes(run_dir)
    name = predictions_name(split, tta)
    path = run_dir / f"predictions_{name}.csv"
    if not path.is_file():
        tta_flag = "" if tta == "none" else f" --tta {tta}"
        raise RunError(f"{path} is missing: run `medattn evaluate {run_dir} --split {split}{tta_flag}` first")
    return read_predictions(path, class_names, task), class_names


def aligned_predictions(run_dirs: list[str | Path], split: str, tta: str = "none"
                        ) -> tuple[SplitPredictions, list[np.ndarray], list[str]]:
    """Every run's probabilities on ``split`` in the first run's row order.

    Returns (the first run's predictions, one (N, K) array per run, class names). Raises `DataError`
    naming the run and the first image where classes, task, images or truth disagree.
    """
    first, class_names = read_member(run_dirs[0], split, tta)
    position = {image: i for i, image in enumerate(first.ids)}
    aligned = [first.probs.astype(np.float64)]
    for run_dir in run_dirs[1:]:
        member, names = read_member(run_dir, split, tta)
        if names != class_names or member.task != first.task:
            raise DataError(f"{run_dir}: classes {names} ({member.task}) differ from {run_dirs[0]}'s "
                            f"{class_names} ({first.task})")
        missing = sorted(set(first.ids) - set(member.ids))
        extra = sorted(set(member.ids) - set(first.ids))
        if missing or extra:
            example = f"{missing[0]!r} is missing" if missing else f"{extra[0]!r} is not in {run_dirs[0]}"
            raise DataError(f"{run_dir}: its {split} images differ from {run_dirs[0]}'s: {example} "
                            f"({len(missing)} missing, {len(extra)} extra)")
        order = np.array([position[image] for image in member.ids])
        truth = np.empty_like(member.onehot)
        truth[order] = member.onehot
        differs = ~np.all((truth == first.onehot) | (np.isnan(truth) & np.isnan(first.onehot)), axis=1)
        if differs.any():
            raise DataError(f"{run_dir}: the truth of image {first.ids[int(np.flatnonzero(differs)[0])]!r} differs "
                            f"from {run_dirs[0]}'s ({int(differs.sum())} images differ)")
        probs = np.empty(member.probs.shape, np.float64)
        probs[order] = member.probs
        aligned.append(probs)
    return first, aligned, class_names


def average_predictions(run_dirs: list[str | Path], split: str, tta: str = "none") -> tuple[SplitPredictions, list[str]]:
    """The members' mean probabilities on ``split``, rows in the first member's order.

    Returns (predictions with ``probs`` (N, K) averaged and the shared truth, class names). Raises
    `DataError` naming the member and the first image where classes, task, images or truth disagree.
    """
    if len(run_dirs) < 2:
        raise DataError(f"an ensemble needs at least two runs, got {len(run_dirs)}")
    resolved = [Path(d).resolve() for d in run_dirs]
    twice = sorted({str(d) for d in run_dirs if resolved.count(Path(d).resolve()) > 1})
    if twice:
        raise DataError(f"{twice[0]} is named more than once: an ensemble of a run with itself is that run, not an "
                        f"ensemble; name each member once")
    first, aligned, class_names = aligned_predictions(run_dirs, split, tta)
    probs = np.mean(aligned, axis=0)
    return SplitPredictions(first.split, list(first.ids), probs, first.onehot, first.task), class_names
