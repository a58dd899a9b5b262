"""Soft-Attention classifier (Datta et al. 2021) on the last feature map of any timm backbone.

Head as the official InceptionResNetV2 recipe (methods.md D.1): the attended features u and the raw
features f are max-pooled, concatenated [f, u], passed through ReLU and dropout 0.5, and classified
by one linear layer. ``head_pool="flatten"`` keeps the recipe's MaxPool2D(2, 'same') + Flatten (the
model is then tied to ``input_size``); ``"global"`` (default) max-pools globally so any input size
works. ``class_weight`` reproduces Keras' ``class_weight`` (mel 5 in the paper's training code).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..layers.soft_attention import SoftAttention
from ..losses.classification import ignoring_unlabeled
from ._registry import register_model
from .base import LossContext, TrainOutput
from .baseline import ClassifierOnBackbone

HEAD_POOLS = ("global", "flatten")


class SoftAttentionNet(ClassifierOnBackbone):
    """Backbone -> SoftAttention on the last level -> [maxpool f, maxpool u] -> ReLU -> dropout -> FC."""

    def __init__(self, backbone: str = "tf_efficientnet_lite0", num_classes: int = 2, pretrained: bool | str = False,
                 num_maps: int = 16, aggregate: bool = True, learnable_scale: bool = False, keras_exact: bool = False,
                 drop_rate: float = 0.5, head_pool: str = "global", input_size: int | None = None,
                 class_weight: list[float] | None = None, in_chans: int = 3, task: str = "multiclass"):
        if head_pool not in HEAD_POOLS:
            raise ValueError(f"head_pool must be one of {', '.join(HEAD_POOLS)}, got {head_pool!r}")
        super().__init__(backbone, num_classes, pretrained, drop_rate, num_levels=1, in_chans=in_chans, task=task)
        c = self.backbone.channels[-1]
        self.attention = SoftAttention(c, num_maps, aggregate, learnable_scale, keras_exact)
        self.head_pool = head_pool
        per_position = c + self.attention.out_channels
        self.input_size = int(input_size or self.backbone.default_input_size)
        self.grid: tuple[int, int] | None = None
        if head_pool == "flatten":
            h, w = self._feature_size(self.input_size, in_chans)
            self.grid = (math.ceil(h / 2), math.ceil(w / 2))
            per_position *= self.grid[0] * self.grid[1]
        self.classifier = nn.Linear(per_position, num_classes)
        if class_weight is not None:
            if len(class_weight) != num_classes:
                raise ValueError(f"class_weight has {len(class_weight)} entries for {num_classes} classes")
            self.register_buffer("class_weight", torch.tensor([float(v) for v in class_weight]), persistent=False)
        else:
            self.class_weight = None

    @torch.no_grad()
    def _feature_size(self, size: int, in_chans: int) -> tuple[int, int]:
        was_training = self.backbone.training
        self.backbone.eval()
        h, w = self.backbone(torch.zeros(1, in_chans, size, size))[-1].shape[-2:]
        self.backbone.train(was_training)
        return int(h), int(w)

    def attend(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """[0, 1] images -> (features f: B x C x h x w, attended u, maps alpha: B x K x h x w)."""
        f = self.features(x)[-1]
        u, alpha = self.attention(f)
        return f, u, alpha

    def pooled_head(self, f: Tensor, u: Tensor) -> Tensor:
        """(f, u) -> B x num_classes logits."""
        if self.head_pool == "global":
            z = torch.cat([f.amax(dim=(2, 3)), u.amax(dim=(2, 3))], dim=1)
        else:
            if (math.ceil(f.shape[-2] / 2), math.ceil(f.shape[-1] / 2)) != self.grid:
                raise ValueError(
                    f"head_pool='flatten' ties this model to input size {self.input_size} (feature grid "
                    f"{self.grid} after pooling); got a {tuple(f.shape[-2:])} feature map. Resize the input "
                    f"or build the model with head_pool='global'")
            z = torch.cat([F.max_pool2d(f, 2, ceil_mode=True), F.max_pool2d(u, 2, ceil_mode=True)], dim=1)
            # Keras flattens channels-last: (h, w, c) order, kept so ported weights line up.
            z = z.permute(0, 2, 3, 1).flatten(1)
        return self.classifier(self.dropout(F.relu(z)))

    def forward(self, x: Tensor) -> Tensor:
        f, u, _ = self.attend(x)
        return self.pooled_head(f, u)

    def forward_train(self, x: Tensor, targets: Tensor, ctx: LossContext) -> TrainOutput:
        """``ce`` is the configured criterion, or Keras-style class-weighted CE when ``class_weight``."""
        if self.class_weight is None:
            return super().forward_train(x, targets, ctx)
        if targets.ndim != 1:
            raise ValueError("soft_attention's class_weight is for multi-class data (Keras class_weight)")
        logits = self(x)
        ce = ignoring_unlabeled(lambda z, y: keras_weighted_ce(z, y, self.class_weight))(logits, targets)
        return TrainOutput(logits=logits, losses={"ce": ce, "total": ce})

    def attention_maps(self, x: Tensor) -> dict[str, Tensor]:
        """``A``: the mean of the K maps alpha_k (the layer multiplies by their sum; the mean keeps the
        map in [0, 1]), and ``map_<k>`` for each alpha_k (B x 1 x h x w, each summing to 1)."""
        _, _, alpha = self.attend(x)
        maps = {"A": alpha.mean(dim=1, keepdim=True)}
        maps.update({f"map_{k}": alpha[:, k:k + 1] for k in range(alpha.shape[1])})
        return maps


def keras_weighted_ce(logits: Tensor, targets: Tensor, class_weight: Tensor) -> Tensor:
    """Keras ``class_weight``: mean over the batch of w_{y_b} * CE_b (divided by B, not by sum w).

    logits: B x K, targets: (B,) int64 in [0, K), class_weight: (K,) -> scalar.
    """
    ce = F.cross_entropy(logits.float(), targets, reduction="none")
    return (class_weight.to(ce.device)[targets] * ce).mean()


@register_model("soft_attention")
def soft_attention(backbone: str = "tf_efficientnet_lite0", num_classes: int = 2, pretrained: bool | str = False,
                   num_maps: int = 16, aggregate: bool = True, learnable_scale: bool = False,
                   keras_exact: bool = False, drop_rate: float = 0.5, head_pool: str = "global",
                   input_size: int | None = None, class_weight: list[float] | None = None,
                   in_chans: int = 3, task: str = "multiclass") -> SoftAttentionNet:
    """Soft-Attention (K maps, 3x3 conv + ReLU + spatial softmax) on the last feature map, with the
    paper's max-pool concat head. ``keras_exact`` reproduces the official layer's axis quirk."""
    return SoftAttentionNet(backbone, num_classes, pretrained, num_maps, aggregate, learnable_scale, keras_exact,
                            drop_rate, head_pool, input_size, class_weight, in_chans, task)
