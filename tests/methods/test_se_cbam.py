"""SE and CBAM baselines: the blocks are timm's, on the last feature map, with the CBAM map exposed."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from timm.layers.cbam import CbamModule

from medattn.layers.cbam import CBAM
from medattn.models import create_model
from short_runs import loss_history

TINY = "test_efficientnet"  # 64 channels at stride 32


def test_cbam_wrapper_equals_timm_and_returns_its_spatial_gate():
    torch.manual_seed(0)
    block = CBAM(32, reduction=8).eval()
    x = torch.randn(2, 32, 5, 6)
    y, gate = block.forward_with_map(x)
    torch.testing.assert_close(y, CbamModule.forward(block, x))
    assert block.channel.fc1.out_channels == 4 and block.channel.fc1.bias is not None
    assert gate.shape == (2, 1, 5, 6) and (gate > 0).all() and (gate < 1).all()
    # hand-computed: gate = sigmoid(BN(conv7x7([mean_c, max_c] of the channel-attended x)))
    xc = block.channel(x)
    pooled = torch.cat([xc.mean(1, keepdim=True), xc.amax(1, keepdim=True)], dim=1)
    torch.testing.assert_close(gate, torch.sigmoid(block.spatial.conv.bn(block.spatial.conv.conv(pooled))))
    torch.testing.assert_close(y, xc * gate)


@pytest.mark.parametrize("name", ["se", "cbam"])
def test_models_shapes_gradients_and_head(name):
    torch.manual_seed(0)
    model = create_model(name, backbone=TINY, num_classes=3)
    x = torch.rand(2, 3, 96, 96)
    logits = model(x)
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    logits.sum().backward()
    block_grads = [p.grad for p in model.block.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in block_grads)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())
    model.eval()
    with torch.no_grad():
        f = model.features(x)[-1]
        torch.testing.assert_close(model(x), model.classifier(model.block(f).mean(dim=(2, 3))))
    assert model.cam_layer is model.block


def test_se_block_is_timm_with_reduction_16_and_channel_weights():
    torch.manual_seed(0)
    model = create_model("se", backbone=TINY, num_classes=2).eval()
    assert type(model.block).__name__ == "SEModule" and model.block.fc1.out_channels == 64 // 16
    x = torch.rand(2, 3, 64, 64)
    assert model.attention_maps(x) == {}
    with torch.no_grad():
        w = model.channel_weights(x)
        f = model.features(x)[-1]
        assert w.shape == (2, 64) and ((w > 0) & (w < 1)).all()
        torch.testing.assert_close(model.block(f), f * w[:, :, None, None])


def test_cbam_attention_map_by_name():
    torch.manual_seed(0)
    model = create_model("cbam", backbone=TINY, num_classes=2).eval()
    with torch.no_grad():
        maps = model.attention_maps(torch.rand(2, 3, 96, 96))
    assert set(maps) == {"spatial"} and maps["spatial"].shape == (2, 1, 3, 3)
    assert ((maps["spatial"] > 0) & (maps["spatial"] < 1)).all()


@pytest.mark.parametrize("name", ["se", "cbam"])
def test_short_run_lowers_the_loss(name):
    torch.manual_seed(0)
    model = create_model(name, backbone=TINY, num_classes=3)
    history = loss_history(model)
    assert all(math.isfinite(v) for v in history)
    assert np.mean(history[-3:]) < 0.7 * np.mean(history[:3])
