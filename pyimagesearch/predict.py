"""Inference: classify image files in batches with the model's own preprocessing."""

from __future__ import annotations

from collections.abc import Iterator

import keras
import numpy as np

from pyimagesearch.data import iter_decoded_batches


def iter_predictions(
    model: keras.Model, paths: list[str], recipe: dict, batch_size: int = 64
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (indices into ``paths``, class probabilities) batch by batch.

    Decoding runs in parallel in tf.data while the model works on the previous
    batch; unreadable files are left out (their indices never appear).
    """
    for indices, images in iter_decoded_batches(paths, recipe, batch_size):
        yield indices, np.asarray(model.predict_on_batch(images))


def classify(
    model: keras.Model, paths: list[str], recipe: dict, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the readable files, their probabilities), for a modest list of files."""
    indices, probabilities = [], []
    for batch_indices, batch_probabilities in iter_predictions(model, paths, recipe, batch_size):
        indices.append(batch_indices)
        probabilities.append(batch_probabilities)
    if not indices:
        return np.zeros(0, dtype="int64"), np.zeros((0, model.output_shape[-1]), dtype="float32")
    return np.concatenate(indices), np.concatenate(probabilities)
