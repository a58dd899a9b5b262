"""Load test of `medattn serve` on 127.0.0.1: throughput and latency (p50 / p95 / p99) at 1, 8 and 32
concurrent clients, with every answer checked against onnxruntime run directly on the same decoded image.

The server is started here as a subprocess (`medattn serve MODEL --host 127.0.0.1 --port <free>`), on
an ONNX export given with --model, or by default on a BIIGMA-Net / baseline (tf_efficientnet_lite0,
224 px, random weights: speed does not depend on them) exported for this run. Clients are threads, each
with its own HTTP connection, sending PNG files of the synthetic dermoscopy set (512 x 512 px, so
decoding and resizing are part of the cost) as multipart uploads. Each level is bounded in requests
(--requests) and time (--max-seconds); a request that fails, times out or answers wrongly is counted.
Traffic goes to 127.0.0.1 only.

    python benchmarks/serve_load.py                   # saves benchmarks/results/serve_load.{json,md}
    python benchmarks/serve_load.py --model runs/demo/model.onnx --levels 1 8 --requests 64
"""
from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_model(workdir: Path, name: str, size: int) -> Path:
    """A random-weight model of ``name`` saved as a run and exported with its maps."""
    import torch

    import medattn
    from medattn.config import load_config
    from medattn.deploy.export import export_onnx
    from medattn.engine.run import save_run

    torch.manual_seed(0)
    cfg = load_config("demo", [f"model.name={name}", "model.pretrained=false", f"data.image_size={size}"])
    classes = ["nevus", "melanoma", "seborrheic_keratosis", "basal_cell_carcinoma"]
    model = medattn.create_model(name, backbone=cfg["model"]["backbone"], num_classes=len(classes), pretrained=False)
    run = save_run(workdir / f"{name}-run", model, cfg, classes, "multiclass").parent
    return export_onnx(run, workdir / f"{name}.onnx", maps=True, log=print).onnx_path


def upload_files(n: int, size: int = 512) -> list[bytes]:
    from PIL import Image

    from medattn.data import load_split

    data = load_split("synthetic", None, "test", size, n_test=n)
    out = []
    for image in data.images:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def references(model: Path, files: list[bytes]) -> np.ndarray:
    from medattn.deploy.predictor import OnnxPredictor
    from medattn.deploy.uploads import decode_upload

    predictor = OnnxPredictor(model)
    images = np.stack([decode_upload(f, predictor.info["image_size"], None) for f in files])
    return np.stack([p.probabilities for p in predictor.predict(images)])


def run_level(url: str, files: list[bytes], refs: np.ndarray, clients: int, requests: int, max_seconds: float,
              maps: bool) -> dict:
    import httpx

    lock = threading.Lock()
    next_index = [0]
    latencies, wrong, failed = [], [], []
    deadline = time.monotonic() + max_seconds

    def take() -> int | None:
        with lock:
            if next_index[0] >= requests or time.monotonic() > deadline:
                return None
            next_index[0] += 1
            return next_index[0] - 1

    def client() -> None:
        with httpx.Client(timeout=60) as c:
            while (i := take()) is not None:
                k = i % len(files)
                t = time.perf_counter()
                try:
                    r = c.post(url + ("/predict?maps=1" if maps else "/predict"), files={"file": (f"{k}.png", files[k])})
                    elapsed = time.perf_counter() - t
                    answer = r.json()
                except Exception as err:  # noqa: BLE001 - a lost request is a result, not a crash
                    with lock:
                        failed.append(f"{type(err).__name__}: {err}")
                    continue
                with lock:
                    if r.status_code != 200:
                        failed.append(f"HTTP {r.status_code}: {answer}")
                        continue
                    latencies.append(elapsed)
                    probs = np.array(list(answer["probabilities"].values()))
                    if not np.allclose(probs, refs[k], atol=1e-5) or (maps and not answer.get("overlay")):
                        wrong.append(i)

    before = httpx.get(url + "/health").json()
    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    after = httpx.get(url + "/health").json()
    sent = next_index[0]
    lat = np.array(latencies) * 1000
    batches = after["batches"] - before["batches"]
    return {"clients": clients, "maps": maps, "sent": sent, "answered_ok": len(latencies), "wrong": len(wrong),
            "failed": len(failed), "failures": failed[:5], "lost": sent - len(latencies) - len(failed),
            "seconds": wall, "requests_per_s": len(latencies) / wall if wall else 0.0,
            "latency_ms_p50": float(np.percentile(lat, 50)) if len(lat) else None,
            "latency_ms_p95": float(np.percentile(lat, 95)) if len(lat) else None,
            "latency_ms_p99": float(np.percentile(lat, 99)) if len(lat) else None,
            "model_batches": batches, "mean_batch": (after["served"] - before["served"]) / batches if batches else None,
            "largest_batch_so_far": after["largest_batch"]}


def markdown(result: dict) -> str:
    lines = [f"# `medattn serve` under load ({result['cpu']}, {result['model']})", "",
             f"{result['files']} PNG uploads of {result['upload_px']} px, model input {result['image_size']} px, "
             f"server `--max-batch {result['max_batch']} --batch-wait-ms {result['batch_wait_ms']}`, clients on "
             f"the same machine (127.0.0.1); load average at start {result['load_average_start']}, other jobs shared "
             "the cores. `python benchmarks/serve_load.py`.", "",
             "| clients | maps | requests | ok | wrong | failed/lost | req/s | p50 ms | p95 ms | p99 ms | mean model batch |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["levels"]:
        def ms(v):
            return "n/a" if v is None else f"{v:.0f}"
        mb = "n/a" if r["mean_batch"] is None else f"{r['mean_batch']:.1f}"
        lines.append(f"| {r['clients']} | {'yes' if r['maps'] else 'no'} | {r['sent']} | {r['answered_ok']} | {r['wrong']} | "
                     f"{r['failed']}/{r['lost']} | {r['requests_per_s']:.1f} | {ms(r['latency_ms_p50'])} | "
                     f"{ms(r['latency_ms_p95'])} | {ms(r['latency_ms_p99'])} | {mb} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    import httpx

    from _machine import cpu_name

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="an .onnx file from `medattn export` (default: export one for this run)")
    ap.add_argument("--default-model", default="biigma", help="registered model exported when --model is not given")
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32], help="concurrent clients")
    ap.add_argument("--requests", type=int, default=96, help="requests per level (and per maps setting)")
    ap.add_argument("--max-seconds", type=float, default=120.0, help="time limit of one level")
    ap.add_argument("--files", type=int, default=16, help="distinct upload files")
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--batch-wait-ms", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=None, help="server inference threads")
    ap.add_argument("--no-maps", action="store_true", help="only plain predictions (default: also ?maps=1)")
    ap.add_argument("--out", default=str(RESULTS / "serve_load.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else default_model(Path(tmp), args.default_model, 224)
        files = upload_files(args.files)
        refs = references(model, files)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "medattn.cli", "serve", str(model), "--host", "127.0.0.1", "--port", str(port),
               "--max-batch", str(args.max_batch), "--batch-wait-ms", str(args.batch_wait_ms), "--log-level", "warning",
               *(["--threads", str(args.threads)] if args.threads else [])]
        server = subprocess.Popen(cmd)
        try:
            for _ in range(600):
                try:
                    if httpx.get(url + "/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            else:
                raise SystemExit("the server did not start")
            info = httpx.get(url + "/info").json()
            result = {"cpu": cpu_name(), "model": f"{info['model']['name']} ({info['model']['backbone']})",
                      "image_size": info["image_size"], "upload_px": 512, "files": len(files),
                      "max_batch": args.max_batch, "batch_wait_ms": args.batch_wait_ms,
                      "load_average_start": [round(v, 2) for v in os.getloadavg()], "levels": []}
            for maps in ([False] if args.no_maps else [False, True]):
                for clients in args.levels:
                    print(f"{clients} clients, maps={maps} ...", flush=True)
                    result["levels"].append(run_level(url, files, refs, clients, args.requests, args.max_seconds, maps))
        finally:
            server.terminate()
            server.wait(30)
    result["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    bad = sum(r["wrong"] + r["failed"] + r["lost"] for r in result["levels"])
    print(f"wrote {out}; {bad} wrong, failed or lost answers")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
