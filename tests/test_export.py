"""Exports give the Keras model's probabilities from raw pixels, each in its own runtime."""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from pyimagesearch.errors import UserError
from pyimagesearch.export import METADATA_NAME, main
from pyimagesearch.preprocessing import decode_rgb, default_recipe, load_image
from pyimagesearch.serialization import read_metadata, save_model
from pyimagesearch.train import build_model
from tests.conftest import run_script, write_image

CLASS_NAMES = ["Parasitized", "Uninfected"]
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A tiny model with a few SGD steps behind it, so BatchNorm statistics are not trivial."""
    keras.utils.set_random_seed(5)
    model = build_model(len(CLASS_NAMES))
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(5)
    model.fit(
        rng.random((16, 64, 64, 3), dtype="float32"),
        rng.integers(0, 2, 16),
        batch_size=8,
        epochs=2,
        verbose=0,
    )
    path = tmp_path_factory.mktemp("model") / "saved_model.model"
    save_model(model, path, {"class_names": CLASS_NAMES, "preprocessing": default_recipe()})
    return path


@pytest.fixture(scope="module")
def batches(tmp_path_factory) -> list[list[Path]]:
    """Image files grouped into equal-sized batches: synthetic ones (two of the same size)
    and, with MALARIA_SOURCE, a few real NIH cells of their own various sizes."""
    folder = tmp_path_factory.mktemp("images")
    paths = [
        write_image(folder / "a.png", size=(90, 70), seed=1),
        write_image(folder / "b.png", size=(90, 70), seed=2),
        write_image(folder / "c.png", size=(40, 150), seed=3),
    ]
    source = Path(os.environ.get("MALARIA_SOURCE", "/nonexistent"))
    if (source / "Parasitized").is_dir() and (source / "Uninfected").is_dir():
        for name in CLASS_NAMES:
            paths += sorted((source / name).glob("*.png"))[:2]
    groups: dict[tuple, list[Path]] = {}
    for path in paths:
        groups.setdefault(tuple(decode_rgb(tf.io.read_file(str(path))).shape), []).append(path)
    return list(groups.values())


def expected(saved: Path, batch: list[Path]) -> np.ndarray:
    """What the Keras model says for these files, through the project's loader path."""
    from pyimagesearch.serialization import load_model

    model, metadata = load_model(saved)
    recipe = metadata["preprocessing"]
    return model(tf.stack([load_image(str(p), recipe) for p in batch]), training=False).numpy()


def raw_pixels(batch: list[Path]) -> np.ndarray:
    return np.stack([decode_rgb(tf.io.read_file(str(p))).numpy() for p in batch])


def export(saved: Path, fmt: str, output: Path) -> Path:
    assert main(["--model", str(saved), "--format", fmt, "--output", str(output)]) == 0
    assert json.loads((output / METADATA_NAME).read_text()) == read_metadata(saved)
    return output


def check(saved: Path, batches: list[list[Path]], run) -> None:
    assert any(len(batch) > 1 for batch in batches)
    for batch in batches:
        probabilities = run(raw_pixels(batch))
        assert probabilities.shape == (len(batch), len(CLASS_NAMES))
        np.testing.assert_allclose(probabilities, expected(saved, batch), rtol=0, atol=TOLERANCE)


def test_tf_saved_model(saved: Path, batches, tmp_path: Path):
    loaded = tf.saved_model.load(str(export(saved, "tf_saved_model", tmp_path / "sm")))
    check(saved, batches, lambda images: loaded.serve(tf.constant(images)).numpy())
    serving_default = loaded.signatures["serving_default"]
    check(saved, batches[:1], lambda images: serving_default(images=images)["output_0"].numpy())
    assert json.loads(loaded.metadata().numpy())["class_names"] == CLASS_NAMES


def test_onnx(saved: Path, batches, tmp_path: Path):
    import onnxruntime

    output = export(saved, "onnx", tmp_path / "onnx")
    session = onnxruntime.InferenceSession(
        str(output / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    check(saved, batches, lambda images: session.run(None, {"images": images})[0])
    stored = session.get_modelmeta().custom_metadata_map[METADATA_NAME]
    assert json.loads(stored)["class_names"] == CLASS_NAMES


def test_litert(saved: Path, batches, tmp_path: Path):
    try:
        from ai_edge_litert import schema_py_generated as schema
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # the runtime that ships inside TensorFlow
        from tensorflow.lite.python import schema_py_generated as schema

        Interpreter = tf.lite.Interpreter

    path = export(saved, "litert", tmp_path / "litert") / "model.tflite"
    serve = Interpreter(model_path=str(path)).get_signature_runner("serve")
    check(saved, batches, lambda images: next(iter(serve(images=images).values())))

    flat = schema.Model.GetRootAs(path.read_bytes(), 0)
    entries = [flat.Metadata(i) for i in range(flat.MetadataLength())]
    (entry,) = [e for e in entries if e.Name() == METADATA_NAME.encode()]
    stored = flat.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    assert json.loads(stored)["class_names"] == CLASS_NAMES


def test_refuses_to_overwrite_without_flag(saved: Path, tmp_path: Path):
    output = tmp_path / "busy"
    output.mkdir()
    (output / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="--overwrite"):
        main(["--model", str(saved), "--format", "onnx", "--output", str(output)])
    assert (output / "keep.txt").read_text() == "mine"


def test_missing_model_is_one_line_exit_2(tmp_path: Path):
    result = run_script(
        "-m",
        "pyimagesearch.export",
        "--model",
        str(tmp_path / "missing.model"),
        "--format",
        "onnx",
        "--output",
        str(tmp_path / "out"),
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("[ERROR]")]
    assert errors == [f"[ERROR] model file '{tmp_path / 'missing.model'}' does not exist"]
    assert not (tmp_path / "out").exists()
