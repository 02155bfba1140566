"""Exports give the Keras model's probabilities from raw pixels, each in its own runtime."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from pyimagesearch import export
from pyimagesearch.errors import UserError
from pyimagesearch.export import METADATA_NAME, main
from pyimagesearch.preprocessing import decode_rgb, default_recipe, load_image, to_model_input
from pyimagesearch.serialization import read_metadata, save_model
from pyimagesearch.train import build_model
from tests.conftest import run_script, write_image

CLASS_NAMES = ["Parasitized", "Uninfected"]
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A tiny model after a few SGD steps on a colour task: BatchNorm statistics are not
    trivial, and its outputs move with the pixels (an untrained one barely does), so a
    wrong resize or scale shows well above TOLERANCE (see the last test)."""
    keras.utils.set_random_seed(5)
    model = build_model(len(CLASS_NAMES))
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(5)
    images = rng.random((32, 64, 64, 3), dtype="float32") * rng.random((32, 1, 1, 3))
    labels = (images[..., 0].mean(axis=(1, 2)) > images[..., 2].mean(axis=(1, 2))).astype(int)
    model.fit(images, labels, batch_size=8, epochs=2, verbose=0)
    path = tmp_path_factory.mktemp("model") / "saved_model.model"
    save_model(model, path, {"class_names": CLASS_NAMES, "preprocessing": default_recipe()})
    return path


@pytest.fixture(scope="module")
def batches(tmp_path_factory, real_images: Path | None) -> list[list[Path]]:
    """Image files grouped into equal-sized batches: synthetic ones (two of the same size)
    and, with MALARIA_SOURCE, a few real NIH cells of their own various sizes."""
    folder = tmp_path_factory.mktemp("images")
    paths = [
        write_image(folder / "a.png", size=(90, 70), seed=1),
        write_image(folder / "b.png", size=(90, 70), seed=2),
        write_image(folder / "c.png", size=(40, 150), seed=3),
    ]
    if real_images is not None:
        for name in CLASS_NAMES:
            paths += sorted((real_images / name).glob("*.png"))[:2]
    groups: dict[tuple, list[Path]] = {}
    for path in paths:
        groups.setdefault(tuple(decode_rgb(tf.io.read_file(str(path))).shape), []).append(path)
    return list(groups.values())


@pytest.fixture(scope="module")
def keras_model(saved: Path) -> tuple[keras.Model, dict]:
    from pyimagesearch.serialization import load_model

    return load_model(saved)


@pytest.fixture(scope="module")
def cases(keras_model, batches) -> list[tuple[np.ndarray, np.ndarray]]:
    """(raw uint8 pixels, the Keras model's probabilities through the loader's path) per batch."""
    model, metadata = keras_model
    result = []
    for batch in batches:
        pixels = np.stack([decode_rgb(tf.io.read_file(str(p))).numpy() for p in batch])
        inputs = tf.stack([load_image(str(p), metadata["preprocessing"]) for p in batch])
        result.append((pixels, model(inputs, training=False).numpy()))
    return result


def run_export(saved: Path, fmt: str, output: Path) -> Path:
    assert main(["--model", str(saved), "--format", fmt, "--output", str(output)]) == 0
    assert json.loads((output / METADATA_NAME).read_text()) == read_metadata(saved)
    return output


def check(cases, run) -> None:
    assert any(len(pixels) > 1 for pixels, _ in cases)
    for pixels, reference in cases:
        probabilities = run(pixels)
        assert probabilities.shape == (len(pixels), len(CLASS_NAMES))
        np.testing.assert_allclose(probabilities, reference, rtol=0, atol=TOLERANCE)


def test_tf_saved_model(saved: Path, cases, tmp_path: Path):
    loaded = tf.saved_model.load(str(run_export(saved, "tf_saved_model", tmp_path / "sm")))
    check(cases, lambda images: loaded.serve(tf.constant(images)).numpy())
    serving_default = loaded.signatures["serving_default"]
    check(cases, lambda images: serving_default(images=images)["output_0"].numpy())
    assert json.loads(loaded.metadata().numpy())["class_names"] == CLASS_NAMES


def test_onnx(saved: Path, cases, tmp_path: Path):
    import onnxruntime

    output = run_export(saved, "onnx", tmp_path / "onnx")
    session = onnxruntime.InferenceSession(
        str(output / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    check(cases, lambda images: session.run(None, {"images": images})[0])
    stored = session.get_modelmeta().custom_metadata_map[METADATA_NAME]
    assert json.loads(stored)["class_names"] == CLASS_NAMES


def test_litert(saved: Path, cases, tmp_path: Path):
    try:
        from ai_edge_litert import schema_py_generated as schema
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # the runtime that ships inside TensorFlow
        from tensorflow.lite.python import schema_py_generated as schema

        Interpreter = tf.lite.Interpreter

    path = run_export(saved, "litert", tmp_path / "litert") / "model.tflite"
    serve = Interpreter(model_path=str(path)).get_signature_runner("serve")
    check(cases, lambda images: next(iter(serve(images=images).values())))

    flat = schema.Model.GetRootAs(path.read_bytes(), 0)
    entries = [flat.Metadata(i) for i in range(flat.MetadataLength())]
    (entry,) = [e for e in entries if e.Name() == METADATA_NAME.encode()]
    stored = flat.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    assert json.loads(stored)["class_names"] == CLASS_NAMES


def test_openvino(saved: Path, cases, tmp_path: Path):
    from pyimagesearch.predict import import_openvino

    openvino = import_openvino()
    core = openvino.Core()
    output = run_export(saved, "openvino", tmp_path / "openvino")
    model = core.read_model(str(output / "model.xml"))
    # float32 asked for: on CPUs with AMX OpenVINO would compute in bfloat16 by default.
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    check(cases, lambda images: compiled(images)[0])
    assert json.loads(model.get_rt_info(METADATA_NAME).astype(str))["class_names"] == CLASS_NAMES


def test_the_comparison_would_catch_other_preprocessing(keras_model, cases):
    """Guards the tests above: a plausible mistake (nearest-neighbour resize, pixels
    scaled 2% off) moves this model's probabilities by more than TOLERANCE."""
    model, metadata = keras_model
    nearest = {**metadata["preprocessing"], "interpolation": "nearest"}
    for wrong in (
        lambda pixels: to_model_input(pixels, nearest),
        lambda pixels: to_model_input(pixels, metadata["preprocessing"]) * 1.02,
    ):
        errors = [
            np.abs(model(wrong(pixels), training=False).numpy() - reference).max()
            for pixels, reference in cases
        ]
        assert max(errors) > 2 * TOLERANCE, errors


def test_refuses_resizes_a_format_cannot_reproduce(keras_model, tmp_path: Path):
    model, metadata = keras_model
    path = tmp_path / "area.model"
    save_model(model, path, {**metadata, "preprocessing": default_recipe(interpolation="area")})
    for fmt in ("onnx", "litert", "openvino"):
        with pytest.raises(UserError, match="'area' resize"):
            main(["--model", str(path), "--format", fmt, "--output", str(tmp_path / fmt)])
        assert not (tmp_path / fmt).exists()


def test_names_a_missing_package(saved: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setitem(export.REQUIRED_PACKAGES, "onnx", ("no_such_package",))
    with pytest.raises(UserError, match="'no_such_package', which is not installed"):
        main(["--model", str(saved), "--format", "onnx", "--output", str(tmp_path / "out")])


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
