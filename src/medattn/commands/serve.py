"""Serve a model over HTTP: an ONNX export (onnxruntime) or a run directory (PyTorch).

POST /predict (an image as multipart field `file` or as the raw body; ?maps=1 adds the attention
overlay as a base64 PNG), GET /health, GET /info, and GET / (a page to upload an image and see the
prediction and where the model looked). One model instance; requests from all clients are queued
and run in small batches. Uploads stay in memory unless --save-uploads is given. See docs/deploy.md.
"""
from __future__ import annotations

import argparse

NAME = "serve"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="RUN_DIR_OR_ONNX", help="a .onnx file from `medattn export`, or a run directory")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest accepted upload in MB (default 20)")
    p.add_argument("--max-pixels", type=int, default=None,
                   help="largest accepted image in pixels, against decompression bombs (default 178956970, PIL's)")
    p.add_argument("--max-batch", type=int, default=16, help="most requests run together (default 16)")
    p.add_argument("--batch-wait-ms", type=float, default=5.0,
                   help="how long the first request of a batch waits for others (default 5 ms)")
    p.add_argument("--threads", type=int, default=None, help="inference threads (default: the runtime's)")
    p.add_argument("--checkpoint", default="best", help="for a run directory: best (default) or last")
    p.add_argument("--save-uploads", metavar="DIR", help="keep a copy of every accepted upload in DIR (off by default)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))


def run(args: argparse.Namespace) -> int:
    from ..deploy.serve import serve

    try:
        serve(args.model, args.host, args.port, checkpoint=args.checkpoint, threads=args.threads,
              log_level=args.log_level, max_upload_mb=args.max_upload_mb, max_pixels=args.max_pixels,
              max_batch=args.max_batch, max_wait_ms=args.batch_wait_ms, save_uploads=args.save_uploads)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"medattn serve: error: {err}") from None
    return 0
