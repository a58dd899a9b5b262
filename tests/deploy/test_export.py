"""`medattn export`: the ONNX file, its sidecar, the input contract, the CAM, refusing to overwrite."""
import json

import numpy as np
import onnx
import pytest
import torch

import medattn
from medattn.cli import main
from medattn.deploy.export import export_graph, fixed_batch, maps_batch_independent, ort_session, overlay_choice
from medattn.deploy.graph import DeployGraph


def test_sidecar_describes_the_model_and_its_numbers(tiny_run, exported):
    side = json.loads(exported.with_suffix(".json").read_text())
    classes = json.loads((tiny_run / "classes.json").read_text())
    assert side["class_names"] == classes["class_names"] and side["task"] == "multiclass"
    assert side["image_size"] == 64 and side["input"]["shape"] == ["batch", 3, 64, 64]
    assert side["input"]["dtype"] == "float32" and side["input"]["range"] == [0.0, 1.0]
    assert side["input"]["normalisation"]["where"] == "inside the graph"
    ev = json.loads((tiny_run / "eval_test.json").read_text())
    assert side["metrics"]["test"]["balanced_accuracy"] == ev["balanced_accuracy"]
    assert side["metrics"]["test"]["ci95"]["macro_auc"] == ev["ci95"]["macro_auc"]
    assert set(side["metrics"]) == {"test", "test_shifted"}
    assert side["versions"]["torch"] == torch.__version__ and side["versions"]["medattn"] == medattn.__version__
    assert side["opset"] >= 17 and side["exporter"] in ("dynamo", "torchscript")
    assert side["verification"]["max_abs_diff"]["probabilities"] <= 1e-4
    assert side["model_card"].startswith("# Model card: run") and "## Metrics" in side["model_card"]
    assert [o["name"] for o in side["outputs"]] == ["probabilities", "logits", "cam"]  # baseline: no native map
    assert side["overlay"] == {"outputs": ["cam"], "per_class": True, "source": "cam"}
    assert side["version"].startswith("run-") and len(side["version"]) == len("run-") + 12


def test_onnx_graph_has_a_dynamic_batch_and_no_sampling(exported):
    proto = onnx.load(str(exported))
    onnx.checker.check_model(proto)
    (inp,) = proto.graph.input
    dims = inp.type.tensor_type.shape.dim
    assert inp.name == "image" and dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 64, 64]
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert not {n.op_type for n in proto.graph.node} & {"RandomNormal", "RandomUniform", "Multinomial", "Bernoulli"}
    session = ort_session(exported)
    for n in (1, 7):  # any batch size; the same image gives the same answer alone and in a batch
        x = fixed_batch(n, 64, "float32", seed=3)
        probs, logits, cam = session.run(None, {"image": x.numpy()})
        assert probs.shape == (n, 4) and np.allclose(probs.sum(1), 1, atol=1e-5)
    alone = session.run(["probabilities"], {"image": x[:1].numpy()})[0]
    assert np.allclose(alone, probs[:1], atol=1e-6)


def test_cam_reproduces_the_logits(tiny_run, exported):
    from medattn.engine.run import load_run

    run = load_run(tiny_run)
    x = fixed_batch(4, 64, "float32", seed=5)
    _, logits, cam = ort_session(exported).run(None, {"image": x.numpy()})
    bias = run.model.classifier.bias.detach().numpy()
    np.testing.assert_allclose(cam.mean(axis=(2, 3)) + bias, logits, atol=1e-4)
    with torch.no_grad():
        np.testing.assert_allclose(logits, run.model(x).numpy(), atol=1e-4)


def test_uint8_input_and_overwrite_through_the_command(tiny_run, exported, capsys):
    out = tiny_run.parent / "u8" / "model.onnx"
    assert main(["export", str(tiny_run), "--format", "onnx", "--input-dtype", "uint8", "--out", str(out)]) == 0
    assert "verified: onnxruntime vs PyTorch" in capsys.readouterr().out
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["input"]["dtype"] == "uint8" and side["input"]["range"] == [0, 255] and side["overlay"] is None
    x8 = fixed_batch(3, 64, "uint8", seed=9)
    p8 = ort_session(out).run(["probabilities"], {"image": x8.numpy()})[0]
    pf = ort_session(exported).run(["probabilities"], {"image": (x8.float() / 255).numpy()})[0]
    np.testing.assert_allclose(p8, pf, atol=1e-5)
    before = out.stat().st_mtime_ns
    with pytest.raises(SystemExit, match="exists; pass --overwrite"):
        main(["export", str(tiny_run), "--out", str(out)])
    assert out.stat().st_mtime_ns == before
    with pytest.raises(SystemExit, match="must end in .onnx"):
        main(["export", str(tiny_run), "--out", str(out.with_suffix(".bin"))])


def test_torchscript_exporter_is_a_working_fallback(tmp_path):
    torch.manual_seed(0)
    model = medattn.create_model("cbam", backbone="resnet10t", num_classes=3, pretrained=False).eval()
    result = export_graph(DeployGraph(model, "multiclass", maps=True), 48, tmp_path / "c.onnx", exporter="torchscript",
                          log=lambda s: None)
    assert result["exporter"] == "torchscript" and result["max_abs_diff"]["probabilities"] <= 1e-4
    assert result["output_names"] == ["probabilities", "logits", "map_spatial", "cam"]


def test_overlay_choice_and_batch_dependence():
    assert overlay_choice(["M", "head_1", "head_2", "heads"], True, 3)["outputs"] == ["map_M"]
    assert overlay_choice(["A", *[f"map_{k}" for k in range(16)]], False, 3)["source"] == "A"
    mha = overlay_choice([f"mha_{k}" for k in range(3)] + [f"gm_{k}" for k in range(3)], False, 3)
    assert mha == {"outputs": ["map_mha_0", "map_mha_1", "map_mha_2"], "per_class": True, "source": "mha"}
    assert overlay_choice([], True, 3)["outputs"] == ["cam"] and overlay_choice([], False, 3) is None
    torch.manual_seed(0)
    x = fixed_batch(3, 40, "float32", seed=2)
    for name, independent in (("biigma", False), ("cbam", True)):  # BIIGMA's head maps prune per batch
        model = medattn.create_model(name, backbone="resnet10t", num_classes=3, pretrained=False).eval()
        graph = DeployGraph(model, "multiclass", maps=True)
        graph.probe(x)
        assert maps_batch_independent(graph, x) is independent, name
