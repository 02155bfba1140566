"""Grad-CAM: where in a cell the network looked when it chose a class.

Selvaraju et al. (2017): weight the feature maps of the last convolutional block by
the mean gradient of the class score over each map, keep the positive part, and
upsample to the input. Here the score is the class logit (the input of the softmax),
so a stored softmax temperature changes nothing but a scale that normalising removes.

The heatmaps are computed on the model inputs the one preprocessing makes
(``data.iter_decoded_batches``, as classification decodes them), with the float32 Keras
model ``serialization.load_model`` returns, in inference mode.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import cv2
import keras
import numpy as np
import tensorflow as tf

from pyimagesearch.core.errors import UserError

# Heat is drawn in OpenCV's JET colour map (blue cold, red hot) over this share of the tile.
ALPHA = 0.45


def last_conv_layer(model: keras.Model) -> keras.layers.Layer:
    """The last layer with a spatial (4-D) output before pooling: in this ResNet, the
    ReLU after the final BatchNormalization, i.e. the activated last residual block."""
    for layer in reversed(model.layers):
        if isinstance(layer, keras.layers.InputLayer):
            continue  # the pixels themselves: a map of them would explain nothing
        if len(layer.output.shape) == 4 and "Pooling" not in type(layer).__name__:
            return layer
    raise UserError(
        f"--explain needs a network of its own convolutional layers; model '{model.name}' "
        "has none (an ensemble's members are nested models: explain one member instead)"
    )


def gradcam_model(model: keras.Model) -> keras.Model:
    """A model from the input to (last block's activations, class logits).

    The logits are the input of the final softmax layer; a model without one is
    explained on its outputs as they are."""
    head = model.layers[-1]
    activation = getattr(head, "activation", None)
    is_softmax = getattr(activation, "__name__", "") == "softmax"
    scores = head.input if is_softmax else model.output
    return keras.Model(model.inputs, [last_conv_layer(model).output, scores])


def heatmaps(
    model: keras.Model,
    images: np.ndarray | tf.Tensor,
    class_indices: Sequence[int] | np.ndarray | None = None,
    explainer: keras.Model | None = None,
) -> np.ndarray:
    """Grad-CAM heatmaps, one per image, at the input's height x width, each in [0, 1].

    ``images`` are model inputs (N x H x W x 3, as ``data.iter_decoded_batches`` yields).
    ``class_indices`` picks the class explained per image; by default the predicted one.
    Pass ``explainer`` (from :func:`gradcam_model`) to reuse it across batches. A map
    with no positive evidence anywhere is all zeros.
    """
    explainer = explainer or gradcam_model(model)
    images = tf.convert_to_tensor(images, dtype=tf.float32)
    with tf.GradientTape() as tape:
        features, scores = explainer(images, training=False)
        if class_indices is None:
            chosen = tf.argmax(scores, axis=1)
        else:
            chosen = tf.convert_to_tensor(np.asarray(class_indices, dtype="int64"))
        score = tf.gather(scores, chosen, axis=1, batch_dims=1)
    gradients = tape.gradient(score, features)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    cams = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1, keepdims=True))
    cams = tf.image.resize(cams, images.shape[1:3], method="bilinear")[..., 0]
    peak = tf.reduce_max(cams, axis=(1, 2), keepdims=True)
    cams = tf.math.divide_no_nan(cams, peak)
    return np.clip(cams.numpy(), 0.0, 1.0)


def overlay(tile: np.ndarray, heatmap: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """The BGR ``uint8`` TILE with HEATMAP (values in [0, 1]) blended on in the JET colour
    map; the heatmap is stretched to the tile's size for display only."""
    height, width = tile.shape[:2]
    heat = cv2.resize(heatmap.astype("float32"), (width, height), interpolation=cv2.INTER_LINEAR)
    coloured = cv2.applyColorMap(np.uint8(np.clip(heat, 0, 1) * 255), cv2.COLORMAP_JET)
    return cv2.addWeighted(coloured, alpha, tile, 1 - alpha, 0)


def iter_heatmaps(
    model: keras.Model,
    paths: list[str],
    recipe: dict,
    class_indices: Sequence[int] | None = None,
    batch_size: int = 32,
    max_pixels: int | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (index into PATHS, heatmap) batch by batch, so memory stays one batch deep.

    The files are decoded by the data pipeline (``data.iter_decoded_batches``), exactly
    as for classification; files that cannot be read are left out, as they are there.
    ``class_indices`` (one per path) picks the class explained; by default the predicted.
    """
    from pyimagesearch.training.data import iter_decoded_batches

    explainer = gradcam_model(model)
    for indices, images in iter_decoded_batches(paths, recipe, batch_size, None, max_pixels):
        chosen = None if class_indices is None else [class_indices[i] for i in indices]
        for index, heatmap in zip(indices, heatmaps(model, images, chosen, explainer), strict=True):
            yield int(index), heatmap
