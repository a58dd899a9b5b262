"""Reading a robustness result (the dict ``evaluate_robustness`` returns): its conditions, headline
metrics and the markdown table, shared by the command, the plot and the run report."""
from __future__ import annotations

from typing import Sequence


def headline(metrics: dict, names: Sequence[str]) -> dict[str, float]:
    """The named top-level metrics that are numbers (missing ones are left out)."""
    return {n: float(metrics[n]) for n in names if isinstance(metrics.get(n), (int, float))}


def background_label(key: str) -> str:
    """Display name of a background condition: "background swap", "artifact: ruler", "artifact: all",
    "background alone (lesion removed)", "lesion alone (background removed)"."""
    named = {"swap": "background swap", "lesion_removed": "background alone (lesion removed)",
             "background_removed": "lesion alone (background removed)"}
    return named.get(key) or key.replace("_", ": ", 1)


def condition_rows(result: dict) -> list[tuple[str, dict, float | None, dict]]:
    """(condition label, headline metrics, flip fraction or None, change of the headline metrics
    against the clean predictions of the same images) of every condition, clean first; the rows of
    the markdown table and of the run report. The change is the condition's own ``delta``: background
    conditions may cover fewer images than the clean row (those with a lesion mask)."""
    names = result["headline"]
    rows = [("clean", headline(result["clean"]["metrics"], names), None, {})]
    for node in result["noise"]:
        rows.append((f"noise sigma={node['sigma']:g}", headline(node["metrics"], names), node["flip_fraction"],
                     node.get("delta", {})))
    for key, node in (result.get("background") or {}).items():
        rows.append((background_label(key), headline(node["metrics"], names), node["flip_fraction"],
                     node.get("delta", {})))
    if result.get("shift"):
        rows.append((f"shifted split ({result['shift']['split']})", headline(result["shift"]["metrics"], names), None,
                     result["shift"].get("delta", {})))
    return rows


def paired_nodes(result: dict) -> list[dict | None]:
    """The ``paired`` intervals of every condition, in the order of ``condition_rows`` (None where a
    condition has none: clean, sigma 0, the shifted split, results written without a bootstrap)."""
    nodes = [None] + [n.get("paired") for n in result["noise"]]
    nodes += [n.get("paired") for n in (result.get("background") or {}).values()]
    return nodes + ([None] if result.get("shift") else [])


def robustness_table(result: dict) -> str:
    """A markdown table: one row per condition, headline metrics (change vs clean) and flip fraction;
    the change of macro AUC and the flip fraction with their paired 95% bootstrap interval where the
    result has one."""
    names = result["headline"]
    lines = ["| condition | " + " | ".join(names) + " | flipped |", "|---" * (len(names) + 2) + "|"]
    for (label, head, flip, delta), paired in zip(condition_rows(result), paired_nodes(result)):
        paired = paired or {}
        cells = []
        for n in names:
            if n not in head:
                cells.append("n/a")
            elif n not in delta:
                cells.append(f"{head[n]:.4f}")
            else:
                ci = paired.get(f"delta.{n}", {}).get("ci95")
                cells.append(f"{head[n]:.4f} ({delta[n]:+.4f}" + (f" [{ci[0]:+.4f}, {ci[1]:+.4f}])" if ci else ")"))
        ci = paired.get("flip_fraction", {}).get("ci95")
        flipped = "" if flip is None else f"{flip:.1%}" + (f" [{ci[0]:.1%}, {ci[1]:.1%}]" if ci else "")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {flipped} |")
    return "\n".join(lines)
