"""The one definition of how an image file becomes model input.

Training (``pyimagesearch.data``) and inference (``pyimagesearch.predict``) both
call :func:`load_image`; nothing else in the project decodes, resizes or scales
images for the model. The recipe travels inside every saved model (see
``pyimagesearch.serialization``), so the loader never guesses it.
"""

from __future__ import annotations

import tensorflow as tf

from pyimagesearch.safety import IMAGE_EXTENSIONS, is_image_file  # noqa: F401 (one list)

# The tutorial's input size. The original training generator resized with
# nearest-neighbour while its loader used OpenCV's bilinear: here one named
# interpolation is used by both.
DEFAULT_IMAGE_SIZE: tuple[int, int] = (64, 64)
DEFAULT_INTERPOLATION = "bilinear"
INTERPOLATIONS = ("bilinear", "nearest", "area", "bicubic")


def default_recipe(
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
    interpolation: str = DEFAULT_INTERPOLATION,
) -> dict:
    """The preprocessing recipe, as stored in a saved model's metadata."""
    return {
        "color": "RGB",
        "height": int(image_size[0]),
        "width": int(image_size[1]),
        "interpolation": interpolation,
        "scale": "1/255",
    }


def decode_rgb(contents: tf.Tensor) -> tf.Tensor:
    """Decode PNG/JPEG/BMP/GIF bytes to an RGB ``uint8`` HxWx3 tensor.

    Grayscale is replicated, alpha dropped, 16-bit reduced to 8-bit, and only the
    first frame of an animation kept, so every valid image gives the same layout.
    """
    image = tf.io.decode_image(contents, channels=3, dtype=tf.uint8, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def to_model_input(rgb: tf.Tensor, recipe: dict) -> tf.Tensor:
    """Resize a decoded RGB image and scale it to [0, 1] float32, as the recipe says."""
    size = (recipe["height"], recipe["width"])
    image = tf.image.resize(tf.cast(rgb, tf.float32), size, method=recipe["interpolation"])
    return image / 255.0


def load_image(path: tf.Tensor | str, recipe: dict) -> tf.Tensor:
    """Read, decode and preprocess one image file (works eagerly and inside tf.data)."""
    return to_model_input(decode_rgb(tf.io.read_file(path)), recipe)
