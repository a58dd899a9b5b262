"""`medattn train --unlabeled DIR` end to end: SIBnet trains on labeled + unlabeled synthetic images."""
import json

from medattn.cli import main


def test_sibnet_trains_with_an_unlabeled_folder(tmp_path, capsys):
    syn = tmp_path / "syn"
    assert main(["synth", "--out", str(syn), "--n", "24", "--n-val", "12", "--n-test", "4", "--size", "32",
                 "--quiet"]) == 0
    unlabeled = syn / "ISIC2018_Task3_Test_Input"  # images only; their labels are not read
    run = tmp_path / "run"
    sets = ["data.format=isic2018", f"data.root={syn}", "data.image_size=32", "model.name=sibnet",
            "model.backbone=resnet10t", "model.pretrained=false", "train.epochs=1", "train.batch_size=8",
            "train.precision=fp32", "train.unlabeled_ratio=0.5", "data.test_splits=[val]"]
    args = ["train", "--config", "demo", "--out", str(run), "--unlabeled", str(unlabeled), "--quiet"]
    assert main(args + sum((["--set", s] for s in sets), [])) == 0
    assert "4 unlabeled images" in capsys.readouterr().out
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"ce", "cd", "sc", "total"} <= set(log[-1]["train"])
    assert str(unlabeled) in (run / "config.yaml").read_text()
