"""One model behind the service: an exported ONNX file (onnxruntime) or a run directory (PyTorch).

Both run the same ``DeployGraph`` and answer alike: ``predict(images, maps)`` takes uint8
N x S x S x 3 RGB images (S = ``info["image_size"]``) and returns, per image, the class probabilities
and, with ``maps``, the overlay map of ``info["overlay"]`` (the predicted class's where the maps are per
class). ``info`` is the export sidecar (ONNX) or the same description made from the run (PyTorch).
Neither path unpickles anything: weights come from safetensors or the ONNX file.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass
class Prediction:
    """One image's answer: ``probabilities`` (K,) float64 and the overlay map h x w (or None)."""

    probabilities: np.ndarray
    overlay: np.ndarray | None = None


def overlay_map(outputs: dict[str, np.ndarray], i: int, choice: dict | None, cls: int) -> np.ndarray | None:
    """The map to overlay for image ``i`` from a batch's named outputs (see ``export.overlay_choice``)."""
    if not choice:
        return None
    names = choice["outputs"]
    if names == ["cam"]:
        return outputs["cam"][i, cls]
    return outputs[names[cls] if choice["per_class"] else names[0]][i, 0]


def top_class(probs: np.ndarray) -> int:
    """Index of the largest probability (the first on ties); the class whose map is overlaid."""
    return int(np.argmax(probs))


class Predictor(abc.ABC):
    """Base: ``info``, ``predict(images, maps)``; each runtime (ONNX, PyTorch) implements ``run_batch``."""

    info: dict

    @abc.abstractmethod
    def run_batch(self, x: np.ndarray, maps: bool) -> dict[str, np.ndarray]:
        """Named outputs of the graph for an input batch N x 3 x S x S (the input dtype of ``info``)."""

    def to_input(self, images: np.ndarray) -> np.ndarray:
        """uint8 N x S x S x 3 -> the graph's input N x 3 x S x S (uint8, or float32 in [0, 1])."""
        s = int(self.info["image_size"])
        if images.ndim != 4 or images.shape[1:] != (s, s, 3) or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 N x {s} x {s} x 3, got {images.dtype} {images.shape}")
        x = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
        return x if self.info["input"]["dtype"] == "uint8" else x.astype(np.float32) / np.float32(255.0)

    def predict(self, images: np.ndarray, maps: bool = False) -> list[Prediction]:
        if len(images) == 0:
            return []
        out = self.run_batch(self.to_input(images), maps)
        probs = out["probabilities"].astype(np.float64)
        choice = self.info.get("overlay") if maps else None
        return [Prediction(p, overlay_map(out, i, choice, top_class(p)) if choice else None)
                for i, p in enumerate(probs)]

    @property
    def batch_independent(self) -> bool:
        """Whether an image's maps are the same alone as in a batch (probabilities always are)."""
        return self.info.get("maps_batch_independent") is not False


class OnnxPredictor(Predictor):
    """An exported model (``medattn export``) in onnxruntime on the CPU."""

    def __init__(self, onnx_path: str | Path, threads: int | None = None):
        from ..files import sha256_file
        from .export import ort_session, read_sidecar

        self.path = Path(onnx_path)
        self.info = read_sidecar(self.path)
        digest = sha256_file(self.path)
        if self.info.get("onnx_sha256") not in (None, digest):
            raise ValueError(f"{self.path} does not match its sidecar (sha256 {digest[:12]} vs "
                             f"{self.info['onnx_sha256'][:12]}): export it again")
        self.session = ort_session(self.path, threads)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run_batch(self, x: np.ndarray, maps: bool) -> dict[str, np.ndarray]:
        names = self.output_names if maps else ["probabilities"]
        return dict(zip(names, self.session.run(names, {"image": x})))


class TorchPredictor(Predictor):
    """A run directory served by PyTorch eager (fp32, CPU), through the same graph as an export."""

    def __init__(self, run_dir: str | Path, checkpoint: str = "best", threads: int | None = None):
        from ..engine.run import load_run
        from .export import describe
        from .graph import DeployGraph, output_name

        if threads:
            torch.set_num_threads(int(threads))
        run = load_run(run_dir, checkpoint=checkpoint)
        self.graph = DeployGraph(run.model, run.task, "float32", maps=True).eval()
        self.graph.probe(torch.zeros(1, 3, run.image_size, run.image_size))
        self.names = (["probabilities", "logits"] + [output_name(n) for n in self.graph.map_names]
                      + (["cam"] if self.graph.has_cam else []))
        self.info = {"format": "medattn-run", **describe(run, self.graph, checkpoint)}
        self._plain = DeployGraph(run.model, run.task, "float32", maps=False).eval()

    @torch.no_grad()
    def run_batch(self, x: np.ndarray, maps: bool) -> dict[str, np.ndarray]:
        graph = self.graph if maps else self._plain
        out = graph(torch.from_numpy(x))
        return {n: t.numpy() for n, t in zip(self.names, out)}


def load_predictor(path: str | Path, checkpoint: str = "best", threads: int | None = None) -> Predictor:
    """An ``OnnxPredictor`` for a ``.onnx`` file, a ``TorchPredictor`` for a run directory."""
    path = Path(path)
    if path.is_dir():
        return TorchPredictor(path, checkpoint, threads)
    if path.suffix == ".onnx" and path.is_file():
        return OnnxPredictor(path, threads)
    raise FileNotFoundError(f"{path} is neither a run directory nor an .onnx file written by `medattn export`")
