"""Training and inference speed of baseline, BIIGMA-Net and Soft-Attention, side by side in one run.

For every (model, backbone, precision): training images/s (forward_train + backward + AdamW step),
inference images/s, single-image latency and peak memory, at 224 px and batch 32. Each configuration
runs in its own subprocess so its peak memory is its own. Ratios within one run are what to compare:
these machines are noisy. First, when ../shared/data/isic2017_256 is there, the share of a training
epoch on ISIC 2017 that is spent waiting for data (the input pipeline: in-memory uint8 images,
augmentation on batches in a background thread).

    python benchmarks/speed.py                       # full table, saves benchmarks/results/speed_<device>.json
    python benchmarks/speed.py --models baseline biigma --backbones tf_efficientnet_lite0 --precisions bf16
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def measure_one(model_name: str, backbone: str, precision: str, batch: int, size: int, steps: int, device: str) -> dict:
    import torch

    from medattn import create_model
    from medattn.engine.precision import Precision
    from medattn.losses.classification import build_criterion
    from medattn.models.base import LossContext

    dev = torch.device(device)
    prec = Precision.resolve(precision, dev)
    torch.manual_seed(0)
    model = create_model(model_name, backbone=backbone, num_classes=3, pretrained=False).to(dev)
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    crit = build_criterion("ce", "multiclass")
    x = torch.rand(batch, 3, size, size, device=dev).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 3, (batch,), device=dev)
    ctx = LossContext(criterion=crit, epoch=5, num_epochs=10)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def train_step():
        with prec.autocast():
            out = model.forward_train(x, y, ctx)
        opt.zero_grad(set_to_none=True)
        out.losses["total"].backward()
        opt.step()

    def timed(fn, n):
        times = []
        for _ in range(n):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    model.train()
    timed(train_step, 2)  # warm-up
    t_train = timed(train_step, steps)
    model.eval()
    with torch.no_grad():
        def infer():
            with prec.autocast():
                model(x)

        def infer1():
            with prec.autocast():
                model(x[:1])

        timed(infer, 1)
        t_infer = timed(infer, steps)
        timed(infer1, 2)
        t_one = timed(infer1, max(5, steps))
    peak = (torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"model": model_name, "backbone": backbone, "precision": prec.name, "batch": batch, "size": size,
            "train_step_s": t_train, "train_img_s": batch / t_train, "infer_img_s": batch / t_infer,
            "latency_ms": 1000 * t_one, "peak_mem_mib": peak, "device": device}


def measure_data_share(root: str, steps: int) -> dict:
    """Share of a training epoch on ISIC 2017 (the isic2017_baseline protocol, ``steps`` steps) that the
    trainer spends waiting for the next augmented batch. Decoding happens before (and is cached)."""
    import tempfile

    from medattn.config import load_config
    from medattn.engine.trainer import Trainer

    cfg = load_config("isic2017_baseline", [f"data.root={root}", "train.epochs=1",
                                            f"train.max_steps_per_epoch={steps}"])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, Path(tmp) / "run", progress=False, log=lambda msg: None)
        trainer.fit()
        epoch = json.loads((Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()[0])
    return {"steps": steps, "batch": cfg.train.batch_size, "size": cfg.data.image_size,
            "epoch_s": epoch["seconds"], "data_wait_s": epoch["data_wait_seconds"],
            "data_wait_share": epoch["data_wait_seconds"] / epoch["seconds"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["baseline", "biigma", "soft_attention"])
    p.add_argument("--backbones", nargs="+", default=["tf_efficientnet_lite0", "resnet50", "densenet121"])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None)
    p.add_argument("--isic-root", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/isic2017_256"),
                   help="ISIC 2017 data for the data-wait measurement (skipped when missing)")
    p.add_argument("--data-steps", type=int, default=30, help="training steps of the data-wait measurement (0: skip)")
    p.add_argument("--one", nargs=3, metavar=("MODEL", "BACKBONE", "PRECISION"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(measure_one(*args.one, args.batch, args.size, args.steps, args.device)))
        return
    data_share = None
    if args.data_steps and Path(args.isic_root).is_dir():
        data_share = measure_data_share(args.isic_root, args.data_steps)
        print(f"ISIC 2017 input pipeline: {data_share['data_wait_s']:.1f} s of {data_share['epoch_s']:.1f} s "
              f"waiting for data over {args.data_steps} training steps ({100 * data_share['data_wait_share']:.1f}%)",
              flush=True)
    rows = []
    for backbone in args.backbones:
        for precision in args.precisions:
            for model in args.models:
                cmd = [sys.executable, __file__, "--one", model, backbone, precision, "--batch", str(args.batch),
                       "--size", str(args.size), "--steps", str(args.steps), "--device", args.device]
                if args.threads:
                    cmd += ["--threads", str(args.threads)]
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode != 0:
                    print(res.stderr[-2000:], file=sys.stderr)
                    raise SystemExit(f"{model}/{backbone}/{precision} failed")
                row = json.loads(res.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(f"{backbone:<22} {row['precision']:<5} {model:<15} train {row['train_img_s']:7.1f} img/s "
                      f"(step {row['train_step_s']:.3f} s)  infer {row['infer_img_s']:7.1f} img/s  "
                      f"latency {row['latency_ms']:7.1f} ms  peak {row['peak_mem_mib']:7.0f} MiB", flush=True)
    for r in rows:  # step time relative to the baseline of the same backbone and precision
        base = next((b for b in rows if b["model"] == "baseline" and b["backbone"] == r["backbone"]
                     and b["precision"] == r["precision"]), None)
        r["step_vs_baseline"] = r["train_step_s"] / base["train_step_s"] if base else None
    machine = {"platform": platform.platform(), "processor": platform.processor(), "python": platform.python_version(),
               "cpu_count": __import__("os").cpu_count(), "device": args.device}
    try:
        import torch

        machine["torch"] = torch.__version__
        if args.device == "cuda":
            machine["gpu"] = torch.cuda.get_device_name(0)
    except Exception:
        pass
    RESULTS.mkdir(exist_ok=True)
    out = Path(args.out) if args.out else RESULTS / f"speed_{args.device}.json"
    out.write_text(json.dumps({"machine": machine, "batch": args.batch, "size": args.size, "rows": rows,
                               "isic2017_data_wait": data_share}, indent=1))
    print(f"wrote {out}")


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


if __name__ == "__main__":
    main()
