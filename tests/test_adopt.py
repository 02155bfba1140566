"""Model files saved elsewhere (issue 39): --classes, --interpolation, --scale and
python -m pyimagesearch.adopt, on the article's own tf_keras model and on Keras 3 files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from pyimagesearch.core.modelfile import file_sha256, read_metadata
from tests.conftest import run_script, without_tensorflow, write_image

CLASSES = "Parasitized,Uninfected"


def read_csv(path: Path) -> dict[str, np.ndarray]:
    with open(path) as handle:
        return {row["path"]: np.asarray([float(v) for k, v in row.items() if k.startswith("p_")])
                for row in csv.DictReader(handle)}  # fmt: skip


def test_the_articles_own_model_loads_with_classes_and_through_adopt(tutorial_dataset, tmp_path):
    """The article's scripts on tf_keras (one epoch of bench.legacy's training, saved as
    HDF5 under the article's name): load_model.py --classes and the adopted file (with
    TensorFlow unimportable) both give the article's own pipeline's labels
    (flow_from_directory + model.predict) on the testing folder, and its probabilities."""
    pytest.importorskip("tf_keras")
    legacy = tmp_path / "saved_model.model"
    reference = tmp_path / "article.json"
    testing = tutorial_dataset / "testing"
    trained = run_script("-m", "bench.legacy", "train", "--dataset", str(tutorial_dataset),
                         "--model", str(legacy), "--epochs", "1", "--predict", str(testing),
                         "--predictions", str(reference))  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-2000:]
    article = json.loads(reference.read_text())
    expected = dict(zip(article["files"], np.asarray(article["probabilities"]), strict=True))
    assert article["classes"] == CLASSES.split(",")

    refused = run_script(*without_tensorflow("load_model.py"), "--images", str(testing),
                         "--model", str(legacy), "--output", str(tmp_path / "m.png"))  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    assert "--classes" in refused.stderr and "pyimagesearch.adopt" in refused.stderr

    loaded = run_script("load_model.py", "--images", str(testing), "--model", str(legacy),
                        "--classes", CLASSES, "--samples", "0", "--precision", "float32",
                        "--csv", str(tmp_path / "classes.csv"),
                        "--output", str(tmp_path / "m.png"))  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    first_info = next(line for line in loaded.stdout.splitlines() if "no metadata" in line)
    assert "nearest resize" in first_info and "scale 1/255" in first_info
    assert "64x64" in first_info

    adopted = tmp_path / "adopted.model"
    before = file_sha256(legacy)
    made = run_script("-m", "pyimagesearch.adopt", "--model", str(legacy), "--classes", CLASSES,
                      "--output", str(adopted))  # fmt: skip
    assert made.returncode == 0, made.stderr[-2000:]
    assert file_sha256(legacy) == before  # never written
    provenance = read_metadata(adopted)["provenance"]
    assert provenance["adopted_from"]["sha256"] == before
    assert provenance["adopted_from"]["saved_with"].startswith("Keras 2.")

    fast = run_script(*without_tensorflow("load_model.py"), "--images", str(testing),
                      "--model", str(adopted), "--samples", "0", "--precision", "float32",
                      "--csv", str(tmp_path / "adopted.csv"),
                      "--output", str(tmp_path / "m2.png"))  # fmt: skip
    assert fast.returncode == 0, fast.stderr[-2000:]
    assert "adopted from 'saved_model.model'" in fast.stdout

    for name in ("classes.csv", "adopted.csv"):
        ours = read_csv(tmp_path / name)
        assert sorted(ours) == sorted(expected)
        agree = np.mean([ours[f].argmax() == expected[f].argmax() for f in expected])
        assert agree >= 0.99, (name, agree)
        largest = max(np.abs(ours[f] - expected[f]).max() for f in expected)
        assert largest < 1e-3, (name, largest)  # the same inputs, not just the same labels


def plain_keras_model(path: Path, lambda_marker: Path | None = None) -> None:
    """A small Keras 3 classifier (3 outputs) that rescales inside itself, saved without our
    metadata; with LAMBDA_MARKER, a Lambda layer that would write that file if run."""
    import keras

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    if lambda_marker is not None:
        # Writes LAMBDA_MARKER whenever it runs: proof of whether loading ran its code.
        code = eval(f"lambda t: t + 0 * len(open({str(lambda_marker)!r}, 'w').name)")
        x = keras.layers.Lambda(code)(x)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.save(path)


def test_interpolation_and_scale_are_used_and_recorded(tmp_path):
    """A network that rescales inside (--scale 1), read with bilinear resizing: the
    adopted file records both, and classifies without TensorFlow exactly as Keras does on
    the pixels the one preprocessing gives for that recipe."""
    import keras

    from pyimagesearch.core.preprocessing import default_recipe, load_pixels

    model_path = tmp_path / "elsewhere.keras"
    plain_keras_model(model_path)
    images = [write_image(tmp_path / "images" / "a" / f"{i}.png", size=(50, 40), seed=i)
              for i in range(4)]  # fmt: skip
    adopted = tmp_path / "adopted.model"
    made = run_script("-m", "pyimagesearch.adopt", "--model", str(model_path),
                      "--classes", "a,b,c", "--interpolation", "bilinear", "--scale", "1",
                      "--output", str(adopted))  # fmt: skip
    assert made.returncode == 0, made.stderr[-2000:]
    recipe = read_metadata(adopted)["preprocessing"]
    assert recipe == default_recipe((32, 32), "bilinear", "1")

    model = keras.saving.load_model(model_path)
    pixels = np.stack([load_pixels(p, recipe) for p in images])
    expected = model.predict(pixels, verbose=0)  # the network rescales by itself
    fast = run_script(*without_tensorflow("load_model.py"), "--images", str(tmp_path / "images"),
                      "--model", str(adopted), "--precision", "float32", "--csv",
                      str(tmp_path / "out.csv"), "--output", str(tmp_path / "m.png"))  # fmt: skip
    assert fast.returncode == 0, fast.stderr[-2000:]
    got = read_csv(tmp_path / "out.csv")
    for path, row in zip(images, expected, strict=True):
        np.testing.assert_allclose(got[str(path)], row, atol=1e-5)

    # The same three options read the original file directly: load_model.py ...
    direct = run_script("load_model.py", "--images", str(tmp_path / "images"), "--model",
                        str(model_path), "--classes", "a,b,c", "--interpolation", "bilinear",
                        "--scale", "1", "--precision", "float32",
                        "--csv", str(tmp_path / "direct.csv"),
                        "--output", str(tmp_path / "m.png"))  # fmt: skip
    assert direct.returncode == 0, direct.stderr[-2000:]
    got = read_csv(tmp_path / "direct.csv")
    for path, row in zip(images, expected, strict=True):
        np.testing.assert_allclose(got[str(path)], row, atol=1e-5)
    # ... the server (its settings, as serve_model.py hands them to each worker) ...
    from pyimagesearch.serving.serve import Settings, build_service

    settings = Settings(str(model_path), classes=["a", "b", "c"], interpolation="bilinear",
                        scale="1")  # fmt: skip
    service = build_service(Settings.from_json(settings.to_json()))
    assert service.class_names == ["a", "b", "c"] and service.recipe == recipe
    service.close()
    # ... and the export, whose metadata says what it assumed.
    exported = tmp_path / "exported"
    made = run_script("-m", "pyimagesearch.export", "--model", str(model_path), "--classes",
                      "a,b,c", "--interpolation", "bilinear", "--scale", "1", "--format",
                      "tf_saved_model", "--output", str(exported))  # fmt: skip
    assert made.returncode == 0, made.stderr[-2000:]
    document = json.loads((exported / "pyimagesearch.json").read_text())
    assert document["class_names"] == ["a", "b", "c"] and document["preprocessing"] == recipe


def test_refusals(tmp_path):
    """Without --classes, one line naming --classes and adopt (before TensorFlow); a
    Lambda layer is refused in safe mode, its code never run; adopt never writes over
    its input, nor to HDF5."""
    model_path = tmp_path / "elsewhere.keras"
    marker = tmp_path / "lambda-ran"
    plain_keras_model(model_path, lambda_marker=marker)
    marker.unlink(missing_ok=True)  # building the model ran it once, here
    write_image(tmp_path / "images" / "a.png")
    common = ("--images", str(tmp_path / "images"), "--output", str(tmp_path / "m.png"))

    bare = run_script(*without_tensorflow("load_model.py"), "--model", str(model_path), *common)
    assert bare.returncode == 2
    error = [line for line in bare.stderr.splitlines() if line.startswith("[ERROR]")]
    assert len(error) == 1 and "with --classes" in error[0] and "pyimagesearch.adopt" in error[0]
    scale_only = run_script(*without_tensorflow("load_model.py"), "--model", str(model_path),
                            "--scale", "1", *common)  # fmt: skip
    assert scale_only.returncode == 2 and "--classes" in scale_only.stderr

    lambda_run = run_script("load_model.py", "--model", str(model_path), "--classes", "a,b,c",
                            *common)  # fmt: skip
    assert lambda_run.returncode == 2
    assert "Lambda" in lambda_run.stderr or "safe" in lambda_run.stderr
    assert not marker.exists()

    before = file_sha256(model_path)
    for output in (model_path, tmp_path / "adopted.h5"):
        made = run_script(*without_tensorflow("pyimagesearch/adopt.py"), "--model",
                          str(model_path), "--classes", "a,b,c",
                          "--output", str(output))  # fmt: skip
        assert made.returncode == 2, made.stderr
    assert file_sha256(model_path) == before
    assert not (tmp_path / "adopted.h5").exists()
