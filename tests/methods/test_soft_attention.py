"""Soft-Attention layer and model: the intended formula, the Keras-exact formula, the head, the loss."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medattn.layers.soft_attention import SoftAttention, keras_conv3d_as_conv2d
from medattn.losses.classification import build_criterion
from medattn.models import LossContext, create_model
from short_runs import loss_history
from medattn.models.soft_attention import keras_weighted_ce

TINY = "test_efficientnet"  # timm's 82k-parameter test model: 64 channels at stride 32


def keras_loop(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """methods.md D.1, written out: x is H x W x C (channels last), kernel (ch, 3, 3, 1, K).

    a_k(h, w) = ReLU(sum_{r<H} sum_{dw} sum_{c in 0..2} W[r - h + p, dw + 1, c, 0, k] x[r, w + dw, c] + b_k)
    with p = (ch - 1) // 2 and zero padding outside the map; then the softmax over positions.
    """
    h_, w_, _ = x.shape
    ch, _, _, _, k_ = kernel.shape
    p = (ch - 1) // 2
    a = np.zeros((k_, h_, w_))
    for k in range(k_):
        for h in range(h_):
            for w in range(w_):
                s = bias[k]
                for r in range(h_):
                    i = r - h + p
                    if not 0 <= i < ch:
                        continue
                    for dw in (-1, 0, 1):
                        if not 0 <= w + dw < w_:
                            continue
                        for c in range(3):
                            s += kernel[i, dw + 1, c, 0, k] * x[r, w + dw, c]
                a[k, h, w] = max(s, 0.0)
    e = np.exp(a - a.reshape(k_, -1).max(axis=1)[:, None, None])
    return e / e.reshape(k_, -1).sum(axis=1)[:, None, None]


@pytest.mark.parametrize("channels,h,w", [(5, 4, 3), (12, 3, 4), (3, 6, 5)])
def test_keras_exact_matches_the_written_formula(channels, h, w):
    # (12, 3): kernel depth 12 > 2H - 1, rows are cropped; (3, 6): depth < H.
    torch.manual_seed(channels)
    layer = SoftAttention(channels, num_maps=2, keras_exact=True).double()
    with torch.no_grad():
        layer.bias.copy_(torch.tensor([0.05, -0.02]))
    x = torch.randn(2, channels, h, w, dtype=torch.float64)
    alpha = layer.maps(x).detach()
    for b in range(2):
        kernel = layer.kernel.detach().unsqueeze(3).numpy()  # back to Keras' (ch, 3, 3, 1, K)
        ref = keras_loop(x[b].permute(1, 2, 0).numpy(), kernel, layer.bias.detach().numpy())
        np.testing.assert_allclose(alpha[b].numpy(), ref, rtol=1e-10, atol=1e-12)


def test_keras_exact_uses_only_the_first_three_channels():
    layer = SoftAttention(8, num_maps=3, keras_exact=True)
    x = torch.randn(2, 8, 5, 5)
    y = x.clone()
    y[:, 3:] = torch.randn(2, 5, 5, 5)
    torch.testing.assert_close(layer.maps(x), layer.maps(y))
    y[:, 1] += 1.0
    assert not torch.allclose(layer.maps(x), layer.maps(y))


def test_keras_conv_channel_padding_for_fewer_than_three_channels():
    # C = 2: SAME padding along channels is (0, 1), so kernel index j meets channel j.
    kernel = torch.randn(2, 3, 3, 1, dtype=torch.float64)
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64)
    got = keras_conv3d_as_conv2d(x, kernel, torch.zeros(1, dtype=torch.float64))
    padded = torch.cat([x, torch.zeros(1, 1, 3, 3, dtype=torch.float64)], dim=1)
    ref = keras_conv3d_as_conv2d(padded, kernel, torch.zeros(1, dtype=torch.float64))
    torch.testing.assert_close(got, ref)


def test_intended_maps_hand_computed():
    layer = SoftAttention(2, num_maps=2)
    with torch.no_grad():
        layer.conv.weight.zero_()
        layer.conv.bias.zero_()
        layer.conv.weight[0, 1, 1, 1] = 1.0  # map 0: ReLU(x_1) at the same position; map 1: zero logits
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, -1.0], [2.0, 1.0]]]])
    u, alpha = layer(x)
    e = torch.exp(torch.tensor([0.0, 0.0, 2.0, 1.0]))
    torch.testing.assert_close(alpha[0, 0].flatten(), e / e.sum())
    torch.testing.assert_close(alpha[0, 1], torch.full((2, 2), 0.25))
    torch.testing.assert_close(u, (alpha[:, :1] + alpha[:, 1:]) * x)


def test_per_map_output_is_map_major_and_gamma_scales():
    torch.manual_seed(0)
    layer = SoftAttention(3, num_maps=4, aggregate=False, learnable_scale=True)
    x = torch.randn(2, 3, 5, 5)
    u, alpha = layer(x)
    assert u.shape == (2, 12, 5, 5) and layer.out_channels == 12
    for k in range(4):
        torch.testing.assert_close(u[:, 3 * k:3 * k + 3], alpha[:, k:k + 1] * x)
    with torch.no_grad():
        layer.gamma.fill_(2.5)
    torch.testing.assert_close(layer(x)[0], 2.5 * u)
    layer(x)[0].sum().backward()
    assert layer.gamma.grad is not None and layer.gamma.grad.abs() > 0
    assert "gamma" not in dict(SoftAttention(3).named_parameters())


def test_layer_rejects_wrong_channel_count():
    with pytest.raises(ValueError, match="built for 4 channels, got input with 3"):
        SoftAttention(4)(torch.randn(1, 3, 2, 2))


@pytest.mark.parametrize("options", [{}, {"keras_exact": True, "aggregate": False, "learnable_scale": True}])
def test_model_shapes_maps_and_gradients(options):
    torch.manual_seed(0)
    model = create_model("soft_attention", backbone=TINY, num_classes=3, num_maps=4, **options)
    model = model.to(memory_format=torch.channels_last)  # as the trainer does
    x = torch.rand(2, 3, 96, 96).contiguous(memory_format=torch.channels_last)
    logits = model(x)
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    logits.sum().backward()
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    maps = model.attention_maps(x)
    assert set(maps) == {"A"} | {f"map_{k}" for k in range(4)}
    for k in range(4):
        assert maps[f"map_{k}"].shape == (2, 1, 3, 3)
        torch.testing.assert_close(maps[f"map_{k}"].sum(dim=(1, 2, 3)), torch.ones(2))
    torch.testing.assert_close(maps["A"].sum(dim=(1, 2, 3)), torch.ones(2))  # the mean of 4 maps that sum to 1
    torch.testing.assert_close(maps["A"], torch.stack([maps[f"map_{k}"] for k in range(4)]).mean(dim=0))


def test_global_head_is_max_pooled_concat_relu_linear():
    torch.manual_seed(0)
    model = create_model("soft_attention", backbone=TINY, num_classes=3, num_maps=2).eval()
    x = torch.rand(2, 3, 64, 64)
    f, u, _ = model.attend(x)
    z = F.relu(torch.cat([f.amax(dim=(2, 3)), u.amax(dim=(2, 3))], dim=1))
    torch.testing.assert_close(model(x), model.classifier(z))
    assert model.classifier.in_features == 2 * 64


def test_flatten_head_follows_keras_same_pooling_on_odd_maps():
    # 96 px -> 3 x 3 features -> MaxPool2D(2, 'same') -> 2 x 2 windows {0,1} x {0,1}, ..., {2} x {2}.
    torch.manual_seed(0)
    model = create_model("soft_attention", backbone=TINY, num_classes=2, num_maps=2, head_pool="flatten",
                         input_size=96).eval()
    assert model.classifier.in_features == 2 * 2 * 128
    x = torch.rand(1, 3, 96, 96)
    f, u, _ = model.attend(x)
    both = torch.cat([f, u], dim=1)[0]  # 128 x 3 x 3
    pooled = torch.stack([torch.stack([both[:, r0:r0 + 2, c0:c0 + 2].amax(dim=(1, 2)) for c0 in (0, 2)])
                          for r0 in (0, 2)])  # 2 x 2 x 128, channels last as Keras' Flatten
    torch.testing.assert_close(model(x), model.classifier(F.relu(pooled).flatten()[None]))
    with pytest.raises(ValueError, match="ties this model to input size 96"):
        model(torch.rand(1, 3, 160, 160))


def test_keras_class_weight_hand_computed():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    targets = torch.tensor([0, 1, 0])
    ce = [math.log(1 + math.exp(-2.0)), math.log(1 + math.exp(-1.0)), math.log(2.0)]
    expected = (1.0 * ce[0] + 5.0 * ce[1] + 1.0 * ce[2]) / 3  # divided by B, not by the weight sum
    got = keras_weighted_ce(logits, targets, torch.tensor([1.0, 5.0]))
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_class_weight_overrides_the_criterion_and_skips_unlabeled_rows():
    torch.manual_seed(0)
    model = create_model("soft_attention", backbone=TINY, num_classes=2, num_maps=2, class_weight=[1.0, 5.0]).eval()
    x = torch.rand(3, 3, 64, 64)
    targets = torch.tensor([0, 1, -1])
    out = model.forward_train(x, targets, LossContext(criterion=build_criterion("ce", "multiclass")))
    ref = keras_weighted_ce(out.logits[:2], targets[:2], torch.tensor([1.0, 5.0]))
    torch.testing.assert_close(out.losses["ce"], ref)
    with pytest.raises(ValueError, match="class_weight has 3 entries for 2 classes"):
        create_model("soft_attention", backbone=TINY, num_classes=2, class_weight=[1, 1, 5])


def test_short_run_lowers_the_loss():
    torch.manual_seed(0)
    model = create_model("soft_attention", backbone=TINY, num_classes=3, num_maps=4)
    history = loss_history(model)
    assert all(math.isfinite(v) for v in history)
    assert np.mean(history[-3:]) < 0.5 * np.mean(history[:3])
