"""SIBnet (Mahapatra, Poellinger & Reyes 2022): saliency-guided losses on any registered model.

SIBnet adds no module. ``create_model("sibnet", base="baseline", backbone=..., num_classes=...,
base_options={...})`` builds the base model and wraps it: ``forward`` and ``cam_layer`` are the
base's; ``forward_train`` runs the base's own ``forward_train`` (so its loss terms stay), captures
the activations of ``base.cam_layer`` on the way, computes the Grad-CAM map of every class in one
batched backward pass, and adds the class-distinctiveness (``cd``) and spatial-coherence (``sc``)
terms (``medattn.losses.saliency``). Unlabeled rows (target -1 / NaN row) reach only ``cd`` and
``sc``: the configured criterion ignores them.

Total loss (``normalize=True``, the official behaviour): each of base total, cd and sc is divided by
its value at the first training iteration (kept in persistent buffers ``norm_base``, ``norm_cd``,
``norm_sc``, so it survives checkpoints and ``--resume``), then weighted by ``cd_weight`` /
``sc_weight`` (1 by default). ``normalize=False``: base + cd_weight * cd + sc_weight * sc.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn as nn
from torch import Tensor

from ..layers.map_scaling import normalize_maps
from ..losses.saliency import (SC_REDUCTIONS, class_distinctiveness_loss, gradcam_all_classes,
                               spatial_coherence_loss, upsample_maps)
from ._registry import create_model, register_model
from .base import LossContext, MedAttnModel, TrainOutput


class SIBNet(MedAttnModel):
    """A registered model plus the SIBnet saliency losses."""

    def __init__(self, base: MedAttnModel, cd_weight: float = 1.0, sc_weight: float = 1.0, normalize: bool = True,
                 relu: bool = False, upsample: str = "nearest", sc_kernel: int = 9, sc_size: int | None = None,
                 sc_reduction: str = "sum", skip_last_component: bool = False):
        super().__init__(base.num_classes, base.task)
        if upsample not in ("nearest", "bilinear"):
            raise ValueError(f"upsample must be 'nearest' or 'bilinear', got {upsample!r}")
        if sc_reduction not in SC_REDUCTIONS:
            raise ValueError(f"sc_reduction must be one of {', '.join(SC_REDUCTIONS)}, got {sc_reduction!r}")
        self.base = base
        self.cd_weight, self.sc_weight, self.normalize = float(cd_weight), float(sc_weight), normalize
        self.relu, self.upsample, self.sc_kernel, self.sc_size = relu, upsample, sc_kernel, sc_size
        self.sc_reduction, self.skip_last_component = sc_reduction, skip_last_component
        for name in ("base", "cd", "sc"):
            self.register_buffer(f"norm_{name}", torch.zeros(()), persistent=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.base(x)

    @property
    def cam_layer(self) -> nn.Module:
        return self.base.cam_layer

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """The base model's groups (SIBnet adds no parameters)."""
        return self.base.param_groups()

    @contextmanager
    def _capture(self) -> Iterator[list[Tensor]]:
        """Record the first output of ``cam_layer`` during a forward pass (made a graph leaf that
        requires grad when it does not already, e.g. under a frozen backbone)."""
        store: list[Tensor] = []

        def hook(_module, _inputs, output):
            if store:
                return None
            if not isinstance(output, Tensor):
                raise TypeError(f"SIBnet needs a tensor output from cam_layer, got {type(output).__name__}")
            if not output.requires_grad:
                output = output.detach().requires_grad_(True)
                store.append(output)
                return output
            store.append(output)
            return None

        handle = self.cam_layer.register_forward_hook(hook)
        try:
            yield store
        finally:
            handle.remove()

    def class_maps(self, logits: Tensor, features: Tensor) -> Tensor:
        """Grad-CAM of every class: B x K x h x w (weights detached)."""
        return gradcam_all_classes(logits, features, relu=self.relu)

    def saliency_losses(self, cams: Tensor, image_size: tuple[int, int]) -> dict[str, Tensor]:
        """``cd`` on the feature-level maps, ``sc`` on the maps upsampled to the image (or ``sc_size``)."""
        size = (self.sc_size, self.sc_size) if self.sc_size else image_size
        up = upsample_maps(cams, size, self.upsample)
        return {"cd": class_distinctiveness_loss(cams),
                "sc": spatial_coherence_loss(up, self.sc_kernel, self.skip_last_component, self.sc_reduction)}

    def _scale(self, name: str, value: Tensor) -> Tensor:
        """value / first nonzero training value of the term (stored once in ``norm_<name>``)."""
        buf = getattr(self, f"norm_{name}")
        if self.training and float(buf) == 0.0:
            v = float(value.detach())
            if v > 0.0 and torch.isfinite(value.detach()):
                buf.fill_(v)
        return value / buf if float(buf) > 0.0 else value

    def forward_train(self, x: Tensor, targets: Tensor, ctx: LossContext) -> TrainOutput:
        with torch.enable_grad(), self._capture() as store:
            out = self.base.forward_train(x, targets, ctx)
            if not store:
                raise RuntimeError(f"cam_layer of {type(self.base).__name__} did not run in forward_train")
            with torch.autocast(x.device.type, enabled=False):  # saliency maths in float32
                cams = self.class_maps(out.logits, store[0])
                terms = self.saliency_losses(cams, tuple(x.shape[-2:]))
        base_total = out.losses["total"]
        losses = {k: v for k, v in out.losses.items() if k != "total"}
        if set(losses) - {"ce"}:
            losses["base"] = base_total
        losses.update(terms)
        if self.normalize:
            total = (self._scale("base", base_total) + self.cd_weight * self._scale("cd", terms["cd"])
                     + self.sc_weight * self._scale("sc", terms["sc"]))
        else:
            total = base_total + self.cd_weight * terms["cd"] + self.sc_weight * terms["sc"]
        losses["total"] = total
        return TrainOutput(logits=out.logits, losses=losses)

    def grad_cams(self, x: Tensor) -> Tensor:
        """The Grad-CAM of every class as the losses see it (unscaled, no ReLU unless ``relu``):
        B x K x h x w, detached."""
        with torch.enable_grad(), self._capture() as store:
            logits = self.base(x)
            with torch.autocast(x.device.type, enabled=False):
                return self.class_maps(logits, store[0]).detach()

    def attention_maps(self, x: Tensor) -> dict[str, Tensor]:
        """``cam_<k>``: Grad-CAM of class k (B x 1 x h x w, detached, min-max scaled to [0, 1] per image),
        plus the base's own maps."""
        cams = self.grad_cams(x)
        maps = {f"cam_{k}": normalize_maps(cams[:, k:k + 1]) for k in range(cams.shape[1])}
        maps.update(self.base.attention_maps(x))
        return maps


@register_model("sibnet")
def sibnet(base: str = "baseline", backbone: str | None = None, num_classes: int | None = None,
           pretrained: bool | str | None = None, base_options: dict | None = None, cd_weight: float = 1.0,
           sc_weight: float = 1.0, normalize: bool = True, relu: bool = False, upsample: str = "nearest",
           sc_kernel: int = 9, sc_size: int | None = None, sc_reduction: str = "sum",
           skip_last_component: bool = False, task: str = "multiclass") -> SIBNet:
    """SIBnet losses on the registered model ``base`` (built with backbone, num_classes, pretrained
    and ``base_options``). Defaults follow the official code, except that the last connected
    component is counted (``skip_last_component=True`` restores the official off-by-one)."""
    if base == "sibnet":
        raise ValueError("sibnet cannot wrap itself; choose another base model")
    model = create_model(base, backbone=backbone, num_classes=num_classes, pretrained=pretrained, task=task,
                         **(base_options or {}))
    return SIBNet(model, cd_weight, sc_weight, normalize, relu, upsample, sc_kernel, sc_size, sc_reduction,
                  skip_last_component)
