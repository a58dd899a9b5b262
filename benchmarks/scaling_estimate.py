"""What a run on a large set needs (time, RAM, disk) on 1, 8 and 64 GPUs, estimated from per-image
costs: those measured on this machine, and the GPU step rate, which is an input (measure it with
``benchmarks/speed.py --device cuda`` on the GPU you plan for).

    python benchmarks/scaling_estimate.py --images 401059 --size 224 --epochs 30 --gpu-train-img-s 1500

Measured here when the script runs: the CPU cost of assembling and augmenting one training image
(``data.batches.TrainBatches`` at ``--size``, the default augmentation), and of the float conversion
for inference. Read from ``benchmarks/results/large_data.json``: the CPU seconds to decode one image
into the memory-mapped cache.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from _machine import cpu_name  # benchmarks/ is on sys.path when a script runs

RESULTS = Path(__file__).resolve().parent / "results"


def batch_stream_cpu_seconds(size: int, batch: int = 32, steps: int = 8) -> tuple[float, float]:
    """CPU seconds per training image, one thread: (the whole CPU batch stream: index, to float,
    augment; only what stays on the CPU when a GPU augments: indexing the uint8 rows)."""
    import torch

    from medattn.data.batches import TrainBatches
    from medattn.data.dataset import ImageDataset
    from medattn.data.transforms import BatchAugment

    torch.set_num_threads(1)
    n = batch * steps
    rng = np.random.default_rng(0)
    data = ImageDataset(rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8), rng.integers(0, 3, n),
                        ["a", "b", "c"], [str(i) for i in range(n)])
    stream = TrainBatches(data, batch, 0, BatchAugment())
    list(stream._make(0))  # warm-up
    start = time.process_time()
    for _ in stream._make(1):
        pass
    whole = (time.process_time() - start) / n
    order = np.random.default_rng(1).permutation(n)
    start = time.process_time()
    for k in range(0, n, batch):
        data.images[order[k:k + batch]]
    return whole, (time.process_time() - start) / n


def decode_cpu_seconds() -> tuple[float, str]:
    path = RESULTS / "large_data.json"
    d = json.loads(path.read_text())
    per_image = float(np.mean([r["cpu_seconds_per_image"] for r in d["decode"]["runs"]]))
    return per_image, f"{path.name}: {d['images']} images decoded to {d['size']} px on {d['machine']['cpu']}"


def estimate(args: argparse.Namespace, stream_s: float, index_s: float, decode_s: float) -> list[dict]:
    decoded_gb = args.images * args.size * args.size * 3 / 1e9
    rows = []
    for gpus in args.gpus:
        nodes = max(1, -(-gpus // args.gpus_per_node))
        train_rate = gpus * args.gpu_train_img_s                  # images/s the GPUs can take
        # One batch thread per rank: with augmentation on the GPU it only indexes uint8 rows.
        feed_rate = gpus / index_s
        cpu_augment_rate = gpus / stream_s                        # if the CPU augmented (the CPU path)
        epoch_s = args.images / min(train_rate, feed_rate)
        eval_s = args.eval_images / (gpus * args.gpu_infer_img_s)
        rows.append({
            "gpus": gpus, "nodes": nodes,
            # rank 0 decodes, in min(8, cores) worker processes (data.options.num_workers' default)
            "first_decode_min": round(args.images * decode_s / min(8, args.cores_per_node) / 60, 1),
            "epoch_min": round(epoch_s / 60, 1), "eval_min": round(eval_s / 60, 2),
            "run_hours": round(args.epochs * (epoch_s + eval_s) / 3600, 2),
            "bottleneck": "GPU" if train_rate <= feed_rate else "CPU batch indexing",
            "cpu_feed_over_gpu_rate": round(feed_rate / train_rate, 1),
            "cpu_augment_over_gpu_rate": round(cpu_augment_rate / train_rate, 2),
            "cache_disk_gb": round(decoded_gb, 1),
            "ram_per_rank_gb_memory_storage": round(decoded_gb, 1),
            "ram_per_node_gb_memmap": round(args.node_batch_gb * min(gpus, args.gpus_per_node), 1),
        })
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=401_059, help="training images (ISIC 2024: 401,059 lesion crops)")
    p.add_argument("--eval-images", type=int, default=40_000, help="images scored per validation")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--gpus", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--cores-per-node", type=int, default=64)
    p.add_argument("--gpu-train-img-s", type=float, required=True,
                   help="training images/s of ONE GPU (an input: measure with benchmarks/speed.py --device cuda)")
    p.add_argument("--gpu-infer-img-s", type=float, default=None, help="default: 3x the training rate")
    p.add_argument("--node-batch-gb", type=float, default=2.0,
                   help="RSS of one rank with memmap storage (measured on CPU: 2.77 GiB peak, benchmarks/large_data.py)")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    args.gpu_infer_img_s = args.gpu_infer_img_s or 3 * args.gpu_train_img_s
    stream_s, index_s = batch_stream_cpu_seconds(args.size)
    decode_s, decode_source = decode_cpu_seconds()
    rows = estimate(args, stream_s, index_s, decode_s)
    result = {"machine": {"cpu": cpu_name(), "cores": os.cpu_count()}, "settings": vars(args),
              "measured": {"batch_stream_cpu_s_per_image": stream_s, "batch_index_cpu_s_per_image": index_s,
                           "decode_cpu_s_per_image": decode_s,
                           "decode_source": decode_source},
              "assumed": {"gpu_train_img_s": args.gpu_train_img_s, "gpu_infer_img_s": args.gpu_infer_img_s},
              "rows": rows}
    print(f"batch stream: {1000 * stream_s:.2f} ms CPU per image at {args.size} px (one core: "
          f"{1 / stream_s:.0f} img/s), of which indexing {1000 * index_s:.3f} ms; decode: {1000 * decode_s:.2f} ms CPU per image ({decode_source})")
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r[k]) for k in keys) + " |")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
