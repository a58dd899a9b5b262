"""The contract every registered model keeps (src/medattn/models/base.py), checked for each name that
`list_models()` returns, so a new model that breaks it fails here: logits B x K, native maps
B x 1 x h x w, and an ONNX export (with its maps) that onnxruntime reproduces within 1e-4."""
import numpy as np
import pytest
import torch

import medattn
from medattn.deploy.export import ExportError, export_graph, fixed_batch, ort_session
from medattn.deploy.graph import DeployGraph

MULTILABEL = {"ibca", "class_query"}
SIZE = 40  # resnet10t levels 5 / 3 / 2 px: BIIGMA's adaptive max-pool from 5 to 2 does not divide


def build(name: str, backbone: str = "resnet10t") -> torch.nn.Module:
    torch.manual_seed(0)
    return medattn.create_model(name, backbone=backbone, num_classes=3, pretrained=False).eval()


@pytest.mark.parametrize("name", medattn.list_models())
def test_forward_and_maps_follow_the_contract(name):
    model = build(name)
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    maps = model.attention_maps(x)
    for key, m in maps.items():
        assert m.ndim == 4 and m.shape[:2] == (2, 1), (key, tuple(m.shape))


@pytest.mark.parametrize("name", medattn.list_models())
def test_every_model_exports_to_onnx_and_matches_pytorch(name, tmp_path):
    model = build(name)
    task = "multilabel" if name in MULTILABEL else "multiclass"
    graph = DeployGraph(model, task, maps=True)
    result = export_graph(graph, SIZE, tmp_path / f"{name}.onnx", log=lambda s: None)
    assert result["max_abs_diff"]["probabilities"] <= 1e-4
    assert set(result["max_abs_diff"]) == set(result["output_names"])
    # An independent batch of 5 through the file: same probabilities as PyTorch eager.
    session = ort_session(tmp_path / f"{name}.onnx")
    x = fixed_batch(5, SIZE, "float32", seed=7)
    got = session.run(["probabilities"], {"image": x.numpy()})[0]
    with torch.no_grad():
        ref = torch.softmax(model(x), 1) if task == "multiclass" else torch.sigmoid(model(x))
    np.testing.assert_allclose(got, ref.numpy(), atol=1e-4, rtol=0)
    if name != "sibnet":  # SIBnet's own maps are Grad-CAMs; its graph carries the CAM instead
        assert len(result["output_names"]) == 2 + len(model.attention_maps(x[:1])) + graph.has_cam


def test_tf_same_padding_and_non_dividing_pools_export(tmp_path):
    """BIIGMA-Net on a timm ``tf_`` backbone (TensorFlow "SAME" padding, computed from the input size) at
    100 px: feature maps 13, 7 and 4 px, so the side-output adapters pool 13 -> 4 and 7 -> 4 with windows
    of unequal size. (tf_mobilenetv3_small_minimal_100 pads as tf_efficientnet_lite0 does, at a third of
    the export time.)"""
    from timm.layers import Conv2dSame

    model = build("biigma", "tf_mobilenetv3_small_minimal_100")
    assert isinstance(model.backbone.model.conv_stem, Conv2dSame)
    with torch.no_grad():
        assert [f.shape[-1] for f in model.features(torch.rand(1, 3, 100, 100))] == [13, 7, 4]
    result = export_graph(DeployGraph(model, "multiclass", maps=True), 100, tmp_path / "b.onnx", log=lambda s: None)
    assert result["max_abs_diff"]["probabilities"] <= 1e-4 and result["max_abs_diff"]["map_M"] <= 1e-4
    assert result["exporter"] == "dynamo"


def test_a_graph_that_samples_or_differs_is_refused(tmp_path):
    class Noisy(torch.nn.Module):  # dropout left in training mode: onnxruntime cannot match PyTorch
        num_classes = 3

        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(torch.nn.functional.dropout(x.mean(dim=(2, 3)), 0.5, training=True))

    with pytest.raises(ExportError, match="no exporter gave a graph that matches PyTorch"):
        export_graph(DeployGraph(Noisy(), "multiclass"), 8, tmp_path / "n.onnx", log=lambda s: None)
    assert not (tmp_path / "n.onnx").exists() and not list(tmp_path.iterdir())
