"""Export a trained run to ONNX (verified with onnxruntime) with a JSON sidecar.

The graph takes N x 3 x H x W images (float32 in [0, 1], or uint8 with --input-dtype uint8; H = W =
the run's image size), normalises them itself and returns `probabilities` and `logits`; with --maps
also the model's native attention maps (`map_<name>`) and, for GAP + linear heads, the class
activation map (`cam`). The export is checked: onnxruntime's probabilities must equal PyTorch's
within --tolerance (max abs) on a fixed batch. Writes FILE (default RUN_DIR/model.onnx) and FILE
with .json: class names, image size, task, input contract, outputs, test metrics, model card,
versions. See docs/deploy.md.
"""
from __future__ import annotations

import argparse
import shlex
import sys

NAME = "export"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="run directory written by `medattn train`")
    p.add_argument("--format", default="onnx", choices=("onnx",), help="export format (onnx)")
    p.add_argument("--out", metavar="FILE", help="the .onnx file (default RUN_DIR/model.onnx); the sidecar is FILE.json")
    p.add_argument("--maps", action="store_true", help="add the attention maps (and the CAM where cheap) as outputs")
    p.add_argument("--input-dtype", default="float32", choices=("float32", "uint8"),
                   help="float32 in [0, 1] (default) or uint8 in [0, 255]")
    p.add_argument("--exporter", default="auto", choices=("auto", "dynamo", "torchscript"),
                   help="auto (default): the dynamo exporter, TorchScript's if that fails")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (>= 17; default 18)")
    p.add_argument("--checkpoint", default="best", help="best (default) or last")
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="largest allowed |onnxruntime - PyTorch| of the probabilities (default 1e-4)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing FILE and sidecar")


def run(args: argparse.Namespace) -> int:
    from ..deploy.export import ExportError, export_onnx

    if args.out and not args.out.endswith(".onnx"):
        raise SystemExit(f"medattn export: error: --out must end in .onnx, got {args.out}")
    try:
        result = export_onnx(args.run_dir, args.out, maps=args.maps, input_dtype=args.input_dtype,
                             exporter=args.exporter, opset=args.opset, checkpoint=args.checkpoint,
                             tolerance=args.tolerance, overwrite=args.overwrite,
                             command=shlex.join(["medattn", *sys.argv[1:]]) if sys.argv[1:2] == ["export"] else None)
    except (ExportError, FileExistsError, FileNotFoundError, ValueError) as err:
        raise SystemExit(f"medattn export: error: {err}") from None
    s = result.sidecar
    diff = s["verification"]["max_abs_diff"]["probabilities"]
    outputs = ", ".join(o["name"] for o in s["outputs"])
    print(f"wrote {result.onnx_path} ({s['exporter']} exporter, opset {s['opset']}; outputs: {outputs})")
    print(f"verified: onnxruntime vs PyTorch max |diff| of the probabilities {diff:.1e} on a batch of "
          f"{s['verification']['batch_size']} (tolerance {s['verification']['tolerance']:g})")
    print(f"wrote {result.sidecar_path}")
    return 0
