"""The robustness figure: headline metrics and flipped predictions against the noise level, and the
metric change and flips under the background conditions (matplotlib Agg, no pyplot state)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .robustness_results import background_label, headline


def robustness_figure(result: dict) -> Figure:
    """Panels: metrics vs sigma; flip fraction vs sigma; background conditions (when present)."""
    names = result["headline"]
    background = result.get("background") or {}
    shift = result.get("shift")
    panels = 2 + bool(background or shift)
    fig = Figure(figsize=(4.6 * panels, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels, squeeze=False)[0]

    noise = result["noise"]
    xs = np.arange(len(noise))
    labels = [f"{n['sigma']:g}" for n in noise]
    ax = axes[0]
    for name in names:
        ys = [headline(n["metrics"], [name]).get(name, np.nan) for n in noise]
        ax.plot(xs, ys, marker="o", label=name)
    ax.set_xticks(xs, labels)
    ax.set_xlabel("noise sigma ([0, 1] scale)")
    ax.set_ylabel("metric")
    ax.set_title("Metrics under Gaussian noise")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")

    ax = axes[1]
    ax.bar(xs, [100 * n["flip_fraction"] for n in noise], color="#c0504d")
    ax.set_xticks(xs, labels)
    ax.set_xlabel("noise sigma ([0, 1] scale)")
    ax.set_ylabel("predictions flipped (%)")
    ax.set_title("Flipped predictions under noise")
    ax.grid(alpha=0.3, axis="y")

    if panels == 3:
        main = names[0]
        rows = [(background_label(k), node.get("delta", {}).get(main, np.nan), node.get("flip_fraction"))
                for k, node in background.items()]
        if shift:
            rows.append((f"split {shift['split']}", shift.get("delta", {}).get(main, np.nan), None))
        ax = axes[2]
        ys = np.arange(len(rows))[::-1]
        deltas = [r[1] for r in rows]
        ax.barh(ys, deltas, color=["#4f81bd" if d >= 0 else "#c0504d" for d in deltas])
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(ys, [r[0] for r in rows], fontsize=8)
        for y, (_, d, flip) in zip(ys, rows):
            text = f"{d:+.3f}" + ("" if flip is None else f"  ({flip:.0%} flipped)")
            ax.annotate(text, (0, y), xytext=(4 if d < 0 else -4, 0), textcoords="offset points",
                        ha="left" if d < 0 else "right", va="center", fontsize=7)
        span = max([abs(d) for d in deltas if np.isfinite(d)] + [0.05])
        ax.set_xlim(-1.15 * span, 1.15 * span)
        ax.set_xlabel(f"change of {main} vs clean")
        ax.set_title("Background shift")
        ax.grid(alpha=0.3, axis="x")
    return fig


def save_robustness_plot(result: dict, path: str | Path, dpi: int = 110) -> Path:
    """Write ``robustness_figure`` as a PNG; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = robustness_figure(result)
    fig.savefig(path, dpi=dpi, format="png")
    fig.clear()
    return path
