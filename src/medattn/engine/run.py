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

from ..config import Config, ConfigError
from ..errors import RunError
from ..models import MedAttnModel, create_model
from ..files import atomic_write_text
from .checkpoint import load_checkpoint, load_model_state, save_checkpoint
from .precision import Precision


@dataclass
class Run:
    run_dir: Path
    config: Config
    class_names: list[str]
    task: str
    model: torch.nn.Module

    @property
    def image_size(self) -> int:
        return self.config.data.image_size


def build_model(config: Config, num_classes: int, task: str, pretrained: bool | str | None = None) -> MedAttnModel:
    """The model a config describes (``pretrained`` overrides ``model.pretrained``)."""
    m = config.model
    return create_model(m.name, backbone=m.backbone, num_classes=num_classes, task=task,
                        pretrained=m.pretrained if pretrained is None else pretrained, **m.options)


def write_run_files(run_dir: str | Path, config: Config, class_names: list[str], task: str) -> Path:
    """Write ``config.yaml`` and ``classes.json`` of a run (atomically); returns ``run_dir``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    atomic_write_text(run_dir / "classes.json", json.dumps({"class_names": list(class_names), "task": task}, indent=1))
    return run_dir


def read_run_config(run_dir: str | Path) -> Config:
    """The resolved config a run was trained with (its ``config.yaml``; settings added to medattn
    since then take their defaults)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise RunError(f"{Path(run_dir)} is not a run directory: config.yaml is missing")
    try:
        return Config.from_dict(yaml.safe_load(path.read_text()) or {})
    except (yaml.YAMLError, ConfigError) as err:
        raise RunError(f"{path}: not a readable medattn config ({err})") from None


def read_run_classes(run_dir: str | Path) -> tuple[list[str], str]:
    """(class names, task) of a run (its ``classes.json``)."""
    path = Path(run_dir) / "classes.json"
    if not path.is_file():
        raise RunError(f"{Path(run_dir)} is not a run directory: classes.json is missing")
    classes = json.loads(path.read_text())
    return list(classes["class_names"]), classes.get("task", "multiclass")


def save_run(run_dir: str | Path, model: torch.nn.Module, config: Config, class_names: list[str], task: str,
             checkpoint: str = "best", meta: dict | None = None) -> Path:
    """Write config, class names and the model weights of a run (no training state)."""
    run_dir = write_run_files(run_dir, config, class_names, task)
    return save_checkpoint(run_dir / checkpoint, model, dict(meta or {}, kind="weights"))


def load_run(run_dir: str | Path, checkpoint: str = "best", device: str | torch.device = "cpu") -> Run:
    """Rebuild the model of a run and load its ``checkpoint`` weights (eval mode)."""
    run_dir = Path(run_dir)
    for name in ("config.yaml", "classes.json", f"{checkpoint}.safetensors"):
        if not (run_dir / name).is_file():
            raise RunError(f"{run_dir} is not a complete run directory: {name} is missing")
    config = read_run_config(run_dir)
    class_names, task = read_run_classes(run_dir)
    model = build_model(config, len(class_names), task, pretrained=False)
    state, _, _, _ = load_checkpoint(run_dir / checkpoint)
    load_model_state(model, state, run_dir / f"{checkpoint}.safetensors")
    model.to(device).eval()
    return Run(run_dir, config, class_names, task, model)


RESUME_SAFE = {
    "train.epochs": "the learning-rate schedule is planned anew for the new number of epochs",
    "train.early_stopping_patience": "",
    "train.eval_batch_size": "",
    "train.num_threads": "",
    "train.device": "",
    "train.dist_timeout": "",
    "data.root": "the data must be the same images, moved",
}
"""Settings that ``--resume`` may change (with a note on what that means); anything else would make the
resumed run a different run than the one on disk."""


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k != "options":
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def resume_config(run_dir: str | Path, config: Config | None = None) -> tuple[Config, list[str]]:
    """The config to resume ``run_dir`` with: the run's own, with the changes ``config`` (the run's
    config plus a user's ``--config`` / ``--set``) makes where they are safe (``RESUME_SAFE``).

    Returns (config, one note per applied change); a `ConfigError` names every change that is not safe.
    """
    from ..errors import ConfigError

    own = read_run_config(run_dir)
    if config is None:
        return own, []
    old, new = _flat(own.to_dict()), _flat(config.to_dict())
    changed = [k for k in new if old.get(k) != new[k]]
    refused = [k for k in changed if k not in RESUME_SAFE]
    if refused:
        raise ConfigError(f"--resume keeps the run's own config; these changes would make it another run: "
                          + ", ".join(f"{k}: {old.get(k)!r} -> {new[k]!r}" for k in refused)
                          + f" (--resume may change only {', '.join(RESUME_SAFE)}; start a new run with another --out "
                          f"for the rest)")
    notes = [f"{k}: {old.get(k)!r} -> {new[k]!r}" + (f" ({RESUME_SAFE[k]})" if RESUME_SAFE[k] else "") for k in changed]
    return config, notes


def check_config(cfg: Config) -> None:
    """The names a config refers to exist (reader, model and its options, backbone, loss, optimiser):
    one `ConfigError` naming the first unknown one, before any data is read."""
    import timm

    from ..data._registry import READERS
    from ..errors import ConfigError, UnknownNameError
    from ..losses._registry import CRITERIA
    from ..models._registry import MODELS
    from ..registry import accepted_options
    from .optim import OPTIMIZERS

    lookups = [("data.format", READERS, cfg.data.format), ("model.name", MODELS, cfg.model.name),
               ("train.optimizer", OPTIMIZERS, cfg.train.optimizer)]
    if cfg.loss.name != "auto":
        lookups.append(("loss.name", CRITERIA, cfg.loss.name))
    if cfg.model.name == "sibnet" and "base" in cfg.model.options:
        lookups.append(("model.options.base", MODELS, cfg.model.options["base"]))
    for key, registry, name in lookups:
        try:
            registry.get(name)
        except UnknownNameError as err:
            raise ConfigError(f"{key}: {err}") from None
    for key, name, options in [("model.options", cfg.model.name, cfg.model.options)] + (
            [("model.options.base_options", cfg.model.options["base"], cfg.model.options.get("base_options") or {})]
            if cfg.model.name == "sibnet" and "base" in cfg.model.options else []):
        known = accepted_options(MODELS.get(name))
        unknown = sorted(set(options) - set(known)) if known is not None else []
        if unknown:
            raise ConfigError(f"{key}: model {name!r} has no option(s) {', '.join(unknown)}; it takes "
                              f"{', '.join(k for k in known if k not in ('backbone', 'num_classes', 'pretrained', 'task'))}")
    if cfg.model.backbone and not timm.is_model(cfg.model.backbone):
        close = timm.list_models(f"*{cfg.model.backbone.split('_')[0]}*")[:5]
        raise ConfigError(f"model.backbone: {cfg.model.backbone!r} is not a timm model"
                          + (f" (similar: {', '.join(close)})" if close else ""))


def run_precision(run_dir: str | Path, config: Config, device: torch.device) -> Precision:
    """The precision a run trained and evaluated with: its ``train.precision``, or for ``auto`` the
    one the trainer chose (recorded in ``last.json``; on a CPU ``auto`` is measured, not assumed)."""
    last = Path(run_dir) / "last.json"
    if config.train.precision == "auto" and last.is_file():
        recorded = json.loads(last.read_text()).get("precision")
        if recorded:
            return Precision.resolve(recorded, device)
    return Precision.resolve(config.train.precision, device)
