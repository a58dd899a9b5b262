"""The HAM10000 and derm7pt presets: their reader accepts their options, their model builds for the
reader's classes, and the settings the presets promise hold (no data needed)."""
from __future__ import annotations

import pytest
import torch

from medattn import create_model
from medattn.config import list_presets, load_config
from medattn.data import DataError, load_split
from medattn.data.derm7pt import CRITERIA
from medattn.data.ham10000 import HAM_CLASSES

PRESETS = [p for p in list_presets() if p.startswith(("ham10000_", "derm7pt_"))]
NUM_CLASSES = {("ham10000", None): len(HAM_CLASSES), ("derm7pt", "criteria"): len(CRITERIA), ("derm7pt", "melanoma"): 2}


def test_every_method_has_a_preset():
    assert {"ham10000_" + m for m in ("baseline", "se", "cbam", "softattn", "softattn_irv2", "sibnet", "biigma")} <= set(PRESETS)
    assert {"derm7pt_" + m for m in ("baseline", "class_query", "ibca", "sibnet", "melanoma")} <= set(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_options_are_accepted_and_model_builds(name):
    cfg = load_config(name)
    d, m = cfg.data, cfg.model
    with pytest.raises(DataError, match="data root is required"):  # options checked before the root
        load_split(d.format, None, "train", d.image_size, **d.options)
    k = NUM_CLASSES[(d.format, d.options.get("task") if d.format == "derm7pt" else None)]
    if m.backbone == "inception_resnet_v2":
        return  # 55 M parameters: built by the model tests, not here
    task = "multilabel" if d.options.get("task") == "criteria" else "multiclass"
    model = create_model(m.name, backbone=m.backbone, num_classes=k, pretrained=False, task=task, **m.options)
    assert model.num_classes == k
    if m.options.get("head_pool") == "flatten":  # the head is tied to the preset's image size
        with torch.no_grad():
            assert model.eval()(torch.rand(1, 3, d.image_size, d.image_size)).shape == (1, k)


def test_preset_settings():
    base = load_config("ham10000_baseline")
    assert base.data.options == {"val_fraction": 0.1, "test_fraction": 0.2, "seed": 0}
    assert base.train.select_metric == "balanced_accuracy"
    for name in ("ham10000_softattn", "ham10000_softattn_irv2"):
        opts = load_config(name).model.options
        assert opts["class_weight"] == [5 if c == "mel" else 1 for c in HAM_CLASSES]  # the paper's mel 5
        assert opts["input_size"] == load_config(name).data.image_size
    assert load_config("ham10000_softattn").model.backbone == "tf_efficientnet_lite0"
    assert load_config("ham10000_biigma").model.options["sigma"] == 1.0
    for name in ("derm7pt_baseline", "derm7pt_class_query", "derm7pt_ibca", "derm7pt_sibnet"):
        cfg = load_config(name)
        assert cfg.data.options["task"] == "criteria" and cfg.loss.name == "bce"
        assert cfg.train.select_metric == "map"
    assert load_config("derm7pt_sibnet").model.options["base"] == "baseline"
    assert load_config("derm7pt_melanoma").data.options["task"] == "melanoma"
