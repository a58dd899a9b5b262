"""The independence term of the default BIIGMA-Net acts on real pretrained features: with the offline
ImageNet weights of tf_efficientnet_lite0 at 224 px, its kernels are not the identity and its gradient
reaches the MICA heads at a size comparable to the classification loss's. The paper's literal setting
(sigma 2 on the raw last block) is the inert case this guards against: K = I, HSIC = 3 (n - 1) / n^2."""
from __future__ import annotations

import pytest
import torch

import medattn
from medattn.data.synthetic import generate_synthetic
from medattn.data.transforms import to_float_batch
from medattn.losses.classification import build_criterion
from medattn.losses.hsic import head_kernels


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    data = generate_synthetic(6, size=224, seed=0, split="train")
    return to_float_batch(data.images), torch.as_tensor(data.targets)


def independence_probe(images, **options) -> dict[str, float]:
    torch.manual_seed(0)
    model = medattn.create_model("biigma", num_classes=4, pretrained=True, **options).train()
    x, y = images
    heads = model.mica(model.side_outputs(x)[-1])
    hsic = model._independence(heads)
    ce = build_criterion("ce", "multiclass")(model._logits(heads), y)
    weights = [p for p in model.mica.parameters()]
    g_hsic = torch.autograd.grad(hsic, weights, retain_graph=True)
    g_ce = torch.autograd.grad(ce, weights)
    kernel = head_kernels(heads, model.sigma, model.bandwidth == "relative").detach()
    n = kernel.shape[-1]
    off = kernel[..., ~torch.eye(n, dtype=torch.bool)]
    return {"hsic": hsic.item(), "identity": 3 * (n - 1) / n ** 2, "off_diagonal": off.mean().item(),
            "grad_ratio": (torch.cat([g.flatten() for g in g_hsic]).norm()
                           / torch.cat([g.flatten() for g in g_ce]).norm()).item(),
            "r_channels": model.backbone.channels[-1]}


def test_default_hsic_acts_on_pretrained_lite0_features(images):
    probe = independence_probe(images)
    assert probe["r_channels"] == 1280  # R: the activated 1x1 head, not block 6's 320 channels
    assert 0.05 < probe["off_diagonal"] < 0.95, probe  # the kernel is neither the identity nor all ones
    assert probe["grad_ratio"] > 1e-2, probe
    assert abs(probe["hsic"] - probe["identity"]) > 1e-3, probe


def test_the_papers_literal_setting_is_the_inert_case(images):
    probe = independence_probe(images, bandwidth="absolute", r_source="last_level")
    assert probe["r_channels"] == 320
    assert probe["off_diagonal"] < 1e-6 and probe["grad_ratio"] < 1e-4, probe
    assert probe["hsic"] == pytest.approx(probe["identity"], abs=2e-4)
