import pytest

from medattn.config import Config, ConfigError, load_config, list_presets, parse_override


def test_defaults_and_overrides():
    cfg = load_config(None, ["train.lr=3e-4", "model.options.num_heads=4", "data.test_splits=[test, test_shifted]"])
    assert cfg.train.lr == pytest.approx(3e-4) and isinstance(cfg.train.lr, float)
    assert cfg.model.options == {"num_heads": 4}
    assert cfg.data.test_splits == ["test", "test_shifted"]


def test_unknown_key_is_an_error():
    with pytest.raises(ConfigError, match="unknown config key 'train.lrr'"):
        load_config(None, ["train.lrr=1"])


def test_preset_by_name_and_file(tmp_path):
    assert "demo" in list_presets() and "isic2017_baseline" in list_presets()
    cfg = load_config("isic2017_baseline")
    assert cfg.data.format == "isic2017" and cfg.model.backbone == "tf_efficientnet_lite0"
    p = tmp_path / "c.yaml"
    p.write_text("model: {name: biigma}\n")
    assert load_config(str(p)).model.name == "biigma"
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "missing.yaml"))


def test_bad_override():
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("train.lr")


def test_base_chain_and_every_preset_loads(tmp_path):
    for name in list_presets():
        load_config(name)  # every shipped preset resolves and validates
    cfg = load_config("isic2017_biigma")
    assert cfg.model.name == "biigma" and cfg.data.format == "isic2017"
    assert cfg.train.select_metric == "isic2017.mean_auc"  # inherited from isic2017_baseline
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("base: b.yaml\ntrain: {epochs: 3}\n")
    b.write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="loops back"):
        load_config(str(a))


def test_switching_reader_or_model_drops_their_old_options():
    cfg = load_config("demo", ["data.format=isic2017", "model.name=biigma"])
    assert cfg.data.options == {} and cfg.model.options == {}
    kept = load_config("demo", ["data.options.n_train=10"])
    assert kept.data.options["n_train"] == 10 and kept.data.options["spurious"] == 0.9
    assert load_config(None, ["model.options=null", "model.options.x=1"]).model.options == {"x": 1}


@pytest.mark.parametrize("override, message", [
    ("train.epochs=abc", "train.epochs: 'abc' is not an integer"),
    ("train.epochs=-3", "train.epochs: -3 must be >= 1"),
    ("train.lr=-1", "train.lr: -1 must be > 0"),
    ("train.batch_size=0", "train.batch_size: 0 must be >= 1"),
    ("train.channels_last=maybe", "train.channels_last: 'maybe' is not true or false"),
    ("train.precision=fp8", "train.precision: 'fp8' must be one of auto, bf16, fp16, fp32"),
    ("train.sampler=weighted", "train.sampler: 'weighted' must be one of random, balanced"),
    ("train.grad_clip=abc", "train.grad_clip: 'abc' is not a number or null"),
    ("augment.scale=[0.9, 0.5]", "augment.scale: [0.9, 0.5] must be [low, high]"),
    ("augment.scale=[1]", "augment.scale: [1] is not a list of 2 numbers or null"),
    ("data.image_size=big", "data.image_size: 'big' is not an integer"),
    ("model.options=3", "model.options: 3 is not a mapping"),
    ("seed=1.5", "seed: 1.5 is not an integer"),
])
def test_a_wrong_type_or_range_is_one_error_naming_key_value_and_expectation(override, message):
    with pytest.raises(ConfigError) as err:
        load_config("demo", [override])
    assert message in str(err.value)


def test_yaml_1_1_float_spellings_arrive_as_numbers(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train: {lr: 3e-4, weight_decay: 1e-5, epochs: 4.0}\n")
    cfg = load_config(str(p))
    assert cfg.train.lr == 3e-4 and cfg.train.weight_decay == 1e-5 and cfg.train.epochs == 4
    assert isinstance(cfg.train.epochs, int) and isinstance(cfg.train.lr, float)


def test_defaults_live_in_the_dataclasses_and_round_trip():
    cfg = Config()
    assert cfg.train.warmup_epochs == 1.0 and cfg.train.min_lr_ratio == 0.01  # the trainer has no shadow defaults
    assert Config.from_dict(cfg.to_dict()) == cfg
    assert load_config(None) == cfg
    again = Config.from_dict(load_config("isic2017_biigma").to_dict())
    assert again == load_config("isic2017_biigma")
    with pytest.raises(ConfigError, match="unknown config key 'train.epcohs'"):
        Config.from_dict({"train": {"epcohs": 3}})
