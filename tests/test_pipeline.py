"""The training pipeline: every epoch seeded on its own, one copy of the images."""

from __future__ import annotations

import numpy as np

from pyimagesearch.augmentation import build_augmenter
from pyimagesearch.data import make_dataset, make_epochs


def batches(dataset) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(x.numpy(), y.numpy()) for x, y in dataset]


def epochs(images, labels, span, augmentation="tutorial"):
    return make_epochs(
        images,
        labels,
        8,
        span,
        augmenter=lambda epoch: augmentation and build_augmenter(100 + epoch, augmentation),
        seed=lambda epoch: 100 + epoch,
    )


def test_epochs_are_the_per_epoch_pipelines_chained():
    """A resumed run (epochs 2-3) sees exactly the batches of an uninterrupted run's
    epochs 2-3, and each epoch is what a one-epoch pipeline with its seed gives."""
    rng = np.random.default_rng(0)
    images = rng.random((36, 16, 16, 3), dtype=np.float32)
    labels = np.arange(36, dtype="int32") % 2
    whole = batches(epochs(images, labels, range(4)))
    resumed = batches(epochs(images, labels, range(2, 4)))
    assert len(whole) == 4 * (36 // 8) and len(resumed) == 2 * (36 // 8)
    for (x1, y1), (x2, y2) in zip(whole[8:], resumed, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    for epoch in range(4):
        alone = batches(
            make_dataset(
                images,
                labels,
                8,
                augment=build_augmenter(100 + epoch, "tutorial"),
                shuffle_seed=100 + epoch,
            )
        )
        for (x1, y1), (x2, y2) in zip(whole[epoch * 4 : epoch * 4 + 4], alone, strict=True):
            np.testing.assert_array_equal(x1, x2)
            np.testing.assert_array_equal(y1, y2)
    # Each epoch is a fresh permutation of all images (the partial last batch dropped).
    first = np.concatenate([y for _, y in whole[:4]])
    second = np.concatenate([y for _, y in whole[4:8]])
    assert len(first) == 32 and not np.array_equal(
        np.concatenate([x for x, _ in whole[:4]]), np.concatenate([x for x, _ in whole[4:8]])
    )
    assert abs(int(first.sum()) - 16) <= 4 and abs(int(second.sum()) - 16) <= 4


def test_labels_travel_with_their_images():
    images = np.zeros((20, 4, 4, 3), dtype=np.float32)
    images[:, 0, 0, 0] = np.arange(20)
    labels = np.arange(20, dtype="int32")
    for x, y in batches(epochs(images, labels, range(3), augmentation=None)):
        np.testing.assert_array_equal(x[:, 0, 0, 0], y)
