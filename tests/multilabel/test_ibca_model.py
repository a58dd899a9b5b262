"""The IBCA-style model and the class-query model: contract, loss terms, switches, gradients, bf16,
and one short training run through the trainer on the multi-label synthetic set."""
import pytest
import torch

from medattn.losses.classification import build_criterion
from medattn.models import LossContext, create_model
from medattn.models.ibca import IBCANet, binary_kl_to_soft_targets
from medattn.models.ibca_ablations import GRID

K = 4
SMALL = dict(backbone="resnet10t", num_classes=K, pretrained=False, embed_dim=32, num_heads=4)
IBCA_SMALL = dict(SMALL, bottleneck_dim=8, num_components=2)


def _batch(b=4, size=64):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(b, 3, size, size, generator=g)
    y = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 0], [1, 1, 0, 1], [0, 0, 1, 0]], dtype=torch.float32)[:b]
    return x, y


@pytest.fixture(scope="module")
def model():
    """One full IBCA-style model shared by the tests that do not change it (creation is the slow part)."""
    torch.manual_seed(0)
    return create_model("ibca", **IBCA_SMALL, vib_covariance="full")


def _ctx(epoch=0, num_epochs=10):
    return LossContext(criterion=build_criterion("bce", "multilabel"), epoch=epoch, num_epochs=num_epochs)


def test_forward_and_maps_follow_the_contract(model):
    model.eval()
    x, _ = _batch()
    with torch.no_grad():
        logits = model(x)
        maps = model.attention_maps(x)
        again = model(x)
    model.train()
    assert logits.shape == (4, K)
    assert set(maps) == {f"gm_{k}" for k in range(K)} | {f"mha_{k}" for k in range(K)}
    for name, m in maps.items():
        assert m.shape == (4, 1, 2, 2), name
        torch.testing.assert_close(m.sum(dim=(1, 2, 3)), torch.ones(4), msg=name)
    torch.testing.assert_close(again, logits)  # evaluation is deterministic (bottleneck mean)
    assert model.cam_layer is model.backbone.stage(-1)


def test_class_query_model_has_only_mha_maps_and_one_term():
    torch.manual_seed(0)
    model = create_model("class_query", **SMALL)
    x, y = _batch()
    assert set(model.attention_maps(x)) == {f"mha_{k}" for k in range(K)}
    out = model.forward_train(x, y, _ctx())
    assert set(out.losses) == {"ce", "total"} and out.logits.shape == (4, K)


@pytest.mark.parametrize("cell", sorted(c for c in GRID if GRID[c]["model"] == "ibca"))
def test_ablation_cells_have_the_terms_of_their_parts(cell):
    torch.manual_seed(0)
    opts = GRID[cell]["options"]
    model = create_model("ibca", **IBCA_SMALL, **opts)
    x, y = _batch()
    out = model.forward_train(x, y, _ctx(epoch=5))
    want = {"cls", "total"}
    if opts.get("use_gm", True):
        want.add("cls_branches")
    if opts.get("use_vib", True):
        want.add("kl_vib")
    if opts.get("use_contrastive", True):
        want.add("nce")
    if opts.get("use_intervention", True):
        want.add("intervention")
    assert set(out.losses) == want
    assert all(torch.isfinite(v) for v in out.losses.values())
    # total is the documented weighted sum (ramp = 1 after epoch ramp_fraction * num_epochs)
    m = model
    expect = out.losses["cls"] + m.branch_weight * out.losses.get("cls_branches", 0) + \
        m.kl_weight * out.losses.get("kl_vib", 0) + m.nce_weight * out.losses.get("nce", 0) + \
        m.intervention_weight * out.losses.get("intervention", 0)
    torch.testing.assert_close(out.losses["total"], expect)


def test_grid_names_registered_models():
    assert {cell["model"] for cell in GRID.values()} == {"baseline", "class_query", "ibca"}
    assert GRID["ibca"]["options"] == {} and GRID["class_query"]["options"] == {}


def test_gradients_reach_every_parameter_and_stay_finite(model):
    x, y = _batch()
    names = [n for n, _ in model.named_parameters()]
    grads = torch.autograd.grad(model.forward_train(x, y, _ctx(epoch=9)).losses["total"],
                                list(model.parameters()), allow_unused=True)
    assert [n for n, g in zip(names, grads) if g is None] == []
    assert all(torch.isfinite(g).all() for g in grads)
    # timm zero-initialises the last BN of each residual block, so only the blocks' own convs get a
    # zero gradient at initialisation; every parameter outside the backbone must get a non-zero one
    zero = [n for n, g in zip(names, grads) if not torch.any(g != 0)]
    assert zero and all(n.startswith("backbone.model.layer") for n in zero), zero
    assert any(n.startswith("backbone.model.conv1") for n, g in zip(names, grads) if torch.any(g != 0))


def test_each_term_drives_its_own_parts(model):
    x, y = _batch()
    out = model.forward_train(x, y, _ctx(epoch=9))
    # the KL reaches the bottleneck's scale layer and the GM logits, not the multi-head attention
    grads = torch.autograd.grad(out.losses["kl_vib"], [model.vib.scale.weight, model.gm.logits.weight,
                                                         model.mha.q_proj.weight], allow_unused=True)
    assert grads[0] is not None and grads[1] is not None and grads[2] is None
    # the contrastive term (GM side detached) moves the multi-head attention, not the GM branch
    grads = torch.autograd.grad(out.losses["nce"], [model.mha.k_proj.weight, model.gm.logits.weight], allow_unused=True)
    assert grads[0] is not None and grads[1] is None


def test_intervention_measures_the_prediction_change_and_ramp_is_linear(model):
    x, y = _batch()
    p_drop = model.dropout.p
    try:
        model.dropout.p = 0.0
        model.intervention_scale = 0.0  # no context added: the prediction cannot change
        assert float(model.forward_train(x, y, _ctx()).losses["intervention"].detach()) == pytest.approx(0.0, abs=1e-6)
        model.intervention_scale = 1.0
        assert float(model.forward_train(x, y, _ctx()).losses["intervention"].detach()) > 1e-6
        assert [model.ramp(e, 10) for e in (0, 1, 2, 3)] == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0])
        model.ramp_fraction = 0.0
        assert model.ramp(0, 10) == 1.0
    finally:
        model.dropout.p, model.intervention_scale, model.ramp_fraction = p_drop, 1.0, 0.3
    p = torch.tensor([[0.2, 0.9]])
    assert float(binary_kl_to_soft_targets(torch.logit(p), p)) == pytest.approx(0.0, abs=1e-6)
    assert float(binary_kl_to_soft_targets(torch.zeros(1, 2), p)) > 0


def test_nce_only_on_present_classes(model):
    x, _ = _batch()
    out = model.forward_train(x, torch.zeros(4, K), _ctx())
    assert float(out.losses["nce"].detach()) == 0.0
    nan_rows = torch.full((4, K), float("nan"))
    out = model.forward_train(x, nan_rows, _ctx())  # an unlabeled batch still trains without NaN
    assert torch.isfinite(out.losses["total"])


def test_bf16_autocast_gives_finite_terms_and_gradients(model):
    x, y = _batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.forward_train(x, y, _ctx(epoch=5))
        maps = model.attention_maps(x)
    assert all(torch.isfinite(v) for v in out.losses.values())
    assert all(torch.isfinite(m).all() for m in maps.values())
    grads = torch.autograd.grad(out.losses["total"], list(model.parameters()), allow_unused=True)
    assert all(torch.isfinite(g).all() for g in grads if g is not None)


def test_bad_switches_and_targets_raise():
    with pytest.raises(ValueError, match="use_contrastive .* needs use_gm=True"):
        IBCANet(**IBCA_SMALL, use_gm=False, use_vib=False)
    with pytest.raises(ValueError, match="use_vib is the bottleneck of the Gaussian-mixture branch"):
        IBCANet(**IBCA_SMALL, use_gm=False, use_contrastive=False)
    with pytest.raises(ValueError, match="fusion must be one of"):
        IBCANet(**IBCA_SMALL, use_gm=False, use_vib=False, use_contrastive=False)
    with pytest.raises(TypeError, match="model 'ibca' has no option"):
        create_model("ibca", **IBCA_SMALL, use_gmm=True)

def test_multiclass_targets_raise(model):
    x, _ = _batch()
    with pytest.raises(ValueError, match="multi-label model: targets must be B x K"):
        model.forward_train(x, torch.zeros(4, dtype=torch.long), _ctx())


def test_trains_and_evaluates_through_the_trainer(tmp_path):
    from medattn.config import load_config
    from medattn.data.synthetic.multilabel import generate_synthetic_multilabel
    from medattn.engine.data import RunData
    from medattn.engine.trainer import Trainer

    train = generate_synthetic_multilabel(16, size=64, split="train")
    val = generate_synthetic_multilabel(8, size=64, split="val")
    cfg = load_config(None, ["data.format=synthetic_multilabel", "data.image_size=64", "model.name=ibca",
                             "model.backbone=resnet10t", "model.pretrained=false", "train.epochs=1",
                             "train.batch_size=8", "train.precision=fp32", 
                             "model.options={embed_dim: 32, num_heads: 2, bottleneck_dim: 8}"])
    trainer = Trainer(cfg, tmp_path / "run", progress=False, log=lambda s: None, data=RunData(train, val))
    result = trainer.fit()
    assert result["select_metric"] == "map" and 0 <= result["best_value"] <= 1
    logged = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(logged) == 1 and '"nce"' in logged[0] and '"cf1"' in logged[0]
