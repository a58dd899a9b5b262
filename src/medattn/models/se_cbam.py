"""SE and CBAM baselines: the plain classifier with one attention block on the last feature map.

These are the comparison points of the SIBnet (Fig. ``SIBNet_AUC.png``: SE, CBAM) and BIIGMA papers.
Blocks come from timm: ``SEModule`` (Hu et al. 2018) and ``CbamModule`` (Woo et al. 2018, through
``medattn.layers.cbam.CBAM`` to expose its spatial map). Head: GAP + dropout + linear, as ``baseline``.
Grad-CAM explains the block's output (the map the head pools).
"""
from __future__ import annotations

import torch.nn as nn
from timm.layers import SEModule
from torch import Tensor

from ..layers.cbam import CBAM
from ._registry import register_model
from .baseline import ClassifierOnBackbone


class AttentionBlockNet(ClassifierOnBackbone):
    """Backbone -> ``block`` on the last level -> GAP -> dropout -> linear."""

    def __init__(self, block: nn.Module, backbone: str, num_classes: int, pretrained: bool | str, drop_rate: float,
                 in_chans: int = 3, task: str = "multiclass"):
        super().__init__(backbone, num_classes, pretrained, drop_rate, num_levels=1, in_chans=in_chans, task=task)
        self.block = block(self.backbone.channels[-1])

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.block(self.features(x)[-1]))

    @property
    def cam_layer(self) -> nn.Module:
        return self.block


class SENet(AttentionBlockNet):
    """SE on the last feature map; ``channel_weights(x)`` gives the B x C excitation (no spatial map)."""

    def channel_weights(self, x: Tensor) -> Tensor:
        """[0, 1] images -> B x C sigmoid channel weights of the SE block."""
        f = self.features(x)[-1]
        se = self.block
        s = se.fc2(se.act(se.bn(se.fc1(f.mean(dim=(2, 3), keepdim=True)))))
        return se.gate(s).flatten(1)


class CBAMNet(AttentionBlockNet):
    """CBAM on the last feature map; its spatial gate is the attention map ``spatial``."""

    def attention_maps(self, x: Tensor) -> dict[str, Tensor]:
        """``spatial``: CBAM's spatial gate, B x 1 x h x w in (0, 1)."""
        _, gate = self.block.forward_with_map(self.features(x)[-1])
        return {"spatial": gate}


@register_model("se")
def se(backbone: str = "tf_efficientnet_lite0", num_classes: int = 2, pretrained: bool | str = False,
       drop_rate: float = 0.2, reduction: int = 16, in_chans: int = 3, task: str = "multiclass") -> SENet:
    """Baseline + squeeze-and-excitation (reduction 16, timm ``SEModule``) on the last feature map."""
    def block(c: int) -> nn.Module:
        return SEModule(c, rd_ratio=1.0 / reduction, rd_divisor=1)

    return SENet(block, backbone, num_classes, pretrained, drop_rate, in_chans, task)


@register_model("cbam")
def cbam(backbone: str = "tf_efficientnet_lite0", num_classes: int = 2, pretrained: bool | str = False,
         drop_rate: float = 0.2, reduction: int = 16, spatial_kernel_size: int = 7, in_chans: int = 3,
         task: str = "multiclass") -> CBAMNet:
    """Baseline + CBAM (channel then spatial attention, timm ``CbamModule``) on the last feature map."""
    def block(c: int) -> nn.Module:
        return CBAM(c, reduction=reduction, spatial_kernel_size=spatial_kernel_size)

    return CBAMNet(block, backbone, num_classes, pretrained, drop_rate, in_chans, task)
