"""One forward pass that serves the class probabilities and every CAM computed from one layer.

Grad-CAM, Grad-CAM++, XGrad-CAM, HiRes-CAM, Layer-CAM and EigenCAM are functions of the explained
layer's activations A and (for all but EigenCAM) of the gradients dy_c/dA of the class score y_c.
pytorch-grad-cam runs a full forward and a full backward (to every parameter) per method and call;
``layer_pass`` runs the model once and keeps only what those maps need:

- the parameters are frozen during the pass, so the layers before the explained one record no
  autograd graph and no parameter gradient is ever computed;
- a forward hook on the layer swaps its output for a copy of a new leaf tensor, so the gradient
  dy_c/dA is obtained by back-propagating through the layers *after* it only (for the ISIC 2017
  protocol's baseline: pooling and the linear head).

The activations, gradients and logits are the same numbers, bit for bit, as those of the
library's per-method passes (the same kernels on the same tensors; tests/explain/test_cams.py
compares them for every registered model, fp32 and bf16).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
from torch import Tensor

from ..engine.precision import Precision


@dataclass
class LayerPass:
    """What one forward pass of a batch left behind.

    Attributes:
        logits: B x K, detached.
        activations: B x C x h x w float32, the explained layer's output, detached.
        precision: the autocast the pass ran under (gradients are taken under it too).
    """

    logits: Tensor
    activations: Tensor
    precision: Precision
    _leaf: Tensor
    _graph_logits: Tensor

    def gradients(self, classes: Sequence[int]) -> Tensor:
        """d(sum_i logits[i, classes[i]]) / d activations, B x C x h x w float32 (one class per image).

        The summed score is that of pytorch-grad-cam's ``ClassifierOutputTarget``; the graph is freed,
        so a pass gives one set of gradients.
        """
        if len(classes) != len(self.logits):
            raise ValueError(f"{len(self.logits)} images but {len(classes)} classes")
        with self.precision.autocast():
            score = sum(self._graph_logits[i, int(c)] for i, c in enumerate(classes))
            (grad,) = torch.autograd.grad(score, self._leaf)
        return grad.float()


def layer_pass(model: nn.Module, x: Tensor, layer: nn.Module | None = None,
               precision: Precision | None = None) -> LayerPass:
    """Run ``model`` on the B x 3 x H x W batch ``x`` once, capturing ``layer`` (default ``model.cam_layer``).

    The model's parameters are frozen while it runs and their ``requires_grad`` flags restored after,
    also when the forward fails; the hook is always removed. Raises ValueError when the layer does
    not run exactly once in the forward pass.
    """
    layer = model.cam_layer if layer is None else layer
    precision = precision or Precision(x.device, None)
    leaves: list[Tensor] = []

    def capture(module: nn.Module, args, output: Tensor) -> Tensor:
        leaf = output.detach().requires_grad_(True)
        leaves.append(leaf)
        return leaf.clone()  # not the leaf itself: later in-place operations stay allowed

    trainable = [p for p in model.parameters() if p.requires_grad]
    handle = layer.register_forward_hook(capture)
    try:
        for p in trainable:
            p.requires_grad_(False)
        with torch.enable_grad(), precision.autocast():
            logits = model(x.detach())
    finally:
        handle.remove()
        for p in trainable:
            p.requires_grad_(True)
    if len(leaves) != 1:
        raise ValueError(f"the explained layer {type(layer).__name__} ran {len(leaves)} times in one forward pass "
                         f"of {type(model).__name__}; CAMs need a layer that runs exactly once")
    return LayerPass(logits.detach(), leaves[0].detach().float(), precision, leaves[0], logits)
