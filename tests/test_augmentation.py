"""The two augmentations: the tutorial's keeps cells roughly upright, the full recipe's does not."""

import numpy as np
import pytest

from pyimagesearch.augmentation import build_augmenter


def upside_down_share(kind: str) -> float:
    images = np.zeros((256, 64, 64, 3), dtype="float32")
    images[:, :32] = 1.0  # bright top half
    out = np.asarray(build_augmenter(seed=11, kind=kind)(images, training=True))
    return float(np.mean(out[:, :32].mean(axis=(1, 2, 3)) < out[:, 32:].mean(axis=(1, 2, 3))))


def test_tutorial_augmentation_never_turns_a_cell_over():
    assert upside_down_share("tutorial") == 0.0


def test_full_recipe_augmentation_turns_cells_any_way():
    assert 0.3 < upside_down_share("any-orientation") < 0.7


def test_unknown_augmentation_is_refused():
    with pytest.raises(ValueError, match="unknown augmentation"):
        build_augmenter(kind="sideways")
