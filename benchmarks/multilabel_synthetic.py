"""Multi-label synthetic benchmark: the plain baseline, the class-query attention model and the
IBCA-style reconstruction (docs/ibca.md), over seeds, mean ± std.

For each model and seed it trains the preset ``synthetic_multilabel_<model>`` (one data set, generated
once, shared by all runs; the seed changes initialisation and batches), selects the best epoch on val
mAP, and reports on ``test`` and ``test_shifted`` (class-linked artifacts reversed):
- mAP, CF1, OF1 (and CP, CR, OP, OR) at threshold 0.5 and with per-class thresholds tuned on val;
- per-label saliency on test: for every present class k, the class-k map (Grad-CAM of class k for
  every model; the native ``gm_<k>`` and ``mha_<k>`` maps where the model has them), resized to the
  image and min-max scaled, against class k's own mask: pointing game, energy inside the mask, and
  *specificity* = energy on the own mask / energy on all lesion masks (images with several lesions).

Resumable: finished runs (``RUNS/<model>/seed<k>/bench.json``) are kept, interrupted ones resume from their last epoch.

    python benchmarks/multilabel_synthetic.py                      # 3 models x seeds 0 1 2
    python benchmarks/multilabel_synthetic.py --quick              # a smoke run (tiny data, 1 epoch)
    python benchmarks/multilabel_synthetic.py --set train.epochs=6 --models class_query ibca
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "multilabel_synthetic"
MODELS = ("baseline", "class_query", "ibca")
QUICK = ["data.options.n_train=48", "data.options.n_val=24", "data.options.n_test=24", "train.epochs=1",
         "train.batch_size=16", "data.image_size=64"]
SPLITS = ("test", "test_shifted")
HEADLINE = ("map", "cf1", "of1", "cp", "cr", "op", "or", "macro_auc")


def per_label_saliency(run, data, n_images: int, batch_size: int = 16) -> dict[str, dict[str, float]]:
    """Map family ("gradcam", "gm", "mha") -> {pointing_game, energy_inside, specificity, n}: means
    over (image, present class) pairs of the first ``n_images`` test images."""
    from medattn.explain.maps import explain_batch
    from medattn.metrics.saliency import energy_inside, pointing_game

    rows: dict[str, dict[str, list[float]]] = {}
    names = run.class_names
    n = min(n_images, len(data))
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(start + batch_size, n))
        targets = [list(map(int, np.flatnonzero(data.targets[i] == 1))) for i in idx]
        expl = explain_batch(run.model, data.images[idx], task="multilabel", class_names=names,
                             methods=("gradcam",), targets=targets)
        for e, i, present in zip(expl, idx, targets):
            masks = data.masks[i] > 0
            union = masks.any(axis=0)
            for k in present:
                candidates = {"gradcam": e.maps.get(f"gradcam/{names[k]}"), "gm": e.maps.get(f"attn/gm_{k}"),
                              "mha": e.maps.get(f"attn/mha_{k}")}
                for family, m in candidates.items():
                    if m is None:
                        continue
                    r = rows.setdefault(family, {"pointing_game": [], "energy_inside": [], "specificity": []})
                    r["pointing_game"].append(pointing_game(m, masks[k]))
                    r["energy_inside"].append(energy_inside(m, masks[k]))
                    if len(present) > 1 and m[union].sum() > 0:
                        r["specificity"].append(float(m[masks[k]].sum() / m[union].sum()))
    return {fam: {**{key: float(np.mean(v)) if v else math.nan for key, v in r.items()},
                  "n": len(r["energy_inside"]), "n_multi": len(r["specificity"])} for fam, r in rows.items()}


def evaluate_run(run_dir: Path, data: dict, n_saliency: int) -> dict:
    """Metrics of the best checkpoint on val-tuned thresholds and 0.5, on every split, plus saliency."""
    from medattn.metrics.summary import compute_metrics
    from medattn.engine.inference import predict_proba
    from medattn.engine.run import load_run
    from medattn.metrics.multilabel import tune_thresholds

    run = load_run(run_dir)
    val_probs = predict_proba(run.model, data["val"], task="multilabel")
    thresholds = tune_thresholds(data["val"].targets, val_probs)
    out: dict = {"thresholds": thresholds.tolist()}
    for split in SPLITS:
        probs = predict_proba(run.model, data[split], task="multilabel")
        at_half = compute_metrics(data[split].targets, probs, run.class_names, "multilabel")
        tuned = compute_metrics(data[split].targets, probs, run.class_names, "multilabel", thresholds=thresholds)
        out[split] = {**{k: at_half[k] for k in HEADLINE}, "tuned": {k: tuned[k] for k in HEADLINE},
                      "per_class_ap": {c: v["ap"] for c, v in at_half["per_class"].items()}}
    out["saliency"] = per_label_saliency(run, data["test"], n_saliency)
    return out


def run_one(model: str, seed: int, overrides: list[str], data: dict, out: Path, n_saliency: int, log) -> dict:
    from medattn.config import load_config
    from medattn.engine.data import RunData
    from medattn.engine.trainer import Trainer

    run_dir = out / model / f"seed{seed}"
    done = run_dir / "bench.json"
    if done.exists():
        log(f"[{model} seed {seed}] done already")
        return json.loads(done.read_text())
    cfg = load_config(f"synthetic_multilabel_{model}", [*overrides, f"seed={seed}"])
    resume = (run_dir / "last.safetensors").exists()
    log(f"[{model} seed {seed}] {'resuming' if resume else 'training'} -> {run_dir}")
    t0 = time.perf_counter()
    trainer = Trainer(cfg, run_dir, resume=resume, progress=False, log=log, data=RunData(data["train"], data["val"]))
    fit = trainer.fit()
    result = {"model": model, "seed": seed, "fit": fit, "train_seconds": time.perf_counter() - t0,
              **evaluate_run(run_dir, data, n_saliency)}
    done.write_text(json.dumps(result, indent=1, default=float))
    return result


def _mean_std(values: list[float]) -> str:
    v = np.array([x for x in values if x is not None and not math.isnan(x)], dtype=np.float64)
    if v.size == 0:
        return "-"
    return f"{v.mean():.4f} ± {v.std(ddof=1) if v.size > 1 else 0.0:.4f}"


def summarise(results: list[dict]) -> tuple[dict, str]:
    """Mean ± std over seeds per model: a JSON-able dict and a markdown report."""
    by_model: dict[str, list[dict]] = {}
    for r in results:
        by_model.setdefault(r["model"], []).append(r)
    summary: dict = {}
    lines = ["| Model | split | mAP | CF1 | OF1 | CF1 (tuned) | OF1 (tuned) | macro AUC | seeds |", "|---" * 9 + "|"]
    for model, runs in by_model.items():
        summary[model] = {}
        for split in SPLITS:
            cols = {k: [r[split][k] for r in runs] for k in HEADLINE}
            cols.update({f"tuned_{k}": [r[split]["tuned"][k] for r in runs] for k in HEADLINE})
            summary[model][split] = {k: {"mean": float(np.nanmean(v)), "std": float(np.nanstd(v, ddof=1)) if len(v) > 1 else 0.0,
                                         "values": v} for k, v in cols.items()}
            lines.append(f"| {model} | {split} | {_mean_std(cols['map'])} | {_mean_std(cols['cf1'])} | "
                         f"{_mean_std(cols['of1'])} | {_mean_std(cols['tuned_cf1'])} | {_mean_std(cols['tuned_of1'])} | "
                         f"{_mean_std(cols['macro_auc'])} | {len(runs)} |")
    lines += ["", "Per-label saliency on test (class-k map vs class-k mask; mean ± std over seeds):", "",
              "| Model | map | pointing game | energy inside | specificity | pairs (multi-lesion) |", "|---" * 6 + "|"]
    for model, runs in by_model.items():
        summary[model]["saliency"] = {}
        for fam in ("gradcam", "gm", "mha"):
            got = [r["saliency"][fam] for r in runs if fam in r["saliency"]]
            if not got:
                continue
            vals = {k: [g[k] for g in got] for k in ("pointing_game", "energy_inside", "specificity")}
            summary[model]["saliency"][fam] = {k: {"mean": float(np.nanmean(v)), "values": v} for k, v in vals.items()}
            lines.append(f"| {model} | {fam} | {_mean_std(vals['pointing_game'])} | {_mean_std(vals['energy_inside'])} | "
                         f"{_mean_std(vals['specificity'])} | {got[0]['n']} ({got[0]['n_multi']}) |")
    return summary, "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every run, e.g. --set train.epochs=6")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (written under OUT/quick)")
    p.add_argument("--n-saliency", type=int, default=300, help="test images scored for per-label saliency")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS, help="where results.json/.md go (default benchmarks/results/...)")
    p.add_argument("--runs", type=Path, default=Path("runs/benchmark_multilabel_synthetic"),
                   help="where the run directories (checkpoints) go; rerun to resume")
    args = p.parse_args()

    import torch

    from medattn.config import load_config
    from medattn.engine.data import read_split

    torch.set_num_threads(args.threads)
    overrides = (QUICK if args.quick else []) + args.overrides
    out = args.out / "quick" if args.quick else args.out
    out.mkdir(parents=True, exist_ok=True)
    base = load_config(f"synthetic_multilabel_{args.models[0]}", overrides)
    t0 = time.perf_counter()
    data = {split: read_split(base, split) for split in ("train", "val", *SPLITS)}
    print(f"data: {', '.join(f'{s} {len(d)}' for s, d in data.items())} ({time.perf_counter() - t0:.0f}s)", flush=True)
    runs = args.runs / "quick" if args.quick else args.runs
    results = [run_one(m, s, overrides, data, runs, args.n_saliency, lambda msg: print(msg, flush=True))
               for m in args.models for s in args.seeds]
    summary, md = summarise(results)
    header = (f"Multi-label synthetic set ({base['data']['options']}, {base['data']['image_size']} px), "
              f"overrides {overrides or 'none'}; seeds {args.seeds}.\n\n")
    (out / "results.json").write_text(json.dumps({"config_overrides": overrides, "seeds": args.seeds,
                                                  "summary": summary, "runs": results}, indent=1, default=float))
    (out / "results.md").write_text(header + md + "\n")
    print(header + md)
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
