"""Multi-label criteria (BCE with pos_weight, focal, ASL) and the InfoNCE alignment loss."""
import math

import pytest
import torch
import torch.nn.functional as F

from medattn.losses.classification import build_criterion, list_criteria
from medattn.losses.contrastive import class_feature_nce, info_nce
from medattn.losses.multilabel import asymmetric_loss, focal_loss


def _sig(x):
    return 1.0 / (1.0 + math.exp(-x))


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 4, generator=g) * 3
    targets = (torch.rand(6, 4, generator=g) > 0.6).float()
    return logits, targets


def test_focal_and_asl_are_registered_for_multilabel_only():
    assert {"bce", "focal", "asl"} <= set(list_criteria())
    for name in ("focal", "asl"):
        with pytest.raises(ValueError, match=f"loss '{name}' is for multilabel data; this data set is multiclass"):
            build_criterion(name, "multiclass")


def test_focal_with_gamma_zero_is_bce(batch):
    logits, targets = batch
    crit = build_criterion("focal", "multilabel", gamma=0.0)
    torch.testing.assert_close(crit(logits, targets), F.binary_cross_entropy_with_logits(logits, targets))


def test_focal_hand_computed():
    # one positive at x = 1 and one negative at x = 2, gamma = 2, alpha = 0.25 (mean of the two)
    p1, p2 = _sig(1.0), _sig(2.0)
    pos = 0.25 * (1 - p1) ** 2 * -math.log(p1)
    neg = 0.75 * p2 ** 2 * -math.log(1 - p2)
    got = focal_loss(torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 0.0]]), gamma=2.0, alpha=0.25)
    assert float(got) == pytest.approx((pos + neg) / 2, rel=1e-6)


def test_asl_without_focusing_or_clip_is_bce(batch):
    logits, targets = batch
    crit = build_criterion("asl", "multilabel", gamma_neg=0.0, gamma_pos=0.0, clip=0.0)
    torch.testing.assert_close(crit(logits, targets), F.binary_cross_entropy_with_logits(logits, targets))


def test_asl_hand_computed_with_clip_and_focusing():
    # positive p = sigmoid(1.5): -(1 - p)^1 log p; negative p = sigmoid(-0.8473) ~ 0.3:
    # p_m = p - 0.05, -(p_m)^4 log(1 - p_m); an easy negative below the clip costs exactly 0.
    x = [1.5, -0.8473, -4.0]
    p = [_sig(v) for v in x]
    pos = -(1 - p[0]) * math.log(p[0])
    pm = p[1] - 0.05
    neg = -(pm ** 4) * math.log(1 - pm)
    got = asymmetric_loss(torch.tensor([x]), torch.tensor([[1.0, 0.0, 0.0]]), gamma_neg=4, gamma_pos=1, clip=0.05)
    assert float(got) == pytest.approx((pos + neg + 0.0) / 3, rel=1e-5)
    assert float(asymmetric_loss(torch.tensor([[-4.0]]), torch.tensor([[0.0]]), clip=0.05)) == 0.0


def test_asl_detached_focusing_is_a_constant_weight():
    x = torch.tensor([[0.7, -0.3]], requires_grad=True)
    y = torch.tensor([[1.0, 0.0]])
    asymmetric_loss(x, y, gamma_neg=2, gamma_pos=1, clip=0.0, detach_focusing=True).backward()
    p = torch.sigmoid(x.detach())
    w = torch.tensor([[1 - p[0, 0], p[0, 1] ** 2]])
    x2 = x.detach().clone().requires_grad_(True)
    (w * F.binary_cross_entropy_with_logits(x2, y, reduction="none")).mean().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    x3 = x.detach().clone().requires_grad_(True)
    asymmetric_loss(x3, y, gamma_neg=2, gamma_pos=1, clip=0.0, detach_focusing=False).backward()
    assert not torch.allclose(x3.grad, x2.grad)


def test_bce_pos_weight_matches_the_formula(batch):
    logits, targets = batch
    w = torch.tensor([1.0, 2.0, 0.5, 3.0])
    crit = build_criterion("bce", "multilabel", pos_weight=w.tolist())
    p = torch.sigmoid(logits)
    ref = -(w * targets * torch.log(p) + (1 - targets) * torch.log(1 - p)).mean()
    torch.testing.assert_close(crit(logits, targets), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,options", [("focal", {}), ("asl", {}), ("bce", {})])
def test_unlabeled_rows_are_ignored_and_an_unlabeled_batch_gives_a_graph_zero(batch, name, options):
    logits, targets = batch
    crit = build_criterion(name, "multilabel", **options)
    with_nan = targets.clone()
    with_nan[[1, 4]] = float("nan")
    keep = torch.tensor([True, False, True, True, False, True])
    torch.testing.assert_close(crit(logits, with_nan), crit(logits[keep], targets[keep]))
    x = logits.clone().requires_grad_(True)
    zero = crit(x, torch.full_like(targets, float("nan")))
    assert float(zero.detach()) == 0.0
    zero.backward()
    assert torch.all(x.grad == 0)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="focal gamma must be >= 0"):
        build_criterion("focal", "multilabel", gamma=-1)
    with pytest.raises(ValueError, match=r"asl clip must be in \[0, 1\)"):
        build_criterion("asl", "multilabel", clip=1.5)
    with pytest.raises(ValueError, match="reduction must be one of"):
        build_criterion("asl", "multilabel", reduction="none")


def test_info_nce_hand_computed_2x2():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    tau = 0.5
    # similarities: a1.p1 = 1, a1.p2 = 0.6, a2.p1 = 0, a2.p2 = 0.8
    l1 = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + math.exp(0.6 / tau)))
    l2 = -math.log(math.exp(0.8 / tau) / (math.exp(0 / tau) + math.exp(0.8 / tau)))
    assert float(info_nce(a, p, tau)) == pytest.approx((l1 + l2) / 2, rel=1e-6)
    # scaling a vector does not matter (cosine similarities)
    assert float(info_nce(a * 3, p * 0.5, tau)) == pytest.approx((l1 + l2) / 2, rel=1e-6)


def test_class_feature_nce_uses_only_valid_pairs():
    g = torch.Generator().manual_seed(1)
    a, p = torch.randn(2, 3, 5, generator=g), torch.randn(2, 3, 5, generator=g)
    valid = torch.tensor([[True, False, True], [False, True, False]])
    ref = info_nce(a[valid], p[valid], 0.2)
    torch.testing.assert_close(class_feature_nce(a, p, valid, 0.2), ref)
    a.requires_grad_(True)
    zero = class_feature_nce(a, p, torch.zeros(2, 3, dtype=torch.bool))
    assert float(zero.detach()) == 0.0
    zero.backward()
    with pytest.raises(ValueError, match="B x K x D"):
        class_feature_nce(a[0], p[0])
    with pytest.raises(ValueError, match="temperature must be > 0"):
        info_nce(a[0], p[0], 0.0)
