"""The plain classifier: a timm backbone, global average pooling, dropout and a linear layer."""
from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from ._registry import register_model
from .backbone import Backbone
from .base import MedAttnModel, Normalize, split_parameters


class ClassifierOnBackbone(MedAttnModel):
    """Shared plumbing: normalisation, a multi-level backbone and a GAP + dropout + linear head.

    Subclasses change ``features_to_pooled`` (attention on the last level) and add loss terms.
    """

    def __init__(self, backbone: str = "tf_efficientnet_lite0", num_classes: int = 2, pretrained: bool | str = False,
                 drop_rate: float = 0.0, num_levels: int = 1, head_channels: int | None = None, in_chans: int = 3,
                 task: str = "multiclass", activated_head: bool = False):
        super().__init__(num_classes, task)
        self.backbone = Backbone(backbone, pretrained=pretrained, num_levels=num_levels, in_chans=in_chans,
                                 activated_head=activated_head)
        self.normalize = Normalize(self.backbone.mean, self.backbone.std)
        self.dropout = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(head_channels or self.backbone.channels[-1], num_classes)

    def features(self, x: Tensor) -> list[Tensor]:
        """Backbone feature maps of a [0, 1] image batch, coarsest last."""
        return self.backbone(self.normalize(x))

    def head(self, feature: Tensor) -> Tensor:
        """B x C x h x w -> B x K logits."""
        return self.classifier(self.dropout(feature.mean(dim=(2, 3))))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x)[-1])

    @property
    def cam_layer(self) -> nn.Module:
        return self.backbone.stage(-1)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return split_parameters(self, self.backbone)


@register_model("baseline")
def baseline(backbone: str = "tf_efficientnet_lite0", num_classes: int = 2, pretrained: bool | str = False,
             drop_rate: float = 0.2, in_chans: int = 3, task: str = "multiclass") -> ClassifierOnBackbone:
    """Plain backbone + GAP + dropout + linear classifier (the comparison point of every paper)."""
    return ClassifierOnBackbone(backbone, num_classes, pretrained, drop_rate, num_levels=1, in_chans=in_chans,
                                task=task)
