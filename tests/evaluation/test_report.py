"""The HTML run report: content, figures that load, no network resources, a real browser render."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from medattn.data import ImageDataset
from medattn.engine.evaluate import write_predictions_csv
from medattn.metrics.summary import compute_metrics, with_confidence_intervals
from medattn.evaluation.report import read_predictions, write_report
from medattn.evaluation.robustness import evaluate_robustness
from medattn.metrics.calibration import expected_calibration_error
from medattn.metrics.saliency import score_rows, summarize_rows

CLASSES = ["nevus", "melanoma", "keratosis"]


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text of the document."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(path: Path) -> Tags:
    p = Tags()
    p.feed(path.read_text())
    return p


def fake_predictions(n: int, task: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Truth (N,) or (N, K) and probabilities that follow it loosely."""
    rng = np.random.default_rng(seed)
    if task == "multilabel":
        y = (rng.random((n, 3)) < 0.4).astype(np.float64)
        y[0], y[1] = 1.0, 0.0  # every label has positives and negatives
        return y, 1 / (1 + np.exp(-(3 * (y - 0.5) + rng.normal(0, 1.5, y.shape))))
    y = np.arange(n) % 3
    logits = 2.5 * np.eye(3)[y] + rng.normal(0, 1.2, (n, 3))
    return y, np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def write_fake_run(run: Path, task: str = "multiclass") -> dict:
    """A run directory as the trainer and the commands leave it, without weights."""
    run.mkdir(parents=True)
    (run / "classes.json").write_text(json.dumps({"class_names": CLASSES, "task": task}))
    cfg = {"seed": 0, "data": {"format": "synthetic", "root": None, "image_size": 32, "options": {"n_test": 60}},
           "model": {"name": "baseline", "backbone": "resnet10t", "pretrained": False, "options": {}},
           "train": {"epochs": 3, "select_metric": "auto"}}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    lines = []
    for e in range(3):
        train = {"ce": 1.0 / (e + 1), "hsic": 0.1 * (3 - e), "total": 1.0 / (e + 1) + 0.1 * (3 - e)}
        val = {"balanced_accuracy": 0.5 + 0.1 * e, "accuracy": 0.6 + 0.1 * e} if task == "multiclass" else {
            "map": 0.4 + 0.1 * e, "cf1": 0.3 + 0.1 * e}
        lines.append(json.dumps({"epoch": e, "train": train, "val": val, "lr": 1e-3 / (e + 1), "seconds": 2.0,
                                 "selected": e != 2}))
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    select = "balanced_accuracy" if task == "multiclass" else "map"
    (run / "best.json").write_text(json.dumps({"epoch": 1, "select_metric": select, "value": 0.6}))
    out = {}
    for split, n, seed in (("test", 60, 0), ("val", 30, 1)):
        y, p = fake_predictions(n, task, seed)
        ds = ImageDataset(np.zeros((n, 2, 2, 3), np.uint8), y.astype(np.float32 if task == "multilabel" else np.int64),
                          CLASSES, [f"img{split}{i}" for i in range(n)], task=task)
        write_predictions_csv(run / f"predictions_{split}.csv", ds, p, CLASSES)
        out[split] = (y, p)
    y, p = out["test"]
    (run / "eval_test.json").write_text(json.dumps(compute_metrics(y, p, CLASSES, task)))  # no intervals in it
    return out


def robustness_json(run: Path) -> dict:
    class Mean(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.eye(3) * 8)

        def forward(self, x):
            return x.mean(dim=(2, 3)) @ self.w

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    masks = np.zeros((12, 16, 16), np.uint8)
    masks[:, 4:12, 4:12] = 1
    ds = ImageDataset(images, np.arange(12) % 3, CLASSES, [str(i) for i in range(12)], masks=masks)
    result = evaluate_robustness(Mean(), ds, sigmas=(0.0, 0.1), artifacts=("ink",), shifted=ds.subset(range(6)))
    (run / "robustness_test.json").write_text(json.dumps(result, default=float))
    return result


def saliency_json(run: Path) -> None:
    rng = np.random.default_rng(0)
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 4:12] = 1
    rows = []
    for i in range(5):
        maps = {"gradcam": rng.random((16, 16)), "attn/M": rng.random((16, 16))}
        rows += score_rows(f"im{i}", maps, {k: mask for k in maps}, 0.5, 0.0)
    summary = {"split": "test", "n_scored": 5, "explain_class": "predicted", "hull_threshold": 0.5,
               "maps": summarize_rows(rows, 50, 0)}
    (run / "saliency_test.json").write_text(json.dumps(summary))


def check_images(page: Path, tags: Tags) -> list[str]:
    srcs = [a["src"] for t, a in tags.tags if t == "img"]
    for src in srcs:
        assert "/" not in src and "\\" not in src, f"{src}: figures must lie beside the page"
        with Image.open(page.parent / src) as im:
            assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100, src
            im.load()
    return srcs


def no_network(tags: Tags, page: Path) -> None:
    for tag, attrs in tags.tags:
        assert tag not in ("script", "link", "iframe", "object", "embed"), tag
        for name, value in attrs.items():
            assert not re.match(r"\s*(https?:|//|ftp:)", value or "", re.I), f"<{tag} {name}={value!r}>"
    assert "http://" not in page.read_text() and "https://" not in page.read_text()
    assert "url(" not in page.read_text()  # no CSS resource either


@pytest.fixture(scope="module")
def fake_report(tmp_path_factory):
    run = tmp_path_factory.mktemp("report") / "run"
    preds = write_fake_run(run)
    robustness_json(run)
    saliency_json(run)
    page = write_report(run, n_boot=200)
    return run, page, preds


def test_report_has_every_section_and_loadable_figures(fake_report, capsys):
    run, page, _ = fake_report
    assert page == run / "report" / "index.html"
    tags = parse(page)
    ids = [a["id"] for t, a in tags.tags if t == "section"]
    assert ids == ["run", "metrics", "split-test", "split-val", "robustness_test", "training", "attention",
                   "saliency_test"]
    nav = [a["href"] for t, a in tags.tags if t == "a"]
    assert nav == [f"#{i}" for i in ids]
    assert "<h2>Robustness: test</h2>" in page.read_text() and "<h2>Saliency: test</h2>" in page.read_text()
    srcs = check_images(page, tags)
    assert set(srcs) == {"confusion_test.png", "confusion_val.png", "reliability_test.png", "reliability_val.png",
                         "roc_pr_test.png", "roc_pr_val.png", "training.png", "robustness_test.png"}
    no_network(tags, page)
    # No weights in this run: the overlay section says why instead of failing the report.
    assert "No attention overlays: the model could not be loaded" in page.read_text()


def test_report_numbers_match_independent_computations(fake_report):
    run, page, preds = fake_report
    text = page.read_text()
    y, p = preds["test"]
    m = with_confidence_intervals(compute_metrics(y, p, CLASSES, "multiclass"), y, p, CLASSES, "multiclass", n_boot=200)
    lo, hi = m["ci95"]["balanced_accuracy"]
    assert f'{m["balanced_accuracy"]:.3f}<span class="ci">[{lo:.3f}, {hi:.3f}]</span>' in text
    ece = expected_calibration_error(y, p)
    assert f"ECE = {ece:.3f}." in text
    # the val split has no eval JSON: metrics come from its predictions
    yv, pv = preds["val"]
    assert f'{compute_metrics(yv, pv, CLASSES, "multiclass")["macro_auc"]:.3f}<span class="ci">' in text
    # best epoch from best.json, every loss term in the training table, the resolved selection metric
    assert "2 (balanced_accuracy 0.600 on val)" in text
    for term in ("train ce", "train hsic", "train total"):
        assert f"<th>{term}</th>" in text
    assert "selection metric (balanced_accuracy)" in text
    robustness = json.loads((run / "robustness_test.json").read_text())
    assert f"{100 * robustness['noise'][1]['flip_fraction']:.1f}%" in text
    assert "<td>attn/M</td>" in text and "<td>gradcam</td>" in text


def test_multilabel_report_and_bad_prediction_csv(tmp_path):
    run = tmp_path / "ml"
    write_fake_run(run, "multilabel")
    page = write_report(run, tmp_path / "out" / "page.html", n_boot=50, overlays=False)
    tags = parse(page)
    srcs = check_images(page, tags)
    assert "confusion_test.png" not in srcs and "reliability_test.png" in srcs
    text = page.read_text()
    assert "<h3>Per-label decisions at the threshold</h3>" in text and "<th>TP</th>" in text
    assert "<th>val map</th>" in text and "selection metric (map)" in text
    no_network(tags, page)
    csv = run / "predictions_test.csv"
    lines = csv.read_text().splitlines()
    lines[3] = lines[3].replace(lines[3].split(",")[2], "abc", 1)
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"predictions_test.csv: row 4 has a missing or non-numeric value \(0 more"):
        read_predictions(csv, CLASSES)
    with pytest.raises(ValueError, match=r"column 'other' is missing \(1 more\)"):
        read_predictions(csv, ["nevus", "melanoma", "other"])
    with pytest.raises(FileNotFoundError, match="classes.json is missing"):
        write_report(tmp_path)


def test_training_curves_leave_out_a_total_equal_to_the_only_term():
    from medattn.evaluation.report_figures import training_curves_figure

    def titles(log):
        return [ax.get_title() for ax in training_curves_figure(log, "accuracy", ["accuracy"]).axes if ax.axison]

    log = [{"epoch": e, "train": {"total": 1.0 / (e + 1), "ce": 1.0 / (e + 1)}, "val": {"accuracy": 0.5}, "lr": 0.1}
           for e in range(3)]
    assert titles(log) == ["train ce", "validation", "learning rate"]
    log[1]["train"]["total"] += 0.5  # another term is in the total (not logged): keep both curves
    assert titles(log) == ["train total", "train ce", "validation", "learning rate"]


def test_report_of_a_saved_run_has_overlays_of_right_and_wrong_predictions(tmp_path):
    import medattn
    from medattn.config import Config
    from medattn.engine.data import read_split
    from medattn.engine.inference import predict_proba
    from medattn.engine.run import save_run

    torch.manual_seed(0)
    model = medattn.create_model("baseline", backbone="resnet10t", pretrained=False, num_classes=4)
    cfg = Config.from_dict({"seed": 0, "data": {"format": "synthetic", "root": None, "image_size": 32,
                                                "options": {"n_test": 16}},
                            "model": {"name": "baseline", "backbone": "resnet10t", "pretrained": False, "options": {}},
                            "train": {"epochs": 1}})
    data = read_split(cfg, "test")
    run = save_run(tmp_path / "run", model, cfg, data.class_names, "multiclass").parent
    probs = predict_proba(model, data, 16, task="multiclass")
    write_predictions_csv(run / "predictions_test.csv", data, probs, data.class_names)
    page = write_report(run, n_boot=20, n_examples=2)
    tags = parse(page)
    srcs = check_images(page, tags)
    overlays = [s for s in srcs if s.startswith("overlay_test_")]
    right = (np.argmax(probs, 1) == data.targets)
    assert len(overlays) == min(2, right.sum()) + min(2, (~right).sum())
    text = page.read_text()
    n_right = sum(s.startswith("overlay_test_right") for s in overlays)
    assert text.count('<span class="tag right">right</span>') == n_right
    no_network(tags, page)



def test_multilabel_report_shows_every_labels_map_and_their_distinctness(tmp_path):
    import medattn
    from medattn.config import Config
    from medattn.engine.data import read_split
    from medattn.engine.inference import predict_proba
    from medattn.engine.run import save_run

    torch.manual_seed(0)
    cfg = Config.from_dict({"seed": 0, "data": {"format": "synthetic_multilabel", "root": None, "image_size": 48,
                                                "options": {"n_test": 12}},
                            "model": {"name": "class_query", "backbone": "resnet10t", "pretrained": False, "options": {}},
                            "train": {"epochs": 1}})
    data = read_split(cfg, "test")
    model = medattn.create_model("class_query", backbone="resnet10t", pretrained=False, num_classes=len(data.class_names))
    run = save_run(tmp_path / "run", model, cfg, data.class_names, "multilabel").parent
    write_predictions_csv(run / "predictions_test.csv", data, predict_proba(model, data, 16, task="multilabel"),
                          data.class_names)
    page = write_report(run, n_boot=20, n_examples=1)
    srcs = check_images(page, parse(page))
    most = np.argsort(-data.targets.sum(axis=1), kind="stable")[:2]
    assert [s for s in srcs if s.startswith("label_maps_")] == [f"label_maps_test_{data.ids[i]}.png" for i in most]
    text = page.read_text()
    assert "Per-label maps" in text and "top-20% IoU" in text
    assert re.search(r"<td>mha</td><td>[0-9.]+</td><td>[0-9.]+</td><td>12</td>", text)  # one row per map family


CHROMIUM = shutil.which("chromium")
# Written into a copy of the page: after every image has loaded or failed, each <img> gets its natural
# width (0 when the file did not load), each section that is wider than its box is marked, and the body
# gets the number of images and the document's width.
PROBE = """<script>window.addEventListener('load', () => {
  for (const im of document.images) im.setAttribute('data-natural-width', im.naturalWidth);
  for (const s of document.querySelectorAll('section'))
    if (s.scrollWidth > s.clientWidth + 1) s.setAttribute('data-overflow', s.scrollWidth - s.clientWidth);
  document.body.setAttribute('data-page-width', document.documentElement.scrollWidth);
  document.body.setAttribute('data-checked', document.images.length);
});</script>"""


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", f"--user-data-dir={profile}"]
    return subprocess.run([*flags, *args], check=True, capture_output=True, text=True, timeout=120)


def rendered(report_dir: Path, tmp: Path, width: int) -> dict:
    """Load ``report_dir/index.html`` with the probe in headless chromium (``width`` px window): the
    natural width of each image by src, the ids of overflowing sections, the page width."""
    probe = report_dir / "probe.html"
    probe.write_text((report_dir / "index.html").read_text().replace("</body>", PROBE + "</body>"))
    dom = chromium(["--virtual-time-budget=10000", f"--window-size={width},2000", "--dump-dom", probe.as_uri()],
                   tmp / "profile").stdout
    probe.unlink()
    tags = Tags()
    tags.feed(dom)
    body = next(a for t, a in tags.tags if t == "body")
    assert "data-checked" in body, "the page's load event did not fire within the time budget"
    return {"checked": int(body["data-checked"]), "page_width": int(body["data-page-width"]),
            "widths": {a["src"]: int(a["data-natural-width"]) for t, a in tags.tags if t == "img"},
            "overflow": {a["id"]: a["data-overflow"] for t, a in tags.tags if t == "section" and "data-overflow" in a}}


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium for a headless render")
def test_report_renders_in_headless_chromium(fake_report, tmp_path):
    _, page, _ = fake_report
    shot = tmp_path / "shot.png"
    chromium([f"--screenshot={shot}", "--window-size=1200,3000", page.as_uri()], tmp_path / "profile")
    with Image.open(shot) as im:
        pixels = np.asarray(im.convert("RGB"), np.float64)
    assert pixels.shape[:2] == (3000, 1200)
    assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3)[::7], axis=0)) > 200, "blank screenshot"

    copy = tmp_path / "report"
    shutil.copytree(page.parent, copy)
    srcs = [a["src"] for t, a in parse(page).tags if t == "img"]
    for width in (1200, 720):  # a desktop window and a narrow one: wide tables scroll inside their section
        seen = rendered(copy, tmp_path, width)
        assert seen["checked"] == len(srcs) and sorted(seen["widths"]) == sorted(srcs)
        assert min(seen["widths"].values()) > 0, f"figures that did not load: {seen['widths']}"
        assert not seen["overflow"], f"sections wider than the page at {width} px: {seen['overflow']}"
        assert seen["page_width"] <= width, f"the page scrolls sideways at {width} px"

    # The check sees a missing figure: delete one and only that one reads as not loaded.
    (copy / "training.png").unlink()
    widths = rendered(copy, tmp_path, 1200)["widths"]
    assert widths.pop("training.png") == 0 and min(widths.values()) > 0


def test_report_shows_val_thresholds_temperature_and_the_checklist():
    from medattn.evaluation.report_sections import _chosen_on_val
    from medattn.metrics.checklist import checklist_melanoma
    from medattn.metrics.temperature import temperature_report
    from medattn.metrics.thresholds import class_thresholds, metrics_at_thresholds

    rng = np.random.default_rng(3)
    y = np.arange(60) % 3
    p = rng.dirichlet(np.ones(3), 60)
    chosen = class_thresholds(y, p, CLASSES, "youden")
    at = {**metrics_at_thresholds(y, p, CLASSES, chosen, "youden", "val"), "thresholds": chosen}
    cal = temperature_report(y, p, y, p, "val")
    criteria = rng.random((60, 7))
    checklist = checklist_melanoma(criteria, y == 0, np.array([2, 2, 2, 1, 1, 1, 1.0]), criteria_truth=criteria > 0.5)
    html = _chosen_on_val({"at_val_thresholds": at, "calibration": cal, "checklist": checklist}, CLASSES)
    assert "Each class vs rest at thresholds chosen on val (youden)" in html
    assert f"<td>{at['per_class'][CLASSES[1]]['f1']:.3f}</td>" in html and f"<td>{at['macro_f1']:.3f}</td>" in html
    assert f"T = {cal['temperature']:.3f}; ECE {cal['ece']:.3f} -> {cal['ece_scaled']:.3f}" in html
    assert "Melanoma by the 7-point checklist" in html
    assert f"<td>{checklist['expected_score']['auc']:.3f}</td>" in html
    assert _chosen_on_val({}, CLASSES) == ""
