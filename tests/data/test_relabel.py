"""Cross-dataset scoring: another data set's classes mapped to the model's, left-out images counted."""
import numpy as np
import pytest

from medattn.data.dataset import ImageDataset
from medattn.data.relabel import parse_class_map, relabel
from medattn.errors import ConfigError

HAM = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
ISIC17 = ["melanoma", "seborrheic_keratosis", "nevus"]


def _ham():
    targets = np.array([4, 2, 5, 5, 0, 6, -1, 4])
    return ImageDataset(np.zeros((8, 4, 4, 3), np.uint8), targets, HAM, [f"i{k}" for k in range(8)])


def test_three_classes_mapped_and_the_others_left_out_and_counted():
    out, left = relabel(_ham(), parse_class_map("mel=melanoma, bkl=seborrheic_keratosis, nv=nevus"), ISIC17)
    assert out.class_names == ISIC17 and out.ids == ["i0", "i1", "i2", "i3", "i6", "i7"]
    assert out.targets.tolist() == [0, 1, 2, 2, -1, 0]  # the unlabeled image stays unlabeled
    assert left == {"akiec": 1, "bcc": 0, "df": 0, "vasc": 1}
    assert out.extra["left_out"] == left


def test_star_maps_every_other_class():
    out, left = relabel(_ham(), parse_class_map("mel=melanoma,*=nevus"), ISIC17)
    assert len(out) == 8 and out.targets.tolist() == [0, 2, 2, 2, 2, 2, -1, 0] and left == {}


def test_bad_maps_are_one_clear_error():
    with pytest.raises(ConfigError, match=r"'mel' is not SOURCE=TARGET"):
        parse_class_map("mel")
    with pytest.raises(ConfigError, match="'mel' is mapped twice"):
        parse_class_map("mel=melanoma,mel=nevus")
    with pytest.raises(ConfigError, match=r"'melan' not among the split's classes"):
        relabel(_ham(), {"melan": "melanoma"}, ISIC17)
    with pytest.raises(ConfigError, match=r"'naevus' not among the model's classes"):
        relabel(_ham(), {"nv": "naevus"}, ISIC17)
