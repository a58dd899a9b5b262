"""Everything a model shows about one batch: probabilities, native attention maps and CAMs.

``explain_batch`` returns one ``Explanation`` per image; every map is resized to the image size
(bilinear) and min-max scaled to [0, 1] per image, so maps of different methods and resolutions can
be overlaid and scored against a lesion mask alike. ``iter_explanations`` streams a large set of
images through it in batches, with a progress bar.

Map names: native maps are ``attn/<name>`` (``attn/M``, ``attn/head0`` for BIIGMA, ...). CAMs are
``<method>`` (``gradcam``, ``gradcam++``, ``eigencam``) when each image has one explained class
(multi-class), and ``<method>/<class name>`` when images have several (multi-label, or several
classes asked for); class-agnostic methods (EigenCAM) are always ``<method>``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from ..data.transforms import to_float_batch
from ..engine.inference import probabilities
from ..engine.precision import Precision
from ..layers.map_scaling import normalize_maps
from .cams import CLASS_AGNOSTIC, DEFAULT_METHODS, FROM_LAYER, compute_cams
from .layer_pass import layer_pass


@dataclass
class Explanation:
    """What the model shows for one image.

    Attributes:
        image_id: the image's id (file stem).
        image: H x W x 3 uint8, the image as the model saw it.
        probabilities: (K,) float64 class probabilities (softmax, or sigmoid per label).
        explained: the class indices the class-specific maps explain.
        maps: map name -> H x W float32 in [0, 1].
        map_classes: map name -> the class index it explains, or None (native maps, EigenCAM).
    """

    image_id: str
    image: np.ndarray
    probabilities: np.ndarray
    explained: list[int]
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    map_classes: dict[str, int | None] = field(default_factory=dict)

    @property
    def predicted(self) -> int:
        return int(np.argmax(self.probabilities))


def native_maps(model: nn.Module, x: Tensor, precision: Precision | None = None) -> dict[str, np.ndarray]:
    """The model's own attention maps of a [0, 1] batch, resized to the input and scaled to [0, 1].

    Returns name -> B x H x W float32 (names as the model gives them).
    """
    attention = getattr(model, "attention_maps", None)
    if attention is None:
        return {}
    precision = precision or Precision(x.device, None)
    with torch.no_grad(), precision.autocast():
        raw = attention(x)
    out = {}
    for name, m in raw.items():
        if m.ndim != 4 or m.shape[1] != 1 or m.shape[0] != x.shape[0]:
            raise ValueError(f"{type(model).__name__}.attention_maps()[{name!r}] has shape {tuple(m.shape)}; "
                             f"expected {x.shape[0]} x 1 x h x w")
        m = F.interpolate(m.float(), size=x.shape[-2:], mode="bilinear", align_corners=False)
        out[name] = normalize_maps(m)[:, 0].cpu().numpy().astype(np.float32)
    return out


def select_targets(probs: np.ndarray, task: str, classes: Sequence[int] | None = None,
                   threshold: float = 0.5) -> list[list[int]]:
    """The classes to explain for each image of a (B, K) probability batch.

    ``classes`` given: those, for every image. Otherwise multi-class: the predicted class;
    multi-label: every label with probability >= ``threshold``, or the most probable one if none is.
    """
    if classes is not None:
        return [[int(c) for c in classes] for _ in range(len(probs))]
    if task == "multilabel":
        return [list(map(int, np.flatnonzero(p >= threshold))) or [int(np.argmax(p))] for p in probs]
    return [[int(np.argmax(p))] for p in probs]


def cam_map_name(method: str, cls: int | None, class_names: Sequence[str], per_class: bool) -> str:
    """``method`` or ``method/<class name>`` (see the module docstring)."""
    if cls is None or method in CLASS_AGNOSTIC or not per_class:
        return method
    return f"{method}/{class_names[cls]}"


def explain_batch(model: nn.Module, images: np.ndarray, *, task: str, class_names: Sequence[str],
                  ids: Sequence[str] | None = None, methods: Sequence[str] = DEFAULT_METHODS,
                  classes: Sequence[int] | None = None, targets: Sequence[Sequence[int]] | None = None,
                  native: bool = True, precision: Precision | None = None, threshold: float = 0.5,
                  cam_batch_size: int = 32) -> list[Explanation]:
    """Probabilities, native maps and CAMs of a uint8 B x H x W x 3 batch.

    ``classes`` (the same for every image) or ``targets`` (a list per image) choose the explained
    classes; by default the predicted class (multi-class) or the labels at or above ``threshold``
    (multi-label). The model runs on its own device; the maps come back as NumPy arrays.
    """
    images = np.ascontiguousarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be B x H x W x 3 uint8, got {images.shape} {images.dtype}")
    ids = [str(i) for i in ids] if ids is not None else [str(i) for i in range(len(images))]
    device = next(model.parameters()).device
    precision = precision or Precision(device, None)
    was_training = model.training
    model.eval()
    try:
        x = to_float_batch(images).to(device)
        first = None
        if any(m in FROM_LAYER for m in methods):  # one forward gives the probabilities and the CAMs
            first = layer_pass(model, x, precision=precision)
            logits = first.logits
        else:
            with torch.no_grad(), precision.autocast():
                logits = model(x)
        probs = probabilities(logits, task).double().cpu().numpy()
        if targets is None:
            targets = select_targets(probs, task, classes, threshold)
        elif len(targets) != len(images):
            raise ValueError(f"{len(images)} images but {len(targets)} target lists")
        per_class = task == "multilabel" or any(len(t) != 1 for t in targets)
        attn = native_maps(model, x, precision) if native else {}
        cams = (compute_cams(model, x, targets, methods, precision=precision, batch_size=cam_batch_size,
                             first_pass=first) if methods else [{} for _ in ids])
    finally:
        model.train(was_training)
    out = []
    for i, image_id in enumerate(ids):
        e = Explanation(image_id, images[i], probs[i], [int(c) for c in targets[i]])
        for name, m in attn.items():
            e.maps[f"attn/{name}"], e.map_classes[f"attn/{name}"] = m[i], None
        for (method, cls), m in cams[i].items():
            name = cam_map_name(method, cls, class_names, per_class)
            e.maps[name], e.map_classes[name] = m, cls
        out.append(e)
    return out


def iter_explanations(model: nn.Module, images: Sequence[np.ndarray], ids: Sequence[str], *, batch_size: int = 16,
                      progress: bool = True, targets: Sequence[Sequence[int]] | None = None, desc: str = "explain",
                      **kwargs) -> Iterator[Explanation]:
    """``explain_batch`` over a (possibly lazy) sequence of H x W x 3 uint8 images, in batches.

    ``images[i]`` is only read when its batch comes up, so a lazy sequence that decodes files keeps
    one batch in memory. ``targets`` (a class list per image) is sliced per batch; other keyword
    arguments go to ``explain_batch``.
    """
    if len(ids) != len(images):
        raise ValueError(f"{len(images)} images but {len(ids)} ids")
    if targets is not None and len(targets) != len(images):
        raise ValueError(f"{len(images)} images but {len(targets)} target lists")
    with tqdm(total=len(images), desc=desc, unit="img", disable=not progress) as bar:
        for start in range(0, len(images), batch_size):
            stop = min(start + batch_size, len(images))
            batch = np.stack([images[i] for i in range(start, stop)])
            sub = None if targets is None else targets[start:stop]
            yield from explain_batch(model, batch, ids=ids[start:stop], targets=sub, **kwargs)
            bar.update(stop - start)
