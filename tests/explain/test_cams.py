"""CAMs through pytorch-grad-cam: values against a hand-written Grad-CAM, batching, multi-label rounds,
bf16, hook release (also on error). Flat memory over 500 images: test_explain_cli.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import medattn
from medattn.engine.precision import Precision
from medattn.explain import cam_extractor, compute_cams
from saliency_reference import library_cams


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return medattn.create_model("baseline", backbone="resnet10t", pretrained=False, num_classes=3).eval()


def hooks_left(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(getattr(m, "_backward_pre_hooks", {})) for m in model.modules())


def reference_gradcam(model, x: torch.Tensor, cls: int) -> np.ndarray:
    """Grad-CAM by hand: ReLU(sum_c mean(dy/dA_c) A_c), bilinear to the input, min-max scaled."""
    store = {}
    handle = model.cam_layer.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        logits = model(x)
    finally:
        handle.remove()
    a = store["a"]
    (grad,) = torch.autograd.grad(logits[:, cls].sum(), a)
    cam = torch.relu((grad.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0].detach().numpy()
    cam = cam - cam.min(axis=(1, 2), keepdims=True)
    return cam / (cam.max(axis=(1, 2), keepdims=True) + 1e-7)


def test_gradcam_matches_a_hand_written_reference(model):
    x = torch.rand(3, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    got = compute_cams(model, x, [[2], [2], [2]], methods=["gradcam"])
    want = reference_gradcam(model, x, 2)
    for i in range(3):
        assert got[i].keys() == {("gradcam", 2)}
        assert got[i][("gradcam", 2)].shape == (96, 96) and got[i][("gradcam", 2)].dtype == np.float32
        np.testing.assert_allclose(got[i][("gradcam", 2)], want[i], atol=2e-4)
    assert hooks_left(model) == 0
    assert all(p.grad is None for p in model.parameters())


def test_batched_maps_equal_single_image_maps_and_multilabel_rounds(model):
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    methods = ["gradcam", "gradcam++", "eigencam"]
    batch = compute_cams(model, x, [[0, 2], [1], []], methods=methods)
    assert set(batch[0]) == {("gradcam", 0), ("gradcam", 2), ("gradcam++", 0), ("gradcam++", 2), ("eigencam", None)}
    assert set(batch[1]) == {("gradcam", 1), ("gradcam++", 1), ("eigencam", None)}
    assert set(batch[2]) == {("eigencam", None)}  # class-agnostic maps need no class
    alone = compute_cams(model, x[:1], [[2]], methods=methods)[0]
    for key in [("gradcam", 2), ("gradcam++", 2), ("eigencam", None)]:
        np.testing.assert_allclose(batch[0][key], alone[key], atol=1e-4)
        assert 0.0 <= batch[0][key].min() and batch[0][key].max() <= 1.0
    assert not np.allclose(batch[0][("gradcam", 0)], batch[0][("gradcam", 2)], atol=1e-3)


def test_bf16_autocast_gives_float32_maps_close_to_fp32(model):
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(3))
    fp32 = compute_cams(model, x, [[1], [0]], methods=["gradcam", "eigencam"])
    bf16 = compute_cams(model, x, [[1], [0]], methods=["gradcam", "eigencam"],
                        precision=Precision(torch.device("cpu"), torch.bfloat16))
    for a, b in zip(fp32, bf16):
        for key in a:
            assert b[key].dtype == np.float32
            assert np.corrcoef(a[key].ravel(), b[key].ravel())[0, 1] > 0.95
    assert hooks_left(model) == 0


def test_gradient_free_ablation_cam_runs_and_restores_the_layer(model):
    layer = model.cam_layer
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    out = compute_cams(model, x, [[1]], methods=["ablationcam"], batch_size=256)
    assert out[0][("ablationcam", 1)].shape == (32, 32)
    assert model.cam_layer is layer and hooks_left(model) == 0


def test_hooks_are_released_when_the_body_fails(model):
    model.train()
    with pytest.raises(RuntimeError, match="boom"):
        with cam_extractor(model, "gradcam") as cam:
            assert hooks_left(model) == 2  # activation + gradient hooks on the layer
            cam(input_tensor=torch.rand(1, 3, 64, 64), targets=None)
            raise RuntimeError("boom")
    assert hooks_left(model) == 0
    assert model.training  # the mode is restored (pytorch-grad-cam switches to eval)
    assert all(p.grad is None for p in model.parameters())
    model.eval()


def test_bad_method_and_class_are_reported(model):
    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(ValueError, match=r"unknown CAM method\(s\) 'gradcam\+'; choose from gradcam, gradcam\+\+"):
        compute_cams(model, x, [[0], [0]], methods=["gradcam+"])
    with pytest.raises(ValueError, match=r"image 1: class index 3 is out of range for 3 classes \(1 more\)"):
        compute_cams(model, x, [[0], [3, 5]], methods=["gradcam"])
    with pytest.raises(ValueError, match="2 images but 1 target lists"):
        compute_cams(model, x, [[0]], methods=["gradcam"])


# ------------------------------------------------- shared passes against the library's own per-method calls

def assert_same_maps(got, want):
    """The same maps to float32 rounding. Bit-for-bit holds on some CPUs only: where oneDNN picks
    other kernels for the attention models' batched matmuls (seen on a Xeon with AMX: class_query and
    ibca maps differ by at most 3e-6 after min-max scaling), the last bits of a sum differ."""
    for g, w in zip(got, want):
        assert list(g) == list(w)  # same keys in the same order
        for key in w:
            np.testing.assert_allclose(g[key], w[key], rtol=0, atol=1e-5, err_msg=str(key))  # maps are in [0, 1]


@pytest.mark.parametrize("name", medattn.list_models())
def test_shared_pass_gives_the_library_maps_for_every_model(name):
    torch.manual_seed(0)
    net = medattn.create_model(name, backbone="resnet10t", pretrained=False, num_classes=3).eval()
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    methods = ["gradcam", "gradcam++", "eigencam"]
    if name == "baseline":  # the other methods that share the pass, on one model
        methods += ["xgradcam", "hirescam", "layercam"]
    for targets in ([[2], [0], [1]], [[0, 2], [1], []]):  # one round; rounds that leave images out
        assert_same_maps(compute_cams(net, x, targets, methods), library_cams(net, x, targets, methods))
    assert hooks_left(net) == 0
    assert all(p.grad is None and p.requires_grad for p in net.parameters())


def test_shared_pass_matches_the_library_under_bf16(model):
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    bf16 = Precision(torch.device("cpu"), torch.bfloat16)
    methods = ["gradcam", "gradcam++", "eigencam"]
    assert_same_maps(compute_cams(model, x, [[1], [2]], methods, precision=bf16),
                     library_cams(model, x, [[1], [2]], methods, precision=bf16))


def test_layer_pass_logits_activations_and_gradients_are_the_full_passes(model):
    from medattn.explain.layer_pass import layer_pass

    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    store = {}
    handle = model.cam_layer.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        logits = model(x)  # parameters require grad: the whole graph is recorded
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(logits[0, 1] + logits[1, 0], store["a"])
    p = layer_pass(model, x)
    assert torch.equal(p.logits, logits.detach()) and torch.equal(p.activations, store["a"].detach())
    assert torch.equal(p.gradients([1, 0]), grad)
    with pytest.raises(ValueError, match="2 images but 1 classes"):
        p.gradients([1])
    assert hooks_left(model) == 0 and all(q.requires_grad for q in model.parameters())


def test_layer_pass_refuses_a_layer_that_does_not_run(model):
    from medattn.explain.layer_pass import layer_pass

    with pytest.raises(ValueError, match=r"ran 0 times in one forward pass .* exactly once"):
        layer_pass(model, torch.rand(1, 3, 32, 32), layer=torch.nn.Conv2d(3, 3, 1))
    assert hooks_left(model) == 0 and all(q.requires_grad for q in model.parameters())
