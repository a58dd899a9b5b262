"""A tiny trained run, its ONNX export and a real `medattn serve` process on a free local port, shared by
the deploy tests (made once per session: training about 5 s, export about 10 s, server start about 5 s)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

TINY = ["model.backbone=resnet10t", "model.pretrained=false", "data.image_size=64", "train.epochs=1",
        "train.batch_size=16", "train.precision=fp32", "data.options.n_train=48", "data.options.n_val=16",
        "data.options.n_test=16"]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A demo-config run (baseline, resnet10t, synthetic 64 px, 1 epoch) with its test evaluations."""
    from medattn.config import load_config
    from medattn.engine.trainer import Trainer

    run_dir = tmp_path_factory.mktemp("deploy") / "run"
    trainer = Trainer(load_config("demo", TINY), run_dir, progress=False, log=lambda s: None)
    trainer.fit()
    trainer.evaluate_splits(n_boot=50)
    return run_dir


@pytest.fixture(scope="session")
def exported(tiny_run) -> Path:
    """``tiny_run`` exported with its maps: the .onnx path (the sidecar is beside it)."""
    from medattn.deploy.export import export_onnx

    return export_onnx(tiny_run, tiny_run.parent / "export" / "model.onnx", maps=True, log=lambda s: None).onnx_path


@pytest.fixture(scope="session")
def test_images(tiny_run, tmp_path_factory) -> list[Path]:
    """Eight images of the run's shifted test split written as 128 px PNG files (uploads of another size
    than the model's input, so the server's resize is exercised)."""
    from medattn.engine.data import read_split
    from medattn.engine.run import read_run_config

    cfg = read_run_config(tiny_run)
    cfg.data.image_size = 128
    data = read_split(cfg, "test_shifted")
    folder = tmp_path_factory.mktemp("uploads")
    paths = []
    for i in range(8):
        p = folder / f"{data.ids[i]}.png"
        Image.fromarray(data.images[i]).save(p)
        paths.append(p)
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `medattn serve` subprocess on 127.0.0.1; ``url``, ``tmpdir`` (its TMPDIR), ``cwd``, ``stop()``."""

    def __init__(self, model: Path, workdir: Path, *args: str, timeout: float = 90.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmpdir, self.cwd = workdir / "tmp", workdir / "cwd"
        self.tmpdir.mkdir(parents=True)
        self.cwd.mkdir(parents=True)
        env = dict(os.environ, TMPDIR=str(self.tmpdir), OMP_NUM_THREADS="1")
        self.log = open(workdir / "server.log", "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "medattn.cli", "serve", str(model), "--port", str(self.port),
                                      "--threads", "1", "--log-level", "warning", *args],
                                     cwd=self.cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited: {(workdir / 'server.log').read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the server did not answer within {timeout} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="session")
def server(exported, tmp_path_factory):
    """`medattn serve model.onnx` (default 20 MB upload limit, 20 ms batching window)."""
    s = Server(exported, tmp_path_factory.mktemp("server"), "--batch-wait-ms", "20")
    yield s
    s.stop()


def reference_probabilities(onnx_path: Path, image_path: Path) -> np.ndarray:
    """What the export gives for a file decoded by the training reader: (K,) float32."""
    import json

    from medattn.data.io import read_image
    from medattn.deploy.export import ort_session

    size = json.loads(onnx_path.with_suffix(".json").read_text())["image_size"]
    image, _ = read_image(image_path, size)
    x = image.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
    return ort_session(onnx_path).run(["probabilities"], {"image": x})[0][0]
