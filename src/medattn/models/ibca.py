"""IBCA-style causal attention for multi-label images: a documented RECONSTRUCTION from the abstract of
Cui et al., MICCAI 2025 (arXiv 2508.08069). The paper's text and code are not public; every design
choice below is ours and is listed, tagged [abstract] / [inferred], in docs/ibca.md.

Registered models:
- ``class_query``: backbone -> 1x1 projection P (B x D x h x w) -> K class queries with multi-head
  attention over P -> per-class features -> one linear classifier per class. No IBCA terms.
- ``ibca``: ``class_query`` plus
  * a Gaussian-mixture spatial attention branch (per class a mixture of G 2-D Gaussians predicted from
    P) whose pooled class features go through a variational information bottleneck (``kl_vib``);
  * contrastive alignment (``nce``): InfoNCE pulling each class's multi-head-attention feature (P pooled
    under the head-averaged attention) towards the Gaussian-mixture feature of the same image and class;
  * a causal intervention (``intervention``): each class feature plus the features pooled from the
    complement of its attention in another image of the batch must give the same prediction;
  * ``nce`` and ``intervention`` weights ramped up linearly over the first ``ramp_fraction`` of epochs.
  Switches ``use_gm``, ``use_vib``, ``use_contrastive``, ``use_intervention`` give the ablations
  (``medattn.models.ibca_ablations``).

Loss terms (``forward_train``): ``cls`` (the configured criterion on the final logits),
``cls_branches`` (mean criterion of the two branches' own logits), ``kl_vib``, ``nce``,
``intervention``; ``total = cls + branch_weight*cls_branches + kl_weight*kl_vib
+ r*(nce_weight*nce + intervention_weight*intervention)`` with r the ramp factor in [0, 1]. The logged
terms are unweighted.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..layers.class_query_attention import ClassQueryAttention, ClassWiseLinear
from ..layers.gaussian_mixture_attention import GaussianMixtureAttention
from ..layers.variational_bottleneck import VariationalBottleneck
from ..data.dataset import labeled_mask
from ..losses.contrastive import class_feature_nce
from ._registry import register_model
from .backbone import Backbone
from .base import LossContext, MedAttnModel, Normalize, TrainOutput, split_parameters

FUSIONS = ("mean", "mha", "gm")
INTERVENTION_TARGETS = ("prediction", "label")


def attention_complement(att: Tensor, eps: float = 1e-6) -> Tensor:
    """Complement of attention rows ... x P: (1 - a / max a) renormalised to sum 1 (uniform where the
    row is constant)."""
    c = 1.0 - att / att.amax(dim=-1, keepdim=True).clamp_min(eps)
    total = c.sum(dim=-1, keepdim=True)
    uniform = torch.full_like(c, 1.0 / c.shape[-1])
    return torch.where(total > eps, c / total.clamp_min(eps), uniform)


def binary_kl_to_soft_targets(logits: Tensor, probs: Tensor) -> Tensor:
    """Mean over elements of KL(Bernoulli(probs) || Bernoulli(sigmoid(logits))), float32, >= 0."""
    logits, probs = logits.float(), probs.float()
    cross = F.binary_cross_entropy_with_logits(logits, probs, reduction="none")
    entropy = -(torch.xlogy(probs, probs) + torch.xlogy(1 - probs, 1 - probs))
    return (cross - entropy).mean()


class ClassQueryNet(MedAttnModel):
    """Backbone -> 1x1 projection -> class-query multi-head attention -> class-wise linear logits."""

    def __init__(self, backbone: str = "tf_efficientnet_lite0", num_classes: int = 2, pretrained: bool | str = False,
                 embed_dim: int = 256, num_heads: int = 4, drop_rate: float = 0.1, output_stride: int | None = None,
                 in_chans: int = 3, task: str = "multilabel"):
        super().__init__(num_classes, task)
        timm_kwargs = {} if output_stride is None else {"output_stride": int(output_stride)}
        self.backbone = Backbone(backbone, pretrained=pretrained, num_levels=1, in_chans=in_chans, **timm_kwargs)
        self.normalize = Normalize(self.backbone.mean, self.backbone.std)
        self.proj = nn.Conv2d(self.backbone.channels[-1], embed_dim, kernel_size=1)
        self.mha = ClassQueryAttention(embed_dim, num_classes, embed_dim, num_heads)
        self.dropout = nn.Dropout(drop_rate)
        self.head_mha = ClassWiseLinear(num_classes, embed_dim)

    def project(self, x: Tensor) -> Tensor:
        """[0, 1] images B x 3 x H x W -> projected features P, B x D x h x w."""
        return self.proj(self.backbone(self.normalize(x))[-1])

    def forward(self, x: Tensor) -> Tensor:
        f, _ = self.mha(self.project(x))
        return self.head_mha(self.dropout(f))

    def attention_maps(self, x: Tensor) -> dict[str, Tensor]:
        """``mha_<k>``: class k's attention averaged over heads, B x 1 x h x w (sums to 1)."""
        p = self.project(x)
        return self._mha_maps(self.mha.attention(p), p.shape[-2:])

    @staticmethod
    def _mha_maps(att: Tensor, size: tuple[int, int]) -> dict[str, Tensor]:
        m = att.mean(dim=1).unflatten(-1, tuple(size))  # B x K x h x w
        return {f"mha_{k}": m[:, k:k + 1] for k in range(m.shape[1])}

    @property
    def cam_layer(self) -> nn.Module:
        return self.backbone.stage(-1)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return split_parameters(self, self.backbone)


@register_model("ibca")
class IBCANet(ClassQueryNet):
    """IBCA-style reconstruction: class-query attention + Gaussian-mixture VIB branch + contrastive
    alignment + complement-context intervention (see the module docstring and docs/ibca.md)."""

    def __init__(self, backbone: str = "tf_efficientnet_lite0", num_classes: int = 2, pretrained: bool | str = False,
                 embed_dim: int = 256, num_heads: int = 4, drop_rate: float = 0.1, output_stride: int | None = None,
                 in_chans: int = 3, num_components: int = 3, gm_covariance: str = "full", min_std: float = 0.5,
                 bottleneck_dim: int = 64, vib_covariance: str = "diag", use_gm: bool = True, use_vib: bool = True,
                 use_contrastive: bool = True, use_intervention: bool = True, fusion: str = "mean",
                 branch_weight: float = 0.5, kl_weight: float = 1e-3, nce_weight: float = 0.2,
                 nce_temperature: float = 0.1, nce_positives_only: bool = True, nce_detach_target: bool = True,
                 intervention_weight: float = 0.5, intervention_scale: float = 1.0,
                 intervention_target: str = "prediction", ramp_fraction: float = 0.3, task: str = "multilabel"):
        if use_contrastive and not use_gm:
            raise ValueError("use_contrastive aligns the multi-head attention with the Gaussian-mixture attention; "
                             "it needs use_gm=True (set use_contrastive=False to drop both)")
        if use_vib and not use_gm:
            raise ValueError("use_vib is the bottleneck of the Gaussian-mixture branch; it needs use_gm=True")
        if fusion not in FUSIONS or (fusion != "mha" and not use_gm):
            raise ValueError(f"fusion must be one of {FUSIONS} ('mha' when use_gm=False), got {fusion!r}")
        if intervention_target not in INTERVENTION_TARGETS:
            raise ValueError(f"intervention_target must be one of {INTERVENTION_TARGETS}, got {intervention_target!r}")
        super().__init__(backbone, num_classes, pretrained, embed_dim, num_heads, drop_rate, output_stride, in_chans,
                         task)
        self.use_gm, self.use_vib = use_gm, use_vib
        self.use_contrastive, self.use_intervention = use_contrastive, use_intervention
        self.fusion = fusion
        self.branch_weight, self.kl_weight = float(branch_weight), float(kl_weight)
        self.nce_weight, self.nce_temperature = float(nce_weight), float(nce_temperature)
        self.nce_positives_only, self.nce_detach_target = nce_positives_only, nce_detach_target
        self.intervention_weight, self.intervention_scale = float(intervention_weight), float(intervention_scale)
        self.intervention_target, self.ramp_fraction = intervention_target, float(ramp_fraction)
        if use_gm:
            self.gm = GaussianMixtureAttention(embed_dim, num_classes, num_components, gm_covariance, min_std)
            if use_vib:
                self.vib = VariationalBottleneck(embed_dim, bottleneck_dim, vib_covariance)
            else:
                self.gm_proj = nn.Linear(embed_dim, bottleneck_dim)
            self.head_gm = ClassWiseLinear(num_classes, bottleneck_dim)

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        """Intermediate tensors: ``p`` (B x D x h x w), ``f_mha`` (B x K x D), ``att`` (B x heads x K x hw),
        ``v`` (the attention's values, B x heads x hw x D/heads), and with the GM branch ``z_gm``
        (B x K x D), ``gm_maps`` (B x K x h x w), ``t`` (B x K x D_b), ``kl`` (B x K, with the VIB)."""
        p = self.project(x)
        att, v = self.mha.attention(p), self.mha.values(p)
        out = {"p": p, "f_mha": self.mha.readout(att, v), "att": att, "v": v}
        if self.use_gm:
            z, maps, _ = self.gm(p)
            out.update(z_gm=z, gm_maps=maps)
            if self.use_vib:
                out["t"], out["kl"] = self.vib(z)
            else:
                out["t"] = self.gm_proj(z)
        return out

    def _logits(self, enc: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor | None]:
        l_mha = self.head_mha(self.dropout(enc["f_mha"]))
        l_gm = self.head_gm(self.dropout(enc["t"])) if self.use_gm else None
        fused = {"mha": l_mha, "gm": l_gm, "mean": None if l_gm is None else 0.5 * (l_mha + l_gm)}[self.fusion]
        return fused, l_mha, l_gm

    def forward(self, x: Tensor) -> Tensor:
        return self._logits(self.encode(x))[0]

    def attention_maps(self, x: Tensor) -> dict[str, Tensor]:
        """``mha_<k>`` (head-averaged attention) and, with the GM branch, ``gm_<k>``: B x 1 x h x w each."""
        enc = self.encode(x)
        maps = self._mha_maps(enc["att"], enc["p"].shape[-2:])
        if self.use_gm:
            maps.update({f"gm_{k}": enc["gm_maps"][:, k:k + 1] for k in range(self.num_classes)})
        return maps

    def ramp(self, epoch: int, num_epochs: int) -> float:
        """Linear ramp of the causal terms: min(1, (epoch + 1) / ceil(ramp_fraction * num_epochs))."""
        if self.ramp_fraction <= 0:
            return 1.0
        return min(1.0, (epoch + 1) / max(1, math.ceil(self.ramp_fraction * num_epochs)))

    def intervention_loss(self, enc: dict[str, Tensor], l_mha: Tensor, targets: Tensor, ctx: LossContext) -> Tensor:
        """Prediction change when each class feature gets the complement-of-attention context of another
        image: f~_{b,k} = f_{b,k} + s * g_{pi(b),k}, with pi a random cyclic shift of the batch."""
        b = l_mha.shape[0]
        if b < 2:
            return l_mha.sum() * 0.0
        # f_mha already carries the output bias: the context adds none.
        context = self.mha.readout(attention_complement(enc["att"].detach()), enc["v"], bias=False)
        shift = int(torch.randint(1, b, (1,)))
        perm = (torch.arange(b, device=l_mha.device) + shift) % b
        l_int = self.head_mha(self.dropout(enc["f_mha"] + self.intervention_scale * context[perm]))
        if self.intervention_target == "label":
            return ctx.criterion(l_int, targets)
        return binary_kl_to_soft_targets(l_int, torch.sigmoid(l_mha.float()).detach())

    def forward_train(self, x: Tensor, targets: Tensor, ctx: LossContext) -> TrainOutput:
        if targets.ndim != 2:
            raise ValueError(f"{type(self).__name__} is a multi-label model: targets must be B x K 0/1 "
                             f"(got shape {tuple(targets.shape)}); use a multi-label data set")
        enc = self.encode(x)
        logits, l_mha, l_gm = self._logits(enc)
        losses = {"cls": ctx.criterion(logits, targets)}
        total = losses["cls"]
        if self.use_gm:
            losses["cls_branches"] = 0.5 * (ctx.criterion(l_mha, targets) + ctx.criterion(l_gm, targets))
            total = total + self.branch_weight * losses["cls_branches"]
        if self.use_vib:
            losses["kl_vib"] = enc["kl"].mean()
            total = total + self.kl_weight * losses["kl_vib"]
        r = self.ramp(ctx.epoch, ctx.num_epochs)
        if self.use_contrastive:
            pooled = torch.einsum("bkp,bdp->bkd", enc["att"].mean(dim=1), enc["p"].float().flatten(2))
            target = enc["z_gm"].detach() if self.nce_detach_target else enc["z_gm"]
            labeled = labeled_mask(targets)
            valid = (targets == 1) if self.nce_positives_only else labeled.unsqueeze(1).expand_as(targets)
            losses["nce"] = class_feature_nce(pooled, target, valid & labeled.unsqueeze(1), self.nce_temperature)
            total = total + r * self.nce_weight * losses["nce"]
        if self.use_intervention:
            losses["intervention"] = self.intervention_loss(enc, l_mha, targets, ctx)
            total = total + r * self.intervention_weight * losses["intervention"]
        losses["total"] = total
        return TrainOutput(logits=logits, losses=losses)


@register_model("class_query")
def class_query(backbone: str = "tf_efficientnet_lite0", num_classes: int = 2, pretrained: bool | str = False,
                embed_dim: int = 256, num_heads: int = 4, drop_rate: float = 0.1, output_stride: int | None = None,
                in_chans: int = 3, task: str = "multilabel") -> ClassQueryNet:
    """Class-query multi-head attention classifier (the IBCA-style model without its IBCA terms)."""
    return ClassQueryNet(backbone, num_classes, pretrained, embed_dim, num_heads, drop_rate, output_stride, in_chans,
                         task)
