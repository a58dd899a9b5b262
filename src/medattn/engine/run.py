"""A run directory: everything needed to evaluate, resume or serve a trained model.

Layout: ``config.yaml`` (resolved), ``classes.json``, ``best.safetensors``/``best.json`` (selected
weights), ``last.safetensors``/``last.json`` (training state for ``--resume``), ``metrics.jsonl`` (one
line per epoch), ``predictions_<split>.csv``, ``eval_<split>.json``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from ..models import create_model
from .checkpoint import atomic_write_text, load_checkpoint, save_checkpoint


@dataclass
class Run:
    run_dir: Path
    config: dict
    class_names: list[str]
    task: str
    model: torch.nn.Module

    @property
    def image_size(self) -> int:
        return int(self.config["data"]["image_size"])


def build_model(config: dict, num_classes: int, task: str, pretrained: bool | str | None = None) -> torch.nn.Module:
    """The model a config describes (``pretrained`` overrides ``model.pretrained``)."""
    m = config["model"]
    return create_model(m["name"], backbone=m.get("backbone"), num_classes=num_classes, task=task,
                        pretrained=m.get("pretrained") if pretrained is None else pretrained, **(m.get("options") or {}))


def write_run_files(run_dir: str | Path, config: dict, class_names: list[str], task: str) -> Path:
    """Write ``config.yaml`` and ``classes.json`` of a run (atomically); returns ``run_dir``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    atomic_write_text(run_dir / "classes.json", json.dumps({"class_names": list(class_names), "task": task}, indent=1))
    return run_dir


def read_run_config(run_dir: str | Path) -> dict:
    """The resolved config a run was trained with (its ``config.yaml``)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{Path(run_dir)} is not a run directory: config.yaml is missing")
    return yaml.safe_load(path.read_text())


def read_run_classes(run_dir: str | Path) -> tuple[list[str], str]:
    """(class names, task) of a run (its ``classes.json``)."""
    path = Path(run_dir) / "classes.json"
    if not path.is_file():
        raise FileNotFoundError(f"{Path(run_dir)} is not a run directory: classes.json is missing")
    classes = json.loads(path.read_text())
    return list(classes["class_names"]), classes.get("task", "multiclass")


def save_run(run_dir: str | Path, model: torch.nn.Module, config: dict, class_names: list[str], task: str,
             checkpoint: str = "best", meta: dict | None = None) -> Path:
    """Write config, class names and the model weights of a run (no training state)."""
    run_dir = write_run_files(run_dir, config, class_names, task)
    return save_checkpoint(run_dir / checkpoint, model, dict(meta or {}, kind="weights"))


def load_run(run_dir: str | Path, checkpoint: str = "best", device: str | torch.device = "cpu") -> Run:
    """Rebuild the model of a run and load its ``checkpoint`` weights (eval mode)."""
    run_dir = Path(run_dir)
    for name in ("config.yaml", "classes.json", f"{checkpoint}.safetensors"):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{run_dir} is not a complete run directory: {name} is missing")
    config = read_run_config(run_dir)
    class_names, task = read_run_classes(run_dir)
    model = build_model(config, len(class_names), task, pretrained=False)
    state, _, _, _ = load_checkpoint(run_dir / checkpoint)
    model.load_state_dict(state, strict=True)
    model.to(device).eval()
    return Run(run_dir, config, class_names, task, model)
