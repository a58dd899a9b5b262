"""A small saved run (BIIGMA on resnet10t, 64 px, synthetic data with lesion masks) for the commands."""
from __future__ import annotations

import pytest
import torch

import medattn
from medattn.config import load_config
from medattn.engine.run import save_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory with classes nevus, melanoma, seborrheic_keratosis, basal_cell_carcinoma."""
    cfg = load_config(overrides=["model.name=biigma", "model.backbone=resnet10t", "model.pretrained=false",
                                 "data.image_size=64", "data.options.n_test=5", "data.options.n_train=4",
                                 "data.options.n_val=4"])
    torch.manual_seed(0)
    model = medattn.create_model("biigma", backbone="resnet10t", pretrained=False, num_classes=4)
    path = tmp_path_factory.mktemp("run")
    save_run(path, model, cfg, ["nevus", "melanoma", "seborrheic_keratosis", "basal_cell_carcinoma"], "multiclass")
    return path
