"""Atomic checkpoints: tensors in safetensors, metadata as JSON (embedded and beside it).

Nothing is pickled, so loading a checkpoint never executes code. A checkpoint ``NAME`` is the pair
``NAME.safetensors`` (model tensors under ``model.``, optimiser tensors under ``optim.``) and
``NAME.json`` (human-readable metadata). The JSON is also embedded in the safetensors header, so the
single ``os.replace`` of the safetensors file is the commit point: a run killed mid-write leaves the
previous checkpoint intact.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from ..errors import CheckpointError
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


def tensors_sha256(tensors: dict[str, Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order (the checksum a
    checkpoint stores in its metadata and ``load_checkpoint`` verifies)."""
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().cpu().contiguous()
        h.update(f"{key}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


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
    meta["sha256"] = tensors_sha256(tensors)
    text = json.dumps(meta, indent=1, default=_json_default)
    st_path = stem.with_suffix(".safetensors")
    atomic_write(st_path, lambda tmp: save_file(tensors, tmp, metadata={_META_KEY: text}))
    atomic_write_text(stem.with_suffix(".json"), text)
    return st_path


def load_checkpoint(path_stem: str | Path) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor], dict]:
    """Read a checkpoint: (model tensors, optimiser tensors, extra tensors, metadata).

    The tensors are checked against the SHA-256 in the metadata; a missing, empty, truncated or
    damaged file is one `CheckpointError` naming it (checkpoints of medattn before 0.2 carry no
    checksum: they load with a warning)."""
    st_path = Path(path_stem).with_suffix(".safetensors")
    if not st_path.is_file():
        raise CheckpointError(f"checkpoint {st_path} does not exist")
    tensors = {}
    try:
        with safe_open(str(st_path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get(_META_KEY, "{}"))
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types for every kind of damage
        size = st_path.stat().st_size
        raise CheckpointError(f"checkpoint {st_path} ({size} bytes) cannot be read: it is damaged or was cut short "
                              f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
    stored = meta.get("sha256")
    if stored is None:
        warnings.warn(f"checkpoint {st_path} has no checksum (written by an older medattn): not verified", stacklevel=2)
    elif tensors_sha256(tensors) != stored:
        raise CheckpointError(f"checkpoint {st_path}: its tensors do not match the SHA-256 in its metadata: the file "
                              f"was damaged after it was written; use another checkpoint (best / last) or retrain")
    groups: dict[str, dict[str, Tensor]] = {"model": {}, "optim": {}, "extra": {}}
    for key, value in tensors.items():
        group, name = key.split(".", 1)
        groups[group][name] = value
    optim = {f"optim.{k}": v for k, v in groups["optim"].items()}
    return groups["model"], optim, groups["extra"], meta


def restore_training_state(path_stem: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> tuple[dict, dict[str, Tensor]]:
    """Load model (strictly) and optimiser state from a checkpoint; returns (metadata, extra tensors)."""
    model_state, optim_state, extra, meta = load_checkpoint(path_stem)
    load_model_state(model, model_state, Path(path_stem).with_suffix(".safetensors"))
    if optimizer is not None and "optimizer" in meta:
        _restore_optimizer(optimizer, optim_state, meta["optimizer"])
    return meta, extra


def load_model_state(model: torch.nn.Module, state: dict[str, Tensor], source: str | Path = "checkpoint") -> None:
    """``model.load_state_dict(state, strict=True)``, a mismatch told as one `CheckpointError`."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        parts = [f"{len(v)} {what} (e.g. {v[0]})" for what, v in
                 (("missing tensors", missing), ("unexpected tensors", unexpected), ("shape mismatches", shapes)) if v]
        raise CheckpointError(f"{source} does not fit the {type(model).__name__} of this run: {'; '.join(parts)}; "
                              f"was it written by another model or config?")
    model.load_state_dict(state, strict=True)


def _json_default(obj):
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
