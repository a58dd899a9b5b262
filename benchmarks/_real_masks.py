"""What the results-table benchmarks share for the real lesion masks: one ``medattn saliency`` pass per
finished run (the model's native maps and Grad-CAM against the masks of its test split, written once
into the run directory), compacted to the table's metrics, and the table with methods as rows.

The pass runs right after a run has been scored, while its checkpoint is here: a row recorded in a
results file keeps its saliency scores when the run directory is gone.
"""
from __future__ import annotations

import json
from pathlib import Path

from _runs import mean_std

# (column, group of the saliency summary, metric): medattn.metrics.saliency.summarize_rows
SALIENCY_COLUMNS = [("Dice (hull)", "convex_hull", "dice"), ("IoU (hull)", "convex_hull", "iou"),
                    ("HD95 %", "convex_hull", "hd95_pct"), ("SSIM", "continuous", "ssim"),
                    ("pointing game", "continuous", "pointing_game"), ("energy on lesion", "continuous", "energy_inside")]
SALIENCY_CAMS = "gradcam"  # with the native maps; the 3 default CAMs cost 3x the model passes


def saliency_scores(run_dir: Path, tag: str, extra: list[str], cams: str = SALIENCY_CAMS) -> dict:
    """``medattn saliency RUN --cams <cams> <extra>`` into ``RUN/saliency_<tag>.json`` (once), compacted:
    ``{"n_images", "n_scored", "left_out": images without a mask, "maps": {map: {"group.metric":
    {"mean", "ci95"}}}}``."""
    from medattn.cli import main as medattn

    out = run_dir / f"saliency_{tag}.json"
    if not out.is_file():
        args = ["saliency", str(run_dir), "--cams", cams, "--out", str(out), *extra]
        if medattn(args) != 0:
            raise RuntimeError(f"medattn {' '.join(args)} failed")
    summary = json.loads(out.read_text())
    maps = {name: {f"{g}.{m}": {"mean": node[g][m]["mean"], "ci95": node[g][m]["ci95"]}
                   for _, g, m in SALIENCY_COLUMNS if m in node.get(g, {})}
            for name, node in summary["maps"].items()}
    return {"n_images": summary["n_images"], "n_scored": summary["n_scored"],
            "left_out": len(summary["left_out_without_mask"]), "maps": maps}


def scores_by_method(rows: list[dict], key: str) -> dict[str, list[dict]]:
    """``row[key]`` of every row that has it, grouped by ``row["method"]`` in the rows' order."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        if key in r:
            by.setdefault(r["method"], []).append(r[key])
    return by


def saliency_table(rows: list[dict], key: str, title: str) -> list[str]:
    """Markdown lines: one row per (method, map) of the rows holding ``row[key]`` (saliency_scores):
    mean ± std over seeds of each metric's mean, [95% bootstrap interval of the first seed]. Empty
    when no row has ``key``."""
    by = scores_by_method(rows, key)
    if not by:
        return []
    first = next(iter(by.values()))[0]
    lines = [f"**{title}** ({first['n_scored']} of {first['n_images']} test images scored"
             + (f", {first['left_out']} without a mask left out" if first["left_out"] else "")
             + "; mean ± std over seeds, [95% bootstrap interval of the first seed]; maps: the model's native "
             "maps and Grad-CAM of the predicted class)", "",
             "| Method | map | seeds | " + " | ".join(c for c, _, _ in SALIENCY_COLUMNS) + " |",
             "|---|---|---|" + "---|" * len(SALIENCY_COLUMNS)]
    for method, scores in by.items():
        for name in dict.fromkeys(n for s in scores for n in s["maps"]):
            got = [s["maps"][name] for s in scores if name in s["maps"]]
            cells = []
            for _, g, m in SALIENCY_COLUMNS:
                values = [x[f"{g}.{m}"]["mean"] for x in got if f"{g}.{m}" in x]
                ci = got[0].get(f"{g}.{m}", {}).get("ci95")
                cells.append(mean_std(values, 3, ci))
            lines.append(f"| {method} | {name} | {len(got)} | " + " | ".join(cells) + " |")
    return lines


# (column, background condition of medattn robustness)
ROBUSTNESS_COLUMNS = [("background swapped", "swap"), ("ruler + ink + hair", "artifact_all"),
                      ("background alone", "lesion_removed"), ("lesion alone", "background_removed")]


def robustness_scores(run_dir: Path, tag: str, extra: list[str]) -> dict:
    """``medattn robustness RUN --sigmas 0 <extra>`` into ``RUN/robustness_<tag>.json`` (once), compacted
    to the background conditions: ``{"n_images", "metric", condition: {"auc", "delta", "delta_ci95",
    "flip_fraction", "flip_ci95"}}``. ``metric`` is the ISIC 2017 mean AUC of the two tasks where the
    classes are ISIC 2017's, else the macro AUC."""
    from medattn.cli import main as medattn

    out = run_dir / f"robustness_{tag}.json"
    if not out.is_file():
        args = ["robustness", str(run_dir), "--sigmas", "0", "--out", str(out), *extra]
        if medattn(args) != 0:
            raise RuntimeError(f"medattn {' '.join(args)} failed")
    result = json.loads(out.read_text())
    background = result.get("background") or {}
    isic = all("isic2017" in node["metrics"] for node in background.values()) and bool(background)
    metric = "isic2017.mean_auc" if isic else "macro_auc"
    scores = {"n_images": result.get("background_n_images", 0), "metric": metric}
    for _, key in ROBUSTNESS_COLUMNS:
        if key in background:
            node = background[key]
            paired = node["paired"]
            scores[key] = {"auc": node["metrics"]["isic2017"]["mean_auc"] if isic else node["metrics"]["macro_auc"],
                           "delta": paired[f"delta.{metric}"]["value"], "delta_ci95": paired[f"delta.{metric}"]["ci95"],
                           "flip_fraction": paired["flip_fraction"]["value"],
                           "flip_ci95": paired["flip_fraction"]["ci95"]}
    return scores


def robustness_table(rows: list[dict], key: str, title: str) -> list[str]:
    """Markdown lines: one row per method of the rows holding ``row[key]`` (robustness_scores): per
    background condition the AUC, its change against the clean predictions of the same images, and
    the share of flipped predictions; mean ± std over seeds, [paired 95% bootstrap interval of the
    first seed]. Empty when no row has ``key``."""
    by = scores_by_method(rows, key)
    if not by:
        return []
    first = next(iter(by.values()))[0]
    metric = "mean AUC of the 2 tasks" if first["metric"] == "isic2017.mean_auc" else "macro AUC"
    lines = [f"**{title}** ({first['n_images']} test images with a mask; each cell: {metric}, its change against "
             "the clean predictions of the same images, and the predictions flipped; mean ± std over seeds, "
             "[paired 95% bootstrap interval of the first seed])", "",
             "| Method | seeds | " + " | ".join(c for c, _ in ROBUSTNESS_COLUMNS) + " |",
             "|---|---|" + "---|" * len(ROBUSTNESS_COLUMNS)]
    for method, scores in by.items():
        cells = []
        for _, cond in ROBUSTNESS_COLUMNS:
            got = [s[cond] for s in scores if cond in s]
            if not got:
                cells.append("-")
                continue
            cells.append(f"{mean_std([g['auc'] for g in got])}; {mean_std([g['delta'] for g in got], 3, got[0]['delta_ci95'])}; "
                         f"flipped {mean_std([g['flip_fraction'] for g in got], 3, got[0]['flip_ci95'])}")
        lines.append(f"| {method} | {len(scores)} | " + " | ".join(cells) + " |")
    return lines
