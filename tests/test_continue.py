"""save_model.py --init-from (issue 39): keep training a saved model, give it new classes,
or start from a Keras model made elsewhere; --freeze-backbone, the finetune recipe, the
parent in the provenance and load_model.py's "continued from"."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pyimagesearch.core.modelfile import file_sha256, read_metadata
from tests.conftest import ROOT, run_script, without_tensorflow


def train(argv: list[str]) -> None:
    """save_model.py's main in this process (a fresh process costs 20-30 s more)."""
    import save_model

    assert save_model.main(argv) == 0


def weights_of(path: Path, kind: str | None = None) -> dict[str, list[np.ndarray]]:
    """Each layer's weights by name (of one KIND of layer when given), from the file."""
    from pyimagesearch.core.modelfile import Adoption
    from pyimagesearch.training.serialization import load_model

    model, _ = load_model(path, adoption=Adoption(None))  # also a file without metadata
    return {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers
            if kind is None or type(layer).__name__ == kind}  # fmt: skip


def digits_subset(digits: Path, folder: Path, per_class: int = 20) -> Path:
    """The first PER_CLASS digits of each class (a test need not train on 1,797)."""
    import shutil

    for source in sorted(p for p in digits.iterdir() if p.is_dir()):
        (folder / source.name).mkdir(parents=True)
        for image in sorted(source.iterdir())[:per_class]:
            shutil.copyfile(image, folder / source.name / image.name)
    return folder


def plain_cnn(path: Path, outputs: int = 5) -> None:
    """A small CNN made with plain Keras, outside the project (it rescales inside itself,
    so its preprocessing is --scale 1), saved without our metadata."""
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs_ = keras.layers.Dense(outputs, activation="softmax", name="head")(x)
    keras.Model(inputs, outputs_).save(path)


def test_init_from_a_plain_keras_cnn_then_continue_it(tutorial_dataset, tmp_path):
    """A 5-output CNN from elsewhere onto the 2 malaria classes with --freeze-backbone 1
    (of 1 epoch: the backbone stays the parent's exactly, the new classifier trains),
    then that model continued on the same classes (every weight kept: at a learning
    rate of 1e-9 nothing moves); the lineage names both parents."""
    cnn = tmp_path / "cnn.keras"
    plain_cnn(cnn)
    first, second = tmp_path / "first.model", tmp_path / "second.model"
    common = ["--dataset", str(tutorial_dataset), "--plot", str(tmp_path / "p.png"),
              "--epochs", "1", "--seed", "1"]  # fmt: skip
    train([*common, "--model", str(first), "--init-from", str(cnn), "--scale", "1",
           "--interpolation", "bilinear", "--freeze-backbone", "1"])  # fmt: skip
    metadata = read_metadata(first)
    assert metadata["class_names"] == ["Parasitized", "Uninfected"]
    assert metadata["preprocessing"]["scale"] == "1"  # --scale
    assert metadata["preprocessing"]["interpolation"] == "bilinear"  # --interpolation
    assert (metadata["preprocessing"]["height"], metadata["preprocessing"]["width"]) == (32, 32)
    provenance = metadata["provenance"]
    assert provenance["recipe"] == "finetune"  # the default with --init-from
    assert provenance["init_from"]["sha256"] == file_sha256(cnn)
    assert provenance["init_from"]["new_classifier"] is True
    assert provenance["freeze_backbone"] == 1
    parent, child = weights_of(cnn), weights_of(first)
    for name in ("conv", "conv2"):  # --freeze-backbone: only the classifier trained
        for was, now in zip(parent[name], child[name], strict=True):
            np.testing.assert_array_equal(was, now)
    assert child["classifier"][0].shape == (16, 2)

    train([*common, "--model", str(second), "--init-from", str(first),
           "--learning-rate", "1e-9"])  # fmt: skip
    kept = weights_of(second)
    for name, values in child.items():  # every weight, the classifier's included
        for was, now in zip(values, kept[name], strict=True):
            np.testing.assert_allclose(was, now, atol=1e-6)
    record = read_metadata(second)["provenance"]["init_from"]
    assert record["new_classifier"] is False
    assert record["class_names"] == ["Parasitized", "Uninfected"]
    assert record["provenance"]["init_from"]["sha256"] == file_sha256(cnn)

    shown = run_script(*without_tensorflow("load_model.py"), "--images",
                       str(tutorial_dataset / "testing"), "--model", str(second),
                       "--output", str(tmp_path / "m.png"))  # fmt: skip
    assert shown.returncode == 0, shown.stderr[-2000:]
    line = next(line for line in shown.stdout.splitlines() if "model:" in line)
    assert "continued from 'first.model'" in line and "continued from 'cnn.keras'" in line


def test_init_from_a_two_class_model_onto_ten_classes_freezes_batch_norm(
    trained_run, digits, tmp_path
):
    """The tutorial ResNet trained on malaria (2 classes) continued onto the 10 digits:
    it trains, saves and loads (a fresh load_model.py, without TensorFlow); the finetune
    recipe keeps the BatchNormalization statistics the parent's, while the convolutions
    train."""
    child = tmp_path / "digits.model"
    digits = digits_subset(digits, tmp_path / "digits")
    train(["--dataset", str(digits), "--model", str(child), "--plot", str(tmp_path / "p.png"),
           "--init-from", str(trained_run.model_path), "--epochs", "1", "--seed", "2"])  # fmt: skip
    metadata = read_metadata(child)
    assert metadata["class_names"] == sorted(p.name for p in digits.iterdir() if p.is_dir())
    assert len(metadata["class_names"]) == 10
    assert metadata["provenance"]["init_from"]["class_names"] == ["Parasitized", "Uninfected"]
    assert metadata["provenance"]["bn_statistics"] == "frozen"
    norms = weights_of(trained_run.model_path, "BatchNormalization")
    assert norms
    for name, values in weights_of(child, "BatchNormalization").items():
        for was, now in zip(norms[name], values, strict=True):  # gamma, beta, statistics
            np.testing.assert_array_equal(was, now)
    convs, trained = weights_of(trained_run.model_path, "Conv2D"), weights_of(child, "Conv2D")
    assert any(not np.array_equal(convs[n][0], trained[n][0]) for n in convs)

    shown = run_script(*without_tensorflow("load_model.py"), "--images", str(digits),
                       "--model", str(child), "--samples", "50",
                       "--output", str(tmp_path / "m.png"))  # fmt: skip
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "continued from 'saved_model.model'" in shown.stdout


def test_init_from_refusals(tmp_path, synthetic_dataset):
    """Options that only mean something with --init-from are refused without it, before
    TensorFlow starts."""
    base = ["save_model.py", "--dataset", str(synthetic_dataset), "--model",
            str(tmp_path / "m.model")]  # fmt: skip
    for extra in (["--freeze-backbone", "1"], ["--scale", "1"], ["--bn-statistics", "frozen"],
                  ["--interpolation", "area"]):  # fmt: skip
        result = run_script(*without_tensorflow(base[0]), *base[1:], *extra)
        assert result.returncode == 2, (extra, result.stderr[-500:])
        assert "--init-from" in result.stderr
    image_size = run_script(*without_tensorflow(base[0]), *base[1:], "--init-from",
                            str(tmp_path / "missing.model"), "--image-size", "48")  # fmt: skip
    assert image_size.returncode == 2 and "--image-size" in image_size.stderr


def test_the_measured_figures_meet_the_issue():
    """The study's recorded figures (python -m studies.lifecycle, docs/lifecycle.md) on
    patients neither run saw: continued >= scratch + 0.05, and >= parent - 0.02."""
    summary = json.loads((ROOT / "docs" / "lifecycle" / "summary.json").read_text())
    parent = summary["parent"]["accuracy"]
    continued = np.mean([r["accuracy"] for r in summary["runs"] if r["run"] == "continued"])
    scratch = np.mean([r["accuracy"] for r in summary["runs"] if r["run"] == "scratch"])
    assert continued >= scratch + 0.05
    assert continued >= parent - 0.02
