"""SIBnet: batched Grad-CAM, class-distinctiveness and spatial-coherence losses, the wrapper model."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medattn.losses.classification import build_criterion
from medattn.losses.saliency import (class_distinctiveness_loss, coherence_components, gradcam_all_classes,
                                     neighbourhood_energy, spatial_coherence_loss, upsample_maps)
from medattn.models import LossContext, create_model
from medattn.models.se_cbam import CBAMNet

TINY = "test_efficientnet"


def ctx_for(targets: torch.Tensor) -> LossContext:
    return LossContext(criterion=build_criterion("ce", "multiclass"))


# ---------------------------------------------------------------- Grad-CAM


def test_gradcam_matches_the_analytic_maps_of_a_linear_gap_head():
    # z_k = W_k . mean_hw(A) + b_k  =>  dz_k/dA_c = W_kc / (h w)  =>  S_k = sum_c W_kc A_c / (h w).
    torch.manual_seed(0)
    a = torch.randn(3, 5, 4, 6, requires_grad=True)
    head = torch.nn.Linear(5, 4)
    logits = head(a.mean(dim=(2, 3)))
    cams = gradcam_all_classes(logits, a)
    expected = torch.einsum("kc,bchw->bkhw", head.weight, a) / 24
    torch.testing.assert_close(cams, expected)
    torch.testing.assert_close(gradcam_all_classes(logits, a, relu=True), F.relu(expected))


def test_gradcam_batched_equals_per_class_loop_on_a_nonlinear_head_without_fallback():
    torch.manual_seed(0)
    model = create_model("sibnet", base="soft_attention", backbone=TINY, num_classes=3,
                         base_options={"num_maps": 4})
    x = torch.rand(2, 3, 96, 96)
    with model._capture() as store:
        logits = model(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the vmapped backward must work, not fall back
        batched = gradcam_all_classes(logits, store[0])
    looped = gradcam_all_classes(logits, store[0], batched=False)
    torch.testing.assert_close(batched, looped)
    # first order: the Grad-CAM weights are constants, so no gradient reaches the classifier
    grad = torch.autograd.grad(batched.sum(), model.base.classifier.weight, allow_unused=True)[0]
    assert grad is None or grad.abs().max() == 0
    assert torch.autograd.grad(batched.sum(), store[0])[0].abs().sum() > 0


# ---------------------------------------------------------------- class distinctiveness


def test_class_distinctiveness_hand_computed():
    maps = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [1.0, 1.0, 0, 0]]).view(1, 3, 2, 2)
    # |cos|: (0,1) = 0, (0,2) = (1,2) = 1/sqrt(2)
    assert class_distinctiveness_loss(maps).item() == pytest.approx(2 / math.sqrt(2) / 3, rel=1e-6)
    opposite = torch.stack([maps[0, 0], -maps[0, 0]]).unsqueeze(0)
    assert class_distinctiveness_loss(opposite).item() == pytest.approx(1.0, rel=1e-6)
    batch = torch.cat([maps, opposite.new_tensor([[0.0, 0, 3, 0], [0, 0, 0, 2], [1, 1, 1, 1]]).view(1, 3, 2, 2)])
    second = (0 + 0.5 + 0.5) / 3
    assert class_distinctiveness_loss(batch).item() == pytest.approx((2 / math.sqrt(2) / 3 + second) / 2, rel=1e-6)
    single = torch.randn(2, 1, 3, 3, requires_grad=True)
    zero = class_distinctiveness_loss(single)
    assert zero.item() == 0.0 and zero.requires_grad


# ---------------------------------------------------------------- spatial coherence


def energy_loop(x: np.ndarray, k: int = 9) -> float:
    """sum_p sum_{q in k x k window of p, q != p} (x_q - x_p)^2, x zero outside the image."""
    h, w = x.shape
    r = k // 2
    total = 0.0
    for i in range(h):
        for j in range(w):
            for di in range(-r, r + 1):
                for dj in range(-r, r + 1):
                    q = x[i + di, j + dj] if 0 <= i + di < h and 0 <= j + dj < w else 0.0
                    total += (q - x[i, j]) ** 2
    return total


def test_neighbourhood_energy_matches_loop_and_official_three_convs():
    torch.manual_seed(0)
    x = torch.randn(2, 11, 13, dtype=torch.float64)
    got = neighbourhood_energy(x, 9)
    for n in range(2):
        assert got[n].item() == pytest.approx(energy_loop(x[n].numpy(), 9), rel=1e-10)
    k = 5
    center = torch.zeros(1, 1, k, k, dtype=torch.float64)
    center[..., k // 2, k // 2] = 1
    minus2 = torch.full((1, 1, k, k), -2.0, dtype=torch.float64)
    minus2[..., k // 2, k // 2] = k * k - 2
    ones = torch.ones(1, 1, k, k, dtype=torch.float64)
    xi = x.unsqueeze(1)
    official = (F.conv2d(xi, center, padding="same") * F.conv2d(xi, minus2, padding="same")
                + F.conv2d(xi * xi, ones, padding="same")).sum(dim=(1, 2, 3))
    torch.testing.assert_close(neighbourhood_energy(x, k), official)
    with pytest.raises(ValueError, match="positive odd"):
        neighbourhood_energy(x, 4)


def three_squares(values=(2.0, 2.5, 3.0)) -> torch.Tensor:
    """40 x 40 zeros with three 5 x 5 squares (raster order = value order), 1 x 1 x 40 x 40."""
    m = torch.zeros(40, 40, dtype=torch.float64)
    for (r, c), v in zip([(6, 6), (6, 26), (26, 16)], values):
        m[r:r + 5, c:c + 5] = v
    return m.view(1, 1, 40, 40)


def test_components_of_a_map_with_three_components_and_the_official_off_by_one():
    m = three_squares()[0, 0].numpy()
    labels, keep = coherence_components(m)
    assert keep == [1, 2, 3]
    assert [(labels == v).sum() for v in keep] == [9, 9, 9]  # 5 x 5 eroded by the cross -> 3 x 3
    assert coherence_components(m, skip_last=True)[1] == [1, 2]
    assert coherence_components(np.full((5, 5), 0.3))[1] == []


def test_spatial_coherence_hand_computed_with_and_without_the_off_by_one():
    # A 3 x 3 block of value v far from the border: 9 inner pixels x 72 outside neighbours, counted
    # from both sides -> 1296 v^2 per component.
    maps = three_squares()
    fixed = spatial_coherence_loss(maps)
    official = spatial_coherence_loss(maps, skip_last_component=True)
    assert fixed.item() == pytest.approx(1296 * (4 + 6.25 + 9), rel=1e-9)
    assert official.item() == pytest.approx(1296 * (4 + 6.25), rel=1e-9)
    mean = spatial_coherence_loss(maps, reduction="mean")
    assert mean.item() == pytest.approx(fixed.item() / 1600, rel=1e-9)
    with pytest.raises(ValueError, match="reduction must be one of sum, mean"):
        spatial_coherence_loss(maps, reduction="max")


def test_spatial_coherence_equals_reference_with_exact_gradient():
    torch.manual_seed(1)
    maps = upsample_maps(torch.randn(2, 3, 5, 6, dtype=torch.float64), (30, 37), "bilinear").requires_grad_()
    got = spatial_coherence_loss(maps, chunk=2)
    ref = maps.sum() * 0.0
    n = 0
    for b in range(2):
        for k in range(3):
            labels, keep = coherence_components(maps[b, k].detach().numpy())
            n += len(keep)
            for v in keep:
                ref = ref + neighbourhood_energy((maps[b, k] * torch.from_numpy(labels == v)).unsqueeze(0))[0]
    assert n >= 6
    torch.testing.assert_close(got, ref)
    g_got, = torch.autograd.grad(got, maps)
    g_ref, = torch.autograd.grad(ref, maps)
    torch.testing.assert_close(g_got, g_ref)
    labels = [coherence_components(maps[b, k].detach().numpy())[0] for b in range(2) for k in range(3)]
    outside = torch.from_numpy(np.stack(labels) == 0).view(2, 3, 30, 37)
    assert g_got[outside].abs().max() == 0 and g_got[~outside].abs().max() > 0


def test_spatial_coherence_of_flat_maps_is_a_zero_with_graph():
    maps = torch.ones(2, 2, 8, 8, requires_grad=True)
    loss = spatial_coherence_loss(maps)
    assert loss.item() == 0.0 and loss.requires_grad


# ---------------------------------------------------------------- the model


def synthetic(n: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Class k is a bright square in colour channel k at a random place on a dim noise background."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g) * 0.3
    y = torch.arange(n) % 3
    s = size // 4
    for i in range(n):
        r0, c0 = (int(v) for v in torch.randint(0, size - s, (2,), generator=g))
        x[i, int(y[i]), r0:r0 + s, c0:c0 + s] = 1.0
    return x, y


def test_model_forward_maps_and_options():
    torch.manual_seed(0)
    model = create_model("sibnet", base="cbam", backbone=TINY, num_classes=3, base_options={"drop_rate": 0.0})
    assert isinstance(model.base, CBAMNet) and model.cam_layer is model.base.cam_layer
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(model.eval()(x), model.base(x))
    maps = model.attention_maps(x)
    assert set(maps) == {"cam_0", "cam_1", "cam_2", "spatial"}
    assert all(v.shape == (2, 1, 2, 2) for v in maps.values())
    with torch.no_grad():  # Grad-CAM needs a backward pass: it must work under no_grad too
        cams = model.attention_maps(x)
    assert not cams["cam_0"].requires_grad
    torch.testing.assert_close(cams["cam_1"], maps["cam_1"])
    with pytest.raises(ValueError, match="cannot wrap itself"):
        create_model("sibnet", base="sibnet", backbone=TINY, num_classes=3)
    with pytest.raises(ValueError, match="upsample must be"):
        create_model("sibnet", backbone=TINY, num_classes=3, upsample="bicubic")


def test_first_iteration_normalisers_are_persistent_buffers():
    torch.manual_seed(0)
    model = create_model("sibnet", backbone=TINY, num_classes=3).train()
    x, y = synthetic(6, 64)
    out = model.forward_train(x, y, ctx_for(y))
    assert out.losses["total"].item() == pytest.approx(3.0, rel=1e-5)  # every term starts at 1
    first = {k: out.losses[k].item() for k in ("ce", "cd", "sc")}
    assert model.norm_base.item() == pytest.approx(first["ce"]) and model.norm_sc.item() == pytest.approx(first["sc"])
    state = model.state_dict()
    assert {"norm_base", "norm_cd", "norm_sc"} <= set(state)
    fresh = create_model("sibnet", backbone=TINY, num_classes=3)
    fresh.load_state_dict(state)
    assert fresh.norm_cd.item() == pytest.approx(first["cd"])
    out2 = model.forward_train(x[:3], y[:3], ctx_for(y[:3]))
    assert model.norm_cd.item() == pytest.approx(first["cd"])  # set once
    expected = out2.losses["ce"] / first["ce"] + out2.losses["cd"] / first["cd"] + out2.losses["sc"] / first["sc"]
    torch.testing.assert_close(out2.losses["total"], expected)


def test_explicit_weights():
    torch.manual_seed(0)
    model = create_model("sibnet", backbone=TINY, num_classes=3, normalize=False, cd_weight=1.2, sc_weight=0.9)
    x, y = synthetic(4, 64)
    out = model.forward_train(x, y, ctx_for(y))
    torch.testing.assert_close(out.losses["total"], out.losses["ce"] + 1.2 * out.losses["cd"] + 0.9 * out.losses["sc"])
    assert model.norm_base.item() == 0.0


def test_unlabeled_rows_contribute_only_the_saliency_terms():
    torch.manual_seed(0)
    model = create_model("sibnet", backbone=TINY, num_classes=3).train()
    x, _ = synthetic(4, 64)
    y = torch.full((4,), -1)
    out = model.forward_train(x, y, ctx_for(y))
    assert out.losses["ce"].item() == 0.0 and model.norm_base.item() == 0.0
    assert out.losses["cd"].item() > 0 and out.losses["sc"].item() > 0
    out.losses["total"].backward()
    grads = [p.grad for p in model.base.backbone.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    # a labeled row changes ce only through itself: the saliency terms are the same either way
    model.zero_grad()
    y2 = torch.tensor([0, -1, -1, -1])
    out2 = model.eval().forward_train(x, y2, ctx_for(y2))
    out3 = model.forward_train(x, y, ctx_for(y))
    torch.testing.assert_close(out2.losses["cd"], out3.losses["cd"])
    assert out2.losses["ce"].item() > 0


def test_short_run_lowers_every_logged_term():
    torch.manual_seed(1)
    x, y = synthetic(8, 64, seed=1)
    model = create_model("sibnet", backbone=TINY, num_classes=3).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for _ in range(20):
        out = model.forward_train(x, y, ctx_for(y))
        opt.zero_grad()
        out.losses["total"].backward()
        opt.step()
        history.append({k: v.item() for k, v in out.losses.items()})
    assert set(history[0]) == {"ce", "cd", "sc", "total"}
    for key in history[0]:
        values = [h[key] for h in history]
        assert all(math.isfinite(v) for v in values)
        assert np.mean(values[-3:]) < np.mean(values[:3]), key


@pytest.mark.parametrize("options,size,mode", [({}, 64, "nearest"), ({"sc_size": 32, "upsample": "bilinear"}, 32, "bilinear")])
def test_terms_are_the_losses_of_the_model_grad_cams(options, size, mode):
    torch.manual_seed(0)
    model = create_model("sibnet", backbone=TINY, num_classes=3, **options).eval()
    x, y = synthetic(3, 64)
    out = model.forward_train(x, y, ctx_for(y))
    cams = model.grad_cams(x)
    torch.testing.assert_close(out.losses["cd"], class_distinctiveness_loss(cams))
    torch.testing.assert_close(out.losses["sc"], spatial_coherence_loss(upsample_maps(cams, (size, size), mode)))


def test_bf16_autocast_keeps_saliency_terms_in_float32():
    torch.manual_seed(0)
    model = create_model("sibnet", backbone=TINY, num_classes=3).train().to(memory_format=torch.channels_last)
    # per-group learning rates find the base's backbone
    assert [id(p) for p in model.param_groups()["backbone"]] == [id(p) for p in model.base.backbone.parameters()]
    x, y = synthetic(4, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.forward_train(x.contiguous(memory_format=torch.channels_last), y, ctx_for(y))
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in out.losses.values())
    out.losses["total"].backward()
