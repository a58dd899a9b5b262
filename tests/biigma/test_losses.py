"""BIIGMA-Net loss terms besides HSIC: batch-inverse weighted CE, map distance, KL at a temperature."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medattn.losses import batch_inverse_ce, kl_consistency, map_distance


def _np_softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _np_official_wxce(logits, targets, k):
    """The official WeightedXCE on one-hot targets: mean_b (1 / n_{y_b}) * CE_b."""
    y = np.eye(k)[targets]
    freq = y.sum(0) + 1e-9
    w = (y / freq).sum(1)
    ce = -(y * np.log(_np_softmax(logits))).sum(1)
    return float((w * ce).mean())


def test_batch_inverse_ce_equals_official_formula():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(10, 4, generator=g)
    targets = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 3, 0])  # class 2 absent
    got = batch_inverse_ce(logits, targets)
    assert got.item() == pytest.approx(_np_official_wxce(logits.double().numpy(), targets.numpy(), 4), rel=1e-6)
    # (1/B) * sum over present classes of the per-class mean CE
    ce = F.cross_entropy(logits, targets, reduction="none")
    per_class = [ce[targets == k].mean() for k in (0, 1, 3)]
    assert got.item() == pytest.approx(sum(per_class).item() / 10, rel=1e-6)
    assert batch_inverse_ce(logits, targets, normalize="classes").item() == pytest.approx(
        sum(per_class).item() / 3, rel=1e-6)


def test_batch_inverse_ce_ignores_unlabeled_rows():
    logits = torch.randn(6, 3)
    targets = torch.tensor([0, -1, 1, 2, -1, 2])
    keep = targets >= 0
    assert batch_inverse_ce(logits, targets).item() == pytest.approx(
        batch_inverse_ce(logits[keep], targets[keep]).item(), rel=1e-6)
    assert batch_inverse_ce(logits, targets, normalize="classes").item() == pytest.approx(
        batch_inverse_ce(logits[keep], targets[keep], normalize="classes").item(), rel=1e-6)
    # the unlabeled rows get no gradient
    z = logits.clone().requires_grad_(True)
    batch_inverse_ce(z, targets).backward()
    assert z.grad[~keep].abs().max() == 0 and z.grad[keep].abs().max() > 0
    x = torch.randn(3, 3, requires_grad=True)
    zero = batch_inverse_ce(x, torch.tensor([-1, -1, -1]))
    zero.backward()
    assert zero.item() == 0.0 and x.grad is not None


def test_dataset_class_weights_option():
    logits, targets = torch.randn(8, 3), torch.tensor([0, 1, 2, 2, 1, 0, 0, -1])
    w = torch.tensor([0.5, 2.0, 3.0])
    keep = targets >= 0
    ref = F.cross_entropy(logits[keep], targets[keep], weight=w)
    assert batch_inverse_ce(logits, targets, class_weights=w).item() == pytest.approx(ref.item(), rel=1e-6)
    x = torch.randn(2, 3, requires_grad=True)
    zero = batch_inverse_ce(x, torch.tensor([-1, -1]), class_weights=w)
    zero.backward()
    assert zero.item() == 0.0 and x.grad.abs().max() == 0
    with pytest.raises(ValueError, match=r"class_weights must have shape \(3,\)"):
        batch_inverse_ce(logits, targets, class_weights=torch.ones(4))


def test_batch_inverse_ce_bad_targets():
    with pytest.raises(ValueError, match=r"targets must be in \[-1, 2\]; row 1 holds 3 \(1 more rows out of range\)"):
        batch_inverse_ce(torch.randn(4, 3), torch.tensor([0, 3, 1, 5]))
    with pytest.raises(ValueError, match="ce_mode='criterion'"):
        batch_inverse_ce(torch.randn(4, 3), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="normalize must be one of"):
        batch_inverse_ce(torch.randn(4, 3), torch.zeros(4, dtype=torch.long), normalize="mean")


def test_map_distance_is_rms_with_finite_gradient_at_zero():
    a, b = torch.rand(2, 1, 3, 3), torch.rand(2, 1, 3, 3)
    ref = np.sqrt(((a.numpy() - b.numpy()) ** 2).mean())
    assert map_distance(a, b).item() == pytest.approx(float(ref), rel=1e-6)
    x = torch.rand(2, 1, 3, 3, requires_grad=True)
    d = map_distance(x, x.detach().clone())
    d.backward()
    assert d.item() == pytest.approx(1e-6) and torch.isfinite(x.grad).all()
    with pytest.raises(ValueError, match="same shape"):
        map_distance(a, b[:1])


def test_kl_consistency_matches_numpy_at_temperature():
    zp, zq = torch.randn(5, 4), torch.randn(5, 4)
    p, q = _np_softmax(zp.double().numpy() / 2.0), _np_softmax(zq.double().numpy() / 2.0)
    ref = float((p * np.log(p / q)).sum(1).mean())
    assert kl_consistency(zp, zq, 2.0).item() == pytest.approx(ref, rel=1e-5)
    assert kl_consistency(zp, zp, 2.0).item() == pytest.approx(0.0, abs=1e-7)
    # multi-label: per-class Bernoulli KL summed over classes
    sp, sq = 1 / (1 + np.exp(-zp.double().numpy() / 2)), 1 / (1 + np.exp(-zq.double().numpy() / 2))
    ref_ml = float((sp * np.log(sp / sq) + (1 - sp) * np.log((1 - sp) / (1 - sq))).sum(1).mean())
    assert kl_consistency(zp, zq, 2.0, multilabel=True).item() == pytest.approx(ref_ml, rel=1e-5)
    with pytest.raises(ValueError, match="temperature must be positive"):
        kl_consistency(zp, zq, 0.0)
