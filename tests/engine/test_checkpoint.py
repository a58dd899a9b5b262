import json

import pytest
import torch

from medattn.engine.checkpoint import load_checkpoint, restore_training_state, save_checkpoint


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2))


def test_roundtrip_model_and_optimizer(tmp_path):
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    save_checkpoint(tmp_path / "last", model, {"epoch": 3}, optimizer=opt)
    assert json.loads((tmp_path / "last.json").read_text())["epoch"] == 3

    other = _model()
    torch.nn.init.zeros_(other[0].weight)
    opt2 = torch.optim.AdamW(other.parameters(), lr=1e-3)
    meta, _ = restore_training_state(tmp_path / "last", other, opt2)
    assert meta["epoch"] == 3
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    for pid in s1["state"]:
        for k, v in s1["state"][pid].items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(s2["state"][pid][k]))


def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    model = _model()
    save_checkpoint(tmp_path / "best", model, {"epoch": 1})
    before = (tmp_path / "best.safetensors").read_bytes()
    import medattn.engine.checkpoint as ck

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ck, "save_file", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(tmp_path / "best", model, {"epoch": 2})
    assert (tmp_path / "best.safetensors").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    _, _, _, meta = load_checkpoint(tmp_path / "best")
    assert meta["epoch"] == 1
