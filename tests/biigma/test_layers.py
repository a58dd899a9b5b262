"""BIIGMA-Net layers: SE, MICA, SA adapters and maps, variance pruning, vector sampling."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from timm.layers import SEModule

from medattn.layers import (MICA, LevelAdapter, SEBlock, SpatialAttentionMap, keras_he_normal_, vector_sample,
                            variance_pruned_mean, VectorSampling)


def test_se_block_is_timm_semodule_without_bias_and_keras_width():
    se = SEBlock(320)
    assert isinstance(se, SEModule)
    assert se.fc1.bias is None and se.fc2.bias is None
    assert se.fc1.out_channels == 20  # Keras: 320 // 16 (timm's default rounding would give 24)
    assert SEBlock(1024).fc1.out_channels == 64 and SEBlock(8).fc1.out_channels == 1
    x = torch.randn(2, 320, 3, 3)
    w1, w2 = se.fc1.weight[:, :, 0, 0], se.fc2.weight[:, :, 0, 0]
    gate = torch.sigmoid(torch.relu(x.mean((2, 3)) @ w1.T) @ w2.T)
    torch.testing.assert_close(se(x), x * gate[:, :, None, None])


def test_keras_he_normal_std_and_truncation():
    w = torch.empty(512, 256, 1, 1)
    keras_he_normal_(w)
    target = math.sqrt(2.0 / 256)
    assert w.std().item() == pytest.approx(target, rel=0.02)
    assert w.abs().max().item() <= 2 * target / 0.87962566103423978 + 1e-7


@pytest.mark.parametrize("n_heads", [1, 3, 4])
def test_mica_heads_shapes_and_independent_weights(n_heads):
    mica = MICA(32, num_heads=n_heads)
    x = torch.randn(2, 32, 5, 5)
    out = mica(x)
    assert len(out) == n_heads and all(o.shape == x.shape for o in out)
    assert mica.out_channels == 32 * n_heads
    assert all(o.min() >= 0 for o in out)  # ReLU then a positive SE gate
    head = mica.heads[0]
    ref = head.se(torch.relu(F.conv2d(x, head.proj.weight)))
    torch.testing.assert_close(out[0], ref)
    if n_heads > 1:
        assert not torch.allclose(out[0], out[1])
        assert head.proj.weight.data_ptr() != mica.heads[1].proj.weight.data_ptr()


def test_mica_rejects_zero_heads():
    with pytest.raises(ValueError, match="num_heads >= 1"):
        MICA(8, num_heads=0)


def test_adapters_pool_to_last_level():
    x = torch.randn(2, 6, 28, 28)
    torch.testing.assert_close(LevelAdapter(6, "avgpool")(x, (7, 7)), F.avg_pool2d(x, 4))
    torch.testing.assert_close(LevelAdapter(6, "maxpool")(x, (7, 7)), F.max_pool2d(x, 4))
    conv = LevelAdapter(6, "conv_maxpool", out_channels=4).eval()
    assert conv(x, (7, 7)).shape == (2, 4, 7, 7)
    torch.testing.assert_close(conv(x, (7, 7)), F.max_pool2d(conv.norm(conv.conv(x)), 4))
    assert LevelAdapter(6, "avgpool")(x, (28, 28)) is x
    with pytest.raises(ValueError, match="adapter must be one of"):
        LevelAdapter(6, "bilinear")


def _levels():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(2, 4, 16, 16, generator=g), torch.randn(2, 6, 8, 8, generator=g),
            torch.randn(2, 8, 4, 4, generator=g)]


def test_sa_mean_map_is_sigmoid_of_channel_mean_of_pooled_levels():
    levels = _levels()
    sa = SpatialAttentionMap([4, 6, 8], adapter="avgpool", sa_map="mean")
    s = torch.cat([F.avg_pool2d(levels[0], 4), F.avg_pool2d(levels[1], 2), levels[2]], 1)
    m = sa(levels)
    assert m.shape == (2, 1, 4, 4)
    torch.testing.assert_close(m, torch.sigmoid(s.mean(1, keepdim=True)))


def test_sa_variance_pruned_map_shape_and_range():
    sa = SpatialAttentionMap([4, 6, 8])  # Fig. 2 defaults
    m = sa(_levels())
    assert m.shape == (2, 1, 4, 4) and torch.all((m > 0) & (m < 1))
    assert sa.side_features(_levels()).shape == (2, 18, 4, 4)
    with pytest.raises(ValueError, match="expected 3 feature levels, got 2"):
        sa(_levels()[:2])


def _np_pruned(x: np.ndarray, scope: str) -> np.ndarray:
    var = x.reshape(x.shape[0], x.shape[1], -1).var(-1)
    tau = var.mean(1, keepdims=True) if scope == "image" else var.mean()
    out = []
    for b in range(x.shape[0]):
        keep = var[b] > (tau[b] if scope == "image" else tau)
        out.append(x[b, keep].mean(0) if keep.any() else x[b].mean(0))
    return np.stack(out)[:, None]


@pytest.mark.parametrize("scope", ["image", "batch"])
def test_variance_pruned_mean_matches_numpy(scope):
    x = torch.randn(3, 10, 4, 5) * torch.linspace(0.1, 2.0, 10)[None, :, None, None]
    x[1] *= 0.05  # image 1 is below the batch-wide threshold everywhere
    got = variance_pruned_mean(x, scope)
    np.testing.assert_allclose(got.numpy(), _np_pruned(x.double().numpy(), scope), rtol=1e-5, atol=1e-6)


def test_variance_pruned_mean_never_nan():
    # all channels of equal variance: nothing is strictly above the mean, the official code gives 0/0
    x = torch.randn(1, 1, 4, 4).repeat(2, 5, 1, 1).requires_grad_(True)
    y = torch.randn(2, 5, 4, 4)
    y[1] = 1e-3 * torch.randn(5, 4, 4)  # image 1 below the batch threshold
    for inp, scope in [(x, "image"), (x, "batch"), (y, "batch"), (torch.zeros(2, 3, 4, 4), "image")]:
        out = variance_pruned_mean(inp, scope)
        assert torch.isfinite(out).all()
    out = variance_pruned_mean(x, "image")
    torch.testing.assert_close(out, x.mean(1, keepdim=True))
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad != 0).all()
    torch.testing.assert_close(variance_pruned_mean(y, "batch")[1], y[1].mean(0, keepdim=True))


def test_vector_sampling_keeps_foreground_where_mask_is_one():
    r = torch.randn(3, 5, 4, 4)
    torch.testing.assert_close(vector_sample(r, torch.ones(3, 1, 4, 4)), r)


def test_vector_sampling_binary_mask_permutes_background_vectors():
    g = torch.Generator().manual_seed(0)
    r = torch.randn(3, 5, 4, 4, generator=g)
    m = (torch.rand(3, 1, 4, 4, generator=g) > 0.5).float()
    out = vector_sample(r, m, torch.Generator().manual_seed(1))
    vec = lambda t: t.permute(0, 2, 3, 1).reshape(-1, 5)  # noqa: E731
    bg_set = vec((1 - m) * r)  # the set B: every position's masked vector (zero where M = 1)
    fg = vec(m.expand_as(r)).bool()[:, 0]
    torch.testing.assert_close(vec(out)[fg], vec(r)[fg])
    # each background position receives an element of B, no non-zero element twice (no replacement)
    eq = (vec(out)[~fg][:, None, :] == bg_set[None, :, :]).all(-1)  # positions x |B|
    assert eq.any(1).all()
    nonzero = (vec(out)[~fg] != 0).any(1)
    picked = eq[nonzero].float().argmax(1)
    assert nonzero.sum() > 0 and picked.unique().numel() == picked.numel()
    # ... and with M = 0 everywhere the output is exactly a permutation of all B*h*w vectors
    out0 = vec(vector_sample(r, torch.zeros(3, 1, 4, 4)))
    sort = lambda t: t[torch.argsort(t[:, 0])]  # noqa: E731
    torch.testing.assert_close(sort(out0), sort(vec(r)))
    assert not torch.equal(out0, vec(r))


def test_vector_sampling_gradients_reach_features_and_mask():
    r = torch.randn(2, 4, 3, 3, requires_grad=True)
    m = torch.rand(2, 1, 3, 3).requires_grad_(True)
    (vector_sample(r, m) ** 2).sum().backward()
    assert r.grad is not None and (r.grad != 0).any()
    assert m.grad is not None and (m.grad != 0).any()


def test_vector_sampling_is_deterministic_under_a_seed():
    r, m = torch.randn(4, 3, 5, 5), torch.rand(4, 1, 5, 5)
    a = VectorSampling(seed=3)(r, m)
    b = VectorSampling(seed=3)(r, m)
    c = VectorSampling(seed=4)(r, m)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    torch.manual_seed(11)
    d = vector_sample(r, m)
    torch.manual_seed(11)
    torch.testing.assert_close(vector_sample(r, m), d)


def test_vector_sampling_bad_shapes():
    with pytest.raises(ValueError, match="mask B x 1 x h x w"):
        vector_sample(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="does not match features"):
        vector_sample(torch.zeros(2, 3, 4, 4), torch.zeros(2, 1, 5, 4))
