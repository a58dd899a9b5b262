"""Score an ISIC-format prediction CSV against a truth CSV (same numbers as isic-challenge-scoring).

Both files have a column `image` (ISIC 2017 files: `image_id`) and one column per category; the
truth is one-hot, the prediction holds probabilities in [0, 1]. A `.jpg` suffix on ids is ignored.
A truth file whose categories are exactly `melanoma,seborrheic_keratosis` (the ISIC 2017 layout,
nevus = neither) is scored as the 2017 challenge's two binary tasks. Truth columns `score_weight`
and `validation_weight` are not categories; rows with score_weight 0 are left out, and so is
ISIC_0035068, as the official scorer does. Prediction columns that are not categories of the truth
(the `nevus` column and the `predicted` class that `medattn predict` writes for an ISIC 2017 run) are
not scored, with a note on stderr; a truth image marked both melanoma and SK is refused.

  medattn score truth.csv predictions.csv          # table
  medattn score truth.csv predictions.csv --json   # JSON (NaN written as null)
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..metrics.classification import ISIC2017_TASKS
from ..metrics.summary import ISIC2017_HEADLINE, ISIC_SCORE_HEADLINE

NAME = "score"
ID_COLUMNS = ("image", "image_id")
WEIGHT_COLUMNS = ("score_weight", "validation_weight")
EXCLUDED_IDS = ("ISIC_0035068",)  # given weight 0 by isic-challenge-scoring's truth parser
TABLE_METRICS = ("auc", "auc_sens_80", "ap", "sensitivity", "specificity", "ppv", "npv", "dice", "accuracy")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("truth", help="ground-truth CSV (image + one-hot category columns)")
    p.add_argument("prediction", help="prediction CSV (image + one probability column per category)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON instead of a table")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="add 95%% percentile-bootstrap intervals of the headline metrics from N resamples")


def _error(message: str) -> DataError:
    return DataError(message)


def read_table(path: str | Path, numeric: list[str] | None = None) -> tuple[list[str], list[str], np.ndarray, list[int]]:
    """(ids, value column names, (N, C) float values of the ``numeric`` columns (default: all of them),
    file line of each row) of an ISIC-format CSV; DataError names file, row (1-based line number) and
    column of the first bad cell and the count of further ones."""
    from ..data._common import read_csv

    table = read_csv(path)  # missing file, empty file, repeated names, ragged rows
    path = table.path
    id_col = next((c for c in ID_COLUMNS if c in table.columns), None)
    if id_col is None:
        raise _error(f"{path}: no 'image' column (columns: {', '.join(table.columns)})")
    if not table.rows:
        raise _error(f"{path}: no data rows")
    columns = [c for c in table.columns if c != id_col]
    parsed = columns if numeric is None else [c for c in numeric if c in columns]
    ids: list[str] = []
    seen: dict[str, int] = {}
    duplicates: list[tuple[int, str, int]] = []
    bad_cells: list[tuple[int, str, str]] = []
    values = np.full((len(table.rows), len(parsed)), np.nan)
    for r, (row, line) in enumerate(zip(table.rows, table.lines)):
        image = re.sub(r"\.jpg$", "", row[id_col], flags=re.IGNORECASE)
        if image in seen:
            duplicates.append((line, image, seen[image]))
        seen.setdefault(image, line)
        ids.append(image)
        for j, col in enumerate(parsed):
            try:
                values[r, j] = float(row[col])
            except ValueError:
                bad_cells.append((line, col, row[col]))
            else:
                if not math.isfinite(values[r, j]):
                    bad_cells.append((line, col, row[col]))
    if duplicates:
        line, image, first = duplicates[0]
        raise _error(f"{path} row {line}: image {image!r} appears again (first at row {first}); "
                     f"{len(duplicates) - 1} further duplicated rows")
    if bad_cells:
        line, col, raw = bad_cells[0]
        raise _error(f"{path} row {line}, column {col!r}: {raw!r} is not a number; "
                     f"{len(bad_cells) - 1} further bad values")
    return ids, columns, values, table.lines


def _first_offender(path: Path, lines: list[int], bad: np.ndarray, columns: list[str], what: str) -> str:
    """'FILE row R, column C: what; n further' for a boolean (N, C) mask of offending cells."""
    cells = np.argwhere(bad)
    r, c = cells[0]
    return f"{path} row {lines[r]}, column {columns[c]!r}: {what}; {len(cells) - 1} further"


def load_pair(truth_path: str | Path, pred_path: str | Path) -> tuple[list[str], list[str], np.ndarray, np.ndarray, list[str]]:
    """Validated (ids, categories, truth (N, K), prediction (N, K), ignored prediction columns),
    prediction rows in truth order. Prediction columns the truth does not have (``medattn predict``'s
    ``nevus`` of an ISIC 2017 run, its ``predicted`` class) are not read and are named as ignored."""
    truth_path, pred_path = Path(truth_path), Path(pred_path)
    t_ids, t_cols, t_vals, t_lines = read_table(truth_path)
    categories = [c for c in t_cols if c not in WEIGHT_COLUMNS]
    if not categories:
        raise _error(f"{truth_path}: no category columns besides the image id")
    p_ids, p_cols, p_vals, p_lines = read_table(pred_path, numeric=categories)
    missing = [c for c in categories if c not in p_cols]
    extra = [c for c in p_cols if c not in categories]
    if missing:
        others = f"; its other columns: {extra}" if extra else ""
        raise _error(f"{pred_path}: missing category columns {missing} (truth categories: {categories}{others})")
    keep = np.array([i not in EXCLUDED_IDS for i in t_ids])
    if "score_weight" in t_cols:
        w = t_vals[:, t_cols.index("score_weight")]
        if not np.isin(w, (0.0, 1.0)).all():
            raise _error(_first_offender(truth_path, t_lines, ~np.isin(w, (0.0, 1.0))[:, None], ["score_weight"],
                                         "weights other than 0 and 1 are not supported"))
        keep &= w == 1.0
    truth = t_vals[:, [t_cols.index(c) for c in categories]]
    pred = p_vals  # read in the order of ``categories``
    if not np.isin(truth, (0.0, 1.0)).all():
        raise _error(_first_offender(truth_path, t_lines, ~np.isin(truth, (0.0, 1.0)), categories,
                                     "truth values must be 0 or 1"))
    isic2017 = set(categories) == set(ISIC2017_TASKS)
    if isic2017:
        both = truth.sum(axis=1) > 1
        if both.any():
            rows = np.flatnonzero(both)
            raise _error(f"{truth_path} row {t_lines[rows[0]]}: the image is marked both melanoma and "
                         f"seborrheic_keratosis; {rows.size - 1} further rows")
    else:
        not_onehot = truth.sum(axis=1) != 1
        if not_onehot.any():
            rows = np.flatnonzero(not_onehot)
            raise _error(f"{truth_path} row {t_lines[rows[0]]}: the truth row is not one-hot "
                         f"({truth[rows[0]].tolist()}); {rows.size - 1} further rows")
    out_of_range = (pred < 0) | (pred > 1)
    if out_of_range.any():
        raise _error(_first_offender(pred_path, p_lines, out_of_range, categories, "probability outside [0, 1]"))
    wanted = [i for i, k in zip(t_ids, keep) if k]
    p_pos = {image: r for r, image in enumerate(p_ids)}
    absent = [i for i in t_ids if i not in p_pos and i not in EXCLUDED_IDS]
    if absent:
        raise _error(f"{pred_path}: {len(absent)} images of the truth have no prediction, e.g. {absent[:5]}")
    t_set = set(t_ids)
    unknown = [i for i in p_ids if i not in t_set]
    if unknown:
        raise _error(f"{pred_path}: {len(unknown)} images are not in the truth, e.g. {unknown[:5]}")
    return wanted, categories, truth[keep], pred[[p_pos[i] for i in wanted]], extra


def score(truth_path: str | Path, pred_path: str | Path, n_boot: int = 0) -> dict:
    """Metrics of a prediction CSV against a truth CSV (see the module docstring)."""
    from ..metrics.bootstrap import bootstrap_ci, flatten_scalars
    from ..metrics.classification import binary_tasks_metrics, classification_metrics

    ids, categories, truth, pred, ignored = load_pair(truth_path, pred_path)
    if set(categories) == set(ISIC2017_TASKS):
        cols = [categories.index(t) for t in ISIC2017_TASKS]

        def fn(t, p):
            return {"format": "isic2017", "n": len(t), **binary_tasks_metrics(t[:, cols], p[:, cols], ISIC2017_TASKS)}

        headline, stratified = ISIC2017_HEADLINE, False
    else:
        def fn(t, p):
            return {"format": "isic", **classification_metrics(t, p, categories)}

        headline, stratified = ISIC_SCORE_HEADLINE, True
    metrics = fn(truth, pred)
    if n_boot:
        ci = bootstrap_ci(lambda t, p: {k: v for k, v in flatten_scalars(fn(t, p)).items() if k in headline},
                          truth, pred, n_boot=n_boot, stratified=stratified)
        metrics["ci95"] = {k: list(v) for k, v in ci.items()}
    if ignored:
        metrics["ignored_columns"] = ignored
    return metrics


def _nan_to_none(obj):
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_to_none(v) for v in obj]
    return None if isinstance(obj, float) and math.isnan(obj) else obj


def _cell(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def format_table(m: dict) -> str:
    """A readable table: one row per category (or task) and the aggregate values."""
    ci = m.get("ci95", {})

    def line(name: str, key: str) -> str:
        text = f"{name:<22}{_cell(m[key] if '.' not in key else m[key.split('.')[0]][key.split('.')[1]])}"
        return text + (f"  [{ci[key][0]:.4f}, {ci[key][1]:.4f}]" if key in ci else "")

    if m["format"] == "isic2017":
        cols = ("auc", "auc_sens_80", "ap", "f1", "accuracy", "recall", "precision", "specificity")
        rows = {t: m[t] for t in ISIC2017_TASKS}
        tail = [line("mean_auc", "mean_auc")]
    else:
        cols = TABLE_METRICS
        rows = dict(m["per_class"])
        rows["macro average"] = {c: m[f"macro_{c}"] for c in cols}
        tail = [line(k, k) for k in ISIC_SCORE_HEADLINE]
    width = max(len(r) for r in rows) + 2
    out = [f"{'category':<{width}}" + "".join(f"{c:>13}" for c in cols)]
    out += [f"{name:<{width}}" + "".join(f"{_cell(r[c]):>13}" for c in cols) for name, r in rows.items()]
    return "\n".join(out + ["", f"n = {m['n']}"] + tail)


def run(args: argparse.Namespace) -> int:
    metrics = score(args.truth, args.prediction, n_boot=args.bootstrap)
    if metrics.get("ignored_columns"):
        print(f"medattn score: note: prediction column(s) {', '.join(metrics['ignored_columns'])} are not categories "
              f"of the truth and were not scored", file=sys.stderr)
    if args.json:
        print(json.dumps(_nan_to_none(metrics), indent=1))
    else:
        print(format_table(metrics))
    return 0
