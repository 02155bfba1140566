"""Exports give the Keras model's probabilities from raw pixels, each in its own runtime."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy.special import softmax

from pyimagesearch import export
from pyimagesearch.core.errors import UserError, run_command
from pyimagesearch.core.preprocessing import (
    IMAGE_EXTENSIONS,
    decode_rgb,
    default_recipe,
    load_image,
)
from pyimagesearch.export import METADATA_NAME, graph_model_input, main
from pyimagesearch.training.serialization import public_metadata, read_metadata, save_model
from pyimagesearch.training.train import build_model
from tests.conftest import run_script, write_image

CLASS_NAMES = ["Parasitized", "Uninfected"]
TOLERANCE = 1e-4
# The `saved` model carries a temperature, as save_model.py's models do: every export must
# give the calibrated probabilities, softmax(log(p) / T).
TEMPERATURE = 1.7
# Where the `saved` model says it was trained: no export may carry these paths.
TRAINING_MACHINE = "/home/trainer/private"
PROVENANCE = {
    "dataset": f"{TRAINING_MACHINE}/malaria",
    "excluded": {"list": f"{TRAINING_MACHINE}/issues.csv", "images": 3},
}
CHECK_LINE = re.compile(
    r"^\[INFO\] --check: (\d+) images, largest probability difference (\S+), "
    r"(\d+) labels changed$",
    re.MULTILINE,
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A tiny model after a few SGD steps on a colour task: BatchNorm statistics are not
    trivial, and its outputs move with the pixels (an untrained one barely does), so a
    wrong resize or scale shows well above TOLERANCE (see the last test). It is stored
    with a temperature, as training stores one."""
    keras.utils.set_random_seed(5)
    model = build_model(len(CLASS_NAMES))
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(5)
    images = rng.random((32, 64, 64, 3), dtype="float32") * rng.random((32, 1, 1, 3))
    labels = (images[..., 0].mean(axis=(1, 2)) > images[..., 2].mean(axis=(1, 2))).astype(int)
    model.fit(images, labels, batch_size=8, epochs=2, verbose=0)
    path = tmp_path_factory.mktemp("model") / "saved_model.model"
    metadata = {"class_names": CLASS_NAMES, "preprocessing": default_recipe(),
                "calibration": {"method": "temperature", "temperature": TEMPERATURE}}  # fmt: skip
    save_model(model, path, {**metadata, "provenance": PROVENANCE})
    return path


def calibrated(probabilities: np.ndarray) -> np.ndarray:
    """softmax(log(p) / T), written here apart from the project's code."""
    return softmax(np.log(np.asarray(probabilities, dtype="float64")) / TEMPERATURE, axis=1)


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
        groups.setdefault(tuple(decode_rgb(str(path)).shape), []).append(path)
    return list(groups.values())


@pytest.fixture(scope="module")
def check_folder(batches: list[list[Path]], real_images: Path | None, tmp_path_factory) -> Path:
    """What --check is pointed at: the synthetic images at the top, and with
    MALARIA_SOURCE a dozen real NIH cells per class in class sub-folders (--check
    searches recursively), beside a file that is no image."""
    folder = tmp_path_factory.mktemp("check")
    for batch in batches:
        for path in batch:
            if real_images is None or real_images not in path.parents:
                shutil.copy(path, folder / path.name)
    if real_images is not None:
        for name in CLASS_NAMES:
            (folder / name).mkdir()
            for path in sorted((real_images / name).glob("*.png"))[:12]:
                shutil.copy(path, folder / name / path.name)
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def keras_model(saved: Path) -> tuple[keras.Model, dict]:
    from pyimagesearch.training.serialization import load_model

    return load_model(saved)


@pytest.fixture(scope="module")
def cases(keras_model, batches) -> list[tuple[np.ndarray, np.ndarray]]:
    """(raw uint8 pixels, the Keras model's calibrated probabilities through the loader's
    path) per batch. The temperature moves them well beyond TOLERANCE, so an export that
    leaves it out fails."""
    model, metadata = keras_model
    result = []
    for batch in batches:
        pixels = np.stack([decode_rgb(str(p)) for p in batch])
        inputs = np.stack([load_image(str(p), metadata["preprocessing"]) for p in batch])
        raw = model(inputs, training=False).numpy()
        result.append((pixels, calibrated(raw)))
        assert np.abs(calibrated(raw) - raw).max() > 10 * TOLERANCE
    return result


def run_export(saved: Path, fmt: str, output: Path, capsys, check: Path) -> Path:
    """Export with --check CHECK, which must find the export and the model agreeing."""
    argv = ["--model", str(saved), "--format", fmt, "--output", str(output)]
    assert main([*argv, "--check", str(check)]) == 0
    printed = capsys.readouterr().out
    (found,) = CHECK_LINE.findall(printed)
    images, difference, changed = int(found[0]), float(found[1]), int(found[2])
    assert images == sum(1 for _ in check.rglob("*.png")) and changed == 0, printed
    assert difference < TOLERANCE, printed
    print(f"--check {fmt}: {images} images, largest difference {difference:.2g}")
    stored = json.loads((output / METADATA_NAME).read_text())
    assert stored == public_metadata(read_metadata(saved))
    assert stored["calibration"]["temperature"] == TEMPERATURE
    assert stored["provenance"]["dataset"] == "malaria"
    for path in output.rglob("*"):  # the format's own copy of the JSON included
        assert not path.is_file() or TRAINING_MACHINE.encode() not in path.read_bytes(), path
    return output


def check(cases, run) -> None:
    assert any(len(pixels) > 1 for pixels, _ in cases)
    for pixels, reference in cases:
        probabilities = run(pixels)
        assert probabilities.shape == (len(pixels), len(CLASS_NAMES))
        np.testing.assert_allclose(probabilities, reference, rtol=0, atol=TOLERANCE)


def test_tf_saved_model(saved: Path, cases, tmp_path: Path, capsys, check_folder: Path):
    loaded = tf.saved_model.load(
        str(run_export(saved, "tf_saved_model", tmp_path / "sm", capsys, check_folder))
    )
    check(cases, lambda images: loaded.serve(tf.constant(images)).numpy())
    serving_default = loaded.signatures["serving_default"]
    check(cases, lambda images: serving_default(images=images)["output_0"].numpy())
    assert json.loads(loaded.metadata().numpy())["class_names"] == CLASS_NAMES


def test_onnx(saved: Path, cases, tmp_path: Path, capsys, check_folder: Path):
    import onnxruntime

    output = run_export(saved, "onnx", tmp_path / "onnx", capsys, check_folder)
    session = onnxruntime.InferenceSession(
        str(output / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    check(cases, lambda images: session.run(None, {"images": images})[0])
    stored = session.get_modelmeta().custom_metadata_map[METADATA_NAME]
    assert json.loads(stored)["class_names"] == CLASS_NAMES


def test_litert(saved: Path, cases, tmp_path: Path, capsys, check_folder: Path):
    try:
        from ai_edge_litert import schema_py_generated as schema
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # the runtime that ships inside TensorFlow
        from tensorflow.lite.python import schema_py_generated as schema

        Interpreter = tf.lite.Interpreter

    path = run_export(saved, "litert", tmp_path / "litert", capsys, check_folder) / "model.tflite"
    serve = Interpreter(model_path=str(path)).get_signature_runner("serve")
    check(cases, lambda images: next(iter(serve(images=images).values())))

    flat = schema.Model.GetRootAs(path.read_bytes(), 0)
    entries = [flat.Metadata(i) for i in range(flat.MetadataLength())]
    (entry,) = [e for e in entries if e.Name() == METADATA_NAME.encode()]
    stored = flat.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    assert json.loads(stored)["class_names"] == CLASS_NAMES


def test_openvino(saved: Path, cases, tmp_path: Path, capsys, check_folder: Path):
    from pyimagesearch.core.compiled import import_openvino

    openvino = import_openvino()
    core = openvino.Core()
    output = run_export(saved, "openvino", tmp_path / "openvino", capsys, check_folder)
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
        lambda pixels: graph_model_input(pixels, nearest),
        lambda pixels: graph_model_input(pixels, metadata["preprocessing"]) * 1.02,
    ):
        errors = [
            np.abs(calibrated(model(wrong(pixels), training=False).numpy()) - reference).max()
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


def test_missing_model_is_one_line_exit_2(tmp_path: Path, capsys):
    argv = ["--model", str(tmp_path / "missing.model"), "--format", "onnx",
            "--output", str(tmp_path / "out")]  # fmt: skip
    assert run_command(main, argv) == 2
    printed = capsys.readouterr()
    assert printed.err.splitlines() == [
        f"[ERROR] model file '{tmp_path / 'missing.model'}' does not exist"
    ]
    assert not (tmp_path / "out").exists()


def test_check_reports_changed_labels_and_leaves_output_alone(
    saved: Path, check_folder: Path, tmp_path: Path, capsys, monkeypatch
):
    """An export that disagrees with its model (here: its probabilities reversed) fails
    --check with exit status 1, names the images, and replaces no earlier export."""
    real_open = export.open_export

    def tampered(fmt, folder):
        run = real_open(fmt, folder)
        return lambda images: run(images)[:, ::-1]

    monkeypatch.setattr(export, "open_export", tampered)
    output = tmp_path / "earlier"
    output.mkdir()
    (output / METADATA_NAME).write_text('{"earlier": true}\n')
    argv = ["--model", str(saved), "--format", "tf_saved_model", "--output", str(output)]
    assert main([*argv, "--overwrite", "--check", str(check_folder)]) == 1
    printed = capsys.readouterr()
    images = sorted(str(path) for path in check_folder.rglob("*.png"))
    ((count, difference, changed),) = CHECK_LINE.findall(printed.out)
    assert (int(count), int(changed)) == (len(images), len(images)), printed.out
    assert float(difference) > 0.01, printed.out
    listed = re.findall(
        r"label changed: '(.+)' Keras (\w+), tf_saved_model (\w+)$", printed.out, re.MULTILINE
    )
    assert len(listed) == min(len(images), export.CHECK_LISTED)
    assert all(path in images and before != after for path, before, after in listed)
    errors = [line for line in printed.err.splitlines() if line.startswith("[ERROR]")]
    assert errors == [
        f"[ERROR] --check: {len(images)} of {len(images)} labels changed between the Keras "
        f"model and the tf_saved_model export; '{output}' was not written (rerun without "
        "--check to write it anyway)"
    ]
    assert sorted(p.name for p in output.iterdir()) == [METADATA_NAME]
    assert (output / METADATA_NAME).read_text() == '{"earlier": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier"]  # no staging left


@pytest.mark.parametrize("contents", ["missing", "empty"])
def test_check_folder_without_images_is_one_line_exit_2(
    saved: Path, tmp_path: Path, capsys, contents
):
    folder = tmp_path / "cells"
    if contents == "empty":
        folder.mkdir()
        (folder / "notes.txt").write_text("not an image")
    argv = ["--model", str(saved), "--format", "onnx", "--output", str(tmp_path / "out"),
            "--check", str(folder)]  # fmt: skip
    assert run_command(main, argv) == 2
    printed = capsys.readouterr()
    expected = {
        "missing": f"[ERROR] --check folder '{folder}' does not exist",
        "empty": f"[ERROR] --check folder '{folder}' holds no image files "
        f"({', '.join(IMAGE_EXTENSIONS)})",
    }
    assert printed.err.splitlines() == [expected[contents]]
    assert "loading" not in printed.out  # refused before the model was even read
    assert not (tmp_path / "out").exists()


# Hides a runtime from a fresh process: an import of a name mapped to None fails, and
# find_spec reports it missing, as on a machine where it was never installed.
HIDE_AND_RUN = """
import sys
for name in {hidden!r}:
    sys.modules[name] = None
from pyimagesearch import export
export.tensorflow_litert_interpreter = lambda: None  # a TensorFlow without tf.lite's
sys.exit(export.run_command(export.main, {argv!r}))
"""


@pytest.mark.parametrize(
    ("fmt", "hidden", "package"),
    [
        ("onnx", ["onnxruntime"], "onnxruntime"),
        ("litert", ["ai_edge_litert"], "ai-edge-litert"),
        ("openvino", ["openvino"], "openvino"),
    ],
)
def test_check_names_the_pip_package_of_a_missing_runtime(
    saved: Path, check_folder: Path, tmp_path: Path, fmt, hidden, package
):
    argv = ["--model", str(saved), "--format", fmt, "--output", str(tmp_path / "out"),
            "--check", str(check_folder)]  # fmt: skip
    result = run_script("-c", HIDE_AND_RUN.format(hidden=hidden, argv=argv))
    assert result.returncode == 2, result.stdout + result.stderr
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("[ERROR]")]
    assert f"'{hidden[0]}', which is not installed (pip install {package})" in error
    assert "Traceback" not in result.stderr and "loading" not in result.stdout
    assert not (tmp_path / "out").exists()


def test_runtimes_that_fail_to_import_name_their_pip_package(tmp_path: Path, monkeypatch):
    """Where the export is opened, too (a runtime that find_spec sees but cannot import)."""
    for name in ("onnxruntime", "ai_edge_litert", "ai_edge_litert.interpreter", "openvino"):
        monkeypatch.setitem(sys.modules, name, None)
    assert export.litert_interpreter() is tf.lite.Interpreter  # TensorFlow's, deprecated
    monkeypatch.setattr(export, "tensorflow_litert_interpreter", lambda: None)
    for fmt, package in (("onnx", "onnxruntime"), ("litert", "ai-edge-litert"),
                         ("openvino", "openvino")):  # fmt: skip
        with pytest.raises(UserError, match=rf"\(pip install {package}\)$"):
            export.open_export(fmt, tmp_path)


def test_check_on_a_model_of_other_classes(digits_run, digits: Path, tmp_path: Path, capsys):
    """Ten digit classes from scikit-learn, not malaria: the model save_model.py trained
    on them (shared with test_own_images), exported to ONNX and checked on six images of
    each class."""
    model, _ = digits_run
    check = tmp_path / "check"
    for source in sorted(digits.iterdir()):
        (check / source.name).mkdir(parents=True)
        for path in sorted(source.glob("*.png"))[:6]:
            shutil.copy(path, check / source.name / path.name)
    output = tmp_path / "onnx"
    argv = ["--model", str(model), "--format", "onnx", "--output", str(output)]
    assert main([*argv, "--check", str(check)]) == 0
    printed = capsys.readouterr().out
    ((images, difference, changed),) = CHECK_LINE.findall(printed)
    assert (int(images), int(changed)) == (60, 0), printed
    assert float(difference) < TOLERANCE, printed
    print(f"--check digits onnx: {images} images, largest difference {difference}")
    metadata = json.loads((output / METADATA_NAME).read_text())
    assert metadata["class_names"] == [f"digit_{d}" for d in range(10)]
    assert metadata["preprocessing"]["height"] == 32
    assert metadata["provenance"]["dataset"] == "digits"  # its name, not where it lay
