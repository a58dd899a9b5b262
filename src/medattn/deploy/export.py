"""ONNX export of a run, verified with onnxruntime, and its JSON sidecar.

``export_onnx(run_dir, out)`` writes ``out`` (an ONNX model of ``medattn.deploy.graph.DeployGraph``:
dynamic batch axis, normalisation inside, opset 18 by default) and ``out.with_suffix(".json")`` (the
sidecar: input contract, outputs, class names, image size, task, the run's test metrics, the model
card, versions; see docs/deploy.md). The dynamo exporter is tried first and TorchScript's second
(``exporter="auto"``); the first export that onnxruntime reproduces is kept: the probabilities on a
fixed batch of a size other than the one traced with must equal PyTorch's within ``tolerance``
(max abs), maps within ``tolerance`` relative to their largest value, and a batch of one must run.
Both files are written atomically; an existing ``out`` is refused without ``overwrite``.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..files import sha256_file
from .graph import DeployGraph, class_activation_map, exportable_model, output_name
from .version import model_version

EXPORTERS = ("dynamo", "torchscript")
RANDOM_OPS = frozenset({"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial",
                        "Bernoulli"})
SIDECAR_FORMAT = "medattn-onnx/1"


class ExportError(RuntimeError):
    """No exporter produced a graph that onnxruntime runs and that matches PyTorch."""


@dataclass
class ExportResult:
    onnx_path: Path
    sidecar_path: Path
    sidecar: dict
    attempts: list[str] = field(default_factory=list)


def fixed_batch(n: int, size: int, input_dtype: str, seed: int = 0) -> torch.Tensor:
    """A reproducible N x 3 x size x size input batch (uint8 or float in [0, 1])."""
    g = torch.Generator().manual_seed(seed)
    if input_dtype == "uint8":
        return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    return torch.rand(n, 3, size, size, generator=g)


def _export_once(graph: DeployGraph, example: torch.Tensor, names: list[str], path: Path, exporter: str,
                 opset: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            torch.onnx.export(graph, (example,), str(path), dynamo=True, input_names=["image"], output_names=names,
                              dynamic_shapes={"image": {0: torch.export.Dim("batch", min=1, max=4096)}},
                              opset_version=opset, external_data=False, verbose=False)
        else:
            axes = {n: {0: "batch"} for n in ["image", *names]}
            torch.onnx.export(graph, (example,), str(path), dynamo=False, input_names=["image"], output_names=names,
                              dynamic_axes=axes, opset_version=opset, do_constant_folding=True)


def ort_session(path: str | Path, threads: int | None = None):
    """An onnxruntime CPU session (``threads`` intra-op threads; None: onnxruntime's default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: ORT warns about shapes the exporter could not infer
    # Idle worker threads sleep instead of spinning: they would take the cores from the server's
    # decoding threads (and from PyTorch in a side-by-side benchmark).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def compare_outputs(graph: DeployGraph, session, names: list[str], batch: torch.Tensor) -> dict[str, float]:
    """Max abs difference per output between onnxruntime and PyTorch on ``batch`` (maps: relative to
    the largest absolute value of the PyTorch map)."""
    with torch.no_grad():
        ref = [t.numpy() for t in graph(batch)]
    got = session.run(names, {"image": batch.numpy()})
    diffs = {}
    for name, r, g in zip(names, ref, got):
        if r.shape != g.shape:
            raise ExportError(f"output {name}: onnxruntime gives shape {g.shape}, PyTorch {r.shape}")
        d = float(np.abs(r.astype(np.float64) - g).max()) if r.size else 0.0
        if name not in ("probabilities", "logits"):
            d /= max(float(np.abs(r).max()), 1e-12)
        diffs[name] = d
    return diffs


def check_cam(graph: DeployGraph, batch: torch.Tensor) -> None:
    """The CAM's spatial mean plus the classifier bias must give the logits (the head is GAP + linear)."""
    with torch.no_grad():
        x = graph._to_unit(batch)
        cam = class_activation_map(graph.model, x)
        head = exportable_model(graph.model).classifier
        logits = graph.model(x)
    recon = cam.mean(dim=(2, 3)) + head.bias
    if not torch.allclose(recon, logits, atol=1e-4, rtol=1e-4):
        raise ExportError(f"the CAM of {type(graph.model).__name__} does not reproduce its logits "
                          f"(max diff {float((recon - logits).abs().max()):.2e}): its head is not GAP + linear")


def maps_batch_independent(graph: DeployGraph, batch: torch.Tensor) -> bool:
    """Whether each image's outputs are the same alone as inside ``batch`` (BIIGMA's per-head maps
    prune channels against a batch-wide threshold, so they are not)."""
    with torch.no_grad():
        together = graph(batch)
        alone = [graph(batch[i:i + 1]) for i in range(len(batch))]
    for j, t in enumerate(together):
        single = torch.cat([a[j] for a in alone])
        if not torch.allclose(t, single, atol=1e-5, rtol=1e-4):
            return False
    return True


def overlay_choice(map_names: list[str], has_cam: bool, num_classes: int) -> dict | None:
    """Which output the service overlays: the first class-agnostic native map (BIIGMA ``M``, CBAM
    ``spatial``, Soft-Attention ``A``); else one native map per class (``mha_0`` ...); else the CAM."""
    indexed = [n for n in map_names if n.rsplit("_", 1)[-1].isdigit()]
    for n in map_names:
        if n not in indexed:
            return {"outputs": [output_name(n)], "per_class": False, "source": n}
    for prefix in dict.fromkeys(n.rsplit("_", 1)[0] for n in indexed):
        wanted = [f"{prefix}_{k}" for k in range(num_classes)]
        if all(w in map_names for w in wanted):
            return {"outputs": [output_name(w) for w in wanted], "per_class": True, "source": prefix}
    if has_cam:
        return {"outputs": ["cam"], "per_class": True, "source": "cam"}
    return None


def _output_specs(graph: DeployGraph, names: list[str], example: torch.Tensor) -> list[dict]:
    with torch.no_grad():
        shapes = [list(t.shape[1:]) for t in graph(example[:1])]
    meaning = {"probabilities": "softmax over classes" if graph.task == "multiclass" else "sigmoid per label",
               "logits": "the model's logits", "cam": "class activation map (Zhou et al. 2016), one per class, raw"}
    return [{"name": n, "shape": ["batch", *s], "dtype": "float32",
             "meaning": meaning.get(n, "native attention map, as the model gives it")} for n, s in zip(names, shapes)]


def _headline_metrics(run_dir: Path, task: str) -> dict:
    from ..metrics.summary import HEADLINE

    out = {}
    for path in sorted(run_dir.glob("eval_*.json")):
        m = json.loads(path.read_text())
        node = {k: m[k] for k in HEADLINE[task] if isinstance(m.get(k), (int, float))}
        if "isic2017" in m:
            node["isic2017.mean_auc"] = m["isic2017"].get("mean_auc")
        if "ci95" in m:
            node["ci95"] = {k: v for k, v in m["ci95"].items() if k in node}
        out[path.stem.removeprefix("eval_")] = node
    return out


def describe(run, graph: DeployGraph, checkpoint: str = "best") -> dict:
    """What a served model says about itself (the run's part of the sidecar): version, model, task,
    classes, image size, input contract, outputs, overlay choice, batch independence of the maps, the
    run's metrics. ``graph`` must have been probed."""
    size = run.image_size
    example = fixed_batch(3, size, graph.input_dtype, seed=1)
    norm = getattr(exportable_model(run.model), "normalize", None)
    names = ["probabilities", "logits"] + ([output_name(n) for n in graph.map_names] + (["cam"] if graph.has_cam else [])
                                           if graph.maps else [])
    return {
        "version": model_version(run.run_dir, checkpoint),
        "run_dir": str(Path(run.run_dir).resolve()),
        "checkpoint": checkpoint,
        "model": {"name": run.config.model.name, "backbone": run.config.model.backbone,
                  "options": run.config.model.options},
        "task": run.task,
        "class_names": list(run.class_names),
        "image_size": size,
        "input": {
            "name": "image", "dtype": graph.input_dtype, "shape": ["batch", 3, size, size], "layout": "NCHW, RGB",
            "range": [0, 255] if graph.input_dtype == "uint8" else [0.0, 1.0],
            "normalisation": None if norm is None else {"mean": norm.mean.flatten().tolist(),
                                                         "std": norm.std.flatten().tolist(), "where": "inside the graph"},
            "resize": f"the whole image to {size} x {size}, bilinear with antialiasing (PIL), aspect ratio not kept",
        },
        "outputs": _output_specs(graph, names, example),
        "overlay": overlay_choice(graph.map_names, graph.has_cam, len(run.class_names)) if graph.maps else None,
        "maps_batch_independent": maps_batch_independent(graph, example) if graph.maps else None,
        "metrics": _headline_metrics(Path(run.run_dir), run.task),
    }


def _versions() -> dict:
    import onnx
    import onnxruntime
    import timm

    from .. import __version__

    return {"medattn": __version__, "torch": torch.__version__, "timm": timm.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}


def _first_line(err: BaseException) -> str:
    """'Type: first line of the message', with the innermost cause's (the exporters wrap the reason)."""
    def line(e: BaseException) -> str:
        text = str(e).strip()
        return f"{type(e).__name__}: {text.splitlines()[0][:300] if text else ''}"

    root = err
    while root.__cause__ is not None:
        root = root.__cause__
    return line(err) + (f" (cause: {line(root)})" if root is not err else "")


def export_graph(graph: DeployGraph, size: int, out: str | Path, *, exporter: str = "auto", opset: int = 18,
                 tolerance: float = 1e-4, log: Callable[[str], None] = print) -> dict:
    """Export ``graph`` (eval mode) for size x size inputs to ``out`` (written atomically) and verify it.

    Tries the exporters in turn (``"auto"``: dynamo, then TorchScript) and keeps the first whose graph
    passes ``onnx.checker``, has no sampling op, runs in onnxruntime at batch 3 and 1 and matches PyTorch
    within ``tolerance`` on every output (maps relative to their largest value). Returns
    ``{"exporter", "output_names", "max_abs_diff", "batch_size", "tolerance", "attempts"}``; raises
    ``ExportError`` when no exporter passes.
    """
    import onnx

    if exporter not in ("auto", *EXPORTERS):
        raise ValueError(f"exporter must be auto, dynamo or torchscript, got {exporter!r}")
    if opset < 17:
        raise ValueError(f"opset must be >= 17 (LayerNormalization and the dynamo exporter need it), got {opset}")
    graph.eval()
    example = fixed_batch(2, size, graph.input_dtype, seed=0)
    names = graph.probe(example)
    if graph.has_cam:
        check_cam(graph, example)
    check = fixed_batch(3, size, graph.input_dtype, seed=1)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    attempts: list[str] = []
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".onnx", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        for name in EXPORTERS if exporter == "auto" else (exporter,):
            started = time.perf_counter()
            try:
                _export_once(graph, example, names, tmp, name, opset)
                proto = onnx.load(str(tmp))
                onnx.checker.check_model(proto)
                random_ops = sorted({n.op_type for n in proto.graph.node} & RANDOM_OPS)
                if random_ops:
                    raise ExportError(f"the graph samples at inference ({', '.join(random_ops)})")
                session = ort_session(tmp)
                diffs = compare_outputs(graph, session, names, check)
                session.run(names, {"image": check[:1].numpy()})  # the batch axis is dynamic
                bad = {k: v for k, v in diffs.items() if not v <= tolerance}
                if bad:
                    raise ExportError(f"onnxruntime differs from PyTorch by more than {tolerance:g}: {bad}")
            except Exception as err:  # noqa: BLE001 - each exporter fails in its own ways; try the next
                attempts.append(f"{name}: {_first_line(err)}")
                log(f"export with the {name} exporter failed: {attempts[-1]}")
                continue
            attempts.append(f"{name}: ok in {time.perf_counter() - started:.1f} s")
            os.replace(tmp, out)
            return {"exporter": name, "output_names": names, "max_abs_diff": diffs, "batch_size": int(len(check)),
                    "tolerance": tolerance, "attempts": attempts}
        raise ExportError("no exporter gave a graph that matches PyTorch: " + "; ".join(attempts))
    finally:
        if tmp.exists():
            tmp.unlink()


def export_onnx(run_dir: str | Path, out: str | Path | None = None, *, maps: bool = False,
                input_dtype: str = "float32", exporter: str = "auto", opset: int = 18, checkpoint: str = "best",
                tolerance: float = 1e-4, overwrite: bool = False, command: str | None = None,
                log: Callable[[str], None] = print) -> ExportResult:
    """Export the run to ONNX, verify it with onnxruntime and write the sidecar (module docstring).

    ``out`` defaults to ``RUN_DIR/model.onnx``. Raises ``FileExistsError`` for an existing ``out``
    without ``overwrite`` and ``ExportError`` when no exporter gives a matching graph.
    """
    from ..engine.checkpoint import atomic_write_text
    from ..engine.run import load_run
    from .card import card_text

    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "model.onnx"
    sidecar_path = out.with_suffix(".json")
    for p in (out, sidecar_path):
        if p.exists() and not overwrite:
            raise FileExistsError(f"{p} exists; pass --overwrite to replace it")
    run = load_run(run_dir, checkpoint=checkpoint)
    graph = DeployGraph(run.model, run.task, input_dtype, maps).eval()
    try:
        verification = export_graph(graph, run.image_size, out, exporter=exporter, opset=opset, tolerance=tolerance,
                                    log=log)
    except ExportError as err:
        raise ExportError(f"{run_dir}: {err}") from None
    sidecar = {
        "format": SIDECAR_FORMAT,
        "model_file": out.name,
        "onnx_sha256": sha256_file(out),
        **describe(run, graph, checkpoint),
        "exporter": verification.pop("exporter"),
        "opset": opset,
        "verification": verification,
        "versions": _versions(),
        "model_card": card_text(run_dir),
        "command": command,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_text(sidecar_path, json.dumps(sidecar, indent=1, default=float))
    return ExportResult(out, sidecar_path, sidecar, verification["attempts"])


def read_sidecar(onnx_path: str | Path) -> dict:
    """The sidecar of an exported model (``model.onnx`` -> ``model.json``), checked for its format."""
    path = Path(onnx_path).with_suffix(".json")
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the sidecar `medattn export` writes beside {Path(onnx_path).name}")
    sidecar = json.loads(path.read_text())
    if sidecar.get("format") != SIDECAR_FORMAT:
        raise ValueError(f"{path} is not a medattn export sidecar (format {sidecar.get('format')!r})")
    return sidecar
