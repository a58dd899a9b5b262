"""`medattn train --resume --out RUN`: the run's own config, no --config needed; overrides that would
make it another run are refused, safe ones (more epochs) are applied and said."""
import json

import yaml

from medattn.cli import main

TINY = ["model.backbone=resnet10t", "model.pretrained=false", "data.image_size=32", "train.batch_size=16",
        "train.precision=fp32", "data.options.n_train=32", "data.options.n_val=16", "data.options.n_test=16",
        "data.test_splits=[test]"]


def _sets(items):
    return sum((["--set", s] for s in items), [])


def _epochs(run):
    return [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_resume_without_config_and_with_safe_or_refused_overrides(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--config", "demo", "--out", str(run), "--quiet", "--no-eval", *_sets(TINY + ["train.epochs=1"])]) == 0
    assert _epochs(run) == [0]
    config_before = (run / "config.yaml").read_text()

    # Another run's setting: refused before anything is touched, naming the key and both values.
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(run), "--quiet", "--set", "train.lr=0.5"]) == 2
    err = capsys.readouterr().err
    assert "train.lr: 0.002 -> 0.5" in err and "--resume may change only train.epochs" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert (run / "config.yaml").read_text() == config_before and _epochs(run) == [0]

    # More epochs is safe: applied, said, and the run continues from its checkpoint.
    assert main(["train", "--resume", "--out", str(run), "--quiet", "--bootstrap", "0", "--set", "train.epochs=2"]) == 0
    out = capsys.readouterr().out
    assert "--resume changes train.epochs: 1 -> 2" in out and "resuming" in out
    assert _epochs(run) == [0, 1] and (run / "eval_test.json").is_file()
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"] == 2  # the record says what ran


def test_resume_needs_out_and_a_run_to_resume(tmp_path, capsys):
    assert main(["train", "--resume", "--quiet"]) == 2
    assert "--resume needs --out RUN_DIR" in capsys.readouterr().err
    assert main(["train", "--resume", "--out", str(tmp_path / "nothing"), "--quiet"]) == 2
    assert "is not a run directory: config.yaml is missing" in capsys.readouterr().err
    assert main(["train", "--quiet"]) == 2
    assert "train needs --config" in capsys.readouterr().err
