"""Hostile and odd input through the real loader: no crash, clear words, nothing damaged."""

from pathlib import Path

import numpy as np
import pytest

from pyimagesearch.core.preprocessing import default_recipe, load_image
from pyimagesearch.training.data import iter_decoded_batches
from pyimagesearch.training.serialization import save_model
from pyimagesearch.training.train import build_model
from tests.conftest import run_script, write_image

METADATA = {"class_names": ["Parasitized", "Uninfected"], "preprocessing": default_recipe()}


@pytest.fixture(scope="module")
def tiny_model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.model"
    provenance = {"keras_version": "0.0.1", "epochs": 1, "seed": 1, "saved_at": "then"}
    save_model(build_model(2), path, {**METADATA, "provenance": provenance}, compiled=True)
    return path


def test_fuzzed_files_never_crash_the_loader(tmp_path: Path):
    rng = np.random.default_rng(0)
    good = write_image(tmp_path / "good.png").read_bytes()
    paths = []
    for i in range(150):
        (tmp_path / f"random_{i}.png").write_bytes(rng.bytes(int(rng.integers(0, 2000))))
        mutated = bytearray(good)
        for position in rng.integers(0, len(good), int(rng.integers(1, 20))):
            mutated[position] = int(rng.integers(0, 256))
        cut = int(rng.integers(1, len(good) + 1))
        (tmp_path / f"mutated_{i}.png").write_bytes(bytes(mutated[:cut]))
        paths += [str(tmp_path / f"random_{i}.png"), str(tmp_path / f"mutated_{i}.png")]
    paths.append(str(tmp_path / "good.png"))
    skipped: list[tuple[int, str]] = []
    batches = list(iter_decoded_batches(paths, default_recipe(), 32, skipped))
    kept = np.concatenate([indices for indices, _ in batches])
    # Of 300 damaged files (random bytes, or the good PNG with bytes changed and cut;
    # Pillow itself fully decodes none of them) none comes through as an image: each is
    # named with its reason. The intact file comes through as load_image reads it.
    # (Mutation: decode_rgb with ImageFile.LOAD_TRUNCATED_IMAGES = True lets cut PNGs
    # through as part-grey images, and this fails.)
    assert kept.tolist() == [len(paths) - 1]
    assert sorted(index for index, _ in skipped) == list(range(len(paths) - 1))
    assert all(reason.strip() for _, reason in skipped)
    image = np.concatenate([inputs for _, inputs in batches])[0]
    np.testing.assert_array_equal(image, load_image(paths[-1], default_recipe()))


def test_folder_with_no_readable_image(tmp_path: Path, tiny_model_file: Path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(b"\x89PNG broken")
    (images / "b.jpg").write_bytes(b"")
    result = run_script("load_model.py", "-i", str(images), "-m", str(tiny_model_file),
                        "-o", str(tmp_path / "m.png"))  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "none of the images could be read" in result.stderr


def test_loader_summarises_provenance_and_warns_on_another_keras(
    tmp_path: Path, tiny_model_file: Path
):
    write_image(tmp_path / "images" / "a.png")
    # The version warning is Keras' concern: the compiled network runs without Keras.
    result = run_script("load_model.py", "-i", str(tmp_path / "images"),
                        "-m", str(tiny_model_file), "-o", str(tmp_path / "m.png"),
                        "--runtime", "tensorflow")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "saved then with Keras 0.0.1" in result.stdout
    assert "model saved with Keras 0.0.1, running Keras" in result.stderr
