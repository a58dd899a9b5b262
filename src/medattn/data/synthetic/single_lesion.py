"""The single-lesion synthetic dermoscopy set (reader ``synthetic``): generation and reader.

Procedural dermoscopy-like RGB images whose class is carried by the lesion (shape, colour, texture:
`lesions`), with a lesion mask for every image and background artifacts
(`artifacts`) whose association with the class is a knob:

- every class has a *shortcut* artifact (default: nevus -> colour sticker, melanoma -> ruler,
  seborrheic keratosis -> bubbles, basal cell carcinoma -> ink; arbitrary choices);
- in-distribution splits (train, val, test): an image of class k carries its shortcut with
  probability ``spurious`` and each other shortcut artifact with probability ``artifact_rate``;
  hair and the dermoscope vignette appear independently of the class;
- ``shifted`` splits (test_shifted): ``shift_mode="reversed"`` gives an image of class k the shortcut
  of another class (chosen at random) with probability ``spurious`` and its own only at
  ``artifact_rate``; ``"random"`` draws every shortcut independently of the class at its train
  frequency. test_shifted shows the same lesions on the same skin as test, so the gap between the
  two is due to the artifacts alone.

Determinism: image ``index`` of ``split`` depends only on (seed, split, index) and the options, never
on ``n`` or on chunking: every image draws from its own generators, seeded from those numbers.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .._registry import DataError, register_reader
from ..dataset import ImageDataset
from .artifacts import ARTIFACTS, paint_artifact
from .lesions import LESION_RENDERERS, lesion_layer, render_background, render_lesion

__all__ = ["ARTIFACTS", "CLASS_PROPORTIONS", "LESION_RENDERERS", "RANDOM_ARTIFACT_RATES", "SHORTCUTS", "SPLITS",
           "generate_synthetic", "paint_artifact", "plan_synthetic", "read_synthetic", "render_background",
           "render_lesion"]

CLASS_PROPORTIONS: dict[str, float] = {"nevus": 0.55, "melanoma": 0.2, "seborrheic_keratosis": 0.15,
                                       "basal_cell_carcinoma": 0.1}
"""Default classes and their expected shares (imbalanced, like real dermoscopy collections)."""

SHORTCUTS: dict[str, str] = {"nevus": "patch", "melanoma": "ruler", "seborrheic_keratosis": "bubbles",
                             "basal_cell_carcinoma": "ink"}
"""Default shortcut artifact of each class."""

RANDOM_ARTIFACT_RATES: dict[str, float] = {"hair": 0.35, "vignette": 0.3}
"""Artifacts that appear independently of the class, with these probabilities (when they are not a
class's shortcut)."""

SPLITS: dict[str, str] = {"train": "TR", "val": "VA", "test": "TE", "test_shifted": "TS"}
"""Split names and the id prefix of their images (``SYN_TR_0000000``)."""


def _split_key(split: str) -> int:
    return zlib.crc32(split.encode())


def _rng(*key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(key))))


def _resolve_classes(class_names, proportions, shortcuts) -> tuple[list[str], np.ndarray, dict[str, str]]:
    names = list(class_names) if class_names is not None else list(CLASS_PROPORTIONS)
    unknown = [c for c in names if c not in LESION_RENDERERS]
    if unknown:
        raise DataError(f"synthetic: unknown class {unknown[0]!r} ({len(unknown) - 1} more); "
                        f"known: {', '.join(LESION_RENDERERS)}")
    if len(set(names)) != len(names) or len(names) < 2:
        raise DataError(f"synthetic: classes must be at least 2 distinct names, got {names}")
    if proportions is None:
        p = np.array([CLASS_PROPORTIONS[c] for c in names], np.float64)
    else:
        p = np.asarray(proportions, np.float64)
        if p.shape != (len(names),) or not np.all(np.isfinite(p)) or (p <= 0).any():
            raise DataError(f"synthetic: proportions must be {len(names)} positive numbers (one per class), got {list(proportions)}")
    cuts = {c: SHORTCUTS[c] for c in names}
    cuts.update(shortcuts or {})
    bad = [a for a in cuts.values() if a not in ARTIFACTS]
    if bad or len(set(cuts.values())) != len(cuts) or set(cuts) != set(names):
        raise DataError(f"synthetic: shortcuts must map each class to a distinct artifact of {ARTIFACTS}, got {cuts}")
    return names, p / p.sum(), cuts


@dataclass(frozen=True)
class _Spec:
    """Validated generation options of one split."""

    names: list[str]
    probs: np.ndarray
    shortcuts: dict[str, str]
    shortcut_of: list[int]  # per artifact in ARTIFACTS order: the class it is the shortcut of, or -1
    spurious: float
    artifact_rate: float
    seed: int
    split: str
    shifted: bool
    shift_mode: str

    @property
    def scene_key(self) -> int:  # test_shifted draws test's lesions and skin
        return _split_key("test" if self.split == "test_shifted" else self.split)

    @property
    def plan_key(self) -> int:
        return _split_key(self.split)


def _spec(spurious, seed, split, class_names, proportions, shifted, artifact_rate, shift_mode, shortcuts) -> _Spec:
    if split not in SPLITS:
        raise DataError(f"synthetic: unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if not 0.0 <= spurious <= 1.0 or not 0.0 <= artifact_rate <= 1.0:
        raise DataError(f"synthetic: spurious and artifact_rate must be in [0, 1], got {spurious} and {artifact_rate}")
    if int(seed) < 0:
        raise DataError(f"synthetic: seed must be a non-negative integer, got {seed}")
    if shift_mode not in ("reversed", "random"):
        raise DataError(f"synthetic: shift_mode must be 'reversed' or 'random', got {shift_mode!r}")
    names, probs, cuts = _resolve_classes(class_names, proportions, shortcuts)
    owner = {a: names.index(c) for c, a in cuts.items()}
    return _Spec(names, probs, cuts, [owner.get(a, -1) for a in ARTIFACTS], float(spurious), float(artifact_rate),
                 int(seed), split, split == "test_shifted" if shifted is None else bool(shifted), shift_mode)


def artifacts_to_paint(reader: str, artifacts: bool | Sequence[str]) -> set[str]:
    """The names of the ``artifacts`` option (True: all of `ARTIFACTS`, False: none), checked."""
    paint = set(ARTIFACTS) if artifacts is True else set() if artifacts is False else set(artifacts)
    if not paint <= set(ARTIFACTS):
        raise DataError(f"{reader}: unknown artifact(s) {sorted(paint - set(ARTIFACTS))}; known: {', '.join(ARTIFACTS)}")
    return paint


def _plan_one(spec: _Spec, index: int) -> tuple[int, np.ndarray, np.random.Generator]:
    """(class, which artifacts are present (bool per `ARTIFACTS`), the scene generator) of an image."""
    scene = _rng(spec.seed, spec.scene_key, index, 0)
    k = len(spec.names)
    cls = min(int(np.searchsorted(np.cumsum(spec.probs), scene.uniform(), side="right")), k - 1)
    u = _rng(spec.seed, spec.plan_key, index, 1).uniform(size=len(ARTIFACTS) + 1)
    wrong = (cls + 1 + int(u[0] * (k - 1))) % k  # a uniformly chosen other class
    p = np.empty(len(ARTIFACTS))
    for a, name in enumerate(ARTIFACTS):
        owner = spec.shortcut_of[a]
        if owner < 0:
            p[a] = RANDOM_ARTIFACT_RATES.get(name, spec.artifact_rate)
        elif not spec.shifted:
            p[a] = spec.spurious if owner == cls else spec.artifact_rate
        elif spec.shift_mode == "reversed":
            p[a] = spec.spurious if owner == wrong else spec.artifact_rate
        else:  # "random": the artifact's train frequency, whatever the class
            p[a] = spec.probs[owner] * spec.spurious + (1 - spec.probs[owner]) * spec.artifact_rate
    return cls, u[1:] < p, scene


def _render_one(spec: _Spec, index: int, size: int, paint: set[str]) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """(image size x size x 3 uint8, mask size x size bool, class, painted flags) of image ``index``."""
    cls, present, scene = _plan_one(spec, index)
    image = render_background(scene, size)  # H x W x 3 view of a channel-first array
    chw = image.transpose(2, 0, 1)
    rgb, alpha, (y0, y1, x0, x1) = lesion_layer(scene, spec.names[cls], size)
    box = chw[:, y0:y1, x0:x1]
    box += (rgb - box) * alpha
    mask = np.zeros((size, size), bool)
    mask[y0:y1, x0:x1] = alpha >= 0.5
    painted = present & np.array([name in paint for name in ARTIFACTS])
    for a in np.flatnonzero(painted):
        paint_artifact(_rng(spec.seed, spec.plan_key, index, 2, int(a)), image, mask, ARTIFACTS[a])
    chw *= scene.uniform(0.9, 1.1) * _camera_gain(scene)[:, None, None]  # exposure, white balance
    np.clip(chw, 0.0, 1.0, out=chw)
    return (chw * 255.0 + 0.5).astype(np.uint8).transpose(1, 2, 0), mask, cls, painted


def plan_synthetic(n: int, spurious: float = 0.9, seed: int = 0, split: str = "train",
                   class_names: Sequence[str] | None = None, proportions: Sequence[float] | None = None,
                   shifted: bool | None = None, *, start: int = 0, artifact_rate: float = 0.05,
                   shift_mode: str = "reversed", shortcuts: dict[str, str] | None = None
                   ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The labels and artifact flags `generate_synthetic` gives images ``start .. start + n - 1``
    (same arguments), without drawing anything: (targets (n,) int64, {artifact: (n,) bool})."""
    spec = _spec(spurious, seed, split, class_names, proportions, shifted, artifact_rate, shift_mode, shortcuts)
    targets = np.empty(int(n), np.int64)
    flags = np.zeros((len(ARTIFACTS), int(n)), bool)
    for i in range(int(n)):
        targets[i], flags[:, i], _ = _plan_one(spec, int(start) + i)
    return targets, {name: flags[a] for a, name in enumerate(ARTIFACTS)}


def generate_synthetic(n: int, size: int = 128, spurious: float = 0.9, seed: int = 0, split: str = "train",
                       class_names: Sequence[str] | None = None, proportions: Sequence[float] | None = None,
                       shifted: bool | None = None, *, start: int = 0, artifact_rate: float = 0.05,
                       shift_mode: str = "reversed", shortcuts: dict[str, str] | None = None,
                       artifacts: bool | Sequence[str] = True) -> ImageDataset:
    """Images ``start .. start + n - 1`` of a split of the synthetic dermoscopy set.

    Args:
        n: number of images; size: side in pixels (>= 16).
        spurious: P(an image carries its class's shortcut artifact), in [0, 1].
        seed: non-negative integer; split: one of `SPLITS` (enters the seed of every image).
        class_names, proportions: classes (keys of `LESION_RENDERERS`) and their expected shares
            (default `CLASS_PROPORTIONS`); labels are drawn per image, so counts are multinomial.
        shifted: break the artifact-class association (default: ``split == "test_shifted"``).
        artifact_rate: P(an image carries a shortcut artifact that is not its class's).
        shift_mode: "reversed" or "random" (see the module docstring).
        shortcuts: class -> artifact overrides of `SHORTCUTS`.
        artifacts: True (paint all), False (none) or the names to paint; the images are otherwise
            identical, and ``extra["artifacts"]`` flags only what was painted.

    Returns an `ImageDataset`: images n x size x size x 3 uint8, targets (n,) int64, ids
    ``SYN_<prefix>_<index:07d>``, masks n x size x size uint8 (0/255), and ``extra`` with
    ``artifacts`` ({name: (n,) bool}), ``shortcuts`` ({class: artifact}), ``spurious``, ``shifted``.
    """
    spec = _spec(spurious, seed, split, class_names, proportions, shifted, artifact_rate, shift_mode, shortcuts)
    if int(size) < 16 or int(n) < 0 or int(start) < 0:
        raise DataError(f"synthetic: need size >= 16 and non-negative n and start; got {size}, {n}, {start}")
    paint = artifacts_to_paint("synthetic", artifacts)
    n, size, start = int(n), int(size), int(start)
    images = np.empty((n, size, size, 3), np.uint8)
    masks = np.empty((n, size, size), np.uint8)
    targets = np.empty(n, np.int64)
    flags = np.zeros((len(ARTIFACTS), n), bool)
    for i in range(n):
        images[i], mask, targets[i], flags[:, i] = _render_one(spec, start + i, size, paint)
        masks[i] = mask * np.uint8(255)
    prefix = SPLITS[split]
    return ImageDataset(
        images=images, targets=targets, class_names=spec.names,
        ids=[f"SYN_{prefix}_{start + i:07d}" for i in range(n)], masks=masks,
        source=f"synthetic(split={split}, seed={spec.seed}, spurious={spec.spurious})",
        extra={"artifacts": {name: flags[a] for a, name in enumerate(ARTIFACTS)}, "shortcuts": dict(spec.shortcuts),
               "proportions": spec.probs.tolist(), "spurious": spec.spurious, "shifted": spec.shifted})


def _camera_gain(rng: np.random.Generator) -> np.ndarray:
    """Per-channel white balance of the dermoscope: neutral, bluish or warm (3,) float32."""
    kind = rng.uniform()
    gain = (0.84, 0.95, 1.13) if kind < 0.3 else (1.05, 0.97, 0.9) if kind < 0.5 else (1.0, 1.0, 1.0)
    return (np.array(gain) * rng.uniform(0.96, 1.04, 3)).astype(np.float32)


_READER_OPTIONS = {"n_train", "n_val", "n_test", "spurious", "seed", "classes", "proportions", "artifact_rate",
                   "shift_mode", "shortcuts", "artifacts"}


def reader_arguments(reader: str, split: str, options: dict, allowed: set[str]) -> tuple[int, list[str] | None]:
    """Checks shared by the synthetic readers; returns (images in ``split``, class names or None).

    ``classes`` may be a list or a comma-separated string (as on the command line)."""
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise DataError(f"{reader}: unknown option {unknown[0]!r} ({len(unknown) - 1} more); "
                        f"known: {', '.join(sorted(allowed))}")
    if split not in SPLITS:
        raise DataError(f"{reader}: unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    n = {"train": options.get("n_train", 1200), "val": options.get("n_val", 300)}.get(split, options.get("n_test", 600))
    classes = options.get("classes")
    if isinstance(classes, str):
        classes = [c.strip() for c in classes.split(",")]
    return int(n), classes


@register_reader("synthetic")
def read_synthetic(root: str | None, split: str, image_size: int | None, **options) -> ImageDataset:
    """Generate one split in memory (``root`` is ignored). Options: n_train (1200), n_val (300),
    n_test (600, also the size of test_shifted), spurious (0.9), seed (0), classes, proportions,
    artifact_rate (0.05), shift_mode ("reversed"), shortcuts, artifacts; size = image_size or 128."""
    n, classes = reader_arguments("synthetic", split, options, _READER_OPTIONS)
    kwargs = {k: options[k] for k in ("artifact_rate", "shift_mode", "shortcuts", "artifacts") if k in options}
    return generate_synthetic(n, size=int(image_size or 128), spurious=float(options.get("spurious", 0.9)),
                              seed=int(options.get("seed", 0)), split=split, class_names=classes,
                              proportions=options.get("proportions"), **kwargs)
