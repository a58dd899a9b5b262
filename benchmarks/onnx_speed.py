"""PyTorch eager against onnxruntime on the CPU, side by side in one run: images/s at batch 32 and
single-image latency (p50 / p95), for baseline and BIIGMA-Net on tf_efficientnet_lite0 at 224 px.

Both run the graph `medattn export` writes (`medattn.deploy.graph.DeployGraph`: image in [0, 1] ->
probabilities), with the same number of threads. PyTorch runs fp32 (NCHW and channels_last, as
`medattn predict` does) and bf16 autocast where the CPU has it (the project's default there);
onnxruntime runs the fp32 ONNX file. The weights are random (speed does not depend on them). The
backends are measured in turns, round after round, so a load change on a shared machine hits all of
them alike; compare the ratios.

    python benchmarks/onnx_speed.py                    # saves benchmarks/results/onnx_speed.{json,md}
    python benchmarks/onnx_speed.py --models baseline --rounds 2 --latency-runs 20
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _machine import cpu_name  # benchmarks/ is on sys.path when a script runs

RESULTS = Path(__file__).resolve().parent / "results"


def backends(model_name: str, backbone: str, size: int, threads: int, workdir: Path) -> dict:
    """name -> fn(x: float32 N x 3 x S x S ndarray) -> probabilities, for one model."""
    import medattn
    from medattn.deploy.export import export_graph, ort_session
    from medattn.deploy.graph import DeployGraph
    from medattn.engine.precision import cpu_supports_bf16

    torch.manual_seed(0)
    model = medattn.create_model(model_name, backbone=backbone, num_classes=3, pretrained=False).eval()
    graph = DeployGraph(model, "multiclass").eval()
    path = workdir / f"{model_name}.onnx"
    export_graph(graph, size, path, log=print)
    session = ort_session(path, threads)
    cl_graph = DeployGraph(model, "multiclass").eval().to(memory_format=torch.channels_last)

    @torch.no_grad()
    def eager(x):
        return graph(torch.from_numpy(x))[0].numpy()

    @torch.no_grad()
    def eager_cl(x):
        return cl_graph(torch.from_numpy(x).contiguous(memory_format=torch.channels_last))[0].numpy()

    @torch.no_grad()
    def eager_bf16(x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return cl_graph(torch.from_numpy(x).contiguous(memory_format=torch.channels_last))[0].float().numpy()

    def onnx(x):
        return session.run(["probabilities"], {"image": x})[0]

    out = {"pytorch eager fp32": eager, "pytorch eager fp32 channels_last": eager_cl, "onnxruntime fp32": onnx}
    if cpu_supports_bf16():
        out["pytorch eager bf16 autocast"] = eager_bf16
    return out


def measure(fns: dict, size: int, batch: int, rounds: int, latency_runs: int) -> dict:
    rng = np.random.default_rng(0)
    xb = rng.random((batch, 3, size, size), dtype=np.float32)
    x1 = xb[:1].copy()
    ref = fns["pytorch eager fp32"](xb)
    agree = {name: float(np.abs(fn(xb) - ref).max()) for name, fn in fns.items()}  # also the warm-up
    for fn in fns.values():
        for _ in range(3):
            fn(x1)
    batch_s = {n: [] for n in fns}
    latency = {n: [] for n in fns}
    for r in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn(xb)
            batch_s[name].append(time.perf_counter() - t)
            for _ in range(latency_runs // rounds):
                t = time.perf_counter()
                fn(x1)
                latency[name].append(time.perf_counter() - t)
        print(f"  round {r + 1}/{rounds} done", flush=True)
    out = {}
    for name in fns:
        lat = np.array(latency[name]) * 1000
        out[name] = {"images_per_s_batch": batch / statistics.median(batch_s[name]),
                     "latency_ms_p50": float(np.percentile(lat, 50)), "latency_ms_p95": float(np.percentile(lat, 95)),
                     "latency_runs": len(lat), "batch_runs": len(batch_s[name]),
                     "max_abs_diff_vs_fp32_eager": agree[name]}
    return out


def markdown(result: dict) -> str:
    lines = [f"# PyTorch eager vs onnxruntime on the CPU ({result['cpu']}, {result['threads']} threads)", "",
             f"{result['size']} px, batch {result['batch']} for throughput, batch 1 for latency; "
             f"{result['backbone']}; load average at start {result['load_average_start']}, other jobs shared "
             "the cores. `python benchmarks/onnx_speed.py`.", "",
             f"| model | backend | img/s (batch {result['batch']}) | latency p50 (ms) | latency p95 (ms) | "
             "p50 vs eager fp32 | max abs diff |", "|---|---|---|---|---|---|---|"]
    for model, rows in result["models"].items():
        base = rows["pytorch eager fp32"]["latency_ms_p50"]
        for name, r in rows.items():
            lines.append(f"| {model} | {name} | {r['images_per_s_batch']:.1f} | {r['latency_ms_p50']:.1f} | "
                         f"{r['latency_ms_p95']:.1f} | {base / r['latency_ms_p50']:.2f}x | "
                         f"{r['max_abs_diff_vs_fp32_eager']:.1e} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["baseline", "biigma"])
    ap.add_argument("--backbone", default="tf_efficientnet_lite0")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--rounds", type=int, default=5, help="turns over the backends (one batch-32 run each)")
    ap.add_argument("--latency-runs", type=int, default=100, help="single-image runs per backend, over all rounds")
    ap.add_argument("--out", default=str(RESULTS / "onnx_speed.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    result = {"cpu": cpu_name(), "threads": args.threads, "size": args.size, "batch": args.batch,
              "backbone": args.backbone, "torch": torch.__version__,
              "load_average_start": [round(v, 2) for v in os.getloadavg()], "models": {}}
    import onnxruntime

    result["onnxruntime"] = onnxruntime.__version__
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            print(f"{name}: export and measure", flush=True)
            fns = backends(name, args.backbone, args.size, args.threads, Path(tmp))
            result["models"][name] = measure(fns, args.size, args.batch, args.rounds, args.latency_runs)
    result["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    md = markdown(result)
    out.with_suffix(".md").write_text(md)
    print(md)
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
