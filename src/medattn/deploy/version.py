"""A model's version string, shared by its run directory, its ONNX export and its model card."""
from __future__ import annotations

from pathlib import Path

from ..files import sha256_file


def model_version(run_dir: Path, checkpoint: str = "best") -> str:
    """``<run name>-<first 12 hex digits of the weights' sha256>``: the same for a run and its export."""
    return f"{Path(run_dir).resolve().name}-{sha256_file(Path(run_dir) / f'{checkpoint}.safetensors')[:12]}"
