"""`medattn demo` end to end, shrunk by overrides: run directory, overlays, report, results table."""
import json

from medattn.cli import main

TINY = ["model.backbone=resnet10t", "model.pretrained=false", "data.image_size=32", "train.epochs=1",
        "train.batch_size=16", "train.precision=fp32", "data.options.n_train=48", "data.options.n_val=16",
        "data.options.n_test=16"]


def test_demo_writes_a_complete_run_with_overlays_and_report(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quiet", *sum((["--set", s] for s in TINY), [])]) == 0
    printed = capsys.readouterr().out
    assert "| test |" in printed and "| test_shifted |" in printed and "with the background shortcut broken" in printed
    for name in ("config.yaml", "classes.json", "best.safetensors", "metrics.jsonl", "eval_test.json",
                 "eval_test_shifted.json", "predictions_test.csv", "predictions_test_shifted.csv",
                 "report/index.html"):
        assert (out / name).is_file(), name
    assert "ci95" in json.loads((out / "eval_test_shifted.json").read_text())
    overlays = sorted((out / "explain").glob("*.png"))
    assert len(overlays) == 8 and len(list((out / "explain").glob("*.npz"))) == 8
    html = (out / "report" / "index.html").read_text()
    assert "Split: test_shifted" in html and "http://" not in html and "https://" not in html
