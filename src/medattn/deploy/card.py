"""The model card of a run (MODEL_CARD.md), in the spirit of Mitchell et al., "Model Cards for Model
Reporting" (FAT* 2019, arXiv 1810.03993): model and method with its paper, data (sets, splits, class
counts, lesion grouping), intended and out-of-scope use, metrics with 95% intervals, calibration,
robustness and attention-vs-lesion agreement where the run measured them, known limitations, and the
command behind every number.

Everything comes from the run directory: ``config.yaml``, ``classes.json``, ``best.json``,
``eval_<split>.json``, ``predictions_<split>.csv``, ``robustness_*.json``, ``saliency_*.json``. Class
counts of evaluated splits come from their prediction CSVs; those of the training and validation splits
from reading the run's data (``read_data=False`` leaves them out and says so).
"""
from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import numpy as np

MITCHELL = ('Mitchell, Wu, Zaldivar, Barnes, Vasserman, Hutchinson, Spitzer, Raji & Gebru, "Model Cards for '
            'Model Reporting", FAT* 2019 (arXiv 1810.03993)')

METHODS: dict[str, tuple[str, str]] = {
    "baseline": ("the backbone, global average pooling, dropout and a linear classifier",
                 "no attention: the comparison point of the attention papers below"),
    "se": ("baseline + a squeeze-and-excitation block on the last feature map",
           'Hu, Shen & Sun, "Squeeze-and-Excitation Networks", CVPR 2018'),
    "cbam": ("baseline + CBAM (channel then spatial attention) on the last feature map",
             'Woo, Park, Lee & Kweon, "CBAM: Convolutional Block Attention Module", ECCV 2018'),
    "soft_attention": ("K spatial soft-attention maps on the last feature map and a max-pooled head",
                       'Datta, Shaikh, Srihari & Gao, "Soft-Attention Improves Skin Cancer Classification '
                       'Performance", iMIMIC workshop, MICCAI 2021 (LNCS, doi 10.1007/978-3-030-87444-5_2)'),
    "sibnet": ("saliency-guided training losses (class distinctiveness, spatial coherence) on a base model",
               'Mahapatra, Poellinger & Reyes, "Interpretability-guided inductive bias for deep learning based '
               'medical image classification and segmentation", Medical Image Analysis 81:102551, 2022'),
    "biigma": ("multi-head channel attention kept independent by an HSIC loss, a spatial map M from three "
               "feature levels, and background-vector shuffling during training",
               'Roy et al., "BIIGMA-Net: Background-Invariant Independence-Guided Multi-head Attention '
               'Network", MICCAI 2025'),
    "ibca": ("class-query attention with a Gaussian-mixture branch, an information bottleneck, contrastive "
             "alignment and a causal intervention: a reconstruction from the abstract (docs/ibca.md)",
             'Cui et al., "IBCA: Information Bottleneck-based Causal Attention for Multi-label Medical Image '
             'Recognition", MICCAI 2025 (arXiv 2508.08069; no full text or code public)'),
    "class_query": ("class-query multi-head attention over the feature map, one linear classifier per class",
                    "the IBCA-style model without its IBCA terms (decoder queries as in Query2Label)"),
}

DATASETS: dict[str, tuple[str, str]] = {
    "synthetic": ("medattn's procedural synthetic dermoscopy set (docs/synthetic.md): no patient data",
                  "every image is its own generated lesion, so no lesion is in two splits"),
    "synthetic_multilabel": ("medattn's procedural multi-label synthetic set (docs/synthetic.md): no patient data",
                             "every image is its own generated scene, so nothing is shared between splits"),
    "isic2017": ("ISIC 2017 Challenge, Part 3 (Codella et al., ISBI 2018)",
                 "the challenge's own training / validation / test sets, not re-split by medattn"),
    "isic2018": ("ISIC 2018 Task 3 (Codella et al. 2019; images of HAM10000, Tschandl et al. 2018)",
                 "the challenge's own split folders, not re-split by medattn"),
    "isic2019": ("ISIC 2019 training set (BCN20000, HAM10000 and MSK images)",
                 "split by medattn, stratified by class; grouped by lesion_id from ISIC_2019_Training_Metadata.csv "
                 "when present and group_by_lesion is true (the default), else by image"),
    "ham10000": ("HAM10000 (Tschandl, Rosendahl & Kittler, Scientific Data 2018)",
                 "split by medattn, stratified by dx and grouped by lesion_id: no lesion is in two splits"),
    "medmnist": ("MedMNIST v2 (Yang et al., Scientific Data 2023)", "the official splits of the .npz file"),
    "folder": ("images in one folder per class", "train/val/test folders where present, else a stratified split "
                                                 "by image (no lesion grouping)"),
    "csv": ("images listed in a CSV table", "split_col when given, else a stratified split grouped by group_col "
                                            "(by image when there is none)"),
}

LIMITATIONS = [
    "Not a medical device: it has not been cleared or approved by any regulator, and nothing here was "
    "tested prospectively or on patients.",
    "The numbers hold for images like the test split's (same source, device, resolution and class mix). "
    "Other clinics, dermoscopes, skin types, body sites or a different prevalence can change them.",
    "Metrics come from one trained run: the 95% intervals resample the test images, not the training "
    "(seeds of the same recipe vary too; docs/benchmarks.md shows by how much).",
    "Attention maps and CAMs show where the model's evidence lies, not that its reasoning is clinical; "
    "read them with the attention-vs-lesion numbers, where measured.",
    "Decisions are the argmax class (multi-label: probability >= 0.5); no threshold was tuned for a "
    "clinical operating point.",
]


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _num(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _splits(run_dir: Path, prefix: str) -> list[str]:
    order = {"test": 0, "val": 2}
    found = [p.stem.removeprefix(prefix) for p in run_dir.glob(f"{prefix}*") if p.suffix in (".json", ".csv")]
    return sorted(dict.fromkeys(found), key=lambda s: (order.get(s, 1), s))


def model_section(run_dir: Path, cfg: dict, class_names: list[str], task: str) -> str:
    from .version import model_version

    from ..config import Config
    from ..evaluation.report import selection

    m, t, d = cfg.get("model", {}), cfg.get("train", {}), cfg.get("data", {})
    what, paper = METHODS.get(m.get("name"), ("a registered medattn model", "see medattn models"))
    metric, epoch, value = selection(run_dir, Config.from_dict(cfg), task)
    options = ", ".join(f"{k}={v}" for k, v in (m.get("options") or {}).items()) or "defaults"
    pretrained = m.get("pretrained")
    return "\n".join([
        f"- **Model**: `{m.get('name')}` on the timm backbone `{m.get('backbone')}` (options: {options}): {what}.",
        f"- **Method paper**: {paper}.",
        f"- **Version**: `{model_version(run_dir)}` (run directory name and the first 12 hex digits of the "
        f"sha256 of `best.safetensors`).",
        f"- **Weights**: the epoch with the best validation {metric}"
        + (f" (epoch {epoch + 1}, {metric} = {_num(value)})" if epoch is not None else "") + "; backbone "
        + ("initialised from ImageNet weights" if pretrained not in (False, None, "false") else "trained from scratch")
        + f"; {t.get('epochs')} epochs, batch {t.get('batch_size')}, {t.get('optimizer')} lr {t.get('lr')}, "
          f"precision {t.get('precision')}, seed {cfg.get('seed')}.",
        f"- **Input**: an RGB image, resized whole to {d.get('image_size')} x {d.get('image_size')} px "
        f"(aspect ratio not kept); the model normalises it itself.",
        f"- **Output**: {task}: " + ("softmax probabilities over " if task == "multiclass" else
                                     "a sigmoid probability for each of ") + f"{len(class_names)} classes "
        + ", ".join(f"`{c}`" for c in class_names) + ".",
        "- **Code licence**: Apache-2.0 (medattn). The weights carry whatever terms the training data comes with.",
    ])


def intended_use_section(cfg: dict) -> str:
    synthetic = str(cfg.get("data", {}).get("format", "")).startswith("synthetic")
    lines = [
        "- **Intended use**: research on attention-guided classification of dermoscopy images: comparing "
        "methods, studying background shortcuts and where a model looks, building and testing pipelines.",
        "- **Intended users**: machine-learning researchers and engineers in medical imaging.",
        "- **Out of scope**: diagnosis, triage, screening or any other decision about a patient; use as or "
        "in a medical device; images of another kind than the training data (clinical photographs, "
        "histology, other dermoscopes or resolutions) without a new evaluation.",
    ]
    if synthetic:
        lines.append("- **This run was trained on synthetic images**: it is a demonstration and test object "
                     "and must not be used on real images at all.")
    return "\n".join(lines)


def class_counts_from_predictions(path: Path, class_names: list[str], task: str) -> tuple[int, list[int]]:
    """(images, labeled images per class) of a ``predictions_<split>.csv``."""
    from ..evaluation.report import read_predictions

    pred = read_predictions(path, class_names, task)
    onehot = pred.onehot[pred.labeled]
    return len(pred.ids), [int(v) for v in np.nansum(onehot, axis=0)]


def data_section(run_dir: Path, cfg: dict, class_names: list[str], task: str, read_data: bool) -> str:
    d = cfg.get("data", {})
    fmt = d.get("format")
    name, grouping = DATASETS.get(fmt, (f"data format {fmt}", "as the reader defines (docs/data.md)"))
    options = ", ".join(f"{k}={v}" for k, v in (d.get("options") or {}).items()) or "none"
    splits = [d.get("train_split", "train"), d.get("val_split", "val"), *d.get("test_splits", [])]
    rows = []
    for split in dict.fromkeys(splits):
        pred = run_dir / f"predictions_{split}.csv"
        if pred.is_file():
            n, counts = class_counts_from_predictions(pred, class_names, task)
        elif read_data:
            from ..config import Config
            from ..engine.data import read_split

            ds = read_split(Config.from_dict(cfg), split)
            n, counts = len(ds), [int(c) for c in ds.class_counts()]
        else:
            rows.append([split, "not counted (card made without reading the data)", *[""] * len(class_names)])
            continue
        role = "training" if split == splits[0] else "model selection" if split == splits[1] else "test"
        rows.append([f"{split} ({role})", str(n), *[str(c) for c in counts]])
    return "\n".join([
        f"- **Data set**: {name}; reader `{fmt}`, root `{d.get('root')}`, options: {options}.",
        f"- **Splits and lesion grouping**: {grouping}.",
        "", _table(["split", "images", *class_names], rows),
    ])


def metrics_section(run_dir: Path, task: str) -> str:
    from ..metrics.summary import HEADLINE

    names = list(HEADLINE[task])
    rows = []
    for split in _splits(run_dir, "eval_"):
        m = _read_json(run_dir / f"eval_{split}.json")
        ci = m.get("ci95", {})
        cells = []
        for n in names + (["isic2017.mean_auc"] if "isic2017" in m else []):
            v = m.get("isic2017", {}).get("mean_auc") if n == "isic2017.mean_auc" else m.get(n)
            cells.append(_num(v) + (f" [{_num(ci[n][0])}, {_num(ci[n][1])}]" if n in ci else ""))
        rows.append([split, *cells])
    if not rows:
        return "Not measured: the run has no `eval_<split>.json` (run `medattn evaluate RUN_DIR`)."
    extra = ["isic2017.mean_auc"] if any(len(r) > len(names) + 1 for r in rows) else []
    rows = [r + [""] * (len(names) + len(extra) + 1 - len(r)) for r in rows]
    return ("Point estimates on each evaluated split with 95% percentile-bootstrap intervals (resampling images, "
            "stratified by class) in brackets. Definitions as the ISIC challenge's (docs/metrics.md).\n\n"
            + _table(["split", *names, *extra], rows))


def calibration_section(run_dir: Path, class_names: list[str], task: str, n_boot: int = 1000) -> str:
    from ..evaluation.report import read_predictions
    from ..metrics.bootstrap import bootstrap_ci
    from ..metrics.calibration import expected_calibration_error

    rows = []
    for split in _splits(run_dir, "predictions_"):
        pred = read_predictions(run_dir / f"predictions_{split}.csv", class_names, task)
        lab = pred.labeled
        if not lab.any():
            continue
        onehot, probs = pred.onehot[lab], pred.probs[lab]
        if task == "multiclass":
            y, p = np.argmax(onehot, 1), probs
            conf, acc = float(p.max(1).mean()), float((np.argmax(p, 1) == y).mean())
        else:
            y, p = onehot.ravel(), probs.ravel()
            conf, acc = float(np.maximum(p, 1 - p).mean()), float(((p >= 0.5) == (y == 1)).mean())
        ece = expected_calibration_error(y, p)
        ci = bootstrap_ci(lambda t, q: {"ece": expected_calibration_error(t, q)}, y, p, n_boot=n_boot,
                          stratified=False)["ece"]
        rows.append([split, f"{ece:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]", f"{conf:.3f}", f"{acc:.3f}"])
    if not rows:
        return "Not measured: the run has no `predictions_<split>.csv`."
    what = "top-label" if task == "multiclass" else "per label, all labels pooled"
    return (f"Expected calibration error ({what}, 15 equal-width bins; Guo et al. 2017) with a 95% bootstrap "
            "interval; a model is calibrated when its mean confidence equals its accuracy.\n\n"
            + _table(["split", "ECE", "mean confidence", "accuracy"], rows))


def robustness_section(run_dir: Path) -> str:
    from ..evaluation.robustness import robustness_table

    parts = []
    for path in sorted(run_dir.glob("robustness*.json")):
        result = json.loads(path.read_text())
        parts.append(f"`{path.name}` ({result.get('n_images')} images of split `{result.get('split')}`): "
                     "headline metrics with the change against the clean images in brackets, and the share of "
                     f"predictions that flipped.\n\n{robustness_table(result)}")
        if result.get("background_note"):
            parts.append(f"Background conditions not measured: {result['background_note']}.")
    return "\n\n".join(parts) or "Not measured: run `medattn robustness RUN_DIR`."


def saliency_section(run_dir: Path) -> str:
    from ..metrics.saliency import summary_table

    parts = []
    for path in sorted(run_dir.glob("saliency*.json")):
        s = json.loads(path.read_text())
        parts.append(f"`{path.name}` ({s.get('n_scored')} images of split `{s.get('split')}` with lesion masks; maps "
                     f"of the {s.get('explain_class')} class): mean and 95% bootstrap interval.\n\n"
                     f"{summary_table(s['maps'])}")
    return "\n\n".join(parts) or "Not measured: run `medattn saliency RUN_DIR` (needs lesion masks)."


def limitations_section(cfg: dict) -> str:
    items = list(LIMITATIONS)
    fmt = cfg.get("data", {}).get("format")
    if fmt in ("isic2017", "isic2018", "isic2019", "ham10000"):
        items.append("The ISIC archive and HAM10000 images come mostly from fair-skinned patients (HAM10000: "
                     "Vienna and Queensland); performance on darker skin was not measured.")
    if fmt in ("synthetic", "synthetic_multilabel"):
        items.append("Trained and tested on synthetic images whose background artifacts are correlated with "
                     "the class by design: the numbers say nothing about real dermoscopy.")
    name = cfg.get("model", {}).get("name")
    if name == "ibca":
        items.append("The IBCA-style model is our reconstruction from an abstract, not the authors' method.")
    if name == "biigma":
        items.append("BIIGMA-Net's per-head maps prune channels against a threshold over the whole batch, so "
                     "they depend on the other images of a batch (its map M and its predictions do not).")
    return "\n".join(f"- {i}" for i in items)


def provenance_section(run_dir: Path, command: str | None) -> str:
    r = shlex.quote(str(run_dir))
    rows = [["weights, training curves", "`config.yaml`, `best.safetensors`, `metrics.jsonl`",
             f"`medattn train --config {r}/config.yaml --out NEW_RUN` (the run's resolved config)"]]
    for split in _splits(run_dir, "eval_"):
        rows.append([f"metrics, `{split}`", f"`eval_{split}.json`, `predictions_{split}.csv`",
                     f"written by the run's final evaluation; the same point estimates from `medattn evaluate {r} "
                     f"--split {split}` (intervals from its --bootstrap resamples)"])
    for path in sorted(run_dir.glob("robustness*.json")):
        res = json.loads(path.read_text())
        sigmas = ",".join(f"{n['sigma']:g}" for n in res.get("noise", []))
        arts = [k.removeprefix("artifact_") for k in (res.get("background") or {}) if k.startswith("artifact_")]
        arts = [a for a in arts if a != "all"]
        shift = (res.get("shift") or {}).get("split", "none")
        rows.append([f"robustness, `{res.get('split')}`", f"`{path.name}`",
                     f"`medattn robustness {r} --split {res.get('split')} --sigmas {sigmas} --artifacts "
                     f"{shlex.quote(','.join(arts))} --shifted-split {shift} --seed {res.get('seed')} --out "
                     f"{r}/{path.name}` (settings as the file records them)"])
    for path in sorted(run_dir.glob("saliency*.json")):
        s = json.loads(path.read_text())
        rows.append([f"attention vs lesion, `{s.get('split')}`", f"`{path.name}`",
                     f"`medattn saliency {r} --split {s.get('split')} --explain-class {s.get('explain_class')} "
                     f"--hull-threshold {s.get('hull_threshold')} --pointing-tolerance {s.get('pointing_tolerance')} "
                     f"--bootstrap {s.get('bootstrap')} --out {r}/{path.name}`"])
    rows.append(["data counts, calibration, this card", "`MODEL_CARD.md`", f"`{command or 'medattn card ' + r}`"])
    return _table(["numbers", "file", "command"], rows)


def build_card(run_dir: str | Path, read_data: bool = True, command: str | None = None) -> str:
    """The model card of ``run_dir`` as Markdown (see the module docstring)."""
    from .. import __version__
    from ..engine.run import read_run_classes, read_run_config

    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir).to_dict()  # the card reads the settings as the YAML mapping
    class_names, task = read_run_classes(run_dir)
    sections = [
        ("Model details", model_section(run_dir, cfg, class_names, task)),
        ("Intended use", intended_use_section(cfg)),
        ("Data", data_section(run_dir, cfg, class_names, task, read_data)),
        ("Metrics", metrics_section(run_dir, task)),
        ("Calibration", calibration_section(run_dir, class_names, task)),
        ("Robustness to noise and background shift", robustness_section(run_dir)),
        ("Attention vs lesion", saliency_section(run_dir)),
        ("Known limitations", limitations_section(cfg)),
        ("How every number was made", provenance_section(run_dir, command)),
    ]
    head = (f"# Model card: {run_dir.resolve().name}\n\n"
            f"_Written by medattn {__version__} on {time.strftime('%Y-%m-%d')} from the files of the run directory, "
            f"after {MITCHELL}._")
    return head + "\n\n" + "\n\n".join(f"## {title}\n\n{body}" for title, body in sections) + "\n"


def write_card(run_dir: str | Path, out: str | Path | None = None, *, overwrite: bool = False,
               read_data: bool = True, command: str | None = None) -> Path:
    """Write ``build_card`` to ``out`` (default ``RUN_DIR/MODEL_CARD.md``), atomically; an existing card
    is kept unless ``overwrite``."""
    from ..engine.checkpoint import atomic_write_text

    out = Path(out) if out is not None else Path(run_dir) / "MODEL_CARD.md"
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists (it may hold your edits); pass --overwrite to write a new one")
    atomic_write_text(out, build_card(run_dir, read_data, command))
    return out


def card_text(run_dir: str | Path) -> str:
    """``RUN_DIR/MODEL_CARD.md`` when there is one (it may carry edits), else a card made now without
    reading the training data."""
    path = Path(run_dir) / "MODEL_CARD.md"
    return path.read_text(encoding="utf-8") if path.is_file() else build_card(run_dir, read_data=False)
