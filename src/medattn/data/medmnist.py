"""`medmnist` reader: the ``.npz`` files of MedMNIST (keys ``<split>_images``, ``<split>_labels``)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ._common import Problems, check_options, empty_classes
from ._registry import DataError, register_reader
from .dataset import ImageDataset
from .io import resize_images

_ORGAN = ["bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver", "lung-left",
          "lung-right", "pancreas", "spleen"]
# Label names of the 2D MedMNIST v2 sets, as listed in INFO of medmnist/info.py (MedMNIST v2.1,
# github.com/MedMNIST/MedMNIST). chestmnist is multi-label, the others multi-class.
MEDMNIST_CLASSES: dict[str, list[str]] = {
    "pathmnist": ["adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle", "normal colon mucosa",
                  "cancer-associated stroma", "colorectal adenocarcinoma epithelium"],
    "chestmnist": ["atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule", "pneumonia",
                   "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis", "pleural", "hernia"],
    "dermamnist": ["actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma",
                   "benign keratosis-like lesions", "dermatofibroma", "melanoma", "melanocytic nevi",
                   "vascular lesions"],
    "octmnist": ["choroidal neovascularization", "diabetic macular edema", "drusen", "normal"],
    "pneumoniamnist": ["normal", "pneumonia"],
    "retinamnist": ["0", "1", "2", "3", "4"],
    "breastmnist": ["malignant", "normal, benign"],
    "bloodmnist": ["basophil", "eosinophil", "erythroblast",
                   "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)", "lymphocyte", "monocyte",
                   "neutrophil", "platelet"],
    "tissuemnist": ["Collecting Duct, Connecting Tubule", "Distal Convoluted Tubule", "Glomerular endothelial cells",
                    "Interstitial endothelial cells", "Leukocytes", "Podocytes", "Proximal Tubule Segments",
                    "Thick Ascending Limb"],
    "organamnist": _ORGAN,
    "organcmnist": _ORGAN,
    "organsmnist": _ORGAN,
}


def npz_path(root: str | None, options: dict) -> Path:
    """The ``.npz``: option ``npz``, else ``root`` itself, else the only ``.npz`` in folder ``root``."""
    p = Path(options.get("npz") or root or "").expanduser()
    if p.is_dir():
        found = sorted(p.glob("*.npz"))
        if len(found) != 1:
            raise DataError(f"medmnist: {p} holds {len(found)} .npz files; name one with option npz")
        p = found[0]
    if not p.is_file():
        raise DataError(f"medmnist: no .npz file at {p}")
    return p


def flag_of(path: Path) -> str:
    """``dermamnist_128.npz`` -> ``dermamnist``."""
    return re.sub(r"_\d+$", "", path.stem.lower())


def _as_rgb(images: np.ndarray, key: str) -> np.ndarray:
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim == 3:
        images = np.repeat(images[..., None], 3, axis=-1)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(f"medmnist: {key} has shape {images.shape}; expected N x H x W, N x H x W x 1 or N x H x W x 3")
    if images.dtype == np.uint8:
        return images
    if np.issubdtype(images.dtype, np.integer) and images.size and images.min() >= 0 and images.max() <= 255:
        return images.astype(np.uint8)
    if np.issubdtype(images.dtype, np.floating) and images.size and images.min() >= 0 and images.max() <= 1:
        return np.rint(images * 255).astype(np.uint8)
    raise DataError(f"medmnist: {key} is {images.dtype} outside 0..255 (or 0..1 for floats); expected uint8")


@register_reader("medmnist")
def read_medmnist(root: str | None, split: str, image_size: int | None, **options) -> ImageDataset:
    """MedMNIST ``.npz`` of any size (28..224), 1 or 3 channels (grey is repeated to RGB).

    Labels (N, 1) are multi-class, (N, K > 1) multi-label, unless option ``task`` says otherwise
    (multiclass with (N, K) labels means one-hot rows). Class names: option ``class_names``, else
    `MEDMNIST_CLASSES` by the file's flag (``dermamnist_128.npz`` -> dermamnist), else class_0, ...
    Ids are ``<split>_<index>``. ``image_size`` resizes (bilinear); None keeps the stored size.
    """
    check_options("medmnist", options, ("npz", "class_names", "task"))
    path = npz_path(root, options)
    with np.load(path, allow_pickle=False) as z:
        splits = sorted(k[: -len("_images")] for k in z.files if k.endswith("_images"))
        if split not in splits or f"{split}_labels" not in z.files:
            raise DataError(f"medmnist: {path} has no {split}_images / {split}_labels (splits: {', '.join(splits)})")
        images = _as_rgb(z[f"{split}_images"], f"{split}_images")
        labels = np.asarray(z[f"{split}_labels"])
        all_labels = [np.asarray(z[f"{s}_labels"]) for s in splits if f"{s}_labels" in z.files]
    key = f"{split}_labels"
    if len(labels) != len(images):
        raise DataError(f"medmnist: {path}: {len(images)} {split}_images but {len(labels)} {key}")
    labels = labels.reshape(len(labels), -1)
    task = options.get("task") or ("multilabel" if labels.shape[1] > 1 else "multiclass")
    if task not in ("multiclass", "multilabel"):
        raise DataError(f"medmnist: option task must be multiclass or multilabel, got {task!r}")
    problems = Problems(path)
    if task == "multiclass" and labels.shape[1] > 1:
        pos = (labels == 1).sum(axis=1)
        for i in np.flatnonzero(pos != 1):
            problems.add(f"one-hot row of {key} without exactly one positive", f"row {i}: {pos[i]} positives")
        targets = labels.argmax(axis=1).astype(np.int64)
        k = labels.shape[1]
    elif task == "multiclass":
        targets = labels[:, 0].astype(np.int64)
        k = int(max(int(a.max()) for a in all_labels if a.size)) + 1 if any(a.size for a in all_labels) else 0
    else:
        bad = np.flatnonzero(~np.isin(labels, (0, 1)).all(axis=1))
        for i in bad:
            problems.add(f"{key} value is not 0 or 1", f"row {i}: {labels[i].tolist()}")
        targets = labels.astype(np.float32)
        k = labels.shape[1]
    names = options.get("class_names") or MEDMNIST_CLASSES.get(flag_of(path)) or [f"class_{i}" for i in range(k)]
    names = [str(n) for n in names]
    if task == "multiclass":
        for i in np.flatnonzero((targets < 0) | (targets >= len(names))):
            problems.add(f"{key} outside 0..{len(names) - 1} (classes: {len(names)})", f"row {i}: {targets[i]}")
    elif labels.shape[1] != len(names):
        problems.add("number of class names differs from the label columns", f"{len(names)} names, {labels.shape[1]} columns")
    if split == "train" and not problems:
        for c in empty_classes(targets, names, task):
            problems.add("class with no training image", c)
    problems.raise_if_any()
    if image_size:
        images = resize_images(images, int(image_size), options.get("num_workers"))
    return ImageDataset(images=np.ascontiguousarray(images), targets=targets, class_names=names,
                        ids=[f"{split}_{i}" for i in range(len(images))], task=task, source=str(path),
                        extra={"split": split})
