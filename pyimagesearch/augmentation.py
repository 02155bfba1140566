"""Training-time augmentation, matching the tutorial's ImageDataGenerator settings.

It runs in the tf.data input pipeline, not inside the model: the saved model then
holds no random layers, and the model itself stays XLA-friendly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported in build_augmenter: save_model.py --help needs no TensorFlow
    import keras

AUGMENTATIONS = ("none", "flip", "tutorial", "any-orientation")


def build_augmenter(seed: int | None = None, kind: str = "tutorial") -> keras.Sequential | None:
    """The tutorial's: rotation 20 degrees, zoom 0.05, shifts 0.05, a small shear, horizontal
    flips, nearest fill, the legacy ``ImageDataGenerator`` recipe. "any-orientation":
    the same, but any rotation and vertical flips too, since a cell on a slide has no up;
    corners come in black, like the background of the NIH crops. "flip": horizontal
    flips only. "none": no augmentation at all (None), for images where a mirrored or
    turned copy is another thing: text, digits, anything with a left and a right."""

    from keras import Sequential, layers

    def layer_seed(offset: int) -> int | None:
        return None if seed is None else seed + offset

    if kind not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {kind!r}; expected one of {AUGMENTATIONS}")
    if kind == "none":
        return None
    if kind == "flip":
        return Sequential(
            [layers.RandomFlip("horizontal", dtype="float32", seed=layer_seed(5))],
            name="augmentation",
        )
    any_orientation = kind == "any-orientation"
    rotation = (
        layers.RandomRotation(0.5, fill_mode="constant", dtype="float32", seed=layer_seed(1))
        if any_orientation
        else layers.RandomRotation(
            20 / 360, fill_mode="nearest", dtype="float32", seed=layer_seed(1)
        )
    )
    flips = "horizontal_and_vertical" if any_orientation else "horizontal"
    # float32 whatever the training precision: the model casts its own inputs.
    return Sequential(
        [
            rotation,
            layers.RandomZoom(0.05, 0.05, fill_mode="nearest", dtype="float32", seed=layer_seed(2)),
            layers.RandomTranslation(
                0.05, 0.05, fill_mode="nearest", dtype="float32", seed=layer_seed(3)
            ),
            layers.RandomShear(
                0.05, 0.05, fill_mode="nearest", dtype="float32", seed=layer_seed(4)
            ),
            layers.RandomFlip(flips, dtype="float32", seed=layer_seed(5)),
        ],
        name="augmentation",
    )
