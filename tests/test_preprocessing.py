"""One definition of "file -> model input", shared bit for bit by training and inference."""

import importlib
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from pyimagesearch.core.preprocessing import default_recipe, load_image, to_model_input
from pyimagesearch.inference import predict
from pyimagesearch.training.serialization import read_metadata
from tests.conftest import train_in_process, write_image

RECIPE = default_recipe()
CLASSES = ("Parasitized", "Uninfected")


def real_dataset(source: Path, root: Path) -> Path:
    """root/<split>/<class>/ holding copies of the first twelve real NIH PNGs of each class."""
    for name in CLASSES:
        files = sorted((source / name).glob("*.png"))[:12]
        for split, chosen in (("training", files[:6]), ("validation", files[6:8]),
                              ("testing", files[8:])):  # fmt: skip
            (root / split / name).mkdir(parents=True)
            for file in chosen:
                shutil.copy(file, root / split / name / file.name)
    return root


# Files of every kind a user's folder may hold, each a different size: 8-bit RGB, grey,
# RGBA, palette and 16-bit grey PNGs, and JPEGs.
SYNTHETIC_KINDS = (("RGB", "PNG"), ("L", "PNG"), ("RGBA", "PNG"), ("P", "PNG"),
                   ("I;16", "PNG"), ("RGB", "JPEG"))  # fmt: skip


def synthetic_dataset(root: Path) -> Path:
    """root/<split>/<class>/ with the real set's counts (6/2/4 per class) of drawn files."""
    index = 0
    for name in CLASSES:
        for split, count in (("training", 6), ("validation", 2), ("testing", 4)):
            for _ in range(count):
                mode, fmt = SYNTHETIC_KINDS[index % len(SYNTHETIC_KINDS)]
                suffix = ".jpg" if fmt == "JPEG" else ".png"
                size = (50 + 7 * index % 60, 45 + 11 * index % 50)
                write_image(root / split / name / f"{index}{suffix}", mode, size, fmt, seed=index)
                index += 1
    return root


def test_training_and_load_model_feed_the_network_identical_arrays(tmp_path: Path, monkeypatch):
    """On drawn files of every mode and format, which need no NIH images."""
    check_identical_arrays(synthetic_dataset(tmp_path / "data"), tmp_path, monkeypatch)


def test_training_and_load_model_feed_the_network_identical_arrays_on_nih_cells(
    malaria_source: Path, tmp_path: Path, monkeypatch
):
    check_identical_arrays(real_dataset(malaria_source, tmp_path / "data"), tmp_path, monkeypatch)


def check_identical_arrays(dataset: Path, tmp_path: Path, monkeypatch) -> None:
    """Through the real entry points, at a non-default --image-size: what save_model.py's
    pipeline hands to fit and evaluate is, bit for bit, what load_model.py hands to the
    network it loaded, using the recipe stored in the file. (Mutation: data.load_split
    handing training the channels reversed, BGR where inference has RGB, as the
    original tutorial's loader did, fails both tests.)"""
    model_path = tmp_path / "small.model"
    run = train_in_process(
        ["--dataset", str(dataset), "--model", str(model_path), "--plot", str(tmp_path / "p.png"),
         "--epochs", "1", "--schedule", "time-decay", "--batch-size", "4", "--seed", "3",
         "--image-size", "40"],
        monkeypatch,
    )  # fmt: skip
    # Training's arrays before augmentation; validation and testing as batched for Keras.
    trained_on = np.concatenate(
        [run.decoded["training"][0], run.fed_to_model("validation"), run.fed_to_model("testing")]
    )

    seen = []

    def recording_engine(path, *args, **kwargs):
        """Stands in for the engine load_model.py loads (the stored OpenVINO network,
        which scales by 1/255 itself) and keeps exactly the pixels it was given."""
        metadata = read_metadata(path)
        assert (metadata["preprocessing"]["height"], metadata["preprocessing"]["width"]) == (40, 40)

        def network(pixels):
            seen.append(np.asarray(pixels))
            return np.full((len(pixels), 2), 0.5, dtype="float32")

        return predict.Engine(network, metadata, "recording")

    monkeypatch.setattr(predict, "load_engine", recording_engine)
    load_script = importlib.import_module("load_model")
    folders = [str(dataset / split) for split in ("training", "validation", "testing")]
    argv = ["-i", *folders, "-m", str(model_path), "-n", "0", "-b", "5",
            "-o", str(tmp_path / "montage.png")]  # fmt: skip
    assert load_script.main(argv) == 0
    # What the network computes on: the pixels it was handed, scaled by the one definition.
    loaded_on = to_model_input(np.concatenate(seen), RECIPE)
    assert trained_on.shape == loaded_on.shape == (24, 40, 40, 3)
    assert trained_on.dtype == loaded_on.dtype == np.float32
    assert np.array_equal(trained_on, loaded_on)


def bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resampling with half-pixel centres and no antialiasing (what TensorFlow 2
    documents for method="bilinear"), written out independently in NumPy, in float64."""

    def axis(size_out: int, size_in: int):
        centre = (np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5
        low = np.floor(centre)
        weight = centre - low
        low = low.astype(int)
        return np.clip(low, 0, size_in - 1), np.clip(low + 1, 0, size_in - 1), weight

    y0, y1, wy = axis(height, image.shape[0])
    x0, x1, wx = axis(width, image.shape[1])
    image = image.astype(np.float64)
    wx = wx[None, :, None]
    top = image[y0][:, x0] * (1 - wx) + image[y0][:, x1] * wx
    bottom = image[y1][:, x0] * (1 - wx) + image[y1][:, x1] * wx
    return top * (1 - wy[:, None, None]) + bottom * wy[:, None, None]


@pytest.mark.parametrize("size", [64, 48])
def test_real_png_is_resized_bilinearly_and_scaled(malaria_source: Path, size: int):
    path = sorted((malaria_source / "Parasitized").glob("*.png"))[0]
    image = load_image(str(path), default_recipe((size, size)))
    original = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape == (size, size, 3) and image.dtype == np.float32
    assert min(original.shape[:2]) > size  # a real reduction, where the methods differ
    np.testing.assert_allclose(image, bilinear(original, size, size) / 255.0, rtol=0, atol=1e-5)
    # Everything the tutorial's scripts or a careless edit could have used instead is far off.
    others = {
        f"tf {method}": tf.image.resize(original, (size, size), method=method).numpy()
        for method in ("nearest", "area", "bicubic")
    }
    for name, flag in (("cv2 bilinear", cv2.INTER_LINEAR), ("cv2 area", cv2.INTER_AREA)):
        others[name] = cv2.resize(original, (size, size), interpolation=flag)
    others["tf bilinear antialiased"] = tf.image.resize(
        original, (size, size), method="bilinear", antialias=True
    ).numpy()
    for name, other in others.items():
        assert np.abs(image - other / 255.0).max() > 1e-3, name


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
    image = load_image(str(path), RECIPE)
    assert image.shape == (64, 64, 3) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0


def test_grayscale_is_replicated_to_three_equal_channels(tmp_path: Path):
    image = load_image(str(write_image(tmp_path / "g.png", mode="L")), RECIPE)
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
