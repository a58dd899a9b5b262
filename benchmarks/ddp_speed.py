"""DDP throughput: the same training run launched by torchrun with 1, 2, ... processes, global batch
fixed, on the synthetic set; training images per second of the last epoch (validation left out) and
the scaling over one process.

    python benchmarks/ddp_speed.py --worlds 1 2 --threads 1                      # CPU, gloo
    python benchmarks/ddp_speed.py --device cuda --worlds 1 2 4 8 --backbone tf_efficientnet_lite0 --size 224

Each run is ``torchrun --standalone --nproc_per_node=W -m medattn train --quiet --no-eval`` for two
epochs; the time is the second epoch's ``seconds`` from the run's ``metrics.jsonl`` (warm caches and
threads). That time includes the validation of ``--n-val`` images (sharded too), kept small.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import cpu_name  # benchmarks/ is on sys.path when a script runs


def one_run(world: int, args: argparse.Namespace, out: Path) -> dict:
    steps = args.steps
    sets = [f"model.name={args.model}", f"model.backbone={args.backbone}", "model.pretrained=false",
            f"data.image_size={args.size}", f"train.batch_size={args.batch}", f"train.precision={args.precision}",
            f"train.device={args.device}", "train.epochs=2", f"train.max_steps_per_epoch={steps}",
            f"data.options.n_train={args.batch * steps}", f"data.options.n_val={args.n_val}",
            "data.test_splits=[]"]
    if args.threads:
        sets.append(f"train.num_threads={args.threads}")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world}",
           "-m", "medattn", "train", "--config", "demo", "--out", str(out), "--quiet", "--no-eval"]
    for s in sets:
        cmd += ["--set", s]
    env = {**os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {})}
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"world size {world} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    epochs = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    last = epochs[-1]  # epoch 2: warm caches, allocator and threads
    return {"world_size": world, "epoch_seconds": last["seconds"], "data_wait_seconds": last["data_wait_seconds"],
            "train_images": args.batch * steps, "wall_seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worlds", type=int, nargs="+", default=[1, 2])
    p.add_argument("--model", default="baseline")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=32, help="the global batch")
    p.add_argument("--steps", type=int, default=12, help="training steps per epoch")
    p.add_argument("--n-val", type=int, default=32, help="validation images (kept small: the epoch time includes them)")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="threads per process (CPU)")
    p.add_argument("--out", default=None, help="JSON results file")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for world in args.worlds:
            row = one_run(world, args, Path(tmp) / f"w{world}")
            row["train_img_per_s"] = round(row["train_images"] / row["epoch_seconds"], 2)
            row["data_wait_share"] = round(row["data_wait_seconds"] / row["epoch_seconds"], 4)
            rows.append(row)
            print(json.dumps(row), flush=True)
    base = rows[0]["train_img_per_s"]
    for row in rows:
        row["scaling"] = round(row["train_img_per_s"] / base, 3)
    gpu = None
    if args.device.startswith("cuda"):
        import torch
        gpu = torch.cuda.get_device_name(0)
    result = {"machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "gpu": gpu}, "settings": vars(args), "runs": rows}
    print("| processes | train img/s | scaling | data wait |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['world_size']} | {row['train_img_per_s']} | {row['scaling']:.2f}x | {100 * row['data_wait_share']:.1f}% |")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
