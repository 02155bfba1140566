"""The real scripts on real NIH images: build, train, save to '.model', load in a fresh process."""

import csv
import json
import re
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from pyimagesearch.build_dataset import TUTORIAL_SIZES
from pyimagesearch.core.calibration import forward, temperature_of
from pyimagesearch.core.preprocessing import load_image
from pyimagesearch.training.serialization import METADATA_NAME, load_model
from tests.conftest import run_script


def test_build_dataset_writes_the_tutorial_split(tutorial_dataset: Path, malaria_source: Path):
    for split, sizes in TUTORIAL_SIZES.items():
        for name, count in sizes.items():
            files = list((tutorial_dataset / split / name).iterdir())
            assert len(files) == count
            assert all((malaria_source / name / f.name).exists() for f in files)  # nothing moved
    names = [
        {f.name for f in (tutorial_dataset / split).rglob("*.png")} for split in TUTORIAL_SIZES
    ]
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])


def test_build_dataset_is_reproducible_and_refuses_to_clobber(
    tutorial_dataset: Path, malaria_source: Path, tmp_path: Path
):
    again = tmp_path / "again"
    assert (
        run_script(
            "-m",
            "pyimagesearch.build_dataset",
            "--source",
            str(malaria_source),
            "--output",
            str(again),
        ).returncode
        == 0
    )
    for split in TUTORIAL_SIZES:
        assert sorted(p.name for p in (again / split).rglob("*.png")) == sorted(
            p.name for p in (tutorial_dataset / split).rglob("*.png")
        )
    refused = run_script(
        "-m", "pyimagesearch.build_dataset", "--source", str(malaria_source), "--output", str(again)
    )
    assert refused.returncode == 2 and "--overwrite" in refused.stderr


def test_saved_model_carries_what_the_loader_needs(trained_model: Path):
    with zipfile.ZipFile(trained_model) as archive:
        metadata = json.loads(archive.read(METADATA_NAME))
    assert metadata["class_names"] == ["Parasitized", "Uninfected"]
    assert metadata["preprocessing"]["height"] == 64
    provenance = metadata["provenance"]
    assert provenance["epochs"] == 2 and provenance["seed"] == 7
    assert provenance["file_counts"] == {"training": 360, "validation": 40, "testing": 100}
    assert (trained_model.parent / "plot.png").stat().st_size > 10_000


def test_load_model_classifies_in_a_fresh_process(
    trained_model: Path, tutorial_dataset: Path, tmp_path: Path
):
    montage, table = tmp_path / "montage.png", tmp_path / "predictions.csv"
    result = run_script(
        "load_model.py",
        "--images",
        str(tutorial_dataset / "testing"),
        "--model",
        str(trained_model),
        "--output",
        str(montage),
        "--csv",
        str(table),
        "--seed",
        "3",
        "--precision",
        "float32",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[INFO] loading pre-trained network..." in result.stdout
    assert Image.open(montage).size == (4 * 128, 4 * 128)

    rows = list(csv.DictReader(table.open()))
    testing = sorted((tutorial_dataset / "testing").rglob("*.png"))
    assert len(rows) == 16
    assert len({row["path"] for row in rows}) == 16
    assert {Path(row["path"]) for row in rows} <= set(testing)
    # Each row is its own image's: the saved model applied here, in this process, to the
    # file the row names gives the row's probabilities, and the label is its likelier
    # class. (Mutation: load_model.py writing each row's probabilities beside the next
    # file's path fails here.)
    model, metadata = load_model(trained_model)
    class_names = metadata["class_names"]
    images = np.stack([load_image(row["path"], metadata["preprocessing"]) for row in rows])
    expected = forward(model, temperature_of(metadata))(images).numpy()
    got = np.array([[float(row[f"p_{name}"]) for name in class_names] for row in rows])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 + 2e-6)
    assert [row["label"] for row in rows] == [class_names[i] for i in expected.argmax(axis=1)]
    # The printed report agrees with the table on which predictions match their folder.
    correct = sum(row["label"] == Path(row["path"]).parent.name for row in rows)
    assert f"[INFO] {correct}/16 correct where the folder names the class" in result.stdout
    assert re.search(
        r"^\[INFO\] balanced_accuracy: [01]\.\d{4}  sensitivity: ", result.stdout, re.M
    )


def test_same_seed_same_sample(trained_model: Path, tutorial_dataset: Path, tmp_path: Path):
    tables = []
    for run in range(2):
        table = tmp_path / f"run{run}.csv"
        result = run_script(
            "load_model.py",
            "-i",
            str(tutorial_dataset / "testing"),
            "-m",
            str(trained_model),
            "-o",
            str(tmp_path / f"m{run}.png"),
            "--csv",
            str(table),
            "-n",
            "5",
            "--seed",
            "11",
        )
        assert result.returncode == 0, result.stderr[-2000:]
        tables.append(table.read_text())
    assert tables[0] == tables[1]
    assert len(tables[0].splitlines()) == 6


# (runtime, precision) -> how far its probabilities may be from Keras' own in float32.
# Keras itself in float32 (--runtime tensorflow) is tests/test_round_trip.py's, to the
# CSV's last decimal.
ENGINES = {
    ("openvino", "float32"): 1e-4,
    ("tensorflow", "mixed_bfloat16"): 3e-2,
    ("openvino", "mixed_bfloat16"): 3e-2,
}


def test_every_engine_gives_keras_probabilities(
    trained_model: Path, tutorial_dataset: Path, tmp_path: Path
):
    """OpenVINO and bfloat16 are speed options: same files, same order, same answers."""
    tables = {}
    for runtime, precision in ENGINES:
        table = tmp_path / f"{runtime}-{precision}.csv"
        # -b 16 gives more batches than OpenVINO keeps in flight, so ordering is exercised.
        result = run_script(
            "load_model.py", "-i", str(tutorial_dataset / "testing"), "-m", str(trained_model),
            "-o", str(tmp_path / "m.png"), "--csv", str(table), "-n", "0", "-b", "16",
            "--runtime", runtime, "--precision", precision,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        tables[runtime, precision] = list(csv.DictReader(table.open()))
    reference = tables["openvino", "float32"]
    model, metadata = load_model(trained_model)
    images = np.stack([load_image(r["path"], metadata["preprocessing"]) for r in reference])
    expected = forward(model, temperature_of(metadata))(images).numpy()[:, 0]
    for engine, tolerance in ENGINES.items():
        rows = tables[engine]
        assert [r["path"] for r in rows] == [r["path"] for r in reference], engine
        got = np.array([float(r["p_Parasitized"]) for r in rows])
        # The CSV keeps six decimals: allow for its rounding on top of the engine's own.
        np.testing.assert_allclose(
            got, expected, rtol=0, atol=tolerance + 2e-6, err_msg=str(engine)
        )
