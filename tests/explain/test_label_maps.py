"""Per-label map stacks and their pairwise distinctness (medattn.explain.label_maps)."""
import numpy as np
import pytest
import torch

import medattn
from medattn.explain.label_maps import label_map_distinctness, label_map_stack, pairwise_distinctness
from medattn.explain.maps import Explanation


def _blob(r: int, c: int, size: int = 32) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / 20.0)


def test_identical_maps_are_not_distinct():
    m = _blob(10, 10)
    out = pairwise_distinctness(np.stack([m, 2 * m, m + 0.1]))
    assert out["correlation"] == pytest.approx(1.0)
    assert out["top_iou"] == pytest.approx(1.0)
    assert out["pairs"] == 3


def test_maps_on_different_places_are_distinct():
    out = pairwise_distinctness(np.stack([_blob(5, 5), _blob(26, 26), _blob(5, 26)]), top_fraction=0.05)
    assert out["top_iou"] == 0.0
    assert out["correlation"] < 0.0  # each blob sits where the others are low


def test_top_iou_counts_the_shared_part_of_the_top_regions():
    a = np.zeros((10, 10)); a[:, :2] = 1.0                   # top 20 %: columns 0-1
    b = np.zeros((10, 10)); b[:, 1:3] = 1.0                  # top 20 %: columns 1-2
    assert pairwise_distinctness(np.stack([a, b]))["top_iou"] == pytest.approx(10 / 30)


def test_constant_maps_are_left_out_and_bad_shapes_refused():
    out = pairwise_distinctness(np.stack([_blob(5, 5), np.zeros((32, 32)), _blob(5, 6)]))
    assert out["pairs"] == 1
    assert np.isnan(pairwise_distinctness(np.zeros((2, 4, 4)))["correlation"])
    with pytest.raises(ValueError, match="K x H x W with K >= 2"):
        pairwise_distinctness(np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match="top_fraction"):
        pairwise_distinctness(np.zeros((2, 4, 4)), top_fraction=1.0)


def test_label_map_stack_groups_complete_families_only():
    names = ["a", "b"]
    maps = {"attn/mha_0": np.zeros((4, 4)), "attn/mha_1": np.ones((4, 4)), "attn/gm_0": np.zeros((4, 4)),
            "gradcam/b": np.full((4, 4), 0.5), "gradcam/a": np.full((4, 4), 0.25), "attn/M": np.zeros((4, 4))}
    e = Explanation("x", np.zeros((4, 4, 3), np.uint8), np.array([0.5, 0.5]), [0, 1], maps)
    stacks = label_map_stack(e, names)
    assert set(stacks) == {"mha", "gradcam"}  # gm lacks label 1; M is not per label
    assert stacks["gradcam"][:, 0, 0].tolist() == [0.25, 0.5]
    assert stacks["mha"].shape == (2, 4, 4) and stacks["mha"][1].max() == 1.0


def test_label_map_distinctness_of_a_class_query_model():
    torch.manual_seed(0)
    model = medattn.create_model("class_query", backbone="resnet10t", pretrained=False, num_classes=3).eval()
    images = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    out = label_map_distinctness(model, images, ["a", "b", "c"], batch_size=2)
    assert set(out) == {"gradcam", "mha"}
    assert out["mha"]["n_images"] == 3  # attention maps are never constant
    assert -1.0 <= out["mha"]["correlation"] < 1.0 and 0.0 < out["mha"]["top_iou"] < 1.0
    assert out["gradcam"]["n_images"] <= 3  # an untrained label's Grad-CAM can be all zero (left out)
