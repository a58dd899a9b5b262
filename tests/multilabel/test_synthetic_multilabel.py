"""The multi-label synthetic set: layout, labels, per-class masks, determinism, artifact shift."""
import numpy as np
import pytest

from medattn.data import DataError, load_split
from medattn.data.synthetic import SHORTCUTS
from medattn.data.synthetic.multilabel import DEFAULT_CLASSES, generate_synthetic_multilabel


@pytest.fixture(scope="module")
def train():
    return generate_synthetic_multilabel(40, size=64, split="train", seed=3)


def test_shapes_types_and_per_class_masks(train):
    d = train
    k = len(DEFAULT_CLASSES)
    assert d.task == "multilabel" and d.class_names == list(DEFAULT_CLASSES)
    assert d.images.shape == (40, 64, 64, 3) and d.images.dtype == np.uint8
    assert d.targets.shape == (40, k) and d.targets.dtype == np.float32
    assert set(np.unique(d.targets)) <= {0.0, 1.0}
    assert d.masks.shape == (40, k, 64, 64) and d.masks.dtype == np.uint8
    assert set(np.unique(d.masks)) <= {0, 255}
    assert (d.targets.sum(axis=1) >= 1).all(), "every image shows at least one lesion"
    assert (d.targets.sum(axis=1) >= 2).any(), "some images show several lesion types"
    area = (d.masks > 0).sum(axis=(2, 3))
    np.testing.assert_array_equal(area > 0, d.targets == 1)  # a mask exactly where the label is
    assert ((d.masks > 0).sum(axis=1) <= 1).all(), "visible masks of different classes do not overlap"
    assert len(set(d.ids)) == 40 and d.ids[0] == "SYML_TR_0000000"
    sub = d.subset(np.array([2, 5]))
    np.testing.assert_array_equal(sub.masks, d.masks[[2, 5]])


def test_lesions_are_drawn_where_the_masks_are(train):
    # a lesion differs from the skin around it: within an image, mean colour inside vs outside
    d = train
    diffs = []
    for i in range(len(d)):
        inside = d.masks[i].max(axis=0) > 0
        diffs.append(np.abs(d.images[i][inside].mean(0) - d.images[i][~inside].mean(0)).sum())
    assert np.median(diffs) > 40


def test_deterministic_and_independent_of_n_and_start(train):
    again = generate_synthetic_multilabel(5, size=64, split="train", seed=3, start=30)
    np.testing.assert_array_equal(again.images, train.images[30:35])
    np.testing.assert_array_equal(again.masks, train.masks[30:35])
    other = generate_synthetic_multilabel(5, size=64, split="train", seed=4)
    assert not np.array_equal(other.images, train.images[:5])


def test_shortcuts_follow_labels_in_test_and_are_reversed_in_test_shifted():
    kw = dict(size=32, seed=0, spurious=0.9, artifact_rate=0.05, lesion_scale=0.6)
    test = generate_synthetic_multilabel(90, split="test", **kw)
    shifted = generate_synthetic_multilabel(90, split="test_shifted", **kw)
    np.testing.assert_array_equal(test.targets, shifted.targets)
    np.testing.assert_array_equal(test.masks, shifted.masks)
    for j, cls in enumerate(test.class_names):
        present = test.targets[:, j] == 1
        art = SHORTCUTS[cls]
        in_dist, out = test.extra["artifacts"][art], shifted.extra["artifacts"][art]
        assert in_dist[present].mean() > 0.75 and in_dist[~present].mean() < 0.15, cls
        assert out[present].mean() < 0.15 and out[~present].mean() > 0.75, cls


def test_label_rate_controls_prevalence():
    d = generate_synthetic_multilabel(120, size=32, split="val", label_rate=[0.9, 0.1, 0.1, 0.1], artifacts=False)
    prevalence = d.targets.mean(axis=0)
    assert prevalence[0] > 0.8 and (prevalence[1:] < 0.25).all()
    assert not any(f.any() for f in d.extra["artifacts"].values())


def test_reader_is_registered_and_checks_options():
    d = load_split("synthetic_multilabel", None, "test_shifted", 48, n_test=3, seed=1)
    assert d.images.shape == (3, 48, 48, 3) and d.ids[0] == "SYML_TS_0000000" and d.extra["shifted"]
    with pytest.raises(DataError, match="synthetic_multilabel: unknown option 'n_tain' \\(0 more\\)"):
        load_split("synthetic_multilabel", None, "train", 32, n_tain=3)
    with pytest.raises(DataError, match="unknown split 'holdout'"):
        load_split("synthetic_multilabel", None, "holdout", 32)
    named = load_split("synthetic_multilabel", None, "val", 32, n_val=2, classes="nevus, melanoma")
    assert named.class_names == ["nevus", "melanoma"]
    with pytest.raises(DataError, match="unknown class 'wart'"):
        generate_synthetic_multilabel(2, size=32, class_names=["nevus", "wart"])
    with pytest.raises(DataError, match="label_rate must be one number or 4 numbers in \\(0, 1\\]"):
        generate_synthetic_multilabel(2, size=32, label_rate=[0.5, 0.5])
    with pytest.raises(DataError, match="classes must be 2 to 4 distinct names"):
        generate_synthetic_multilabel(2, size=32, class_names=["nevus", "nevus"])
