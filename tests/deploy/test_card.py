"""`medattn card`: every section, numbers that match their sources, commands that remake them, the report hook."""
import json
import re
import shlex
import shutil

import numpy as np
import pytest

from medattn.cli import main

SECTIONS = ["Model details", "Intended use", "Data", "Metrics", "Calibration",
            "Robustness to noise and background shift", "Attention vs lesion", "Known limitations",
            "How every number was made"]


@pytest.fixture(scope="module")
def measured_run(tiny_run, tmp_path_factory):
    """A copy of the tiny run with robustness and saliency results and its model card."""
    run = tmp_path_factory.mktemp("card") / "run"
    shutil.copytree(tiny_run, run)
    assert main(["robustness", str(run), "--sigmas", "0,0.05", "--artifacts", "ink", "--batch-size", "16"]) == 0
    assert main(["saliency", str(run), "--split", "test_shifted", "--cams", "gradcam", "--limit", "8",
                 "--bootstrap", "50"]) == 0
    assert main(["card", str(run)]) == 0
    return run


def section(card: str, title: str) -> str:
    return card.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def table_rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in text.splitlines() if ln.startswith("| ")]


def test_card_has_every_section_in_order(measured_run):
    card = (measured_run / "MODEL_CARD.md").read_text()
    assert re.findall(r"^## (.+)$", card, re.M) == SECTIONS
    assert card.startswith("# Model card: run") and "Model Cards for Model Reporting" in card
    assert "not a medical device" in section(card, "Known limitations").lower()
    assert "**Out of scope**: diagnosis" in card and "trained on synthetic images" in card
    assert "`baseline` on the timm backbone `resnet10t`" in card and "trained from scratch" in card


def test_data_counts_match_the_data(measured_run):
    from medattn.engine.data import read_split
    from medattn.engine.run import read_run_config

    card = (measured_run / "MODEL_CARD.md").read_text()
    cfg = read_run_config(measured_run)
    rows = {r[0].split(" ")[0]: r for r in table_rows(section(card, "Data"))[1:]}
    for split in ("train", "val", "test", "test_shifted"):
        ds = read_split(cfg, split)
        assert rows[split][1:] == [str(len(ds)), *[str(c) for c in ds.class_counts()]], split
    assert "no lesion is in two splits" in section(card, "Data")


def test_metrics_and_calibration_equal_their_sources(measured_run):
    from medattn.evaluation.report import read_predictions
    from medattn.metrics.calibration import expected_calibration_error

    card = (measured_run / "MODEL_CARD.md").read_text()
    header, *rows = table_rows(section(card, "Metrics"))
    by_split = {r[0]: dict(zip(header, r)) for r in rows}
    for split in ("test", "test_shifted"):
        ev = json.loads((measured_run / f"eval_{split}.json").read_text())
        lo, hi = ev["ci95"]["balanced_accuracy"]
        assert by_split[split]["balanced_accuracy"] == f"{ev['balanced_accuracy']:.3f} [{lo:.3f}, {hi:.3f}]"
        classes = json.loads((measured_run / "classes.json").read_text())["class_names"]
        pred = read_predictions(measured_run / f"predictions_{split}.csv", classes)
        ece = expected_calibration_error(np.argmax(pred.onehot, 1), pred.probs)
        (cal,) = [r for r in table_rows(section(card, "Calibration")) if r[0] == split]
        assert cal[1].startswith(f"{ece:.3f} [")


def test_robustness_and_saliency_sections_and_the_commands_that_remake_them(measured_run):
    from medattn.evaluation.robustness import robustness_table

    card = (measured_run / "MODEL_CARD.md").read_text()
    result = json.loads((measured_run / "robustness_test.json").read_text())
    assert robustness_table(result) in section(card, "Robustness to noise and background shift")
    assert "saliency_test_shifted.json" in section(card, "Attention vs lesion") and "gradcam" in card
    # Run the robustness command exactly as the card gives it: the same numbers come out.
    provenance = section(card, "How every number was made")
    (command,) = re.findall(r"`(medattn robustness [^`]+)`", provenance)
    argv = shlex.split(command)
    assert argv[:2] == ["medattn", "robustness"] and "--sigmas" in argv and "0,0.05" in argv
    kept = measured_run / "before"
    kept.mkdir()
    for old in measured_run.glob("robustness_test.*"):  # the command refuses to replace results
        old.rename(kept / old.name)
    assert main(argv[1:]) == 0
    again = json.loads((measured_run / "robustness_test.json").read_text())
    assert again["noise"] == result["noise"] and again["background"] == result["background"]
    assert f"medattn train --config {measured_run}/config.yaml" in provenance
    (evaluate,) = re.findall(r"`(medattn evaluate [^`]+--split test_shifted)`", provenance)
    out = measured_run.parent / "again.json"
    assert main([*shlex.split(evaluate)[1:], "--bootstrap", "0", "--out", str(out)]) == 0
    stored = json.loads((measured_run / "eval_test_shifted.json").read_text())
    for key in ("balanced_accuracy", "accuracy", "macro_auc"):
        assert json.loads(out.read_text())[key] == pytest.approx(stored[key], abs=1e-9), key


def test_card_is_kept_unless_overwrite_and_no_data_leaves_counts_out(measured_run, capsys):
    card = measured_run / "MODEL_CARD.md"
    card.write_text(card.read_text() + "\nedited by hand\n")
    with pytest.raises(SystemExit, match="exists \\(it may hold your edits\\)"):
        main(["card", str(measured_run)])
    assert card.read_text().endswith("edited by hand\n")
    out = measured_run / "other.md"
    assert main(["card", str(measured_run), "--no-data", "--out", str(out)]) == 0
    assert "| train | not counted" in out.read_text()


def test_report_shows_the_card_and_escapes_its_html(measured_run):
    from medattn.evaluation.report import write_report

    card = measured_run / "MODEL_CARD.md"
    card.write_text(card.read_text() + "\n<script>alert(1)</script>\n")
    page = write_report(measured_run, n_boot=20, overlays=False)
    html = page.read_text()
    assert '<section id="model-card">' in html and "<h2>Model card</h2>" in html
    assert "<h3>Intended use</h3>" in html and "<table>" in html.split('id="model-card"', 1)[1]
    assert "<script>" not in html and "&lt;script&gt;" in html
