"""`medattn serve`: a real server process on a free 127.0.0.1 port, real HTTP requests, good and bad."""
import base64
import io
import json
import struct
import threading
import zlib

import httpx
import numpy as np
import pytest
from PIL import Image

from .conftest import reference_probabilities


def png_upload(path):
    return {"file": (path.name, path.read_bytes(), "image/png")}


def probs_of(answer: dict) -> np.ndarray:
    return np.array(list(answer["probabilities"].values()))


def bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A PNG whose header says width x height (a decompression bomb: tiny file, 400 megapixels)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b"")


def test_health_info_and_page(server, exported):
    side = json.loads(exported.with_suffix(".json").read_text())
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok" and health["version"] == side["version"]
    info = httpx.get(server.url + "/info").json()
    assert info["class_names"] == side["class_names"] and info["image_size"] == 64
    assert info["metrics"] == side["metrics"] and info["model_card"] == side["model_card"]
    assert info["limits"]["max_upload_mb"] == 20.0 and "not a medical device" in info["intended_use"]
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<input type="file" id="file"' in page.text and "http://" not in page.text and "https://" not in page.text
    script = httpx.get(server.url + "/static/app.js")
    assert script.status_code == 200 and "/predict" in script.text


def test_predictions_equal_the_export_and_carry_an_overlay(server, exported, test_images):
    side = json.loads(exported.with_suffix(".json").read_text())
    for path in test_images[:3]:
        ref = reference_probabilities(exported, path)
        r = httpx.post(server.url + "/predict?maps=1", files=png_upload(path), timeout=30)
        assert r.status_code == 200, r.text
        answer = r.json()
        np.testing.assert_allclose(probs_of(answer), ref, atol=1e-6)
        assert answer["predicted"] == side["class_names"][int(np.argmax(ref))]
        assert answer["version"] == side["version"] and answer["task"] == "multiclass"
        overlay = answer["overlay"]
        assert overlay["map"] == "cam" and overlay["class"] == answer["predicted"]
        with Image.open(io.BytesIO(base64.b64decode(overlay["png_base64"]))) as im:
            assert im.format == "PNG" and im.size == (256, 256) and im.mode == "RGB"
            assert np.asarray(im).std() > 5  # an image, not a blank
    raw = httpx.post(server.url + "/predict", content=test_images[0].read_bytes(),
                     headers={"content-type": "image/png"}, timeout=30).json()
    np.testing.assert_allclose(probs_of(raw), reference_probabilities(exported, test_images[0]), atol=1e-6)
    assert "overlay" not in raw


def test_unusual_images_are_converted_as_the_training_reader_does(server, exported, test_images, tmp_path):
    rgb = np.asarray(Image.open(test_images[1]).convert("RGB"))
    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(rgb).convert("CMYK").save(cmyk, quality=95)
    sixteen = tmp_path / "sixteen.png"
    Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(sixteen)  # a 16-bit greyscale PNG
    assert Image.open(sixteen).mode.startswith("I")
    for path in (cmyk, sixteen):
        r = httpx.post(server.url + "/predict", files={"file": (path.name, path.read_bytes())}, timeout=30)
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(probs_of(r.json()), reference_probabilities(exported, path), atol=1e-6)


def test_bad_uploads_get_a_4xx_json_error_and_the_service_keeps_serving(server, test_images, tmp_path):
    jpeg = io.BytesIO()
    Image.open(test_images[2]).convert("RGB").save(jpeg, format="JPEG")
    url = server.url + "/predict"
    cases = {
        "empty body": (dict(content=b""), 400, "empty_upload"),
        "empty file": (dict(files={"file": ("x.png", b"")}), 400, "empty_upload"),
        "text file": (dict(files={"file": ("notes.txt", b"not an image\n" * 10, "text/plain")}), 415, "not_an_image"),
        "truncated JPEG": (dict(files={"file": ("t.jpg", jpeg.getvalue()[: len(jpeg.getvalue()) // 2])}), 422,
                           "unreadable_image"),
        "decompression bomb": (dict(files={"file": ("bomb.png", bomb_png())}), 413, "image_too_large"),
        "50 MB file": (dict(files={"file": ("big.png", b"\0" * 50_000_000)}), 413, "upload_too_large"),
        "50 MB, chunked": (dict(content=iter([b"\0" * 1_000_000] * 50)), 413, "upload_too_large"),
        "wrong form field": (dict(files={"image": ("x.png", test_images[0].read_bytes())}), 422, "missing_field"),
        "url-encoded form": (dict(data={"file": "x.png"}), 415, "wrong_encoding"),
        "broken multipart": (dict(content=b"--zz\r\nnonsense", headers={"content-type": "multipart/form-data"}), 400,
                             "bad_multipart"),
    }
    for what, (kwargs, status, code) in cases.items():
        r = httpx.post(url, timeout=60, **kwargs)
        assert r.status_code == status, (what, r.status_code, r.text)
        body = r.json()
        assert body["error"] == code and len(body["detail"]) > 20, (what, body)
    assert "max_pixels=178956970" in httpx.post(url, files={"file": ("b.png", bomb_png())}).json()["detail"]
    assert "20 MB" in httpx.post(url, content=b"\0" * 20_000_001).json()["detail"]
    ok = httpx.post(url, files=png_upload(test_images[0]), timeout=30)
    assert ok.status_code == 200 and httpx.get(server.url + "/health").json()["status"] == "ok"


def test_uploads_never_touch_the_disk(server, tmp_path):
    rng = np.random.default_rng(0)
    big = io.BytesIO()  # 5 MB of noise: python-multipart would spool anything over 1 MB to a temporary file
    Image.fromarray(rng.integers(0, 256, (1300, 1300, 3), dtype=np.uint8)).save(big, format="PNG", compress_level=0)
    assert big.tell() > 4_000_000

    def files():  # what the server process has in its TMPDIR and working directory (a library leaves a
        return {(p, p.stat().st_mtime_ns, p.stat().st_size)  # session file in TMPDIR at start-up)
                for d in (server.tmpdir, server.cwd) for p in d.rglob("*")}

    before = files()
    r = httpx.post(server.url + "/predict?maps=1", files={"file": ("noise.png", big.getvalue())}, timeout=60)
    assert r.status_code == 200, r.text
    r = httpx.post(server.url + "/predict", content=big.getvalue(), timeout=60)
    assert r.status_code == 200, r.text
    assert files() == before and list(server.cwd.iterdir()) == []


def test_concurrent_clients_are_batched_and_every_answer_is_right(server, exported, test_images):
    refs = {p: reference_probabilities(exported, p) for p in test_images}
    before = httpx.get(server.url + "/health").json()
    results, errors = [], []

    def client(i: int) -> None:
        path = test_images[i % len(test_images)]
        try:
            with httpx.Client(timeout=60) as c:
                for _ in range(3):
                    r = c.post(server.url + "/predict", files=png_upload(path))
                    results.append((path, r.status_code, r.json()))
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(repr(err))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(results) == 48
    for path, status, answer in results:
        assert status == 200
        np.testing.assert_allclose(probs_of(answer), refs[path], atol=1e-5)
    after = httpx.get(server.url + "/health").json()
    assert after["served"] - before["served"] == 48
    assert after["largest_batch"] > 1 and after["batches"] - before["batches"] < 48


def test_a_run_directory_serves_the_same_answers_and_nothing_is_unpickled(tiny_run, exported, test_images, tmp_path,
                                                                          monkeypatch):
    import pickle

    import torch
    from fastapi.testclient import TestClient

    from medattn.deploy.predictor import load_predictor
    from medattn.deploy.serve import create_app

    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")

    for target, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")):
        monkeypatch.setattr(target, name, refuse)
    saved = tmp_path / "saved"
    for source in (tiny_run, exported):
        app = create_app(load_predictor(source), save_uploads=saved if source == tiny_run else None)
        with TestClient(app) as client:
            answer = client.post("/predict?maps=1", files=png_upload(test_images[0])).json()
        np.testing.assert_allclose(probs_of(answer), reference_probabilities(exported, test_images[0]), atol=1e-4)
        assert answer["version"] == json.loads(exported.with_suffix(".json").read_text())["version"]
        assert answer["overlay"]["map"] == "cam"
    (kept,) = saved.iterdir()  # --save-uploads keeps what was sent, byte for byte
    assert kept.read_bytes() == test_images[0].read_bytes() and kept.suffix == ".png"


def test_serve_refuses_what_it_cannot_load(tmp_path):
    from medattn.cli import main

    (tmp_path / "m.onnx").write_bytes(b"\0")
    with pytest.raises(SystemExit, match="sidecar"):
        main(["serve", str(tmp_path / "m.onnx")])
    with pytest.raises(SystemExit, match="neither a run directory nor an .onnx file"):
        main(["serve", str(tmp_path / "nothing.bin")])


def test_a_large_multipart_upload_is_parsed_without_any_temporary_file(exported, monkeypatch):
    import tempfile

    from fastapi.testclient import TestClient

    from medattn.deploy.predictor import load_predictor
    from medattn.deploy.serve import create_app

    app = create_app(load_predictor(exported))
    rng = np.random.default_rng(1)
    big = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (1300, 1300, 3), dtype=np.uint8)).save(big, format="PNG", compress_level=0)

    def refuse(*args, **kwargs):
        raise AssertionError("an upload went to a temporary file")

    with TestClient(app) as client:
        for name in ("NamedTemporaryFile", "TemporaryFile", "SpooledTemporaryFile", "mkstemp", "mkdtemp"):
            monkeypatch.setattr(tempfile, name, refuse)
        r = client.post("/predict", files={"file": ("noise.png", big.getvalue())})
    assert r.status_code == 200, r.text
