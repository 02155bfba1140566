"""The promise: the model loaded in another process is the model that was trained.

A model trained on real images (its BatchNormalization statistics are no longer the
initial ones) is saved in both file formats: the Keras zip (``.model`` as save_model.py
wrote it; ``.keras`` is the same zip, read by the same code, and tests/test_serialization.py
round-trips it) and legacy HDF5 (``.h5``). ``load_model.py`` in a fresh process must give
the probabilities the trained model gives on the arrays training evaluated (calibrated
with the stored temperature), and report the test accuracy stored in the file. This is
the suite's one check of load_model.py's --csv probabilities on the trained model.
"""

import csv
import re
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy.special import softmax

from pyimagesearch.core.calibration import apply_temperature, temperature_of
from pyimagesearch.training.serialization import read_metadata, save_model
from tests.conftest import TrainedRun, run_script


def batch_norm_statistics(model: keras.Model) -> list[np.ndarray]:
    return [
        np.asarray(variable)
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
        for variable in (layer.moving_mean, layer.moving_variance)
    ]


@pytest.fixture(scope="module")
def saved_both_ways(trained_run: TrainedRun) -> dict[str, Path]:
    """The same trained model: '.model' as save_model.py wrote it, and '.h5'."""
    h5 = trained_run.model_path.parent / "same_model.h5"
    save_model(trained_run.model, h5, trained_run.metadata)
    return {".model": trained_run.model_path, ".h5": h5}


def test_the_model_was_trained_and_is_not_saturated(trained_run: TrainedRun):
    """Otherwise the round trip below could not notice lost moving statistics: they would
    be the initial ones, or every probability would round to 0 or 1 whatever the weights."""
    moved = [s for s in batch_norm_statistics(trained_run.model) if not np.all(s == s.flat[0])]
    assert len(moved) == len(batch_norm_statistics(trained_run.model)) > 0
    probabilities = trained_run.model.predict(trained_run.fed_to_model("testing"), verbose=0)
    assert np.mean((probabilities > 0.01) & (probabilities < 0.99)) > 0.9


@pytest.mark.parametrize("suffix", [".model", ".h5"])
def test_fresh_process_gives_the_trained_models_probabilities(
    trained_run: TrainedRun, saved_both_ways: dict[str, Path], tutorial_dataset: Path,
    tmp_path: Path, suffix: str
):  # fmt: skip
    path = saved_both_ways[suffix]
    table = tmp_path / "predictions.csv"
    # Batches of 32, as training's evaluation used: the same inputs in the same batches,
    # on the Keras model, for equality to the last decimal. (The default engine, the
    # stored OpenVINO network, agrees within 1e-5: tests/test_predict.py.)
    result = run_script(
        "load_model.py", "-i", str(tutorial_dataset / "testing"), "-m", str(path), "-n", "0",
        "-b", "32", "--csv", str(table), "-o", str(tmp_path / "montage.png"),
        "--runtime", "tensorflow",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader(table.open()))

    images = trained_run.fed_to_model("testing")
    labels = trained_run.decoded["testing"][1]
    # load_model.py applies the stored temperature (tests/test_calibration.py checks it
    # against softmax(log(p) / T)) inside its traced function: here the same float32 ops,
    # traced too (eager rounds differently in the last digit), for six-decimal equality.
    raw = trained_run.model.predict(images, batch_size=32, verbose=0)
    temperature = temperature_of(trained_run.metadata)
    assert f"[INFO] probabilities calibrated with temperature {temperature}" in result.stdout
    expected = tf.function(lambda p: apply_temperature(p, temperature))(raw).numpy()
    # softmax(log(p) / T), written here apart from the project's code; and T did move them.
    independent = softmax(np.log(raw.astype("float64")) / temperature, axis=1)
    np.testing.assert_allclose(expected, independent, rtol=0, atol=1e-6)
    assert np.abs(expected - raw).max() > 1e-3
    assert len(rows) == len(images) == 100
    class_names = trained_run.metadata["class_names"]
    assert [Path(r["path"]).parent.name for r in rows] == [class_names[i] for i in labels]
    # Exact, to the six decimals the CSV keeps.
    got = [[r[f"p_{name}"] for name in class_names] for r in rows]
    assert got == [[f"{p:.6f}" for p in row] for row in expected]
    assert [r["label"] for r in rows] == [class_names[i] for i in raw.argmax(axis=1)]

    stored = read_metadata(path)["provenance"]["final_metrics"]["test_accuracy"]
    assert stored == trained_run.metadata["provenance"]["final_metrics"]["test_accuracy"]
    correct, total = map(int, re.search(r"\[INFO\] (\d+)/(\d+) correct", result.stdout).groups())
    assert correct / total == stored
