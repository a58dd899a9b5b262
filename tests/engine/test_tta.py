"""Test-time augmentation: the 8 dihedral views and the averaged probabilities."""
import numpy as np
import pytest
import torch
from torch import nn

from medattn.engine.inference import dihedral, predict_proba
from medattn.models import MedAttnModel


class PixelLinear(MedAttnModel):
    """Logits = mean over pixels of a per-pixel linear map (invariant to rotations and flips) plus,
    optionally, a term that reads the top-left quarter (not invariant)."""

    def __init__(self, orientation_term: bool):
        super().__init__(num_classes=3)
        torch.manual_seed(0)
        self.lin = nn.Conv2d(3, 3, 1)
        self.corner = nn.Linear(3, 3) if orientation_term else None

    def forward(self, x):
        logits = self.lin(x).mean(dim=(2, 3))
        if self.corner is not None:
            h, w = x.shape[2] // 2, x.shape[3] // 2
            logits = logits + 5 * self.corner(x[:, :, :h, :w].mean(dim=(2, 3)))
        return logits


def test_dihedral_views_are_the_8_distinct_symmetries():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    views = [dihedral(x, k) for k in range(8)]
    assert len({tuple(v.flatten().tolist()) for v in views}) == 8
    assert torch.equal(views[0], x) and torch.equal(views[4], x.flip(3)) and torch.equal(views[1], x.rot90(1, (2, 3)))


def test_tta_averages_the_views_and_leaves_invariant_models_unchanged():
    images = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    invariant = PixelLinear(orientation_term=False)
    plain = predict_proba(invariant, images, channels_last=False)
    np.testing.assert_allclose(predict_proba(invariant, images, tta="dihedral", channels_last=False), plain, atol=1e-6)
    model = PixelLinear(orientation_term=True)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        manual = torch.stack([torch.softmax(model(dihedral(x, k)), 1) for k in range(8)]).mean(0).double().numpy()
        flip = torch.stack([torch.softmax(model(dihedral(x, k)), 1) for k in (0, 4)]).mean(0).double().numpy()
    np.testing.assert_allclose(predict_proba(model, images, tta="dihedral", channels_last=False), manual, atol=1e-6)
    np.testing.assert_allclose(predict_proba(model, images, tta="flip", channels_last=False), flip, atol=1e-6)
    assert not np.allclose(manual, predict_proba(model, images, channels_last=False), atol=1e-3)
    with pytest.raises(ValueError, match="tta must be one of none, flip, dihedral"):
        predict_proba(model, images, tta="rot")
