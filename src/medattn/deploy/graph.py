"""What an exported model computes: the module handed to the ONNX exporter, also run eagerly by the service.

``DeployGraph(model, task)``: ``image`` N x 3 x H x W (float32 in [0, 1], or uint8 in [0, 255]) ->
``probabilities`` N x K (softmax, or per-label sigmoid), ``logits`` N x K and, with ``maps=True``,

- ``map_<name>``: each native attention map of the model (``model.attention_maps``), N x 1 x h x w,
  as the model gives it (not rescaled);
- ``cam``: the class activation map of Zhou et al. (2016), N x K x h x w, where the model's head is
  global average pooling followed by a linear layer: ``cam[:, k] = sum_c W[k, c] F[:, c]`` over the
  pooled feature map F, so ``cam[:, k].mean(spatial) + b[k] == logits[:, k]`` (checked on every
  export). It needs no gradient, unlike Grad-CAM, which for such a head is the same map up to a
  ReLU and a scale.

Normalisation is inside the model (``model.normalize``), so the graph takes raw images. Training-only
paths (BIIGMA's vector sampling and hybrid branch, dropout, the VIB's sampling) are not in
``forward`` of any model and so never reach the graph. SIBnet's own maps are Grad-CAMs (they need a
backward pass): its graph carries the maps of its base model and the CAM instead.
"""
from __future__ import annotations

import re

import torch
import torch.nn as nn
from torch import Tensor

from ..engine.inference import probabilities


def exportable_model(model: nn.Module) -> nn.Module:
    """The model whose ``attention_maps`` can be traced: SIBnet's base (its own maps take gradients)."""
    from ..models.sibnet import SIBNet

    return exportable_model(model.base) if isinstance(model, SIBNet) else model


def cam_features(model: nn.Module, x: Tensor) -> Tensor | None:
    """The feature map F (B x C x h x w) that a GAP + linear head pools into ``model.classifier``, or
    None for a head of another kind (Soft-Attention's max pooling, the class-query heads)."""
    from ..models.baseline import ClassifierOnBackbone
    from ..models.biigma import BiigmaNet
    from ..models.se_cbam import AttentionBlockNet

    model = exportable_model(model)
    forward = type(model).forward
    if forward is BiigmaNet.forward:
        return torch.cat(model._heads(model.features(x)[-1]), dim=1)
    if forward is AttentionBlockNet.forward:
        return model.block(model.features(x)[-1])
    if forward is ClassifierOnBackbone.forward:
        return model.features(x)[-1]
    return None


def class_activation_map(model: nn.Module, x: Tensor) -> Tensor | None:
    """CAM (Zhou et al. 2016) of every class, B x K x h x w, or None where the head is not GAP + linear."""
    features = cam_features(model, x)
    if features is None:
        return None
    weight = exportable_model(model).classifier.weight  # K x C
    return torch.einsum("kc,bchw->bkhw", weight.to(features.dtype), features)


def output_name(map_name: str) -> str:
    """ONNX output name of a native map: ``map_`` + the name with anything but [A-Za-z0-9_] as ``_``."""
    return "map_" + re.sub(r"\W", "_", map_name)


class DeployGraph(nn.Module):
    """image -> (probabilities, logits[, map_<name> ..., cam]); see the module docstring.

    Args:
        model: a medattn model in eval mode.
        task: "multiclass" (softmax) or "multilabel" (sigmoid).
        input_dtype: "float32" (values in [0, 1]) or "uint8" (values in [0, 255], divided by 255 here).
        maps: add the native maps and, where the head allows it, the CAM.
    """

    def __init__(self, model: nn.Module, task: str, input_dtype: str = "float32", maps: bool = False):
        super().__init__()
        if input_dtype not in ("float32", "uint8"):
            raise ValueError(f"input_dtype must be float32 or uint8, got {input_dtype!r}")
        self.model, self.task, self.input_dtype, self.maps = model, task, input_dtype, maps
        self.map_names: list[str] = []
        self.has_cam = False

    def probe(self, image: Tensor) -> list[str]:
        """Run once on ``image`` to learn the map names and whether there is a CAM; returns the output
        names in order (call before exporting)."""
        names = ["probabilities", "logits"]
        if self.maps:
            with torch.no_grad():
                x = self._to_unit(image)
                self.map_names = list(exportable_model(self.model).attention_maps(x))
                self.has_cam = class_activation_map(self.model, x) is not None
            names += [output_name(n) for n in self.map_names] + (["cam"] if self.has_cam else [])
        if len(set(names)) != len(names):
            raise ValueError(f"two maps of {type(self.model).__name__} share an ONNX output name: {names}")
        return names

    def _to_unit(self, image: Tensor) -> Tensor:
        return image.float() / 255.0 if self.input_dtype == "uint8" else image

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        x = self._to_unit(image)
        logits = self.model(x).float()
        out = [probabilities(logits, self.task), logits]
        if self.maps:
            native = exportable_model(self.model).attention_maps(x)
            out += [native[n].float() for n in self.map_names]
            if self.has_cam:
                out.append(class_activation_map(self.model, x).float())
        return tuple(out)
