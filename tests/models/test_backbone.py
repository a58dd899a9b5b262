import numpy as np
import pytest
import timm
import torch
from PIL import Image

import medattn
from medattn.models.backbone import Backbone, PretrainedWeightsError, convert_lite_state_dict, load_lite_imagenet


def test_lite0_weights_load_strictly_into_timm():
    state = load_lite_imagenet(0)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert state["classifier.weight"].shape == (1000, 1280)


def test_lite0_classifies_a_cat_photo():
    skimage_data = pytest.importorskip("skimage.data")
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    model.load_state_dict(load_lite_imagenet(0), strict=True)
    model.eval()
    cat = Image.fromarray(skimage_data.chelsea()).resize((224, 224), Image.BICUBIC)
    x = torch.from_numpy(np.array(cat)).permute(2, 0, 1).float().div(255).unsqueeze(0)
    x = (x - 0.5) / 0.5  # Lite0 normalisation: mean = std = 0.5
    with torch.no_grad():
        top5 = model(x).topk(5).indices[0].tolist()
    assert any(281 <= c <= 285 for c in top5), top5  # ImageNet cat classes


def test_unknown_lite_key_is_rejected():
    with pytest.raises(PretrainedWeightsError, match="unexpected key"):
        convert_lite_state_dict({"_mystery.weight": torch.zeros(1)})


@pytest.mark.parametrize("name,channels", [("tf_efficientnet_lite0", [40, 112, 320]), ("resnet18", [128, 256, 512])])
def test_backbone_levels(name, channels):
    b = Backbone(name, pretrained=False, num_levels=3)
    feats = b(torch.randn(2, 3, 64, 64))
    assert b.channels == channels and b.reductions == [8, 16, 32]
    assert [f.shape[1] for f in feats] == channels
    assert [f.shape[-1] for f in feats] == [8, 4, 2]
    assert isinstance(b.stage(-1), torch.nn.Module)


def test_pretrained_from_local_file(tmp_path):
    from safetensors.torch import save_file

    src = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    b = Backbone("resnet18", pretrained=str(path), num_levels=1)
    assert torch.equal(b.model.state_dict()["layer4.1.conv2.weight"], src.state_dict()["layer4.1.conv2.weight"])
    with pytest.raises(PretrainedWeightsError, match="does not exist"):
        Backbone("resnet18", pretrained=str(tmp_path / "missing.pth"))


def test_registry_drops_none_and_rejects_unknown_options():
    model = medattn.create_model("baseline", backbone="resnet18", num_classes=4, pretrained=None, drop_rate=None)
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 4)
    with pytest.raises(TypeError, match="no option"):
        medattn.create_model("baseline", backbone="resnet18", num_classes=4, not_an_option=1)
    with pytest.raises(KeyError, match="unknown model"):
        medattn.create_model("nope")


def test_baseline_normalises_internally():
    model = medattn.create_model("baseline", backbone="tf_efficientnet_lite0", num_classes=3)
    assert torch.allclose(model.normalize(torch.full((1, 3, 2, 2), 0.5)), torch.zeros(1, 3, 2, 2))
