"""The warm-up gate takes effect in a real run: the trainer's metrics.jsonl shows the hybrid CE and KL
at 0 in the warm-up epoch and positive after it; legacy_notebook keeps them at 0 throughout."""
import json

import pytest

from medattn.config import load_config
from medattn.engine.trainer import Trainer

TINY = ["model.backbone=test_efficientnet", "model.pretrained=false", "data.image_size=32", "train.epochs=2",
        "train.batch_size=16", "train.precision=fp32", "data.options.n_train=48", "data.options.n_val=24",
        "data.test_splits=[]"]


@pytest.mark.parametrize("legacy", [False, True])
def test_logged_hybrid_terms_follow_the_warmup(tmp_path, legacy):
    cfg = load_config("synthetic_biigma", TINY + [f"model.options.legacy_notebook={str(legacy).lower()}"])
    Trainer(cfg, tmp_path / "run", progress=False, log=lambda s: None).fit()
    log = [json.loads(line)["train"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {"ce", "ce_hybrid", "hsic", "map", "kl", "total"} <= set(log[0])
    assert log[0]["ce_hybrid"] == 0.0 and log[0]["kl"] == 0.0  # warm-up epoch (warmup_epochs: 1)
    if legacy:
        assert log[1]["ce_hybrid"] == 0.0 and log[1]["kl"] == 0.0
    else:
        assert log[1]["ce_hybrid"] > 0.0 and log[1]["kl"] > 0.0
