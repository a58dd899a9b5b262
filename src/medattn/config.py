"""Run configuration: YAML presets (``configs/``) plus ``--set key=value`` overrides.

A config is a plain nested dict with the sections of ``DEFAULTS``. Unknown keys are errors (a typo
must not silently train the wrong thing), except inside the free-form ``options`` sections that are
passed to a reader, model or loss as keyword arguments.
"""
from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "data": {
        "format": "synthetic",
        "root": None,
        "image_size": 128,
        "options": {},
        "train_split": "train",
        "val_split": "val",
        "test_splits": ["test"],
        "unlabeled": None,          # folder or CSV of unlabeled images (SIBnet)
        "unlabeled_format": None,   # reader for `unlabeled` (default: folder for a dir, csv for a file)
    },
    "model": {"name": "baseline", "backbone": "tf_efficientnet_lite0", "pretrained": True, "options": {}},
    "loss": {"name": "auto", "options": {}},
    "train": {
        "epochs": 10,
        "batch_size": 32,
        "eval_batch_size": 64,
        "optimizer": "adamw",
        "lr": 1.0e-3,
        "backbone_lr_scale": 1.0,
        "weight_decay": 1.0e-4,
        "warmup_epochs": 1.0,
        "min_lr_ratio": 0.01,
        "sampler": "random",        # random | balanced
        "precision": "auto",        # auto | bf16 | fp16 | fp32
        "channels_last": True,
        "select_metric": "auto",    # auto: balanced_accuracy (multi-class) / map (multi-label)
        "early_stopping_patience": None,
        "grad_clip": None,
        "max_steps_per_epoch": None,
        "num_threads": None,
        "device": "auto",
        "deterministic": False,
        "unlabeled_ratio": 0.5,     # unlabeled images per labeled image in a batch
    },
    "augment": {
        "hflip": True,
        "vflip": True,
        "rot90": True,
        "scale": [0.75, 1.0],       # random resized crop area range; null disables
        "rotate": 0.0,              # degrees of free rotation
        "brightness": 0.1,
        "contrast": 0.1,
        "saturation": 0.1,
        "hue": 0.0,
    },
}

_FREE_FORM = {"options"}


class ConfigError(ValueError):
    """A config file or override is invalid."""


def preset_dir() -> Path:
    return Path(str(resources.files("medattn") / "configs"))


def list_presets() -> list[str]:
    return sorted(p.stem for p in preset_dir().glob("*.yaml"))


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A YAML path, or the name of a preset shipped with the package (``isic2017_baseline``)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    preset = preset_dir() / f"{Path(str(name_or_path)).stem}.yaml"
    if preset.is_file() and p.suffix in ("", ".yaml", ".yml"):
        return preset
    raise ConfigError(f"config {name_or_path!s} not found (presets: {', '.join(list_presets())})")


def merge(base: dict, update: dict, path: str = "") -> dict:
    """Deep-merge ``update`` into a copy of ``base``; unknown keys raise ``ConfigError``."""
    out = copy.deepcopy(base)
    for key, value in (update or {}).items():
        where = f"{path}.{key}" if path else key
        if key not in out and path.split(".")[-1] not in _FREE_FORM:
            raise ConfigError(f"unknown config key {where!r}; known at this level: {', '.join(sorted(out))}")
        if isinstance(out.get(key), dict) and isinstance(value, dict) and key not in _FREE_FORM:
            out[key] = merge(out[key], value, where)
        elif key in _FREE_FORM and isinstance(value, dict):
            out[key] = {**(out.get(key) or {}), **copy.deepcopy(value)}
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(item: str) -> dict:
    """``"train.lr=3e-4"`` -> ``{"train": {"lr": 0.0003}}`` (the value is parsed as YAML)."""
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    key, raw = item.split("=", 1)
    value = yaml.safe_load(raw) if raw != "" else None
    # YAML 1.1 reads "3e-4" as a string; accept plain float spellings.
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in ".eE") else value
        except ValueError:
            pass
    node: dict = {}
    cur = node
    parts = key.strip().split(".")
    for part in parts[:-1]:
        cur[part] = {}
        cur = cur[part]
    cur[parts[-1]] = value
    return node


# Switching the reader or the model drops the options meant for the previous one, unless the same
# update gives new ones: `--set data.format=isic2017` must not pass synthetic options to the ISIC reader.
_OWNER_OF_OPTIONS = {"data": "format", "model": "name"}


def apply_update(cfg: dict, update: dict) -> dict:
    """``merge`` plus the option reset of ``_OWNER_OF_OPTIONS``."""
    out = merge(cfg, update)
    for section, owner in _OWNER_OF_OPTIONS.items():
        new = (update.get(section) or {}) if isinstance(update.get(section), dict) else {}
        if owner in new and new[owner] != cfg[section].get(owner) and "options" not in new:
            out[section]["options"] = {}
    return out


def read_config_chain(path: str | Path, _seen: tuple[Path, ...] = ()) -> list[dict]:
    """The YAML mappings of a config file or preset and of its ``base:`` ancestors, oldest first
    (``base`` names a preset or a file, relative to the file; cycles are errors)."""
    p = resolve_config_path(path)
    if p.resolve() in _seen:
        raise ConfigError(f"{p}: 'base' chain loops back to itself")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{p}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    data.pop("description", None)
    base = data.pop("base", None)
    if base is None:
        return [data]
    sibling = p.parent / str(base)
    return [*read_config_chain(sibling if sibling.is_file() else base, (*_seen, p.resolve())), data]


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> dict:
    """DEFAULTS, then the YAML file (if any, after its ``base`` chain), then each ``--set`` override,
    validated; a file or override that changes the reader or model drops the options of the old one."""
    cfg = copy.deepcopy(DEFAULTS)
    for data in read_config_chain(path) if path is not None else []:
        cfg = apply_update(cfg, data)
    for item in overrides or []:
        cfg = apply_update(cfg, parse_override(item))
    return cfg


def save_config(cfg: dict, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg, sort_keys=False))
