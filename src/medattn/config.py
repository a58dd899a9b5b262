"""Run configuration: typed sections with their defaults, YAML presets (``configs/``) and ``--set``.

The dataclasses below are the one place where a setting and its default live. A config is built as
dataclass defaults -> the YAML file (after its ``base:`` chain) -> each ``--set key=value``, and then
checked: an unknown key, a value of the wrong type (``train.epochs: "abc"``) or out of range
(``train.lr: -1``, ``train.batch_size: 0``) is one `ConfigError` naming the key, the value and what was
expected, before any data is read. YAML 1.1 reads ``lr: 3e-4`` as a string; a float field takes it as
the number it spells. The free-form ``options`` sections are passed to the reader, model or loss as
keyword arguments (they check their own options).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Union

import yaml

from .data.batches import SAMPLERS
from .errors import ConfigError

__all__ = ["AugmentConfig", "Config", "ConfigError", "DataConfig", "LossConfig", "ModelConfig", "TrainConfig",
           "apply_update", "list_presets", "load_config", "merge", "parse_override", "read_config_chain",
           "resolve_config_path", "save_config"]


def _setting(default: Any, check: Callable[[Any], str | None] | None = None, **kw) -> Any:
    """A dataclass field with a range/choice ``check(value) -> problem or None``."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"check": check}, **kw)
    return field(default=default, metadata={"check": check}, **kw)


def at_least(low: float, strict: bool = False) -> Callable[[Any], str | None]:
    def check(v):
        if v is None:
            return None
        return None if (v > low if strict else v >= low) else f"must be {'>' if strict else '>='} {low:g}"
    return check


def between(low: float, high: float) -> Callable[[Any], str | None]:
    return lambda v: None if v is None or low <= v <= high else f"must be in [{low:g}, {high:g}]"


def one_of(*choices: str) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}"


PRECISIONS = ("auto", "bf16", "fp16", "fp32")


@dataclass
class DataConfig:
    format: str = "synthetic"
    root: str | None = None
    image_size: int = _setting(128, at_least(8))
    options: dict = _setting({})
    train_split: str = "train"
    val_split: str = "val"
    test_splits: list[str] = _setting(["test"])
    unlabeled: str | None = None          # folder or CSV of unlabeled images (SIBnet)
    unlabeled_format: str | None = None   # reader for `unlabeled` (default: folder for a dir, csv for a file)


@dataclass
class ModelConfig:
    name: str = "baseline"
    backbone: str | None = "tf_efficientnet_lite0"
    pretrained: bool | str = True         # true: ImageNet weights; false; or a weights file
    options: dict = _setting({})


@dataclass
class LossConfig:
    name: str = "auto"                    # auto: ce (multi-class) / bce (multi-label)
    options: dict = _setting({})


@dataclass
class TrainConfig:
    epochs: int = _setting(10, at_least(1))
    batch_size: int = _setting(32, at_least(1))
    eval_batch_size: int = _setting(64, at_least(1))
    optimizer: str = "adamw"              # adamw | adam | sgd (medattn.engine.optim)
    lr: float = _setting(1.0e-3, at_least(0, strict=True))
    backbone_lr_scale: float = _setting(1.0, at_least(0))
    weight_decay: float = _setting(1.0e-4, at_least(0))
    warmup_epochs: float = _setting(1.0, at_least(0))
    min_lr_ratio: float = _setting(0.01, between(0, 1))
    sampler: str = _setting("random", one_of(*SAMPLERS))
    precision: str = _setting("auto", one_of(*PRECISIONS))
    channels_last: bool = True
    select_metric: str = "auto"           # auto: balanced_accuracy (multi-class) / map (multi-label)
    early_stopping_patience: int | None = _setting(None, at_least(1))
    grad_clip: float | None = _setting(None, at_least(0, strict=True))
    max_steps_per_epoch: int | None = _setting(None, at_least(1))
    num_threads: int | None = _setting(None, at_least(1))
    device: str = "auto"
    deterministic: bool = False
    unlabeled_ratio: float = _setting(0.5, at_least(0))  # unlabeled images per labeled image in a batch
    accumulate: int = _setting(1, at_least(1))            # micro-batches per optimiser step (gradient accumulation)
    sync_bn: bool = False                                 # DDP: BatchNorm statistics over the global batch
    dist_timeout: float = _setting(600.0, at_least(1))    # DDP: seconds a collective may wait for a rank


@dataclass
class AugmentConfig:
    hflip: bool = True
    vflip: bool = True
    rot90: bool = True
    scale: tuple[float, float] | None = (0.75, 1.0)  # random resized crop area range; null disables
    rotate: float = _setting(0.0, at_least(0))        # degrees of free rotation
    brightness: float = _setting(0.1, at_least(0))
    contrast: float = _setting(0.1, at_least(0))
    saturation: float = _setting(0.1, at_least(0))
    hue: float = _setting(0.0, between(0, 0.5))


@dataclass
class Config:
    """A whole run configuration; ``to_dict`` / ``from_dict`` convert to and from the YAML mapping."""

    seed: int = _setting(0, at_least(0))
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["augment"]["scale"] = None if self.augment.scale is None else list(self.augment.scale)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "Config":
        """Merge ``data`` onto the defaults and check every value (unknown keys included)."""
        merged = merge(DEFAULTS, data or {})
        return _build(cls, merged, "")

    def copy(self) -> "Config":
        return copy.deepcopy(self)


DEFAULTS: dict[str, Any] = Config().to_dict()
"""The defaults as the nested mapping a YAML file overrides (derived from the dataclasses)."""

_FREE_FORM = {"options"}


# ----------------------------------------------------------------------------------------- type checks
def _type_name(tp) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "a mapping"}
    if tp in names:
        return names[tp]
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return "a list of " + _type_name(typing.get_args(tp)[0]).removeprefix("a ").removeprefix("an ") + "s"
    if origin is tuple:
        return f"a list of {len(typing.get_args(tp))} numbers"
    return str(tp)


_NO = object()


def _coerce(value, tp):
    """``value`` as type ``tp`` (YAML-friendly: "3e-4" for a float, 2 for 2.0), or ``_NO``."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            return None if type(None) in args else _NO
        for a in args:  # bool before str: `pretrained: true` stays a bool
            if a is not type(None) and (out := _coerce(value, a)) is not _NO:
                return out
        return _NO
    if tp is bool:
        return value if isinstance(value, bool) else _NO
    if tp is int:
        if isinstance(value, bool):
            return _NO
        if isinstance(value, int):
            return value
        return int(value) if isinstance(value, float) and value.is_integer() else _NO
    if tp is float:
        if isinstance(value, bool):
            return _NO
        if isinstance(value, (int, float)):
            out = float(value)
        elif isinstance(value, str):
            try:
                out = float(value)
            except ValueError:
                return _NO
        else:
            return _NO
        return out if math.isfinite(out) else _NO
    if tp is str:
        return value if isinstance(value, str) else _NO
    if tp is dict:
        return {} if value is None else (copy.deepcopy(value) if isinstance(value, dict) else _NO)
    if origin is list:
        (item,) = typing.get_args(tp)
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            return _NO
        out = [_coerce(v, item) for v in items]
        return _NO if any(v is _NO for v in out) else out
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            return _NO
        out = tuple(_coerce(v, a) for v, a in zip(value, args))
        return _NO if any(v is _NO for v in out) else out
    raise TypeError(f"no rule for type {tp}")


def _build(cls, data: dict, path: str):
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        where = f"{path}.{f.name}" if path else f.name
        tp, value = hints[f.name], data[f.name]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: expected a mapping of settings, got {value!r}")
            kwargs[f.name] = _build(tp, value, where)
            continue
        out = _coerce(value, tp)
        if out is _NO:
            raise ConfigError(f"{where}: {value!r} is not {_type_name(tp)}")
        check = f.metadata.get("check")
        problem = check(out) if check else None
        if problem:
            raise ConfigError(f"{where}: {value!r} {problem}")
        kwargs[f.name] = out
    if cls is AugmentConfig and kwargs["scale"] is not None and not 0 < kwargs["scale"][0] <= kwargs["scale"][1] <= 1:
        raise ConfigError(f"augment.scale: {list(kwargs['scale'])} must be [low, high] with 0 < low <= high <= 1")
    return cls(**kwargs)


# ----------------------------------------------------------------------------------------- files
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
    """``"train.lr=3e-4"`` -> ``{"train": {"lr": "3e-4"}}``: the value is parsed as YAML, and typed
    (a float field takes "3e-4") when the config is checked."""
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else None
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {item}: the value is not valid YAML ({str(err).splitlines()[0]})") from None
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


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                base: Config | dict | None = None) -> Config:
    """The defaults (or ``base``), then the YAML file (if any, after its ``base`` chain), then each
    ``--set`` override, checked; a file or override that changes the reader or model drops the
    options of the old one."""
    cfg = copy.deepcopy(DEFAULTS) if base is None else merge(DEFAULTS, base.to_dict() if isinstance(base, Config) else base)
    for data in read_config_chain(path) if path is not None else []:
        cfg = apply_update(cfg, data)
    for item in overrides or []:
        cfg = apply_update(cfg, parse_override(item))
    return Config.from_dict(cfg)


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
