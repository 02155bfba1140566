"""The one definition of how an image file becomes model input.

Three steps, each defined once: :func:`decode_rgb` (a file to RGB pixels),
:func:`resize` (to the recipe's size) and :func:`to_model_input` (scaled to [0, 1]).
Training (``data.load_split``), inference (``predict.iter_predictions``), the audit,
Grad-CAM and quantization take the first two in batches from :func:`iter_pixel_batches`
(:func:`iter_readable_batches` drops the unreadable files for them);
the server calls them on each upload; the montages call :func:`decode_rgb`.
:func:`load_image` is the three for one file, for Python callers and the tests.
Nothing else in the project decodes, resizes or scales images for the model. The recipe
travels inside every saved model (see ``pyimagesearch.training.serialization``), so the loader
never guesses it.

It needs no TensorFlow (Pillow decodes, OpenCV resizes, NumPy scales): the fast
inference path classifies without importing TensorFlow at all, with these same arrays.

Every decode passes one gate first (:func:`open_checked`): the header must parse, the
format must be one of :data:`FORMATS`, and the declared size must be within the pixel
bound. Only the first frame of an animation is ever decoded.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from pyimagesearch.core import report, safety
from pyimagesearch.core.safety import IMAGE_EXTENSIONS, is_image_file  # noqa: F401 (one list)

# The tutorial's input size. The original training generator resized with
# nearest-neighbour while its loader used OpenCV's bilinear: here one named
# interpolation is used by both.
DEFAULT_IMAGE_SIZE: tuple[int, int] = (64, 64)
DEFAULT_INTERPOLATION = "bilinear"
# OpenCV's flags for the recipe's names. Bilinear (the default) samples at half-pixel
# centres without antialiasing, as TensorFlow's method="bilinear" does, so models saved
# when TensorFlow resized see the same inputs (to float rounding).
INTERPOLATIONS = {
    "bilinear": cv2.INTER_LINEAR,
    "nearest": cv2.INTER_NEAREST_EXACT,
    "area": cv2.INTER_AREA,
    "bicubic": cv2.INTER_CUBIC,
}
# The pixel scales a recipe may name: the tutorial's 1/255 (inputs in [0, 1]), or 1 for a
# network made elsewhere that rescales inside itself (keras.applications' EfficientNet).
SCALES = {"1/255": 1 / 255.0, "1": 1.0}
DEFAULT_SCALE = "1/255"
# What the article's *training* did to each file (Keras 2's flow_from_directory: Pillow,
# RGB, nearest-neighbour resize, rescale=1/255): the recipe assumed for a model file
# saved elsewhere, which carries none (``load_model.py --classes``, ``adopt``).
TUTORIAL_TRAINING = {"interpolation": "nearest", "scale": "1/255"}
# The image formats every reader accepts, by content (Pillow's names). WebP and the
# rest are refused: one list, the one the docs give.
FORMATS = ("PNG", "JPEG", "BMP", "GIF")


class UnreadableImage(ValueError):
    """An image file the gate refuses or the decoder cannot read; ``status`` is the
    HTTP status the server answers with (415 unknown format, 413 too large, 400 damaged)."""

    def __init__(self, reason: str, status: int = 400, pixels: int = 0, bound: int = 0) -> None:
        super().__init__(reason)
        self.reason, self.status, self.pixels, self.bound = reason, status, pixels, bound


def default_recipe(
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
    interpolation: str = DEFAULT_INTERPOLATION,
    scale: str = DEFAULT_SCALE,
) -> dict:
    """The preprocessing recipe, as stored in a saved model's metadata."""
    return {
        "color": "RGB",
        "height": int(image_size[0]),
        "width": int(image_size[1]),
        "interpolation": interpolation,
        "scale": scale,
    }


def scale_factor(recipe: dict) -> float:
    """The number resized pixels are multiplied by (``SCALES``): to_model_input's, and
    the one the compiled network and the exports apply inside their graphs."""
    return SCALES[recipe.get("scale", DEFAULT_SCALE)]


def open_checked(source: str | Path | BinaryIO, max_pixels: int | None = None):
    """Open an image with Pillow, reading its header only, or raise UnreadableImage.

    The gate every decode passes: a header Pillow cannot parse (a bad CRC included) is
    refused, never decoded anyway; so are formats outside FORMATS and images declaring
    more than MAX_PIXELS pixels (``max_pixels``, default ``safety.MAX_PIXELS``).
    """
    from PIL import Image

    bound = safety.MAX_PIXELS if max_pixels is None else max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # our own bound replaces Pillow's bomb warning
            previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                image = Image.open(source, formats=FORMATS)
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except Exception:  # Pillow raises many types for files that are not images
        raise UnreadableImage(*why_unopened(source)) from None
    width, height = image.size
    if width * height > bound:
        image.close()
        raise UnreadableImage(
            f"{width * height:,} pixels, more than the bound of {bound:,} "
            "(raise it with --max-pixels)",
            413,
            width * height,
            bound,
        )
    return image


# The first bytes of each accepted format: a file that starts like one but does not open
# is a truncated or damaged image, not "not an image".
SIGNATURES = {b"\x89PNG": "PNG", b"\xff\xd8": "JPEG", b"BM": "BMP", b"GIF8": "GIF"}


def why_unopened(source: str | Path | BinaryIO) -> tuple[str, int]:
    """(reason, HTTP status) for a file Pillow could not open: empty, a truncated or
    damaged image of a known format, or not an image at all."""
    try:
        if hasattr(source, "read"):
            source.seek(0)
            head = source.read(8)
        else:
            with open(source, "rb") as handle:
                head = handle.read(8)
    except OSError:
        head = b"?"
    if not head:
        return "the file is empty (0 bytes)", 400
    kind = next((name for magic, name in SIGNATURES.items() if head.startswith(magic)), None)
    if kind:
        return f"a truncated or damaged {kind} image (its header does not parse)", 400
    return f"not a {'/'.join(FORMATS)} image", 415


def decode_rgb(source: str | Path | bytes, max_pixels: int | None = None) -> np.ndarray:
    """Decode PNG/JPEG/BMP/GIF (a path or the file's bytes) to RGB ``uint8`` HxWx3.

    Grayscale is replicated, alpha dropped, 16-bit reduced to 8-bit, and only the
    first frame of an animation decoded, so every valid image gives the same layout.
    The EXIF orientation tag is applied (Pillow's ``ImageOps.exif_transpose``): a phone
    photo stored sideways with "rotate 90" in its header is read upright, as every
    viewer shows it, in training and inference alike.
    """
    from PIL import ImageOps

    handle = io.BytesIO(source) if isinstance(source, bytes) else source
    image = open_checked(handle, max_pixels)
    try:
        with image:
            image.seek(0)  # the first frame only: later frames are never decoded
            image = ImageOps.exif_transpose(image)  # a copy, upright as viewers show it
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                # Pillow keeps 16-bit grey as integers; take the high byte, as a
                # 16-to-8-bit reduction does.
                grey = (np.asarray(image, dtype=np.uint32) >> 8).clip(0, 255)
                rgb = np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)
            else:
                rgb = np.asarray(image.convert("RGB"))
    except UnreadableImage:
        raise
    except Exception as error:  # truncated or damaged data
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        raise UnreadableImage(f"the image is damaged or truncated ({reason})") from None
    return np.ascontiguousarray(rgb)


def resize(rgb: np.ndarray, recipe: dict) -> np.ndarray:
    """The decoded image at the recipe's size, float32 in [0, 255] (not yet scaled).

    This is what the compiled fast-path network takes: it scales by the recipe itself."""
    size = (recipe["width"], recipe["height"])  # OpenCV's order
    pixels = rgb.astype(np.float32)
    if pixels.shape[1::-1] == size:
        return pixels
    return cv2.resize(pixels, size, interpolation=INTERPOLATIONS[recipe["interpolation"]])


def to_model_input(pixels: np.ndarray, recipe: dict) -> np.ndarray:
    """Scale resized pixels (one image or a batch) as the recipe says (float32; 1/255
    gives [0, 1], as the tutorial)."""
    if recipe.get("scale", DEFAULT_SCALE) == "1/255":
        return pixels / np.float32(255.0)  # a division, bitwise what models were trained on
    return pixels * np.float32(scale_factor(recipe))


def load_pixels(path: str | Path, recipe: dict, max_pixels: int | None = None) -> np.ndarray:
    """Read, decode and resize one image file: float32 [0, 255] at the recipe's size."""
    return resize(decode_rgb(path, max_pixels), recipe)


def load_image(path: str | Path, recipe: dict, max_pixels: int | None = None) -> np.ndarray:
    """Read, decode and preprocess one image file: the model's input, float32 in [0, 1]."""
    return to_model_input(load_pixels(path, recipe, max_pixels), recipe)


def decode_workers() -> int:
    """Threads that decode: Pillow and OpenCV release the GIL while they work."""
    return max(1, min(8, os.cpu_count() or 1))


def iter_pixel_batches(
    paths: list[str], recipe: dict, batch_size: int, max_pixels: int | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]]:
    """Yield (indices, resized pixels, [(index, reason) of files left out]) per batch.

    Decoding runs in a thread pool, a batch ahead of the consumer, so it overlaps the
    network's work on the previous batch; memory stays about two batches deep.
    """

    def one(index: int) -> tuple[int, np.ndarray | str]:
        try:
            return index, load_pixels(paths[index], recipe, max_pixels)
        except UnreadableImage as error:
            return index, error.reason
        except OSError as error:
            return index, error.strerror or str(error)

    with ThreadPoolExecutor(decode_workers(), thread_name_prefix="decode") as pool:
        starts = range(0, len(paths), batch_size)
        pending = None
        for start in [*starts, None]:
            submitted = (
                pool.map(one, range(start, min(start + batch_size, len(paths))))
                if start is not None
                else None
            )
            if pending is not None:
                done = list(pending)
                good = [(i, result) for i, result in done if not isinstance(result, str)]
                failed = [(i, result) for i, result in done if isinstance(result, str)]
                indices = np.asarray([i for i, _ in good], dtype="int64")
                images = (
                    np.stack([image for _, image in good])
                    if good
                    else np.zeros((0, recipe["height"], recipe["width"], 3), np.float32)
                )
                yield indices, images, failed
            pending = submitted


def iter_readable_batches(
    paths: list[str],
    recipe: dict,
    batch_size: int,
    skipped: list[tuple[int, str]] | None = None,
    max_pixels: int | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (indices into PATHS, resized pixels) for the batches that kept any image;
    unreadable files drop out, each appended to SKIPPED as (index, reason) when a list
    is given. The one batch decoder of classification, Grad-CAM and the audit."""
    for indices, pixels, failed in iter_pixel_batches(paths, recipe, batch_size, max_pixels):
        if skipped is not None:
            skipped.extend(failed)
        if len(indices):
            yield indices, pixels


def warn_skipped(
    paths: list[str], kept: Iterable[int], reasons: dict[int, str] | None = None
) -> list[str]:
    """Name the files that could not be read (with why, when known), with a count, on
    stderr; return them. The one warning of every command that decodes a list of files."""
    kept_set = {int(index) for index in kept}
    reasons = reasons or {}
    skipped = [(i, p) for i, p in enumerate(paths) if i not in kept_set]
    for index, path in skipped[:20]:
        why = f": {reasons[index]}" if index in reasons else ""
        report.warning(f"skipping unreadable image '{safety.printable(path)}'{why}")
    if len(skipped) > 20:
        report.warning(f"... and {len(skipped) - 20} more")
    if skipped:
        report.warning(f"skipped {len(skipped)} unreadable file(s)")
    return [path for _, path in skipped]
