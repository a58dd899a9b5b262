"""Cost of BIIGMA-Net's HSIC term against the number of spatial positions n, ours against the naive form.

Ours (``medattn.losses.pairwise_hsic``): H K H as K minus row/column means plus the grand mean, then an
elementwise product with L: O(n^2) per pair after the O(n^2 C) Gram matrices. Naive (as the official
``KernelLoss``): H built as an n x n matrix and tr(K H L H) from two n x n matmuls per kernel, O(n^3).
Both forward + backward, 3 heads of 64 channels, batch 8, at 7x7, 14x14, 28x28 and 42x42 maps (n = 49,
196, 784, 1764), float32 on CPU, median of repeated timings. Also checks that both give the same value.

    python benchmarks/hsic_scaling.py          # prints a table, saves benchmarks/results/hsic_scaling.json
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from medattn.losses.hsic import _points, gaussian_kernel, pairwise_hsic

RESULTS = Path(__file__).resolve().parent / "results"


def naive_pairwise_hsic(heads: list[torch.Tensor], sigma: float) -> torch.Tensor:
    """sum_{i<j} mean_b tr(K_i H K_j H) / n^2 with an explicit centring matrix (O(n^3))."""
    x = _points(heads)  # N x B x n x C
    n = x.shape[2]
    h = torch.eye(n) - torch.full((n, n), 1.0 / n)
    k = gaussian_kernel(x, sigma)  # N x B x n x n
    total = x.new_zeros(())
    for i in range(len(heads)):
        for j in range(i + 1, len(heads)):
            khlh = k[i] @ h @ k[j] @ h
            total = total + (khlh.diagonal(dim1=-2, dim2=-1).sum(-1) / (n * n)).mean()
    return total


def time_fn(fn, heads: list[torch.Tensor], repeats: int) -> float:
    """Median seconds of forward + backward."""
    times = []
    for _ in range(repeats + 1):
        for t in heads:
            t.grad = None
        start = time.perf_counter()
        fn(heads).backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])  # the first call warms up


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", type=int, default=[7, 14, 28, 42])
    p.add_argument("--heads", type=int, default=3)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--sigma", type=float, default=2.0)
    p.add_argument("--out", type=Path, default=RESULTS / "hsic_scaling.json")
    args = p.parse_args()

    torch.manual_seed(0)
    rows = []
    print(f"{'map':>6} {'n':>5} {'ours ms':>9} {'naive ms':>9} {'naive/ours':>10} {'|diff|':>9}")
    for s in args.sizes:
        heads = [torch.randn(args.batch, args.channels, s, s, requires_grad=True) for _ in range(args.heads)]
        with torch.no_grad():
            ours_value = float(pairwise_hsic(heads, args.sigma))
            naive_value = float(naive_pairwise_hsic(heads, args.sigma))
        ours = time_fn(lambda h: pairwise_hsic(h, args.sigma), heads, args.repeats)
        naive = time_fn(lambda h: naive_pairwise_hsic(h, args.sigma), heads, args.repeats)
        row = {"map": f"{s}x{s}", "n": s * s, "ours_ms": 1e3 * ours, "naive_ms": 1e3 * naive,
               "speedup": naive / ours, "abs_diff": abs(ours_value - naive_value)}
        rows.append(row)
        print(f"{row['map']:>6} {row['n']:>5} {row['ours_ms']:>9.2f} {row['naive_ms']:>9.2f} {row['speedup']:>10.1f} "
              f"{row['abs_diff']:>9.1e}")
    for a, b in zip(rows, rows[1:]):
        growth = b["n"] / a["n"]
        print(f"n x{growth:.0f}: ours x{b['ours_ms'] / a['ours_ms']:.1f} (O(n^2): x{growth ** 2:.0f}), "
              f"naive x{b['naive_ms'] / a['naive_ms']:.1f} (O(n^3): x{growth ** 3:.0f})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": f"{platform.processor() or platform.machine()}",
                                    "torch_threads": torch.get_num_threads(), "heads": args.heads,
                                    "channels": args.channels, "batch": args.batch, "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
