"""The HTTP service: FastAPI (ASGI) run by uvicorn, one model behind a micro-batching queue.

Endpoints: ``POST /predict`` (an image as multipart field ``file`` or as the raw body; ``?maps=1`` adds
the attention overlay as a base64 PNG), ``GET /health``, ``GET /info`` (classes, image size, metrics,
the model card) and ``GET /`` (a page to upload an image and see the prediction and overlay; its
script and style are in ``deploy/static``, nothing is fetched from elsewhere). Bad requests get a
4xx JSON ``{"error": code, "detail": message}`` and the service goes on serving. Decoding and PNG
encoding run in the server's thread pool, the model in the batcher's one thread (``batcher.py``).
Uploads stay in memory; ``save_uploads`` (off by default) keeps a copy of each accepted upload.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from .batcher import MicroBatcher
from .predictor import Predictor, top_class
from .uploads import UploadError, decode_upload, image_bytes, read_capped

STATIC = Path(__file__).with_name("static")
DEFAULT_MAX_UPLOAD_MB = 20.0


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def predictor_summary(info: dict) -> dict:
    """The part of a predictor's ``info`` that /info shows (no local paths)."""
    keys = ("version", "model", "task", "class_names", "image_size", "input", "outputs", "overlay", "metrics",
            "exporter", "opset", "versions")
    return {k: info[k] for k in keys if k in info}


def _model_card(info: dict) -> str | None:
    if info.get("model_card"):
        return info["model_card"]
    card = Path(info.get("run_dir", "")) / "MODEL_CARD.md"
    return card.read_text(encoding="utf-8") if info.get("run_dir") and card.is_file() else None


def create_app(predictor: Predictor, *, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
               max_pixels: int | None = None, max_batch: int = 16, max_wait_ms: float = 5.0,
               save_uploads: str | Path | None = None, overlay_size: int = 256):
    """The ASGI app serving ``predictor`` (see the module docstring).

    ``max_pixels``: decompression-bomb limit (default: the training reader's, PIL's 178,956,970).
    ``overlay_size``: side of the overlay PNG in pixels (at least the model's input size).
    """
    from ..data.io import DEFAULT_MAX_PIXELS
    from .overlay import overlay_rgb, png_bytes

    info = predictor.info
    max_bytes = int(max_upload_mb * 1e6)
    max_pixels = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    size = int(info["image_size"])
    class_names = list(info["class_names"])
    save_dir = Path(save_uploads) if save_uploads else None
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
    batcher = MicroBatcher(predictor, max_batch, max_wait_ms)
    started = time.time()

    @asynccontextmanager
    async def lifespan(_app):
        batcher.start()
        try:
            yield
        finally:
            batcher.stop()

    app = FastAPI(title="medattn", version=info.get("version", ""), lifespan=lifespan, docs_url=None,
                  redoc_url=None)  # the interactive docs would load their script from a CDN
    app.state.batcher = batcher
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(UploadError)
    async def upload_error(_request: Request, err: UploadError):
        return JSONResponse(err.json(), status_code=err.status)

    @app.exception_handler(Exception)
    async def server_error(_request: Request, err: Exception):
        return JSONResponse({"error": "server_error", "detail": f"{type(err).__name__}: {err}"}, status_code=500)

    @app.get("/")
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/health")
    async def health():
        return {"status": "ok", "version": info.get("version"), "uptime_s": round(time.time() - started, 1),
                "served": batcher.served, "batches": batcher.batches, "largest_batch": batcher.largest_batch,
                "queued": batcher.pending}

    @app.get("/info")
    async def model_info():
        return {**predictor_summary(info), "model_card": _model_card(info),
                "limits": {"max_upload_mb": max_upload_mb, "max_pixels": max_pixels, "max_batch": max_batch},
                "intended_use": "research only; not a medical device"}

    @app.post("/predict")
    async def predict(request: Request):
        maps = _truthy(request.query_params.get("maps"))
        body = await read_capped(request.stream(), max_bytes, request.headers.get("content-length"))
        data, filename = image_bytes(body, request.headers.get("content-type"))
        image = await run_in_threadpool(decode_upload, data, size, max_pixels)
        if save_dir is not None:
            digest = hashlib.sha256(data).hexdigest()[:16]
            await run_in_threadpool((save_dir / f"{digest}{Path(filename or '').suffix[:8]}").write_bytes, data)
        result = await asyncio.wrap_future(batcher.submit(image, maps))
        probs = result.probabilities
        k = top_class(probs)
        answer = {
            "version": info.get("version"),
            "task": info["task"],
            "predicted": class_names[k],
            "probabilities": {c: float(p) for c, p in zip(class_names, probs)},
        }
        if info["task"] == "multilabel":
            answer["labels"] = [c for c, p in zip(class_names, probs) if p >= 0.5]
        if maps:
            answer["overlay"] = None
            if result.overlay is not None:
                rgb = await run_in_threadpool(overlay_rgb, image, result.overlay, 0.45, max(size, overlay_size))
                png = await run_in_threadpool(png_bytes, rgb)
                answer["overlay"] = {"map": info["overlay"]["source"], "class": class_names[k],
                                     "png_base64": base64.b64encode(png).decode("ascii")}
            else:
                answer["overlay_note"] = "this model was exported without maps: run `medattn export --maps`"
        return answer

    return app


def serve(path: str | Path, host: str = "127.0.0.1", port: int = 8000, *, checkpoint: str = "best",
          threads: int | None = None, log_level: str = "info", **app_options) -> None:
    """Load the model at ``path`` (an .onnx export or a run directory) and serve it until interrupted."""
    import uvicorn

    from .predictor import load_predictor

    predictor = load_predictor(path, checkpoint, threads)
    app = create_app(predictor, **app_options)
    print(f"medattn serve: {predictor.info['model']['name']} {predictor.info.get('version')} "
          f"({type(predictor).__name__.removesuffix('Predictor').lower()}) on http://{host}:{port}/ "
          f"(Ctrl+C to stop)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
