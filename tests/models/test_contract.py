"""The model contract, checked for every entry of the registry (as timm's test_models.py does): a newly
registered model is tested here without editing this file.

For each model, on the CPU with random weights: ``forward`` returns logits only, of shape B x K and
finite; ``forward_train`` returns named finite loss terms with ``total`` and every trainable
parameter gets a gradient; ``attention_maps`` are B x 1 x h x w in [0, 1]; the CAM layer is one of
the model's modules; ``param_groups`` covers every trainable parameter once; the weights round-trip
through the safetensors checkpoint; the model exports to ONNX (with its maps) and onnxruntime gives
PyTorch's probabilities within 1e-4."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import medattn
from medattn.engine.checkpoint import restore_training_state, save_checkpoint
from medattn.losses.classification import build_criterion
from medattn.models import LossContext, MedAttnModel, TrainOutput

BACKBONE = "test_efficientnet"  # timm's 82k-parameter test network with 5 feature levels
K, B, SIZE = 3, 4, 64


def build(name: str) -> MedAttnModel:
    torch.manual_seed(0)
    return medattn.create_model(name, backbone=BACKBONE, num_classes=K, pretrained=False)


def batch(task: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(B, 3, SIZE, SIZE, generator=g)
    if task == "multilabel":
        return x, (torch.rand(B, K, generator=g) > 0.5).float()
    return x, torch.arange(B) % K


@pytest.fixture(scope="module", params=medattn.list_models())
def model(request) -> MedAttnModel:
    return build(request.param)


def test_forward_returns_logits_only(model):
    x, _ = batch(model.task)
    out = model.eval()(x)
    assert isinstance(out, torch.Tensor), f"forward must return a tensor of logits, got {type(out).__name__}"
    assert out.shape == (B, K) and torch.isfinite(out).all()
    assert model.num_classes == K and model.task in ("multiclass", "multilabel")
    torch.testing.assert_close(model(x), out)  # eval mode is deterministic (no sampling)


def test_forward_train_gives_named_finite_terms_and_every_parameter_a_gradient(model):
    x, y = batch(model.task)
    model.train().zero_grad(set_to_none=True)
    ctx = LossContext(criterion=build_criterion("auto", model.task), epoch=20, num_epochs=20,
                      class_weights=torch.ones(K))
    out = model.forward_train(x, y, ctx)
    assert isinstance(out, TrainOutput) and out.logits.shape == (B, K)
    assert "total" in out.losses and len(out.losses) >= 2, "log at least one named term besides total"
    bad = {k: float(v) for k, v in out.losses.items() if v.ndim != 0 or not torch.isfinite(v)}
    assert not bad, f"loss terms must be finite scalars: {bad}"
    out.losses["total"].backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without a gradient: {missing[:5]} ({len(missing)} in all)"


def test_attention_maps_are_named_maps_in_unit_range(model):
    x, _ = batch(model.task)
    with torch.no_grad():
        maps = model.eval().attention_maps(x)
    assert isinstance(maps, dict)
    for name, m in maps.items():
        assert m.ndim == 4 and m.shape[:2] == (B, 1), f"{name}: {tuple(m.shape)} is not B x 1 x h x w"
        assert torch.isfinite(m).all() and m.min() >= 0 and m.max() <= 1, f"{name} leaves [0, 1]"


def test_cam_layer_and_param_groups(model):
    assert any(model.cam_layer is m for m in model.modules()), "cam_layer must be one of the model's modules"
    groups = model.param_groups()
    assert set(groups) == {"backbone", "head"}
    ids = [id(p) for g in groups.values() for p in g]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert sorted(ids) == sorted(trainable), "param_groups must hold every trainable parameter exactly once"
    assert groups["backbone"], "every registered model has a backbone"


def test_state_dict_round_trips_through_the_checkpoint(model, tmp_path, request):
    save_checkpoint(tmp_path / "ck", model, {"kind": "weights"})
    fresh = build(request.node.callspec.params["model"])
    with torch.no_grad():
        for p in fresh.parameters():
            p.add_(1.0)  # differ from the saved weights before loading
    restore_training_state(tmp_path / "ck", fresh)
    x, _ = batch(model.task)
    torch.testing.assert_close(fresh.eval()(x), model.eval()(x))


def test_exports_to_onnx_and_matches_pytorch(model, tmp_path):
    from medattn.deploy.export import export_graph, fixed_batch, ort_session
    from medattn.deploy.graph import DeployGraph

    model.eval()
    graph = DeployGraph(model, model.task, maps=True)
    result = export_graph(graph, SIZE, tmp_path / "model.onnx", log=lambda s: None)
    assert result["max_abs_diff"]["probabilities"] <= 1e-4
    assert set(result["max_abs_diff"]) == set(result["output_names"])
    # An independent batch of 5 through the file: the same probabilities as PyTorch eager.
    x = fixed_batch(5, SIZE, "float32", seed=7)
    got = ort_session(tmp_path / "model.onnx").run(["probabilities"], {"image": x.numpy()})[0]
    with torch.no_grad():
        logits = model(x)
    ref = torch.softmax(logits, 1) if model.task == "multiclass" else torch.sigmoid(logits)
    np.testing.assert_allclose(got, ref.numpy(), atol=1e-4, rtol=0)
    if not hasattr(model, "grad_cams"):  # SIBnet's own maps are Grad-CAMs; its graph carries the CAM instead
        assert len(result["output_names"]) == 2 + len(model.attention_maps(x[:1])) + graph.has_cam
