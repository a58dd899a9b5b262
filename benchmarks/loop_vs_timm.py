"""medattn's training path against a timm ``train.py``-style loop, same backbone, batch, size and
precision, side by side in one run: training images/s and the share of the time spent waiting for data.

- medattn: ``data.batches.TrainBatches`` (in-memory uint8 images, batch augmentation: flips, 90-degree
  rotations, resized crop, colour jitter; one step ahead in a background thread; on CUDA the uint8
  batch goes to the GPU and is augmented there) and ``engine.loop.train_one_epoch`` around the
  registered ``baseline`` model (``forward_train``, the configured criterion).
- timm-style: ``timm.create_model`` and a ``torch.utils.data.DataLoader`` (``--workers`` processes,
  pinned memory on CUDA) over the same uint8 images with per-image random flips and 90-degree
  rotations, cross-entropy, AdamW, autocast: the loop of timm's ``train.py`` without its extras.

    python benchmarks/loop_vs_timm.py --device cpu --precision fp32 --steps 10
    python benchmarks/loop_vs_timm.py --device cuda --precision bf16 --size 224 --batch 128 --steps 50
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from _machine import cpu_name  # benchmarks/ is on sys.path when a script runs


class _Images(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray, targets: np.ndarray):
        self.images, self.targets = images, targets

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        x = torch.from_numpy(self.images[i]).permute(2, 0, 1)
        if torch.rand(()) < 0.5:
            x = x.flip(2)
        x = torch.rot90(x, int(torch.randint(0, 4, ())), dims=(1, 2))
        return x, int(self.targets[i])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timm_loop(args, images, targets, device, precision) -> dict:
    import timm

    torch.manual_seed(0)
    model = timm.create_model(args.backbone, pretrained=False, num_classes=3).to(device)
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loader = torch.utils.data.DataLoader(_Images(images, targets), batch_size=args.batch, shuffle=True,
                                         num_workers=args.workers, pin_memory=device.type == "cuda",
                                         drop_last=True, persistent_workers=args.workers > 0)
    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1) * 255
    model.train()
    steps, wait, started = 0, 0.0, None
    while steps < args.steps + args.warmup:
        it = iter(loader)
        while steps < args.steps + args.warmup:
            t0 = time.perf_counter()
            try:
                x, y = next(it)
            except StopIteration:
                break
            if steps == args.warmup:
                _sync(device)
                started, wait = time.perf_counter(), 0.0
                t0 = started
            x = x.to(device, non_blocking=True).float().sub_(mean).div_(std).contiguous(memory_format=torch.channels_last)
            y = y.to(device, non_blocking=True)
            wait += time.perf_counter() - t0
            with precision.autocast():
                loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
    _sync(device)
    seconds = time.perf_counter() - started
    return {"loop": "timm-style", "img_per_s": args.steps * args.batch / seconds, "seconds": seconds,
            "data_wait_share": wait / seconds}


def medattn_loop(args, images, targets, device, precision) -> dict:
    from medattn import create_model
    from medattn.data.batches import TrainBatches
    from medattn.data.dataset import ImageDataset
    from medattn.data.transforms import BatchAugment
    from medattn.engine.distributed import TrainStep
    from medattn.engine.loop import train_one_epoch
    from medattn.engine.optim import WarmupCosine
    from medattn.losses.classification import build_criterion
    from medattn.models.base import LossContext

    torch.manual_seed(0)
    model = create_model("baseline", backbone=args.backbone, num_classes=3, pretrained=False).to(device)
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for g in opt.param_groups:
        g["base_lr"] = 1e-4
    data = ImageDataset(images, targets, ["a", "b", "c"], [str(i) for i in range(len(images))])
    stream = TrainBatches(data, args.batch, 0, BatchAugment(), max_steps=args.warmup, device=device)
    ctx = LossContext(criterion=build_criterion("ce", "multiclass"), epoch=0, num_epochs=1)
    kw = dict(device=device, precision=precision, progress=False)
    train_one_epoch(TrainStep(model), opt, stream.epoch(0), ctx, WarmupCosine(10), 0, **kw)  # warm-up
    stream.steps_per_epoch = args.steps
    batches = stream.epoch(1)
    _sync(device)
    started = time.perf_counter()
    train_one_epoch(TrainStep(model), opt, batches, ctx, WarmupCosine(10), 0, **kw)
    _sync(device)
    seconds = time.perf_counter() - started
    return {"loop": "medattn", "img_per_s": args.steps * args.batch / seconds, "seconds": seconds,
            "data_wait_share": batches.wait_seconds / seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", default="tf_efficientnet_lite0")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes of the timm-style loop")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds of the two loops")
    p.add_argument("--out", default=None)
    args = p.parse_args()

    from medattn.engine.precision import Precision

    device = torch.device(args.device)
    precision = Precision.resolve(args.precision, device)
    n = args.batch * (args.steps + args.warmup)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, args.size, args.size, 3), dtype=np.uint8)
    targets = rng.integers(0, 3, n)
    rows = []
    for r in range(args.rounds):
        for fn in (medattn_loop, timm_loop):
            row = {"round": r, **fn(args, images, targets, device, precision)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    mean = {name: float(np.mean([r["img_per_s"] for r in rows if r["loop"] == name])) for name in ("medattn", "timm-style")}
    wait = {name: float(np.mean([r["data_wait_share"] for r in rows if r["loop"] == name])) for name in mean}
    result = {"machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
                          "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None},
              "settings": vars(args), "rows": rows, "mean_img_per_s": mean, "mean_data_wait_share": wait,
              "medattn_over_timm": mean["medattn"] / mean["timm-style"]}
    print(f"| loop | train img/s | data wait |\n|---|---|---|")
    for name in mean:
        print(f"| {name} | {mean[name]:.1f} | {100 * wait[name]:.1f}% |")
    print(f"medattn / timm-style: {result['medattn_over_timm']:.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
