"""Temperature scaling: the fit and the ECE on synthetic probabilities, the stored
temperature and its use by load_model.py and the server on a model trained on real
images, and models without a temperature (or with a hostile one). Every export applies
the temperature too: tests/test_export.py's model carries one."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scipy.special import log_softmax, softmax

from pyimagesearch.core import calibration
from pyimagesearch.core.calibration import (
    MAX_TEMPERATURE,
    MIN_TEMPERATURE,
    apply_temperature,
    expected_calibration_error,
    fit_on_validation,
    fit_temperature,
    temperature_of,
)
from pyimagesearch.core.errors import UserError
from pyimagesearch.core.preprocessing import default_recipe, load_image
from pyimagesearch.serving.serve import Settings, build_service, create_app
from pyimagesearch.training.serialization import (
    load_model,
    read_metadata,
    save_model,
    validate_metadata,
)
from pyimagesearch.training.train import build_model
from tests.conftest import TrainedRun, run_script, write_image

CLASSES = ["Parasitized", "Uninfected"]


def expected_calibrated(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(p) / T), written here independently of the project's code."""
    return softmax(np.log(np.asarray(probabilities, dtype="float64")) / temperature, axis=1)


def nll(probabilities: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    log_p = log_softmax(np.log(np.asarray(probabilities, dtype="float64")) / temperature, axis=1)
    return float(-log_p[np.arange(len(labels)), labels].mean())


def synthetic(n: int, sharpen: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z) (the truth), reported as softmax(SHARPEN * z): a model
    over-confident by exactly T = SHARPEN."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (n, 3))
    truth = softmax(logits, axis=1)
    labels = np.array([rng.choice(3, p=row) for row in truth])
    return softmax(sharpen * logits, axis=1), labels


# --- the fit and the error measure, on synthetic probabilities ---------------------------


@pytest.mark.parametrize("sharpen", [3.0, 0.5])
def test_fit_recovers_the_temperature_that_distorted_the_probabilities(sharpen: float):
    """Over-confident by 3 gives T near 3 (> 1, softening); under-confident, T near 0.5."""
    probabilities, labels = synthetic(20_000, sharpen)
    temperature = fit_temperature(probabilities, labels)
    assert temperature == pytest.approx(sharpen, rel=0.08)
    assert (temperature > 1) == (sharpen > 1)
    # Calibrating with it removes most of the calibration error; labels stay the same.
    calibrated = np.asarray(apply_temperature(probabilities, temperature))
    assert expected_calibration_error(calibrated, labels) < 0.02
    assert expected_calibration_error(probabilities, labels) > 0.05
    assert np.array_equal(calibrated.argmax(axis=1), probabilities.argmax(axis=1))


def test_ece_of_a_perfectly_calibrated_set_is_about_zero():
    rng = np.random.default_rng(1)
    confidence = rng.uniform(0.5, 1.0, 200_000)
    correct = rng.random(200_000) < confidence  # right exactly as often as it claims
    labels = np.where(correct, 0, 1)
    probabilities = np.stack([confidence, 1 - confidence], axis=1)
    assert expected_calibration_error(probabilities, labels) < 0.01


def test_ece_of_a_known_miscalibrated_set():
    """Always 95% sure, right 60% of the time: ECE is the gap, 0.35."""
    probabilities = np.tile([0.95, 0.05], (10, 1))
    labels = np.array([0] * 6 + [1] * 4)
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.35)


def test_temperature_one_is_the_identity():
    probabilities, _ = synthetic(1000, 2.0)
    probabilities = probabilities.astype("float32")
    np.testing.assert_allclose(np.asarray(apply_temperature(probabilities, 1.0)), probabilities,
                               rtol=0, atol=2e-7)  # fmt: skip
    np.testing.assert_allclose(
        calibration.calibrate(probabilities, 2.5), expected_calibrated(probabilities, 2.5),
        rtol=0, atol=1e-12,
    )  # fmt: skip


def test_a_model_file_without_a_temperature_gives_its_plain_probabilities(tmp_path: Path):
    """A model saved without a temperature (as before calibration existed) gives exactly
    the probabilities Keras' own predict gives for it; one saved with T gives
    softmax(log(p) / T) of them."""
    images = np.random.default_rng(2).random((3, 64, 64, 3), dtype="float32")
    recipe = default_recipe()
    save_model(build_model(2), tmp_path / "old.model", {"class_names": CLASSES,
               "preprocessing": recipe})  # fmt: skip
    model, metadata = load_model(tmp_path / "old.model")
    plain = model.predict(images, verbose=0)
    assert np.array_equal(calibration.forward(model, temperature_of(metadata))(images), plain)
    save_model(
        model, tmp_path / "new.model", metadata_with({"method": "temperature", "temperature": 2.0})
    )
    model, metadata = load_model(tmp_path / "new.model")
    scaled = np.asarray(calibration.forward(model, temperature_of(metadata))(images))
    np.testing.assert_allclose(scaled, expected_calibrated(plain, 2.0), rtol=0, atol=1e-6)
    assert np.abs(scaled - plain).max() > 1e-4


def test_a_validation_split_without_errors_stores_no_temperature(capsys):
    """All correct: the likelihood wants T -> 0; the fit ends on the bound and is refused."""
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]])
    labels = np.array([0, 1, 0, 1])
    assert fit_temperature(probabilities, labels) == pytest.approx(MIN_TEMPERATURE, abs=1e-3)
    assert fit_on_validation(probabilities, labels, probabilities, labels) is None
    assert "no temperature is stored" in capsys.readouterr().out
    assert fit_on_validation(None, np.array([], int), probabilities, labels) is None


def sampled(images: int, overconfidence: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from calibrated probabilities, reported as softmax(logits x OVERCONFIDENCE):
    the temperature that calibrates them is OVERCONFIDENCE (1: already calibrated)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.5, (images, 2))
    labels = (rng.random(images) < softmax(logits, axis=1)[:, 1]).astype(int)
    return softmax(logits * overconfidence, axis=1), labels


def test_a_temperature_is_stored_only_when_the_validation_split_determines_it(capsys):
    """Issue 40's rule: enough errors, and a T fitted on part of the split must make the
    rest more likely. One error in 40 once fitted T = 0.54, which raised the held-out
    patients' NLL by 39%."""
    # Over-confident (true T = 3), 400 images: determined, stored, near 3.
    probabilities, labels = sampled(400, 3.0, seed=1)
    assert calibration.cross_fitted_gain(probabilities, labels) > 0.1
    stored = fit_on_validation(probabilities, labels, probabilities, labels)
    assert stored is not None and 2.4 < stored.temperature < 3.6
    # Already calibrated, 2,000 images: a temperature gains nothing on unseen images.
    probabilities, labels = sampled(2000, 1.0, seed=2)
    assert abs(calibration.cross_fitted_gain(probabilities, labels)) < 0.01
    # Already calibrated, 40 images with 6 errors (this draw fits T = 0.91): the fit
    # does not carry to the unseen part of the split, so none is stored.
    probabilities, labels = sampled(40, 1.0, seed=4)
    assert calibration.cross_fitted_gain(probabilities, labels) < 0
    capsys.readouterr()
    assert fit_on_validation(probabilities, labels, probabilities, labels) is None
    assert "made the rest less likely" in capsys.readouterr().out
    # Four errors in 40: too few, whatever the fit says.
    probabilities, labels = sampled(400, 3.0, seed=3)
    right = probabilities.argmax(axis=1) == labels
    few = np.r_[np.flatnonzero(~right)[:4], np.flatnonzero(right)[:36]]
    capsys.readouterr()
    assert fit_on_validation(probabilities[few], labels[few], probabilities, labels) is None
    out = capsys.readouterr().out
    assert "40 validation images (4 misclassified) hold too few errors" in out, out
    assert "no temperature is stored" in out


# --- what a model file may carry ----------------------------------------------------------


def metadata_with(calibration_entry: object) -> dict:
    return {"class_names": CLASSES, "preprocessing": default_recipe(),
            "calibration": calibration_entry}  # fmt: skip


@pytest.mark.parametrize(
    "entry, fragment",
    [
        ({"method": "temperature", "temperature": float("nan")}, "got nan"),
        ({"method": "temperature", "temperature": float("inf")}, "got inf"),
        ({"method": "temperature", "temperature": 0.0}, "got 0.0"),
        ({"method": "temperature", "temperature": -2.0}, "got -2.0"),
        ({"method": "temperature", "temperature": 1e300}, "got 1e+300"),
        ({"method": "temperature", "temperature": 10**400}, "between"),
        ({"method": "temperature", "temperature": "2"}, "got str"),
        ({"method": "temperature", "temperature": True}, "got bool"),
        ({"method": "temperature"}, "got NoneType"),
        ({"method": "platt", "temperature": 2.0}, "unknown calibration"),
        ([2.0], "unknown calibration"),
    ],
)
def test_a_hostile_temperature_is_refused(entry, fragment):
    with pytest.raises(UserError, match="calibration") as refused:
        validate_metadata(metadata_with(entry), "m.model")
    assert fragment in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("value", [MIN_TEMPERATURE, 1, 2.5, MAX_TEMPERATURE])
def test_a_temperature_within_bounds_is_accepted(value):
    entry = {"method": "temperature", "temperature": value}
    assert validate_metadata(metadata_with(entry), "m.model")["calibration"] == entry


def test_load_model_refuses_a_file_with_a_nan_temperature(tmp_path: Path):
    """One line and exit 2, before any image is classified (NaN would be every answer)."""
    path = tmp_path / "hostile.model"
    save_model(
        build_model(2), path, metadata_with({"method": "temperature", "temperature": float("nan")})
    )
    write_image(tmp_path / "images" / "a.png")
    result = run_script("load_model.py", "-i", str(tmp_path / "images"), "-m", str(path),
                        "-o", str(tmp_path / "m.png"))  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "calibration temperature must be between 0.05 and 20.0, got nan" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "classifying" not in result.stdout


# --- the HTTP server ----------------------------------------------------------------------


def test_the_server_gives_calibrated_probabilities(tmp_path: Path):
    model = build_model(2)
    path = tmp_path / "calibrated.model"
    save_model(model, path, metadata_with({"method": "temperature", "temperature": 2.5}))
    images = [write_image(tmp_path / f"{i}.png", size=(64, 64), seed=i) for i in range(3)]
    service = build_service(Settings(str(path), "tensorflow"))
    with TestClient(create_app(service)) as client:
        while client.get("/readyz").status_code != 200:
            time.sleep(0.05)
        response = client.post(
            "/predict", files=[("files", (p.name, p.read_bytes(), "image/png")) for p in images]
        )
        assert client.get("/model").json()["calibration"]["temperature"] == 2.5
    assert response.status_code == 200, response.text
    recipe = read_metadata(path)["preprocessing"]
    inputs = np.stack([load_image(str(p), recipe) for p in images])
    raw = model(inputs, training=False).numpy()
    served = [[p["probabilities"][c] for c in CLASSES] for p in response.json()["predictions"]]
    np.testing.assert_allclose(served, expected_calibrated(raw, 2.5), rtol=0, atol=1e-6)


# --- a model trained on real images (tests/conftest.py's trained_run) -------------------


def stored_temperature(trained_run: TrainedRun) -> float:
    entry = read_metadata(trained_run.model_path)["calibration"]
    assert entry == trained_run.metadata["calibration"]
    return entry["temperature"]


def test_training_fits_and_stores_the_temperature(trained_run: TrainedRun):
    entry = read_metadata(trained_run.model_path)["calibration"]
    assert entry["method"] == "temperature" and entry["fitted_on"] == "validation"
    assert entry["images"] == 40
    temperature = stored_temperature(trained_run)
    assert MIN_TEMPERATURE < temperature < MAX_TEMPERATURE
    # It is the validation split's likelihood optimum (checked with this file's own NLL).
    validation = trained_run.model.predict(trained_run.fed_to_model("validation"), verbose=0)
    labels = trained_run.decoded["validation"][1]
    best = nll(validation, labels, temperature)
    assert best <= nll(validation, labels, temperature * 1.05)
    assert best <= nll(validation, labels, temperature / 1.05)
    assert best < nll(validation, labels, 1.0) or temperature == pytest.approx(1.0, abs=1e-3)
    # The test figures stored are those of the test split.
    test = trained_run.model.predict(trained_run.fed_to_model("testing"), verbose=0)
    test_labels = trained_run.decoded["testing"][1]
    assert entry["test_ece_before"] == pytest.approx(expected_calibration_error(test, test_labels))
    after = expected_calibrated(test, temperature)
    assert entry["test_ece_after"] == pytest.approx(expected_calibration_error(after, test_labels))
    plot = trained_run.model_path.parent / "calibration.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000


def classify(model_path: Path, images: Path, folder: Path) -> tuple[list[dict], str]:
    table = folder / f"{model_path.stem}.csv"
    result = run_script("load_model.py", "-i", str(images), "-m", str(model_path), "-n", "0",
                        "-b", "32", "--csv", str(table),
                        "-o", str(folder / "montage.png"))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return list(csv.DictReader(table.open())), result.stdout


def test_a_model_without_a_temperature_loads_as_before(
    trained_run: TrainedRun, tutorial_dataset: Path, tmp_path: Path
):
    metadata = {k: v for k, v in trained_run.metadata.items() if k != "calibration"}
    old = tmp_path / "old.model"
    save_model(trained_run.model, old, metadata)
    rows, stdout = classify(old, tutorial_dataset / "testing", tmp_path)
    assert "calibrated" not in stdout
    raw = trained_run.model.predict(trained_run.fed_to_model("testing"), batch_size=32, verbose=0)
    got = [[r[f"p_{name}"] for name in CLASSES] for r in rows]
    assert got == [[f"{p:.6f}" for p in row] for row in raw]
