"""Class activation maps for any medattn model through pytorch-grad-cam, batched, hooks always released.

Every model names the module Grad-CAM explains (``model.cam_layer``, the last feature level by
default). ``compute_cams`` runs one or more CAM methods on a batch and returns, per image, one map per
explained class (class-specific methods) or one map (class-agnostic methods such as EigenCAM).
The methods computed from the layer's activations and gradients alone (``FROM_LAYER``: the default
Grad-CAM, Grad-CAM++ and EigenCAM among them) share one forward pass (``layer_pass``) and one
backward pass through the layers after the explained one; the library's own code turns those into
maps, so they are the numbers of its per-method calls.

pytorch-grad-cam registers forward hooks when a CAM object is built and keeps the output of the last
call (with its autograd graph, ``retain_graph=True``) until the object goes away. ``cam_extractor``
is a context manager that removes the hooks, drops that output and clears parameter gradients on the
way out, also when the call fails, so explaining thousands of images keeps memory flat.

Mixed precision: under bf16 autocast the hooked activations and gradients are bf16, which NumPy cannot
hold; the reshape transform casts them to float32 before pytorch-grad-cam converts them.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn
from pytorch_grad_cam import (AblationCAM, AblationLayer, EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM,
                              ScoreCAM, XGradCAM)
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.find_layers import replace_layer_recursive
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from threadpoolctl import threadpool_limits
from torch import Tensor

from ..engine.precision import Precision
from .layer_pass import LayerPass, layer_pass

CAM_METHODS: dict[str, type[BaseCAM]] = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "xgradcam": XGradCAM,
    "hirescam": HiResCAM,
    "layercam": LayerCAM,
    "eigencam": EigenCAM,
    "ablationcam": AblationCAM,
    "scorecam": ScoreCAM,
}
"""CAM method names accepted by ``compute_cams`` (and ``medattn explain --cams``)."""

CLASS_AGNOSTIC = frozenset({"eigencam"})
"""Methods whose map does not depend on the explained class (one map per image)."""

GRADIENT_FREE = frozenset({"eigencam", "ablationcam", "scorecam"})

FROM_LAYER = frozenset({"gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigencam"})
"""Methods whose map is a function of the explained layer's activations and gradients only: they
share one forward pass (``layer_pass``) instead of a forward and a backward pass each."""

DEFAULT_METHODS: tuple[str, ...] = ("gradcam", "gradcam++", "eigencam")

CamMaps = dict[tuple[str, "int | None"], np.ndarray]
"""Per image: (method, class index, or None for a class-agnostic method) -> H x W float32 in [0, 1]."""


def check_methods(methods: Sequence[str]) -> list[str]:
    """The methods, validated; raises ValueError naming the unknown ones and the known ones."""
    methods = list(methods)
    unknown = [m for m in methods if m not in CAM_METHODS]
    if unknown:
        raise ValueError(f"unknown CAM method(s) {', '.join(map(repr, unknown))}; choose from {', '.join(CAM_METHODS)}")
    return methods


def _float32(t: Tensor) -> Tensor:
    return t.float()


@contextlib.contextmanager
def cam_extractor(model: nn.Module, method: str, layer: nn.Module | None = None,
                  batch_size: int = 32) -> Iterator[BaseCAM]:
    """A pytorch-grad-cam object for ``method`` on ``layer`` (default ``model.cam_layer``).

    On exit, whatever happened inside: the hooks are removed, the retained output and graph are
    dropped, parameter gradients are set to None, the original layer is back in place (AblationCAM
    swaps it out while it runs) and the model's train/eval mode is restored.
    """
    check_methods([method])
    layer = model.cam_layer if layer is None else layer
    was_training = model.training
    kwargs: dict = {"reshape_transform": _float32}
    if method == "ablationcam":
        # A fresh AblationLayer: the library's default argument is one instance shared by all objects.
        kwargs.update(ablation_layer=AblationLayer(), batch_size=batch_size)
    cam = CAM_METHODS[method](model=model, target_layers=[layer], **kwargs)
    if method == "scorecam":
        cam.batch_size = batch_size
    try:
        yield cam
    finally:
        cam.activations_and_grads.release()
        cam.outputs = None
        if method == "ablationcam":
            replace_layer_recursive(model, cam.ablation_layer, layer)
        model.zero_grad(set_to_none=True)
        model.train(was_training)


def _rounds(targets: Sequence[Sequence[int]]) -> Iterator[tuple[list[int], list[int]]]:
    """Split per-image class lists into rounds of (image indices, one class each)."""
    depth = max((len(t) for t in targets), default=0)
    for r in range(depth):
        rows = [i for i, t in enumerate(targets) if len(t) > r]
        yield rows, [int(targets[i][r]) for i in rows]


def maps_from_layer(method: str, model: nn.Module, layer: nn.Module, x: Tensor, classes: Sequence[int],
                    activations: Tensor, gradients: Tensor | None) -> np.ndarray:
    """pytorch-grad-cam's map of ``method`` from captured B x C x h x w activations (and gradients).

    Runs the library's own steps after its forward/backward (``compute_cam_per_layer`` and
    ``aggregate_multi_layers``: channel weights, weighted sum, ReLU, min-max scaling, resize to the
    input), so the maps are the library's. Returns B x H x W float32 in [0, 1].
    """
    cam = CAM_METHODS[method](model=model, target_layers=[layer], reshape_transform=_float32)
    cam.activations_and_grads.release()  # its hooks are not needed: the activations are given
    cam.activations_and_grads.activations = [activations]
    cam.activations_and_grads.gradients = [] if gradients is None else [gradients]
    # One BLAS thread: EigenCAM's SVDs (one small matrix per image) ran 60 times slower with OpenBLAS's
    # threads waiting on each other on a busy 2-core machine; the numbers are the same (tests/explain).
    with threadpool_limits(limits=1, user_api="blas"):
        per_layer = cam.compute_cam_per_layer(x, [ClassifierOutputTarget(int(c)) for c in classes], False)
        return cam.aggregate_multi_layers(per_layer)


def _check_targets(model: nn.Module, x: Tensor, targets: Sequence[Sequence[int]]) -> None:
    if x.ndim != 4:
        raise ValueError(f"x must be B x 3 x H x W, got shape {tuple(x.shape)}")
    if len(targets) != len(x):
        raise ValueError(f"{len(x)} images but {len(targets)} target lists")
    k = getattr(model, "num_classes", None)
    bad = [(i, c) for i, t in enumerate(targets) for c in t if int(c) < 0 or (k is not None and int(c) >= k)]
    if bad:
        raise ValueError(f"image {bad[0][0]}: class index {bad[0][1]} is out of range for {k} classes "
                         f"({len(bad) - 1} more)")


def compute_cams(model: nn.Module, x: Tensor, targets: Sequence[Sequence[int]],
                 methods: Sequence[str] = DEFAULT_METHODS, layer: nn.Module | None = None,
                 precision: Precision | None = None, batch_size: int = 32,
                 first_pass: LayerPass | None = None) -> list[CamMaps]:
    """CAMs of a batch.

    Args:
        model: a medattn model (``forward(x) -> logits``); CAMs are computed in eval mode and the
            model's mode is restored after.
        x: B x 3 x H x W float image batch in [0, 1] on the model's device.
        targets: for each image, the class indices to explain (one map per class per method).
        methods: names from ``CAM_METHODS``.
        layer: the explained module (default ``model.cam_layer``).
        precision: autocast to run under (default fp32).
        batch_size: batch of the extra forward passes of AblationCAM and ScoreCAM.
        first_pass: a ``layer_pass`` of the whole batch ``x`` already run (``explain_batch`` takes
            its probabilities from it), reused instead of a new forward pass.

    Returns:
        One dict per image: ``(method, class)`` -> H x W float32 map in [0, 1] (pytorch-grad-cam
        min-max scales each map and resizes it to the input size); class-agnostic methods give one
        map keyed ``(method, None)``. Keys are in the order of ``methods``, then of each image's classes.

    The methods of ``FROM_LAYER`` share passes: one forward of the batch (and one backward through the
    layers after ``layer`` per round of classes), the maps being the same numbers as the library's
    per-method calls. AblationCAM and ScoreCAM run through the library as they are.
    """
    methods = check_methods(methods)
    _check_targets(model, x, targets)
    x = x.detach()
    precision = precision or Precision(x.device, None)
    layer = model.cam_layer if layer is None else layer
    found: dict[str, list[tuple[int, int | None, np.ndarray]]] = {m: [] for m in methods}
    was_training = model.training
    model.eval()
    try:
        shared = [m for m in methods if m in FROM_LAYER]
        if shared:
            _layer_cams(model, layer, x, targets, shared, precision, first_pass, found)
        for method in methods:
            if method not in FROM_LAYER:
                _library_cams(model, layer, x, targets, method, precision, batch_size, found)
    finally:
        model.train(was_training)
    out: list[CamMaps] = [{} for _ in range(len(x))]
    for method in methods:
        for row, cls, m in found[method]:
            out[row][(method, cls)] = np.asarray(m, np.float32)
    return out


def _agnostic_classes(targets: Sequence[Sequence[int]]) -> list[int]:
    return [int(t[0]) if len(t) else 0 for t in targets]


def _layer_cams(model: nn.Module, layer: nn.Module, x: Tensor, targets: Sequence[Sequence[int]],
                methods: list[str], precision: Precision, first_pass: LayerPass | None, found: dict) -> None:
    """The ``FROM_LAYER`` methods: one pass of the whole batch, one more per round of classes that
    leaves images out (multi-label), as the rows of the library's calls were."""
    everyone = list(range(len(x)))
    full = first_pass if first_pass is not None else layer_pass(model, x, layer, precision)
    for method in methods:
        if method in CLASS_AGNOSTIC:
            maps = maps_from_layer(method, model, layer, x, _agnostic_classes(targets), full.activations, None)
            found[method].extend((row, None, maps[row]) for row in everyone)
    gradient_methods = [m for m in methods if m not in CLASS_AGNOSTIC]
    if not gradient_methods:
        return
    for rows, classes in _rounds(targets):
        this = full if rows == everyone and full is not None else layer_pass(model, x[rows], layer, precision)
        full = None  # the whole-batch pass gives one set of gradients
        grads = this.gradients(classes)
        for method in gradient_methods:
            maps = maps_from_layer(method, model, layer, x[rows], classes, this.activations, grads)
            found[method].extend(zip(rows, classes, maps))


def _library_cams(model: nn.Module, layer: nn.Module, x: Tensor, targets: Sequence[Sequence[int]], method: str,
                  precision: Precision, batch_size: int, found: dict) -> None:
    """One method through pytorch-grad-cam's own call (AblationCAM, ScoreCAM)."""
    with cam_extractor(model, method, layer, batch_size) as cam, torch.enable_grad():
        if method in CLASS_AGNOSTIC:
            rounds = [(list(range(len(x))), _agnostic_classes(targets))]
        else:
            rounds = list(_rounds(targets))
        for rows, classes in rounds:
            with precision.autocast():
                maps = cam(input_tensor=x[rows], targets=[ClassifierOutputTarget(c) for c in classes])
            cam.outputs = None  # drop this round's graph before the next round
            found[method].extend((row, None if method in CLASS_AGNOSTIC else cls, m)
                                 for row, cls, m in zip(rows, classes, maps))
