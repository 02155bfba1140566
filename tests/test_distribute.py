"""The mirrored-strategy path, on two logical CPU devices, saves an ordinary model."""

import csv
from pathlib import Path

import numpy as np

from pyimagesearch.preprocessing import load_image
from pyimagesearch.serialization import load_model
from tests.conftest import run_script


def test_mirrored_training_saves_a_model_that_loads_like_any_other(
    synthetic_dataset: Path, tmp_path: Path
):
    """Also trains at --image-size 48: the loader must follow the size stored in the model."""
    model_path = tmp_path / "mirrored.model"
    result = run_script(
        "save_model.py", "-d", str(synthetic_dataset), "-m", str(model_path),
        "-p", str(tmp_path / "plot.png"), "--epochs", "1", "--batch-size", "4", "--seed", "2",
        "--distribute", "mirrored", "--cpu-devices", "2", "--image-size", "48",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mirrored training on 2 devices" in result.stdout

    table = tmp_path / "p.csv"
    loaded = run_script(
        "load_model.py", "-i", str(synthetic_dataset / "testing"), "-m", str(model_path),
        "-n", "0", "--csv", str(table), "-o", str(tmp_path / "montage.png"),
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    rows = list(csv.DictReader(table.open()))
    model, metadata = load_model(model_path)
    assert model.input_shape == (None, 48, 48, 3)
    assert (metadata["preprocessing"]["height"], metadata["preprocessing"]["width"]) == (48, 48)
    images = np.stack([load_image(r["path"], metadata["preprocessing"]).numpy() for r in rows])
    expected = model.predict(images, verbose=0)
    got = np.array([[float(r["p_Parasitized"]), float(r["p_Uninfected"])] for r in rows])
    np.testing.assert_allclose(got, expected, atol=2e-6)
