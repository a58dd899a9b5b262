"""Data larger than memory: decode a large image set once into the memory-mapped cache, then train on it.

1. writes N JPEGs (``--source-size`` px, smooth random colour fields with grain, three classes told
   apart by a colour tint) and a CSV (image, label, split) under ``--work`` (resumable: existing
   files are kept);
2. decodes the train split with the csv reader into the memory-mapped cache (``storage: memmap``)
   with 1 worker (in this process) and with 2 worker processes, alternating (``--rounds`` times
   each; every decode is a first decode: the entry is removed before it), and reports img/s, the
   speed-up, the CPU seconds per image, the CPU share each run obtained and the machine's idle CPU
   share meanwhile (/proc/stat): on a shared machine the wall-clock speed-up is bounded by the CPU
   other jobs leave, and these columns show whether that, not the decoder, set it;
3. trains ``--epochs`` x ``--steps`` steps in a fresh subprocess (`medattn.engine.trainer.Trainer`,
   csv reader) for each ``--train-storage`` (default: memmap) after evicting the cache files from the page cache
   (``posix_fadvise DONTNEED`` on those files only), and reports its peak RSS (getrusage), the
   data-wait share of the training time (``data_wait_seconds`` in metrics.jsonl) and the step time.

    python benchmarks/large_data.py                  # a first try: 3000 images at 384 px, 50 steps
    python benchmarks/large_data.py --n 30000 --val 1000 --epochs 2 --steps 100 --train-storage memmap auto
                                                     # the full size: 12.8 GB decoded (hours on 2 busy cores)

Results: benchmarks/results/large_data.json and .md (``--tag`` adds a suffix). The work folder (images
and cache) is removed at the end unless ``--keep``.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
CLASSES = ("red", "green", "blue")


def _image(i: int, size: int):
    from PIL import Image

    rng = np.random.default_rng(i)
    small = rng.integers(40, 216, (12, 12, 3)).astype(np.uint8)
    k = i % 3
    small[..., k] = np.clip(small[..., k].astype(int) + 40, 0, 255)
    img = np.asarray(Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)).astype(np.int16)
    img += rng.integers(-12, 13, img.shape, dtype=np.int16)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _write_range(folder: str, start: int, stop: int, size: int) -> int:
    written = 0
    for i in range(start, stop):
        path = Path(folder) / f"img{i:06d}.jpg"
        if path.exists():
            continue
        tmp = path.with_name(f".{path.name}.tmp")
        _image(i, size).save(tmp, format="JPEG", quality=90)
        os.replace(tmp, path)
        written += 1
    return written


def write_set(work: Path, n: int, size: int, val: int, jobs: int) -> Path:
    """The images and labels.csv (the last ``val`` images are split val); returns the CSV."""
    from tqdm.auto import tqdm

    folder = work / "images"
    folder.mkdir(parents=True, exist_ok=True)
    chunks = [(s, min(s + 500, n)) for s in range(0, n, 500)]
    with ProcessPoolExecutor(jobs) as pool, tqdm(total=n, desc="write", unit="img") as bar:
        for (s, e), _ in zip(chunks, pool.map(_write_range, [str(folder)] * len(chunks), *zip(*chunks), [size] * len(chunks))):
            bar.update(e - s)
    table = work / "labels.csv"
    with open(table, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "label", "split"])
        for i in range(n):
            w.writerow([f"images/img{i:06d}.jpg", CLASSES[i % 3], "val" if i >= n - val else "train"])
    return table


def machine_load() -> dict:
    top = subprocess.run(["top", "-bn1"], capture_output=True, text=True).stdout.splitlines()[:15]
    return {"uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(), "top": top}


def _machine_jiffies() -> tuple[int, int]:
    """(idle + iowait, total) CPU time of the whole machine so far, all cores, from /proc/stat."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return v[3] + v[4], sum(v[:8])


def _cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def reader_options(table: Path, **extra) -> dict:
    return {"csv": str(table), "image_col": "image", "label_col": "label", "split_col": "split", "progress": True,
            **extra}


def decode_once(table: Path, size: int, workers: int) -> dict:
    """One first decode of the train split into the memory-mapped cache; the entry is left in place."""
    from medattn.data import cache, load_split

    for e in cache.list_entries():
        cache.remove(e.path)
    load0 = os.getloadavg()[0]
    t0, c0, m0 = time.perf_counter(), _cpu_seconds(), _machine_jiffies()
    ds = load_split("csv", str(table.parent), "train", size, **reader_options(table, storage="memmap", num_workers=workers))
    wall, cpu, m1 = time.perf_counter() - t0, _cpu_seconds() - c0, _machine_jiffies()
    n = len(ds)
    del ds
    return {"workers": workers, "images": n, "seconds": round(wall, 2), "img_per_s": round(n / wall, 1),
            "cpu_seconds_per_image": round(cpu / n, 5), "cpu_share": round(cpu / wall, 2),
            "machine_idle_share": round((m1[0] - m0[0]) / max(1, m1[1] - m0[1]), 3),
            "loadavg_1min_before": load0, "loadavg_1min_after": os.getloadavg()[0]}


def evict_page_cache(folder: Path) -> None:
    """Drop this folder's files (only these) from the OS page cache, so training reads from the disk."""
    for p in folder.rglob("*.npy"):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def train_child(args) -> None:
    """In a fresh process: read the splits (cache hits), train, print one JSON line of measurements."""
    import torch

    from medattn.config import load_config
    from medattn.engine.trainer import Trainer

    def status() -> dict:
        out = {}
        for line in Path("/proc/self/status").read_text().splitlines():
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0]) * 1024
        return out

    table = Path(args.work) / "labels.csv"
    overrides = ["data.format=csv", f"data.root={args.work}", f"data.image_size={args.size}",
                 f"model.backbone={args.backbone}", "model.pretrained=false", f"train.batch_size={args.batch}",
                 f"train.epochs={args.epochs}", f"train.max_steps_per_epoch={args.steps}", "train.warmup_epochs=0.2",
                 f"train.eval_batch_size={args.batch}", "train.lr=2e-3", "data.test_splits=[]"]
    cfg = load_config(None, overrides)
    cfg.data.options = reader_options(table, progress=False, storage=args.storage)
    timed = {"val": 0.0}

    class TimedTrainer(Trainer):  # an epoch's logged seconds include validation: time it to leave it out
        def validate(self):
            t0 = time.perf_counter()
            try:
                return super().validate()
            finally:
                timed["val"] += time.perf_counter() - t0

    t0 = time.perf_counter()
    trainer = TimedTrainer(cfg, Path(args.work) / "run", progress=False, log=lambda s: print(s, file=sys.stderr))
    read_s = time.perf_counter() - t0
    after_read = status()
    storage = {s: type(getattr(trainer.data, s).images).__name__ for s in ("train", "val")}
    in_ram = sum(d.images.nbytes for d in (trainer.data.train, trainer.data.val) if type(d.images) is np.ndarray)
    result = trainer.fit()
    logs = [json.loads(x) for x in (Path(args.work) / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = trainer.steps_per_epoch * len(logs)
    wait = sum(e["data_wait_seconds"] for e in logs)
    timed["train"] = sum(e["seconds"] for e in logs) - timed["val"]
    print(json.dumps({
        "steps": steps, "batch": args.batch, "image_size": args.size, "backbone": args.backbone,
        "precision": trainer.precision.name, "torch_threads": torch.get_num_threads(),
        "storage_option": args.storage, "train_images": len(trainer.data.train), "val_images": len(trainer.data.val),
        "arrays": storage, "arrays_in_ram_bytes": in_ram,
        "read_seconds": round(read_s, 2), "train_seconds": round(timed["train"], 2),
        "step_seconds": round(timed["train"] / steps, 3), "data_wait_seconds": round(wait, 2),
        "data_wait_share": round(wait / timed["train"], 4), "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_after_reading": after_read, "rss_at_end": status(),
        "val_balanced_accuracy_last": logs[-1]["val"].get("balanced_accuracy"), "epochs_run": result["epochs_run"],
    }))


def markdown(r: dict) -> str:
    d, t = r["decode"], r["train"]
    lines = [f"# Data larger than memory ({r['images']} images at {r['size']} px, {r['decoded_gb']} GB decoded)", "",
             f"Machine: {r['machine']['cpu']}, {r['machine']['cores']} cores, {r['machine']['ram_gb']} GB RAM, shared "
             f"with other jobs (load before: `{r['load_before']['uptime']}`). Command: `{r['command']}`.", "",
             "## Decode into the memory-mapped cache (train split, csv reader, first decode each time)", "",
             "| run | workers | img/s | seconds | CPU s / image | CPU share | machine idle | load 1 min before -> after |",
             "|---|---|---|---|---|---|---|---|"]
    for i, x in enumerate(d["runs"]):
        lines.append(f"| {i + 1} | {x['workers']} | {x['img_per_s']} | {x['seconds']} | {x['cpu_seconds_per_image']} | "
                     f"{x['cpu_share']} | {100 * x.get('machine_idle_share', float('nan')):.1f} % | {x['loadavg_1min_before']:.1f} -> {x['loadavg_1min_after']:.1f} |")
    lines += ["", f"Speed-up of 2 workers over 1 (mean img/s): **{d['speedup']}x** (target 1.7x). CPU share: 1 worker "
              f"{d['cpu_share_1']}, 2 workers {d['cpu_share_2']} of the 2.0 two cores could give.", "",
              f"## Training on it ({t[0]['steps']} steps, batch {t[0]['batch']}, {t[0]['backbone']}, {t[0]['precision']}, "
              f"{t[0]['torch_threads']} threads; the cache files evicted from the page cache first)", "",
              "| option storage | train / val arrays | data in RAM | RSS after reading (anon / file) | peak RSS | data wait share | step time |",
              "|---|---|---|---|---|---|---|"]
    for x in t:
        lines.append(f"| {x['storage_option']} | {x['arrays']['train']} / {x['arrays']['val']} | "
                     f"{x['arrays_in_ram_bytes'] / 2**30:.2f} GiB | {x['rss_after_reading']['RssAnon'] / 2**30:.2f} / "
                     f"{x['rss_after_reading']['RssFile'] / 2**30:.2f} GiB | {x['peak_rss_bytes'] / 2**30:.2f} GiB | "
                     f"{100 * x['data_wait_share']:.1f} % | {x['step_seconds']} s |")
    lines += ["",
              "Targets: peak RSS < 4 GiB, data wait < 10 % of a training step.", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=3000, help="images written (default 3000)")
    p.add_argument("--size", type=int, default=384, help="decoded size in px (default 384)")
    p.add_argument("--source-size", type=int, default=448, help="size of the written JPEGs (default 448)")
    p.add_argument("--val", type=int, default=500, help="images of split val (default 500)")
    p.add_argument("--rounds", type=int, default=2, help="decodes with 1 and with 2 workers, alternating (default 2)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--steps", type=int, default=25, help="steps per epoch (default 25)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--backbone", default="resnet10t")
    p.add_argument("--work", default="/tmp/medattn_large_data", help="folder for the images and the cache")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--tag", default="", help="suffix of the result files")
    p.add_argument("--results", type=Path, default=RESULTS, help="where large_data<tag>.json/.md go")
    p.add_argument("--train-storage", nargs="+", default=["memmap"], choices=("auto", "memory", "memmap"),
                   help="option storage of the training runs, one run each (default: memmap)")
    p.add_argument("--train-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--storage", default="auto", help=argparse.SUPPRESS)
    args = p.parse_args()
    work = Path(args.work)
    os.environ["MEDATTN_CACHE"] = str(work / "cache")
    if args.train_child:
        train_child(args)
        return
    t0 = time.perf_counter()
    table = write_set(work, args.n, args.source_size, args.val, jobs=2)
    write_s = time.perf_counter() - t0
    load_before = machine_load()
    runs = []
    for _ in range(args.rounds):
        for workers in (1, 2):
            runs.append(decode_once(table, args.size, workers))
            print(json.dumps(runs[-1]), flush=True)
    load_after = machine_load()
    from medattn.data import load_split

    load_split("csv", str(work), "val", args.size, **reader_options(table))  # cached now, read by the trainer
    train, stderr = [], []
    for storage in args.train_storage:
        shutil.rmtree(work / "run", ignore_errors=True)
        evict_page_cache(work / "cache")
        child = subprocess.run([sys.executable, __file__, "--train-child", "--storage", storage, *sys.argv[1:]],
                               capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        if child.returncode:
            sys.exit(f"training failed:\n{child.stderr[-4000:]}")
        train.append(json.loads(child.stdout.strip().splitlines()[-1]))
        stderr.append(child.stderr.strip().splitlines()[-6:])
        print(json.dumps(train[-1]), flush=True)

    def mean(w: int, key: str) -> float:
        return float(np.mean([r[key] for r in runs if r["workers"] == w]))

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    n_train = args.n - args.val
    result = {
        "command": "python benchmarks/large_data.py " + " ".join(sys.argv[1:]),
        "images": args.n, "size": args.size, "decoded_gb": round(n_train * args.size**2 * 3 / 1e9, 2),
        "write_seconds": round(write_s, 1),
        "machine": {"cpu": cpu, "cores": os.cpu_count(), "ram_gb": round(mem / 1e9, 1), "python": platform.python_version()},
        "load_before": load_before, "load_after": load_after,
        "decode": {"runs": runs, "speedup": round(mean(2, "img_per_s") / mean(1, "img_per_s"), 2),
                   "cpu_share_1": round(mean(1, "cpu_share"), 2), "cpu_share_2": round(mean(2, "cpu_share"), 2)},
        "train": train, "train_stderr_tail": stderr,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    stem = args.results / f"large_data{args.tag}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
