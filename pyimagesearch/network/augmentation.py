"""Training-time augmentation, matching the tutorial's ImageDataGenerator settings.

It runs in the tf.data input pipeline, not inside the model: the saved model then
holds no random layers, and the model itself stays XLA-friendly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported in build_augmenter: save_model.py --help needs no TensorFlow
    import keras

AUGMENTATIONS = (
    "none",
    "flip",
    "tutorial",
    "any-orientation",
    "tutorial+colour",
    "any-orientation+colour",
)
COLOUR = "+colour"
# "+colour": the stain varies between patients' slides far more than anything else in
# the pixels. Measured by `python -m studies.stain_spread` (15 cells of each of the 160
# patients of the 12,000-image NIH subset, the cells' pixels without the black
# background), per-patient means between the quartiles (5th to 95th percentile): hue,
# weighted by saturation, -50 to +41 degrees around the circular mean (-73 to +47);
# saturation 0.47x to 1.22x the median patient's (0.29x to 1.41x); value only 0.95x to
# 1.07x (0.91x to 1.12x).
# Rajaraman et al. 2018 (PeerJ 6:e4568) attribute the drop from cell-level to
# patient-level accuracy on this set to staining differences between slides, and Tellez
# et al. 2019 ("Quantifying the effects of data augmentation and stain color normalization
# in convolutional neural networks for computational pathology", Med. Image Anal.
# 58:101544) found colour augmentation (HSV, HED) what carries a model to slides of other
# centres, more than stain normalisation. So hue and saturation move, with Keras' own
# layers, each image by its own draw: hue turned by up to 0.1 of the circle (36 degrees,
# about the quartiles above) either way, saturation multiplied by 0.5 to 1.5. Brightness
# is left alone (it differs little), and so is contrast (not measured here): Keras'
# RandomBrightness and RandomContrast would both lift the black background that every
# NIH crop has, where hue and saturation leave black black.
# Measured, it did not help here: 0.9514 against 0.9526 over five cross-validation
# folds of the full set, and failed splits with the default command's 360 images
# (docs/accuracy.md). It stays an option for slides that differ more.
HUE_FACTOR = 0.2  # RandomHue turns the hue by up to half the factor (of the circle)
SATURATION_FACTOR = (1 / 3, 0.6)  # RandomSaturation multiplies by f / (1 - f): 0.5 to 1.5


def build_augmenter(seed: int | None = None, kind: str = "tutorial") -> keras.Sequential | None:
    """The tutorial's: rotation 20 degrees, zoom 0.05, shifts 0.05, a small shear, horizontal
    flips, nearest fill, the legacy ``ImageDataGenerator`` recipe. "any-orientation":
    the same, but any rotation and vertical flips too, since a cell on a slide has no up;
    corners come in black, like the background of the NIH crops. "flip": horizontal
    flips only. "none": no augmentation at all (None), for images where a mirrored or
    turned copy is another thing: text, digits, anything with a left and a right.
    "+colour" after "tutorial" or "any-orientation" adds random hue and saturation (see
    COLOUR above): training only, like every layer here; inference never sees it."""

    from keras import Sequential, layers

    def layer_seed(offset: int) -> int | None:
        return None if seed is None else seed + offset

    if kind not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {kind!r}; expected one of {AUGMENTATIONS}")
    if kind == "none":
        return None
    colour = kind.endswith(COLOUR)
    kind = kind.removesuffix(COLOUR)
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
            *(colour_layers(layer_seed(6)) if colour else ()),
        ],
        name="augmentation",
    )


def colour_layers(seed: int | None) -> list[keras.Layer]:
    """Random hue and saturation per image, for pixels in [0, 1] (see COLOUR)."""
    from keras import layers

    other = None if seed is None else seed + 1
    return [
        layers.RandomHue(HUE_FACTOR, value_range=(0, 1), dtype="float32", seed=seed),
        layers.RandomSaturation(SATURATION_FACTOR, value_range=(0, 1), dtype="float32", seed=other),
    ]
