"""The trainer on a tiny learnable in-memory set: determinism, exact resume, logging, run dir."""
import json

import numpy as np
import pytest
import torch

from medattn.config import load_config
from medattn.data.dataset import ImageDataset
from medattn.engine.data import RunData
from medattn.engine.run import load_run
from medattn.engine.trainer import Trainer


def tiny_set(n: int, seed: int, size: int = 32) -> ImageDataset:
    """Three classes told apart by the colour of a centred square."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    images = rng.integers(0, 60, (n, size, size, 3), dtype=np.uint8)
    c = size // 4
    for i, k in enumerate(y):
        images[i, c:-c, c:-c, k] = 220
    return ImageDataset(images, y.astype(np.int64), ["a", "b", "c"], [f"img{seed}_{i}" for i in range(n)])


def tiny_config(**train):
    cfg = load_config(None, [
        "model.backbone=resnet10t", "model.pretrained=false", "train.precision=fp32", "train.batch_size=16",
        "train.epochs=2", "train.lr=3e-3", "train.warmup_epochs=0.5", "data.image_size=32", "seed=3",
    ])
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return cfg


@pytest.fixture(scope="module")
def data():
    return RunData(tiny_set(64, 0), tiny_set(32, 1))


def _fit(cfg, run_dir, data, resume=False, stop_after=None):
    trainer = Trainer(cfg, run_dir, resume=resume, progress=False, log=lambda s: None, data=data)
    trainer.fit(stop_after=stop_after)
    return trainer


def _log(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_resume_equals_straight_run(tmp_path, data):
    straight = _fit(tiny_config(), tmp_path / "a", data)
    _fit(tiny_config(), tmp_path / "b", data, stop_after=1)  # "killed" after epoch 1
    assert len(_log(tmp_path / "b")) == 1
    resumed = _fit(tiny_config(), tmp_path / "b", data, resume=True)
    a, b = _log(tmp_path / "a"), _log(tmp_path / "b")
    assert len(a) == len(b) == 2
    assert a[1]["train"]["total"] == pytest.approx(b[1]["train"]["total"], rel=1e-6, abs=1e-7)
    assert a[1]["val"]["balanced_accuracy"] == b[1]["val"]["balanced_accuracy"]
    for (k, v), w in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(v.float(), w.float(), atol=1e-6), k


def test_run_dir_is_complete_and_loadable(tmp_path, data):
    _fit(tiny_config(), tmp_path / "run", data)
    for name in ("config.yaml", "classes.json", "best.safetensors", "best.json", "last.safetensors", "metrics.jsonl"):
        assert (tmp_path / "run" / name).is_file(), name
    log = _log(tmp_path / "run")
    assert [e["epoch"] for e in log] == [0, 1]
    assert {"ce", "total"} <= set(log[0]["train"]) and "balanced_accuracy" in log[0]["val"]
    run = load_run(tmp_path / "run")
    assert run.class_names == ["a", "b", "c"] and run.task == "multiclass"
    x = torch.rand(2, 3, 32, 32)
    best_epoch = max(log, key=lambda e: e["val"]["balanced_accuracy"])["epoch"]
    assert json.loads((tmp_path / "run" / "best.json").read_text())["epoch"] == best_epoch
    assert run.model(x).shape == (2, 3)


def test_same_seed_same_metrics_and_refuses_to_overwrite(tmp_path, data):
    _fit(tiny_config(epochs=1), tmp_path / "x", data)
    _fit(tiny_config(epochs=1), tmp_path / "y", data)
    assert _log(tmp_path / "x")[0]["train"] == _log(tmp_path / "y")[0]["train"]
    with pytest.raises(FileExistsError, match="already holds a run"):
        Trainer(tiny_config(), tmp_path / "x", progress=False, data=data)


def test_learns_and_balanced_sampler(tmp_path, data):
    trainer = _fit(tiny_config(epochs=4, sampler="balanced"), tmp_path / "s", data)
    log = _log(tmp_path / "s")
    assert log[-1]["train"]["total"] < log[0]["train"]["total"]
    assert log[-1]["data_wait_seconds"] >= 0
    order = trainer.batches.order(torch.Generator().manual_seed(0))
    assert len(order) == len(data.train)


def test_lr_schedule_warmup_and_cosine(data, tmp_path):
    trainer = Trainer(tiny_config(epochs=4, warmup_epochs=1, min_lr_ratio=0.1), tmp_path / "lr", progress=False, data=data)
    spe = trainer.steps_per_epoch
    f = [trainer.schedule.factor(s) for s in range(4 * spe)]
    assert f[0] == pytest.approx(1 / spe) and f[spe - 1] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[spe:], f[spe + 1:]))
    assert f[-1] == pytest.approx(0.1, abs=0.05)


def test_balanced_sampler_refuses_multilabel_data(tmp_path):
    targets = np.eye(3, dtype=np.float32)[np.arange(16) % 3]
    targets[::4, 0] = 1.0  # several labels on some images: there is no single class to balance
    images = np.zeros((16, 32, 32, 3), np.uint8)
    ml = ImageDataset(images, targets, ["a", "b", "c"], [f"m{i}" for i in range(16)], task="multilabel")
    cfg = tiny_config(sampler="balanced")
    with pytest.raises(ValueError, match="sampler=balanced needs a multi-class task"):
        Trainer(cfg, tmp_path / "run", progress=False, log=lambda s: None, data=RunData(ml, ml))
    assert not (tmp_path / "run").exists()  # refused before anything was written
