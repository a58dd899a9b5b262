"""Seconds per image of `medattn saliency`, the current code against an older commit, alternating.

Two worker processes load the run and the split once: one imports this checkout's ``src``, the other
the ``src`` of ``--reference-commit`` (exported with ``git archive``). The images are then scored in
chunks, each chunk by both workers one after the other (the order alternates), so that the load of a
shared machine hits both alike; the ratio is the number to trust. Each worker runs what the command
runs per image (``iter_explanations`` in batches of ``--batch-size``, ``reference_masks``,
``score_rows``) and times, with wrappers installed around the functions by name, the model passes
per CAM method and each metric. The rows of both are compared: the benchmark says whether they are
identical. The projection of a run is: start-up (imports, loading the run and the split) + the images
x seconds per image + the summary (bootstrap intervals).

    python benchmarks/saliency_speed.py /tmp/sal_run --split train --limit 600 \\
        --set data.options.masks=true --set data.options.mask_dir=/data/isic2017_256_masks
    python benchmarks/saliency_speed.py RUN --limit 64 --no-reference      # only this checkout

Any option of `medattn saliency` (``--cams``, ``--batch-size``, ``--precision``, ``--set``...) is
passed on. Saves benchmarks/results/saliency_speed_<split>.json (``--out`` to change).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from _machine import cpu_name  # benchmarks/ is on sys.path when a script runs

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
RESULTS = HERE.parent / "results"
DEFAULT_REFERENCE = "34faccb"  # the last commit before CAMs shared one pass and masks were prepared once

# (label, module, attribute): timed where the module has the attribute; methods as "Class.name".
TIMED = [
    ("model: explain_batch (all passes + CAM maps)", "medattn.explain.maps", "explain_batch"),
    ("model: native attention maps", "medattn.explain.maps", "native_maps"),
    ("model: shared forward (layer_pass)", "medattn.explain.layer_pass", "layer_pass"),
    ("model: shared backward (LayerPass.gradients)", "medattn.explain.layer_pass", "LayerPass.gradients"),
    ("model: backward (torch.Tensor.backward)", "torch", "Tensor.backward"),
    ("metrics: score_rows (all metrics)", "medattn.metrics.saliency", "score_rows"),
    ("metrics: mask preparation (MaskReference.of)", "medattn.metrics.saliency", "MaskReference.of"),
    ("metrics: ssim (3 per map)", "medattn.metrics.saliency", "ssim"),
    ("metrics: ssim (3 per map)", "medattn.metrics.saliency", "_ssim_of"),
    ("metrics: hd95 (boundaries + distances)", "medattn.metrics.saliency", "hd95"),
    ("metrics: binarize_convex_hull", "medattn.metrics.saliency", "binarize_convex_hull"),
    ("metrics: binarize_otsu", "medattn.metrics.saliency", "binarize_otsu"),
    ("metrics: pointing_game", "medattn.metrics.saliency", "pointing_game"),
    ("metrics: energy_inside", "medattn.metrics.saliency", "energy_inside"),
    ("metrics: dice + iou", "medattn.metrics.saliency", "dice"),
    ("metrics: dice + iou", "medattn.metrics.saliency", "iou"),
]
"""Per CAM method: "model: <method> (library call)" (old: pytorch-grad-cam's forward + backward +
map) or "model: <method> map (from the layer pass)" (new), added by ``install_timers``."""


# ----------------------------------------------------------------------------- worker side


def install_timers(timers: dict[str, float]) -> None:
    """Wrap the functions of ``TIMED`` (and the CAM calls) so that their inclusive seconds add up in
    ``timers``; a function is only timed in its outermost call."""
    import functools
    import importlib

    active: set[str] = set()

    def wrap(label, fn, key=None):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            name = label if key is None else key(*args, **kwargs)
            if name in active:
                return fn(*args, **kwargs)
            active.add(name)
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                timers[name] = timers.get(name, 0.0) + time.perf_counter() - t
                active.discard(name)
        return timed

    for label, module, attr in TIMED:
        try:
            owner = importlib.import_module(module)
        except ImportError:
            continue
        *path, name = attr.split(".")
        for part in path:
            owner = getattr(owner, part, None)
        if owner is None or not hasattr(owner, name):
            continue
        fn = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name)
        if isinstance(fn, classmethod):
            setattr(owner, name, classmethod(wrap(label, fn.__func__)))
            continue
        timed = wrap(label, fn)
        setattr(owner, name, timed)
        for mod in list(sys.modules.values()):  # modules that imported the function by name
            if getattr(mod, "__name__", "").startswith("medattn") and getattr(mod, name, None) is fn:
                setattr(mod, name, timed)
    from pytorch_grad_cam.base_cam import BaseCAM

    from medattn.explain import cams

    BaseCAM.__call__ = wrap(None, BaseCAM.__call__, key=lambda self, *a, **k: f"model: {_method(self)} (library call)")
    if hasattr(cams, "maps_from_layer"):
        cams.maps_from_layer = wrap(None, cams.maps_from_layer,
                                    key=lambda method, *a, **k: f"model: {method} map (from the layer pass)")


def _method(cam) -> str:
    from medattn.explain.cams import CAM_METHODS

    return next((k for k, v in CAM_METHODS.items() if type(cam) is v), type(cam).__name__)


def worker(argv: list[str]) -> int:
    """Load the run and split, then answer chunk requests (JSON lines on stdin) with JSON lines."""
    t0 = time.perf_counter()
    import numpy as np
    import torch

    from medattn.commands import saliency as command
    from medattn.commands._common import load_run_and_split
    from medattn.engine.precision import Precision, resolve_device
    from medattn.explain import iter_explanations
    from medattn.metrics import saliency as metrics  # called through the module: the timers wrap it

    p = argparse.ArgumentParser()
    command.add_arguments(p)
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    run, _, dataset = load_run_and_split(args, device)
    if args.limit:
        dataset = dataset.subset(np.arange(min(args.limit, len(dataset))))
    command.check_masks(dataset)
    targets = command.explain_targets(dataset, args.explain_class)
    keep = np.array([i for i in range(len(dataset)) if dataset.masks[i].any()], int)
    scored = dataset.subset(keep)
    targets = None if targets is None else [targets[i] for i in keep]
    precision = Precision.resolve(args.precision, device)
    timers: dict[str, float] = {}
    install_timers(timers)
    import medattn

    ready = {"ready": True, "n_scored": len(scored), "startup_s": time.perf_counter() - t0,
             "src": str(Path(medattn.__file__).parents[1]), "torch_threads": torch.get_num_threads()}
    print(json.dumps(ready), flush=True)
    all_rows: list[dict] = []
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("summary"):
            t = time.perf_counter()
            metrics.summarize_rows(all_rows, args.bootstrap, args.seed)
            print(json.dumps({"summary_s": time.perf_counter() - t}), flush=True)
            continue
        a, b = req["start"], req["stop"]
        timers.clear()
        t = time.perf_counter()
        rows = []
        for i, e in enumerate(iter_explanations(
                run.model, scored.images[a:b], scored.ids[a:b], batch_size=args.batch_size, progress=False,
                targets=None if targets is None else targets[a:b], task=run.task, class_names=run.class_names,
                methods=args.cams, native=not args.no_native, precision=precision)):
            refs = command.reference_masks(scored.masks, a + i, e.map_classes)
            rows.extend(metrics.score_rows(e.image_id, e.maps, refs, args.hull_threshold, args.pointing_tolerance))
        all_rows.extend(rows)
        print(json.dumps({"seconds": time.perf_counter() - t, "timers": timers, "rows": rows}), flush=True)
    return 0


# ----------------------------------------------------------------------------- parent side


def export_source(commit: str, into: Path) -> Path:
    """``git archive COMMIT src`` unpacked into ``into``; returns the folder to put on PYTHONPATH."""
    archive = into / "src.tar"
    subprocess.run(["git", "-C", str(REPO), "archive", "-o", str(archive), commit, "src"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


class Worker:
    def __init__(self, name: str, src: Path, argv: list[str]):
        env = dict(os.environ, PYTHONPATH=str(src))
        self.name = name
        self.proc = subprocess.Popen([sys.executable, str(HERE), "--worker", *argv], env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.info = self.read()

    def read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.name} worker stopped (see its messages above)")
        return json.loads(line)

    def ask(self, request: dict) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def compare_rows(a: list[dict], b: list[dict]) -> dict:
    """identical: the same rows, keys and values; otherwise the largest absolute difference."""
    if [(r["image_id"], r["map"], r["binarization"]) for r in a] != [(r["image_id"], r["map"], r["binarization"]) for r in b]:
        return {"identical": False, "max_abs_diff": None, "note": "different rows"}
    diff = max((abs(x[k] - y[k]) for x, y in zip(a, b) for k in x if isinstance(x[k], float)), default=0.0)
    return {"identical": a == b, "max_abs_diff": diff}


def summarize(name: str, info: dict, chunks: list[dict], n: int, summary_s: float, per_run: int) -> dict:
    seconds = sum(c["seconds"] for c in chunks)
    timers: dict[str, float] = {}
    for c in chunks:
        for k, v in c["timers"].items():
            timers[k] = timers.get(k, 0.0) + v
    per_image = seconds / n
    return {"src": info["src"], "startup_s": info["startup_s"], "torch_threads": info["torch_threads"],
            "images": n, "seconds": seconds, "seconds_per_image": per_image,
            "chunk_seconds": [round(c["seconds"], 3) for c in chunks],
            "breakdown_seconds_per_image": {k: v / n for k, v in sorted(timers.items())},
            "summary_s": summary_s,
            f"projected_{per_run}_image_run_s": info["startup_s"] + per_run * per_image + summary_s}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                epilog="other options are those of `medattn saliency`")
    p.add_argument("--reference-commit", default=DEFAULT_REFERENCE, help=f"old code to compare (default {DEFAULT_REFERENCE})")
    p.add_argument("--no-reference", action="store_true", help="time only this checkout")
    p.add_argument("--chunk", type=int, default=32, help="images per alternation (a multiple of --batch-size)")
    p.add_argument("--project", type=int, default=600, help="images of the run to project (default 600)")
    p.add_argument("--result", help="result JSON (default benchmarks/results/saliency_speed_<split>.json)")
    ours, rest = p.parse_known_args(argv)
    probe = argparse.ArgumentParser()
    sys.path.insert(0, str(REPO / "src"))
    from medattn.commands import saliency as command

    command.add_arguments(probe)
    sal = probe.parse_args(rest)
    if ours.chunk % sal.batch_size:
        p.error(f"--chunk {ours.chunk} must be a multiple of --batch-size {sal.batch_size} (the same batches as the command)")
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        workers = {"new": Worker("new", REPO / "src", rest)}
        if not ours.no_reference:
            workers["old"] = Worker("old", export_source(ours.reference_commit, Path(tmp)), rest)
        n = workers["new"].info["n_scored"]
        chunks: dict[str, list[dict]] = {k: [] for k in workers}
        agree = {"identical": True, "max_abs_diff": 0.0}
        for j, start in enumerate(range(0, n, ours.chunk)):
            stop = min(start + ours.chunk, n)
            order = list(workers) if j % 2 == 0 else list(reversed(workers))
            got = {name: workers[name].ask({"start": start, "stop": stop}) for name in order}
            for name, res in got.items():
                chunks[name].append(res)
            if "old" in got:
                c = compare_rows(got["old"]["rows"], got["new"]["rows"])
                agree["identical"] &= c["identical"]
                agree["max_abs_diff"] = None if c["max_abs_diff"] is None or agree["max_abs_diff"] is None else max(
                    agree["max_abs_diff"], c["max_abs_diff"])
            line = "  ".join(f"{k} {v['seconds'] / (stop - start):.3f} s/img" for k, v in got.items())
            print(f"images {start}-{stop}: {line}", file=sys.stderr, flush=True)
            load.append(os.getloadavg()[0])
        results = {}
        for name, w in workers.items():
            summary_s = w.ask({"summary": True})["summary_s"]
            results[name] = summarize(name, w.info, chunks[name], n, summary_s, ours.project)
            w.close()
    out = {"machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
                       "load_average_1min": {"min": min(load), "max": max(load), "mean": sum(load) / len(load)},
                       "note": "load average > 0 while measuring means other jobs shared the cores"},
           "command_options": rest, "chunk": ours.chunk, "reference_commit": None if ours.no_reference else ours.reference_commit,
           "results": results}
    if "old" in results:
        out["speedup"] = results["old"]["seconds_per_image"] / results["new"]["seconds_per_image"]
        out["rows_equal"] = agree
    path = Path(ours.result) if ours.result else RESULTS / f"saliency_speed_{sal.split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_suffix(".json.tmp")
    tmp_path.write_text(json.dumps(out, indent=1) + "\n")
    tmp_path.replace(path)
    for name, r in results.items():
        print(f"{name}: {r['seconds_per_image']:.3f} s/image, projected {ours.project}-image run "
              f"{r[f'projected_{ours.project}_image_run_s']:.0f} s (start-up {r['startup_s']:.0f} s, summary "
              f"{r['summary_s']:.1f} s)")
        for k, v in r["breakdown_seconds_per_image"].items():
            print(f"    {k:55s} {v:.4f} s/image")
    if "speedup" in out:
        print(f"speed-up {out['speedup']:.2f}x; rows identical: {out['rows_equal']['identical']} "
              f"(max |difference| {out['rows_equal']['max_abs_diff']})")
    print(f"CPU {out['machine']['cpu']}, {out['machine']['cores']} cores, 1-min load average "
          f"{min(load):.1f}-{max(load):.1f}; wrote {path}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        sys.exit(worker(sys.argv[2:]))
    sys.exit(main(sys.argv[1:]))
