"""Class activation maps for any medattn model through pytorch-grad-cam, batched, hooks always released.

Every model names the module Grad-CAM explains (``model.cam_layer``, the last feature level by
default). ``compute_cams`` runs one or more CAM methods on a batch and returns, per image, one map per
explained class (class-specific methods) or one map (class-agnostic methods such as EigenCAM).

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
from torch import Tensor

from ..engine.precision import Precision

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


def compute_cams(model: nn.Module, x: Tensor, targets: Sequence[Sequence[int]],
                 methods: Sequence[str] = DEFAULT_METHODS, layer: nn.Module | None = None,
                 precision: Precision | None = None, batch_size: int = 32) -> list[CamMaps]:
    """CAMs of a batch.

    Args:
        model: a medattn model (``forward(x) -> logits``), in eval mode for meaningful maps.
        x: B x 3 x H x W float image batch in [0, 1] on the model's device.
        targets: for each image, the class indices to explain (one map per class per method).
        methods: names from ``CAM_METHODS``.
        layer: the explained module (default ``model.cam_layer``).
        precision: autocast to run under (default fp32).
        batch_size: batch of the extra forward passes of AblationCAM and ScoreCAM.

    Returns:
        One dict per image: ``(method, class)`` -> H x W float32 map in [0, 1] (pytorch-grad-cam
        min-max scales each map and resizes it to the input size); class-agnostic methods give one
        map keyed ``(method, None)``.
    """
    methods = check_methods(methods)
    if x.ndim != 4:
        raise ValueError(f"x must be B x 3 x H x W, got shape {tuple(x.shape)}")
    if len(targets) != len(x):
        raise ValueError(f"{len(x)} images but {len(targets)} target lists")
    k = getattr(model, "num_classes", None)
    bad = [(i, c) for i, t in enumerate(targets) for c in t if int(c) < 0 or (k is not None and int(c) >= k)]
    if bad:
        raise ValueError(f"image {bad[0][0]}: class index {bad[0][1]} is out of range for {k} classes "
                         f"({len(bad) - 1} more)")
    out: list[CamMaps] = [{} for _ in range(len(x))]
    x = x.detach()
    precision = precision or Precision(x.device, None)
    for method in methods:
        with cam_extractor(model, method, layer, batch_size) as cam, torch.enable_grad():
            if method in CLASS_AGNOSTIC:
                rounds = [(list(range(len(x))), [int(t[0]) if len(t) else 0 for t in targets])]
            else:
                rounds = list(_rounds(targets))
            for rows, classes in rounds:
                with precision.autocast():
                    maps = cam(input_tensor=x[rows], targets=[ClassifierOutputTarget(c) for c in classes])
                cam.outputs = None  # drop this round's graph before the next round
                for row, cls, m in zip(rows, classes, maps):
                    out[row][(method, None if method in CLASS_AGNOSTIC else cls)] = np.asarray(m, np.float32)
    return out
