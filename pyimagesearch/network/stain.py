"""Stain normalisation inside the network: each cell's colour cast taken out.

The stain differs between patients' slides far more than anything else in the pixels
(``studies.stain_spread``: per-patient mean hue -50 to +41 degrees between the quartiles,
saturation 0.47x to 1.22x), and Rajaraman et al. 2018 (PeerJ 6:e4568) name it as the
cause of the drop from cell-level to patient-level accuracy on the NIH set. Colour
augmentation teaches a network to ignore the cast; ``GreyWorld`` removes it instead,
the grey-world assumption of colour constancy (Buchsbaum 1980, J. Franklin Inst.
310(1)): each channel is divided by its mean over the cell's pixels and multiplied by
the mean of the three, so every cell averages to grey at its own brightness, and what
differs inside the cell (a parasite's darker, bluer stain) stays.

Why a layer of the network and not a step of ``preprocessing``: the layer is in the
saved model's config, so every way of running the model (Keras, the OpenVINO fast
path, the exports, Grad-CAM) applies it, after training's augmentation and before the
first convolution, and no loader can forget it. The one preprocessing definition still
turns a file into the [0, 1] pixels; this layer is the network's first operation, like
the BatchNormalization after it.
"""

from __future__ import annotations

import keras
from keras import ops

from pyimagesearch.core.splitting import is_nih


def resolve(stain: str, class_names: list[str]) -> tuple[str, str]:
    """(stain normalisation, why) for a run: "auto" made concrete once the classes are
    known. Grey-world where they are the NIH malaria classes (stained cells, where it was
    measured on unseen patients); none for any other images, whose colour may be what
    tells their classes apart (grey-world would take it out)."""
    if stain != "auto":
        return stain, "asked for"
    if is_nih(class_names):
        return "grey-world", "auto: stained blood cells, the NIH classes"
    return "none", "auto: not the NIH classes, so colours are kept as they are"


# The gains are bounded so that a channel the image barely has (or an all-black image)
# is not amplified into noise. On 1,500 NIH cells (64 px) they span 0.77-1.12 (red),
# 1.01-1.62 (green) and 0.85-1.21 (blue), so 4x never binds there.
MAX_GAIN = 4.0


@keras.saving.register_keras_serializable(package="pyimagesearch")
class GreyWorld(keras.layers.Layer):
    """Scale each channel so that the image's mean colour is grey at its own brightness.

    The means are over the whole image: the black background of the NIH crops adds zero
    to every channel, so the ratios between them, and the gains, are those of the cell
    alone however much background there is."""

    def __init__(self, max_gain: float = MAX_GAIN, **kwargs):
        kwargs.setdefault("dtype", "float32")  # exact means under a bfloat16 policy
        super().__init__(**kwargs)
        self.max_gain = float(max_gain)

    def call(self, images):
        images = ops.cast(images, "float32")
        means = ops.mean(images, axis=(1, 2), keepdims=True)
        grey = ops.mean(means, axis=-1, keepdims=True)
        gain = ops.clip(grey / ops.maximum(means, 1e-6), 1 / self.max_gain, self.max_gain)
        return images * gain

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "max_gain": self.max_gain}
