"""Writing explanations: PNG overlays (matplotlib, Agg, no pyplot state) and NumPy archives.

The PNG shows the image, then each map as a heat overlay on the image, with the predicted class and
the class probabilities in the title. The ``.npz`` holds the arrays for further analysis:

- ``image``: H x W x 3 uint8; ``probabilities``: (K,) float64; ``class_names``: (K,) str
- ``explained``: the explained class indices; ``predicted``: the argmax class index
- ``map_names``: (M,) str; ``maps``: M x H x W float32 in [0, 1]; ``map_classes``: (M,) int64, the
  class a map explains or -1 (native attention, class-agnostic CAMs); ``image_id``: str
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .maps import Explanation


def probability_title(e: Explanation, class_names: Sequence[str], top: int = 4) -> str:
    """'pred: mel 0.82 | nv 0.10 | bkl 0.05' (the ``top`` most probable classes)."""
    order = np.argsort(-e.probabilities, kind="stable")[:top]
    rest = " | ".join(f"{class_names[k]} {e.probabilities[k]:.2f}" for k in order[1:])
    head = f"{e.image_id}  pred: {class_names[order[0]]} {e.probabilities[order[0]]:.2f}"
    title = f"{head} | {rest}" if rest else head
    if e.explained and e.explained != [e.predicted]:
        title += "\nexplained: " + ", ".join(class_names[c] for c in e.explained)
    return title


def overlay_figure(e: Explanation, class_names: Sequence[str], cmap: str = "jet", alpha: float = 0.5,
                   ncols: int = 5, panel_inches: float = 2.4) -> Figure:
    """A figure with the image and each map over it (the colour bar is the [0, 1] map value)."""
    names = list(e.maps)
    n = 1 + len(names)
    cols = min(ncols, n)
    rows = math.ceil(n / cols)
    title_in = 0.6 if e.explained and e.explained != [e.predicted] else 0.45
    width, height = panel_inches * cols + 0.75, panel_inches * rows + title_in
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    # A fixed layout (constrained layout would double the drawing time of a batch of overlays).
    fig.subplots_adjust(left=0.1 / width, right=1 - 0.75 / width, bottom=0.05 / height, top=1 - title_in / height,
                        wspace=0.05, hspace=0.2)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    axes[0].imshow(e.image)
    axes[0].set_title("image", fontsize=8)
    for ax, name in zip(axes[1:], names):
        ax.imshow(e.image)
        im = ax.imshow(e.maps[name], cmap=cmap, alpha=alpha, vmin=0.0, vmax=1.0, interpolation="bilinear")
        cls = e.map_classes.get(name)
        ax.set_title(name if cls is None or "/" in name else f"{name} ({class_names[cls]})", fontsize=8)
    for ax in axes:
        ax.set_axis_off()
    if names:
        bottom, top = 0.05 / height, 1 - title_in / height
        cax = fig.add_axes((1 - 0.62 / width, bottom + 0.1 * (top - bottom), 0.12 / width, 0.8 * (top - bottom)))
        fig.colorbar(im, cax=cax)
    fig.suptitle(probability_title(e, class_names), fontsize=9, y=1 - 0.08 / height, va="top")
    return fig


def save_overlay(e: Explanation, path: str | Path, class_names: Sequence[str], dpi: int = 100, **kwargs) -> Path:
    """Write ``overlay_figure`` as a PNG; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = overlay_figure(e, class_names, **kwargs)
    fig.savefig(path, dpi=dpi, format="png")
    fig.clear()
    return path


def save_npz(e: Explanation, path: str | Path, class_names: Sequence[str], compress: bool = True) -> Path:
    """Write the explanation's arrays (see the module docstring); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(e.maps)
    h, w = e.image.shape[:2]
    maps = np.stack([e.maps[n] for n in names]).astype(np.float32) if names else np.zeros((0, h, w), np.float32)
    classes = np.array([-1 if e.map_classes.get(n) is None else e.map_classes[n] for n in names], np.int64)
    save = np.savez_compressed if compress else np.savez
    with open(path, "wb") as f:  # a file object: NumPy would otherwise append .npz to other suffixes
        save(f, image=e.image, probabilities=np.asarray(e.probabilities, np.float64),
             class_names=np.array(list(class_names), dtype=str), explained=np.array(e.explained, np.int64),
             predicted=np.int64(e.predicted), map_names=np.array(names, dtype=str), maps=maps,
             map_classes=classes, image_id=np.array(e.image_id))
    return path


def load_npz(path: str | Path) -> tuple[Explanation, list[str]]:
    """Read a ``save_npz`` file back: the explanation and the class names."""
    with np.load(path, allow_pickle=False) as d:
        names = [str(n) for n in d["map_names"]]
        maps, classes = d["maps"], d["map_classes"]
        e = Explanation(str(d["image_id"]), d["image"], d["probabilities"], [int(c) for c in d["explained"]])
        for i, n in enumerate(names):
            e.maps[n] = maps[i]
            e.map_classes[n] = None if classes[i] < 0 else int(classes[i])
        return e, [str(c) for c in d["class_names"]]
