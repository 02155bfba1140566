"""Training-time augmentation, matching the tutorial's ImageDataGenerator settings.

It runs in the tf.data input pipeline, not inside the model: the saved model then
holds no random layers, and the model itself stays XLA-friendly.
"""

from __future__ import annotations

import keras
from keras import layers


def build_augmenter(seed: int | None = None) -> keras.Sequential:
    """Rotation 20 degrees, zoom 0.05, shifts 0.05, a small shear, horizontal flips,
    nearest fill: the legacy ``ImageDataGenerator`` recipe."""

    def layer_seed(offset: int) -> int | None:
        return None if seed is None else seed + offset

    # float32 whatever the training precision: the model casts its own inputs.
    return keras.Sequential(
        [
            layers.RandomRotation(
                20 / 360, fill_mode="nearest", dtype="float32", seed=layer_seed(1)
            ),
            layers.RandomZoom(0.05, 0.05, fill_mode="nearest", dtype="float32", seed=layer_seed(2)),
            layers.RandomTranslation(
                0.05, 0.05, fill_mode="nearest", dtype="float32", seed=layer_seed(3)
            ),
            layers.RandomShear(
                0.05, 0.05, fill_mode="nearest", dtype="float32", seed=layer_seed(4)
            ),
            layers.RandomFlip("horizontal", dtype="float32", seed=layer_seed(5)),
        ],
        name="augmentation",
    )
