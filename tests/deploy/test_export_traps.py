"""The export traps of the model contract (the registry-wide export check is in
tests/models/test_contract.py): TF "SAME" padding with pooling sizes that do not divide, and a graph
that samples, which must be refused."""
import pytest
import torch

import medattn
from medattn.deploy.export import ExportError, export_graph
from medattn.deploy.graph import DeployGraph



def build(name: str, backbone: str = "resnet10t") -> torch.nn.Module:
    torch.manual_seed(0)
    return medattn.create_model(name, backbone=backbone, num_classes=3, pretrained=False).eval()


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
