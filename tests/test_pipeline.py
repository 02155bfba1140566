"""The training pipeline: every epoch seeded on its own, one copy of the images."""

from __future__ import annotations

import numpy as np

from pyimagesearch.network.augmentation import build_augmenter
from pyimagesearch.training.data import make_epochs


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
    epochs 2-3, and each epoch is what a one-epoch pipeline with its seed gives.
    (Mutation: not resetting the shared augmenter's random state at an epoch's start
    fails the comparison with the one-epoch pipelines.)"""
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
        alone = batches(epochs(images, labels, [epoch]))
        for (x1, y1), (x2, y2) in zip(whole[epoch * 4 : epoch * 4 + 4], alone, strict=True):
            np.testing.assert_array_equal(x1, x2)
            np.testing.assert_array_equal(y1, y2)
    # Two epochs are not the same batches (their order and augmentation differ); that
    # each is a permutation of the images is checked below, without augmentation.
    assert not np.array_equal(
        np.concatenate([x for x, _ in whole[:4]]), np.concatenate([x for x, _ in whole[4:8]])
    )


def test_each_epoch_shows_each_image_once_with_its_label():
    """Image i carries label i: every batch keeps them paired, and every epoch is a
    permutation of distinct images (the partial last batch dropped), in its own order."""
    images = np.zeros((20, 4, 4, 3), dtype=np.float32)
    images[:, 0, 0, 0] = np.arange(20)
    labels = np.arange(20, dtype="int32")
    shown = batches(epochs(images, labels, range(3), augmentation=None))
    assert len(shown) == 3 * (20 // 8)
    for x, y in shown:
        np.testing.assert_array_equal(x[:, 0, 0, 0], y)
    per_epoch = [np.concatenate([y for _, y in shown[e * 2 : e * 2 + 2]]) for e in range(3)]
    for seen in per_epoch:
        assert len(set(seen.tolist())) == len(seen) == 16, seen  # no image twice
    assert len({tuple(seen.tolist()) for seen in per_epoch}) == 3, "each epoch reshuffles"
