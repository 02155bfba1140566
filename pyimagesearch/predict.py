"""Inference: classify image files in batches with the model's own preprocessing."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import keras
import numpy as np
import tensorflow as tf

from pyimagesearch.data import iter_decoded_batches

Predictor = Callable[[tf.Tensor], np.ndarray]


def with_precision(model: keras.Model, precision: str) -> keras.Model:
    """The same network and weights computing in another dtype policy (outputs stay float32)."""
    if precision == "float32":
        return model

    def clone(layer):
        config = layer.get_config()
        if layer is not model.layers[-1]:
            config["dtype"] = precision
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def make_predictor(model: keras.Model, precision: str = "float32", batches: int = 2) -> Predictor:
    """One traced function for all batch sizes, or a plain call for a single batch.

    ``model.predict_on_batch`` pays about 2x in per-call overhead on a small CPU
    (measured in bench/), so the loader calls a ``tf.function`` of the model itself;
    tracing it costs about 0.3 s more than one eager call, so a single batch (the
    16-image default) runs eagerly. ``mixed_bfloat16`` is faster on CPUs with AMX but
    changes probabilities in the fourth decimal; float32 gives what Keras' predict gives.
    """
    network = with_precision(model, precision)
    if batches <= 1:
        return lambda images: np.asarray(network(images, training=False), dtype="float32")
    spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)

    @tf.function(input_signature=[spec])
    def infer(images):
        return tf.cast(network(images, training=False), tf.float32)

    return lambda images: infer(images).numpy()


def iter_predictions(
    predict: Predictor, paths: list[str], recipe: dict, batch_size: int = 64
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (indices into ``paths``, class probabilities) batch by batch.

    Decoding runs in parallel in tf.data while the model works on the previous
    batch; unreadable files are left out (their indices never appear).
    """
    for indices, images in iter_decoded_batches(paths, recipe, batch_size):
        yield indices, predict(images)


def classify(
    predict: Predictor, paths: list[str], recipe: dict, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the readable files, their probabilities), for a modest list of files."""
    indices, probabilities = [], []
    for batch_indices, batch_probabilities in iter_predictions(predict, paths, recipe, batch_size):
        indices.append(batch_indices)
        probabilities.append(batch_probabilities)
    if not indices:
        return np.zeros(0, dtype="int64"), np.zeros((0, 0), dtype="float32")
    return np.concatenate(indices), np.concatenate(probabilities)
