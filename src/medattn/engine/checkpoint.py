"""Atomic checkpoints: tensors in safetensors, metadata as JSON (embedded and beside it).

Nothing is pickled, so loading a checkpoint never executes code. A checkpoint ``NAME`` is the pair
``NAME.safetensors`` (model tensors under ``model.``, optimiser tensors under ``optim.``) and
``NAME.json`` (human-readable metadata). The JSON is also embedded in the safetensors header, so the
single ``os.replace`` of the safetensors file is the commit point: a run killed mid-write leaves the
previous checkpoint intact.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from ..files import atomic_write, atomic_write_text

_META_KEY = "medattn"


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, slots in state["state"].items():
        for name, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{name}"] = value
            else:
                scalars[f"{pid}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    for key, value in meta.get("scalars", {}).items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(path_stem: str | Path, model: torch.nn.Module, meta: dict,
                    optimizer: torch.optim.Optimizer | None = None, extra_tensors: dict[str, Tensor] | None = None) -> Path:
    """Write ``<stem>.safetensors`` and ``<stem>.json`` atomically; returns the safetensors path."""
    stem = Path(path_stem)
    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    meta = dict(meta)
    if optimizer is not None:
        opt_tensors, opt_meta = _optimizer_tensors(optimizer)
        tensors.update({k: v.detach().cpu().contiguous().clone() for k, v in opt_tensors.items()})
        meta["optimizer"] = opt_meta
    for k, v in (extra_tensors or {}).items():
        tensors[f"extra.{k}"] = v.detach().cpu().contiguous().clone()
    text = json.dumps(meta, indent=1, default=_json_default)
    st_path = stem.with_suffix(".safetensors")
    atomic_write(st_path, lambda tmp: save_file(tensors, tmp, metadata={_META_KEY: text}))
    atomic_write_text(stem.with_suffix(".json"), text)
    return st_path


def load_checkpoint(path_stem: str | Path) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor], dict]:
    """Read a checkpoint: (model tensors, optimiser tensors, extra tensors, metadata)."""
    st_path = Path(path_stem).with_suffix(".safetensors")
    if not st_path.is_file():
        raise FileNotFoundError(f"checkpoint {st_path} does not exist")
    model, optim, extra = {}, {}, {}
    with safe_open(str(st_path), framework="pt") as f:
        meta = json.loads((f.metadata() or {}).get(_META_KEY, "{}"))
        for key in f.keys():
            group, name = key.split(".", 1)
            {"model": model, "optim": optim, "extra": extra}[group][name] = f.get_tensor(key)
    optim = {f"optim.{k}": v for k, v in optim.items()}
    return model, optim, extra, meta


def restore_training_state(path_stem: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> tuple[dict, dict[str, Tensor]]:
    """Load model (strictly) and optimiser state from a checkpoint; returns (metadata, extra tensors)."""
    model_state, optim_state, extra, meta = load_checkpoint(path_stem)
    model.load_state_dict(model_state, strict=True)
    if optimizer is not None and "optimizer" in meta:
        _restore_optimizer(optimizer, optim_state, meta["optimizer"])
    return meta, extra


def _json_default(obj):
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
