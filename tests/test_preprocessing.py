"""One definition of "file -> model input", shared bit for bit by training and inference."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from pyimagesearch.data import list_split, load_split
from pyimagesearch.predict import classify
from pyimagesearch.preprocessing import default_recipe, load_image
from tests.conftest import write_image

RECIPE = default_recipe()


def test_training_and_inference_see_identical_arrays(synthetic_dataset: Path):
    """The training pipeline's array for a PNG is bitwise the one the loader classifies."""
    split = list_split(synthetic_dataset / "testing")
    training_images, _ = load_split(split, RECIPE)

    seen_by_model = []

    def record(images):
        """Stands in for the model and keeps exactly what it was given."""
        seen_by_model.append(np.asarray(images))
        return np.zeros((len(images), 2), dtype="float32")

    indices, _ = classify(record, split.paths, RECIPE, batch_size=3)
    inference_images = np.concatenate(seen_by_model)[np.argsort(indices)]
    assert training_images.dtype == np.float32
    assert np.array_equal(training_images, inference_images)
    # ...and both equal the one-file function called eagerly.
    eager = load_image(split.paths[0], RECIPE).numpy()
    assert np.array_equal(eager, training_images[0])


def test_real_png_is_resized_bilinearly_and_scaled(malaria_source: Path):
    path = sorted((malaria_source / "Parasitized").iterdir())[0]
    image = load_image(str(path), RECIPE).numpy()
    assert image.shape == (64, 64, 3)
    assert 0.0 <= image.min() and image.max() <= 1.0
    original = np.asarray(Image.open(path).convert("RGB"))
    nearest = tf.image.resize(original, (64, 64), method="nearest").numpy() / 255.0
    # The tutorial's two scripts disagreed exactly here; the recipe names one method.
    assert not np.array_equal(image, nearest.astype("float32"))


@pytest.mark.parametrize(
    "mode, fmt, name",
    [
        ("L", "PNG", "gray.png"),
        ("RGBA", "PNG", "alpha.png"),
        ("P", "PNG", "palette.png"),
        ("I;16", "PNG", "sixteen.png"),
        ("RGB", "JPEG", "photo.JPG"),
        ("RGB", "BMP", "bitmap.bmp"),
    ],
)
def test_odd_but_valid_images_become_rgb_model_input(tmp_path: Path, mode, fmt, name):
    path = write_image(tmp_path / name, mode=mode, fmt=fmt)
    image = load_image(str(path), RECIPE).numpy()
    assert image.shape == (64, 64, 3) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0


def test_grayscale_is_replicated_to_three_equal_channels(tmp_path: Path):
    image = load_image(str(write_image(tmp_path / "g.png", mode="L")), RECIPE).numpy()
    assert np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(
        image[..., 1], image[..., 2]
    )


def test_tiny_and_huge_images(tmp_path: Path):
    tiny = write_image(tmp_path / "tiny.png", size=(1, 1))
    Image.new("RGB", (6000, 6000), (200, 10, 10)).save(tmp_path / "huge.png")
    for path in (tiny, tmp_path / "huge.png"):
        assert load_image(str(path), RECIPE).shape == (64, 64, 3)
    np.testing.assert_allclose(
        load_image(str(tmp_path / "huge.png"), RECIPE)[0, 0],
        [200 / 255, 10 / 255, 10 / 255],
        rtol=1e-6,
    )
