import pytest

from medattn.config import ConfigError, load_config, list_presets, parse_override


def test_defaults_and_overrides():
    cfg = load_config(None, ["train.lr=3e-4", "model.options.num_heads=4", "data.test_splits=[test, test_shifted]"])
    assert cfg["train"]["lr"] == pytest.approx(3e-4)
    assert cfg["model"]["options"] == {"num_heads": 4}
    assert cfg["data"]["test_splits"] == ["test", "test_shifted"]


def test_unknown_key_is_an_error():
    with pytest.raises(ConfigError, match="unknown config key 'train.lrr'"):
        load_config(None, ["train.lrr=1"])


def test_preset_by_name_and_file(tmp_path):
    assert "demo" in list_presets() and "isic2017_baseline" in list_presets()
    cfg = load_config("isic2017_baseline")
    assert cfg["data"]["format"] == "isic2017" and cfg["model"]["backbone"] == "tf_efficientnet_lite0"
    p = tmp_path / "c.yaml"
    p.write_text("model: {name: biigma}\n")
    assert load_config(str(p))["model"]["name"] == "biigma"
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "missing.yaml"))


def test_bad_override():
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("train.lr")


def test_base_chain_and_every_preset_loads(tmp_path):
    for name in list_presets():
        load_config(name)  # every shipped preset resolves and validates
    cfg = load_config("isic2017_biigma")
    assert cfg["model"]["name"] == "biigma" and cfg["data"]["format"] == "isic2017"
    assert cfg["train"]["select_metric"] == "isic2017.mean_auc"  # inherited from isic2017_baseline
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("base: b.yaml\ntrain: {epochs: 3}\n")
    b.write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="loops back"):
        load_config(str(a))


def test_switching_reader_or_model_drops_their_old_options():
    cfg = load_config("demo", ["data.format=isic2017", "model.name=biigma"])
    assert cfg["data"]["options"] == {} and cfg["model"]["options"] == {}
    kept = load_config("demo", ["data.options.n_train=10"])
    assert kept["data"]["options"]["n_train"] == 10 and kept["data"]["options"]["spurious"] == 0.9
    assert load_config(None, ["model.options=null", "model.options.x=1"])["model"]["options"] == {"x": 1}
