"""First contact and failure paths: every command either works or says in one line what is wrong
(exit code 2), checks everything before long work, and never loses or silently replaces results."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medattn.cli import build_parser, main
from readers_testkit import make_ham, make_isic2017

FAST = ["model.backbone=resnet10t", "model.pretrained=false", "data.image_size=32", "train.batch_size=8",
        "train.precision=fp32", "train.epochs=1"]


def sets(items):
    return sum((["--set", s] for s in items), [])


def one_line_error(capsys, *argv) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith(f"medattn {argv[0]}: error: ")]
    assert len(errors) == 1 and "Traceback" not in err and err.endswith(errors[0] + "\n"), err
    return errors[0]


# ------------------------------------------------------------------------------------------ help
def test_top_level_and_every_subcommand_help(capsys):
    for argv in (["-h"], ["--help"]):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 0
    assert "COMMAND" in capsys.readouterr().out
    assert main([]) == 2 and "usage: medattn" in capsys.readouterr().out
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name in sub.choices:
        with pytest.raises(SystemExit) as stop:
            main([name, "--help"])
        assert stop.value.code == 0, name
        assert f"usage: medattn {name}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("medattn ")


# ------------------------------------------------------------------------------------------ config
@pytest.mark.parametrize("override, message", [
    ("train.epochs=abc", "train.epochs: 'abc' is not an integer"),
    ("train.epochs=-3", "train.epochs: -3 must be >= 1"),
    ("model.name=nope", "model.name: unknown model 'nope'; registered: baseline,"),
    ("model.backbone=resnet_nope", "model.backbone: 'resnet_nope' is not a timm model"),
    ("loss.name=nope", "loss.name: unknown loss 'nope'"),
    ("train.optimizer=lamb", "train.optimizer: unknown optimizer 'lamb'; registered: adam, adamw, sgd"),
    ("model.options.num_heads=3", "model.options: model 'baseline' has no option(s) num_heads"),
    ("data.format=nope", "data.format: unknown data format 'nope'"),
])
def test_a_bad_config_is_one_line_and_writes_nothing(tmp_path, capsys, override, message):
    out = tmp_path / "run"
    err = one_line_error(capsys, "train", "--config", "demo", "--out", str(out), "--quiet", *sets(FAST + [override]))
    assert message in err
    assert not out.exists()


# ------------------------------------------------------------------------------------------ data checked first
def test_every_split_is_checked_before_the_first_step(tmp_path, capsys):
    root = tmp_path / "isic"
    ids = make_isic2017(root, {"Training": [(1, 0), (0, 1), (0, 0)] * 3, "Validation": [(1, 0), (0, 1), (0, 0)],
                               "Test_v2": [(1, 0), (0, 1), (0, 0)]})
    (root / "ISIC-2017_Test_v2_Data" / f"{ids['Test_v2'][1]}.jpg").unlink()
    out = tmp_path / "run"
    err = one_line_error(capsys, "train", "--config", "isic2017_baseline", "--out", str(out), "--quiet",
                         *sets(FAST + [f"data.root={root}"]))
    assert "missing image file" in err and ids["Test_v2"][1] in err
    assert not out.exists()  # refused before anything was trained or written


# ------------------------------------------------------------------------------------------ a small trained run
@pytest.fixture(scope="module")
def isic_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("isic")
    root = base / "isic"
    make_isic2017(root, {"Training": [(1, 0), (0, 1), (0, 0)] * 4, "Validation": [(1, 0), (0, 1), (0, 0)] * 2,
                         "Test_v2": [(1, 0), (0, 1), (0, 0)] * 2})
    run = base / "run"
    assert main(["train", "--config", "isic2017_baseline", "--out", str(run), "--quiet", "--bootstrap", "0",
                 *sets(FAST + [f"data.root={root}", "train.select_metric=balanced_accuracy"])]) == 0
    return root, run


def test_run_files_have_the_users_permissions_and_checkpoints_a_checksum(isic_run):
    _, run = isic_run
    mask = os.umask(0)
    os.umask(mask)
    for name in ("config.yaml", "best.safetensors", "last.safetensors", "eval_test.json", "predictions_test.csv"):
        assert stat.S_IMODE((run / name).stat().st_mode) == 0o666 & ~mask, name
    assert len(json.loads((run / "best.json").read_text())["sha256"]) == 64


def test_predict_writes_the_official_isic2017_layout_that_score_takes(isic_run, tmp_path, capsys):
    root, run = isic_run
    pred = tmp_path / "pred.csv"
    assert main(["predict", str(run), str(root / "ISIC-2017_Test_v2_Data"), "--out", str(pred)]) == 0
    table = pd.read_csv(pred)
    assert list(table.columns) == ["image_id", "melanoma", "seborrheic_keratosis"] and len(table) == 6
    labels = pd.read_csv(tmp_path / "pred_labels.csv")
    assert set(labels.predicted) <= {"melanoma", "seborrheic_keratosis", "nevus"}
    capsys.readouterr()
    assert main(["score", str(root / "ISIC-2017_Test_v2_Part3_GroundTruth.csv"), str(pred), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    stored = json.loads((run / "eval_test.json").read_text())["isic2017"]
    assert scored["format"] == "isic2017"
    assert scored["mean_auc"] == pytest.approx(stored["mean_auc"], abs=1e-6)


def _copy_run(run: Path, to: Path) -> Path:
    import shutil

    shutil.copytree(run, to)
    return to


def test_a_damaged_checkpoint_is_refused_in_one_line(isic_run, tmp_path, capsys):
    root, run = isic_run
    images = str(root / "ISIC-2017_Test_v2_Data")
    damaged = _copy_run(run, tmp_path / "damaged")
    blob = bytearray((damaged / "best.safetensors").read_bytes())
    blob[-2000:-1000] = bytes(1000)  # zero 1000 bytes of weights: the file still parses
    (damaged / "best.safetensors").write_bytes(bytes(blob))
    err = one_line_error(capsys, "predict", str(damaged), images, "--out", str(tmp_path / "p.csv"))
    assert "do not match the SHA-256 in its metadata" in err and not (tmp_path / "p.csv").exists()
    for size in (0, 100):
        cut = _copy_run(run, tmp_path / f"cut{size}")
        (cut / "best.safetensors").write_bytes((cut / "best.safetensors").read_bytes()[:size])
        err = one_line_error(capsys, "evaluate", str(cut))
        assert f"{cut / 'best.safetensors'} ({size} bytes) cannot be read" in err
    err = one_line_error(capsys, "predict", str(tmp_path), images, "--out", str(tmp_path / "q.csv"))
    assert "is not a complete run directory: config.yaml is missing" in err


def test_a_checkpoint_of_another_model_and_nan_weights_are_refused(isic_run, tmp_path, capsys):
    from medattn.engine.checkpoint import load_checkpoint, save_checkpoint
    from medattn.engine.run import load_run

    root, run = isic_run
    other = _copy_run(run, tmp_path / "other")
    (other / "config.yaml").write_text((other / "config.yaml").read_text().replace("name: baseline", "name: se"))
    err = one_line_error(capsys, "evaluate", str(other))
    assert "does not fit the SENet of this run" in err and "missing tensors" in err
    nan = _copy_run(run, tmp_path / "nan")
    model = load_run(nan).model
    with torch.no_grad():
        model.classifier.weight.fill_(float("nan"))
    save_checkpoint(nan / "best", model, load_checkpoint(run / "best")[3])
    err = one_line_error(capsys, "predict", str(nan), str(root / "ISIC-2017_Test_v2_Data"), "--out", str(tmp_path / "n.csv"))
    assert "NaN or infinite probabilities for 6 of 6 images" in err and not (tmp_path / "n.csv").exists()


def test_results_on_other_data_get_their_own_names_and_nothing_is_replaced(isic_run, tmp_path, capsys):
    root, run = isic_run
    run = _copy_run(run, tmp_path / "run")
    own = (run / "eval_test.json").read_text(), (run / "predictions_test.csv").read_text()
    err = one_line_error(capsys, "evaluate", str(run), "--bootstrap", "0")
    assert "eval_test.json exists; pass --overwrite" in err
    other = tmp_path / "isic_copy"
    import shutil

    shutil.copytree(root, other)
    assert main(["evaluate", str(run), "--data-root", str(other), "--bootstrap", "0"]) == 0
    assert ((run / "eval_test.json").read_text(), (run / "predictions_test.csv").read_text()) == own
    written = sorted(p.name for p in run.glob("eval_test_isic2017-isic_copy-*.json"))
    assert len(written) == 1 and json.loads((run / written[0]).read_text())["data"]["root"] == str(other)
    assert main(["evaluate", str(run), "--bootstrap", "0", "--overwrite"]) == 0


def test_explain_refuses_a_folder_of_another_runs_explanations(isic_run, tmp_path, capsys):
    root, run = isic_run
    image = next((root / "ISIC-2017_Test_v2_Data").glob("ISIC_*[0-9].jpg"))
    out = tmp_path / "explain"
    assert main(["explain", str(run), str(image), "--out", str(out), "--cams", "gradcam", "--no-npz"]) == 0
    other = _copy_run(run, tmp_path / "other_run")
    err = one_line_error(capsys, "explain", str(other), str(image), "--out", str(out), "--cams", "gradcam")
    assert f"already holds 2 explanation file(s) of run {run.resolve()}" in err
    assert main(["explain", str(run), str(image), "--out", str(out), "--cams", "gradcam", "--no-npz", "--resume"]) == 0
    assert main(["explain", str(other), str(image), "--out", str(out), "--cams", "gradcam", "--overwrite"]) == 0


def test_too_many_pixels_can_be_raised_where_images_are_read(isic_run, tmp_path, capsys):
    root, run = isic_run
    image = next((root / "ISIC-2017_Test_v2_Data").glob("ISIC_*[0-9].jpg"))  # 12 x 10 pixels
    err = one_line_error(capsys, "predict", str(run), str(image), "--out", str(tmp_path / "p.csv"), "--max-pixels", "50")
    assert "max_pixels=50" in err
    assert main(["predict", str(run), str(image), "--out", str(tmp_path / "p.csv"), "--max-pixels", "200"]) == 0
    err = one_line_error(capsys, "explain", str(run), str(image), "--out", str(tmp_path / "e"), "--max-pixels", "50")
    assert "max_pixels=50" in err


def test_stale_temporaries_of_a_killed_write_are_removed_at_the_next_start(isic_run, tmp_path, capsys):
    _, run = isic_run
    run = _copy_run(run, tmp_path / "run")
    stale = run / ".last.safetensors.tmp-abc123"
    stale.write_bytes(b"\0" * 4096)
    assert main(["train", "--resume", "--out", str(run), "--quiet", "--no-eval", "--set", "train.epochs=2"]) == 0
    assert not stale.exists() and "removed .last.safetensors.tmp-abc123" in capsys.readouterr().out


def test_resume_with_nothing_to_resume_is_one_line(tmp_path, capsys):
    (tmp_path / "half").mkdir()
    err = one_line_error(capsys, "train", "--resume", "--out", str(tmp_path / "half"))
    assert "is not a run directory" in err


def test_saliency_scores_only_the_images_with_a_mask_when_asked(isic_run, tmp_path, capsys):
    from readers_testkit import write_mask

    root, run = isic_run
    run = _copy_run(run, tmp_path / "run")
    masks = tmp_path / "masks" / "ISIC-2017_Test_v2_Part1_GroundTruth"
    ids = sorted(p.stem for p in (root / "ISIC-2017_Test_v2_Data").glob("ISIC_*[0-9].jpg"))
    for i in ids[:4]:  # 4 of the 6 test images have a mask
        write_mask(masks / f"{i}_segmentation.png")
    args = ["saliency", str(run), "--cams", "gradcam", "--bootstrap", "0", "--set", "data.options.masks=true",
            "--set", f"data.options.mask_dir={tmp_path / 'masks'}"]
    err = one_line_error(capsys, *args)
    assert "missing mask file" in err and "masks=available" in err
    err = one_line_error(capsys, *args[:-4], "--set", "data.options.masks=available",
                         "--set", f"data.options.mask_dir={tmp_path / 'masks'}")
    assert "2 of 6 images have no lesion mask" in err and "--only-with-masks" in err
    assert main([*args, "--only-with-masks"]) == 0
    assert "2 of 6 images have no lesion mask and are left out" in capsys.readouterr().err
    summary = json.loads((run / "saliency_test.json").read_text())  # masks add annotations: the run's own data
    assert summary["n_images"] == 6 and summary["n_scored"] == 4 and sorted(summary["left_out_without_mask"]) == ids[4:]


def test_cross_dataset_evaluation_maps_classes_and_says_what_it_left_out(isic_run, tmp_path, capsys):
    _, run = isic_run
    ham = tmp_path / "ham"
    make_ham(ham, [("mel", 3), ("bkl", 2), ("nv", 4), ("bcc", 2), ("mel", 2), ("nv", 3)])
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data-format", "ham10000", "--data-root", str(ham), "--split", "test",
                 "--set", "data.options.test_fraction=0.5", "--set", "data.options.val_fraction=0.2",
                 "--map-classes", "mel=melanoma,bkl=seborrheic_keratosis,nv=nevus", "--bootstrap", "0"]) == 0
    out = capsys.readouterr().out
    assert "--map-classes:" in out and "images in the run's classes" in out
    written = sorted(p.name for p in run.glob("eval_test_ham10000-ham-*.json"))
    assert len(written) == 1 and (run / "eval_test.json").is_file()  # the run's own results are untouched
    metrics = json.loads((run / written[0]).read_text())
    assert metrics["data"]["format"] == "ham10000" and "isic2017" in metrics
    # The same data without a map is refused: its classes are not the run's.
    err = one_line_error(capsys, "evaluate", str(run), "--data-format", "ham10000", "--data-root", str(ham),
                         "--split", "test", "--set", "data.options.test_fraction=0.5",
                         "--set", "data.options.val_fraction=0.2", "--overwrite")
    assert "differ from the run's" in err
