"""crossval --ensemble: one ordinary model file whose output is the mean of the fold
models' calibrated probabilities, read by load_model.py's fast path without TensorFlow."""

from __future__ import annotations

import csv
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import run_script, write_dataset, write_image

from pyimagesearch.core.errors import UserError
from pyimagesearch.core.preprocessing import default_recipe

CLASSES = ["Parasitized", "Uninfected"]
# Far from 1, so that a missing (or doubled) temperature moves the mean by far more than
# the 1e-5 the comparison allows.
TEMPERATURES = (0.25, 3.0, None)


def fold_models(root: Path) -> list[Path]:
    """Three small untrained fold models, each with its own temperature (one without)."""
    from pyimagesearch.training.serialization import save_model
    from pyimagesearch.training.train import build_model

    paths = []
    for number, temperature in enumerate(TEMPERATURES, 1):
        keras.utils.set_random_seed(number)
        metadata = {
            "class_names": CLASSES,
            "preprocessing": default_recipe((32, 32)),
            "provenance": {"seed": number, "final_metrics": {"test_accuracy": 0.5}},
        }
        if temperature is not None:
            metadata["calibration"] = {"method": "temperature", "temperature": temperature}
        path = root / f"fold-{number}" / "model.keras"
        path.parent.mkdir(parents=True)
        save_model(build_model(2, (32, 32)), path, metadata)
        paths.append(path)
    return paths


def test_ensemble_file_is_the_mean_of_calibrated_folds(tmp_path: Path):
    """load_model.py, in a fresh process on the ensemble's stored OpenVINO network, gives
    the mean of what each fold model gives with its own temperature; also when the
    folds were trained in bfloat16 just before. (Mutation: building the ensemble
    without acceleration.float32_policy saves it without its OpenVINO network, which
    OpenVINO could not convert, and load_model.py falls back to Keras.)"""
    from pyimagesearch.crossval import predict_files
    from pyimagesearch.training.ensemble import write_ensemble
    from pyimagesearch.training.serialization import load_model

    paths = fold_models(tmp_path)
    ensemble = tmp_path / "ensemble.model"
    # As crossval --ensemble runs it: after folds trained in bfloat16 (the default
    # recipe's on a CPU with AMX), whose policy stays set in the process.
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    write_ensemble(paths, ensemble)
    assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    keras.mixed_precision.set_global_policy("float32")
    images = [
        write_image(tmp_path / "cells" / name / f"{i}.png", seed=i)
        for i, name in enumerate(CLASSES * 3)
    ]
    folds = [predict_files(*load_model(path), [str(p) for p in images])[1] for path in paths]
    expected = np.mean(folds, axis=0)
    assert np.abs(folds[0] - folds[1]).max() > 1e-3, "the folds must differ to test a mean"

    rows_csv = tmp_path / "ensemble.csv"
    result = run_script(
        "load_model.py", "--model", str(ensemble), "--images", str(tmp_path / "cells"),
        "--samples", "0", "--csv", str(rows_csv), "--precision", "float32",
        "--output", str(tmp_path / "montage.png"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OpenVINO" in result.stdout and "calibrated with temperature" not in result.stdout
    assert "ensemble: the mean of 3 models' calibrated probabilities" in result.stdout
    with open(rows_csv, newline="") as handle:
        rows = {Path(r["path"]).resolve(): r for r in csv.DictReader(handle)}
    got = np.array([[float(rows[p.resolve()][f"p_{c}"]) for c in CLASSES] for p in images])
    np.testing.assert_allclose(got, expected, atol=1e-5)

    _, metadata = load_model(ensemble)
    assert "calibration" not in metadata, "the ensemble's output is calibrated already"
    members = metadata["provenance"]["ensemble"]["members"]
    assert [m["temperature"] for m in members] == list(TEMPERATURES)


def test_ensemble_refuses_missing_folds(tmp_path: Path, capsys):
    """A missing fold is refused with one line: by write_ensemble, and by crossval before
    any training when --only leaves a fold undone."""
    from pyimagesearch import crossval
    from pyimagesearch.core.errors import run_command
    from pyimagesearch.training.ensemble import write_ensemble

    paths = [tmp_path / f"fold-{k}" / "model.keras" for k in (1, 2)]
    with pytest.raises(UserError, match="needs every fold's model; missing"):
        write_ensemble(paths, tmp_path / "ensemble.model")

    data = write_dataset(tmp_path / "data", {"training": 6}) / "training"
    output = tmp_path / "cv"
    argv = ["-d", str(data), "-o", str(output), "--folds", "3", "--image-size", "32",
            "--group-pattern", r"_(\d+)\.", "--ensemble", str(tmp_path / "e.model")]  # fmt: skip
    capsys.readouterr()
    assert run_command(crossval.main, [*argv, "--only", "1,3"]) == 2
    printed = capsys.readouterr()
    assert len(printed.err.splitlines()) == 1, printed.err
    assert "--ensemble needs all 3 folds" in printed.err and "fold(s) 2 " in printed.err
    assert "training on" not in printed.out and not output.exists()


def test_holdout_judges_each_fold_and_the_ensemble_on_the_same_cells(tmp_path: Path):
    """crossval --holdout's figures: holdout.md's rows are each model's on the held-out
    images, and holdout-predictions.csv holds, per image, what each model said (the
    ensemble's the mean of the folds'), so that two runs on the same held-out patients
    can be compared cell by cell. An image that will not decode is in neither.
    (Mutation: writing every held-out row, decoded or not, fails on the broken file;
    judging the ensemble with the first fold's model fails on the mean.)"""
    from pyimagesearch.core.recipes import TrainConfig
    from pyimagesearch.crossval import Plan, judge_holdout
    from pyimagesearch.training.ensemble import write_ensemble

    output = tmp_path / "cv"
    paths = fold_models(output)
    for path in paths:
        (path.parent / "result.json").write_text("{}")
    write_ensemble(paths, output / "ensemble.model")
    held = [
        {"path": str(write_image(tmp_path / "held" / name / f"P{i}_{i}.png", seed=i)),
         "patient": f"P{i}", "label": name}
        for i, name in enumerate(CLASSES * 4)
    ]  # fmt: skip
    broken = tmp_path / "held" / "Uninfected" / "P9_broken.png"
    broken.write_bytes(b"not a png")
    held.append({"path": str(broken), "patient": "P9", "label": "Uninfected"})
    for row in held:
        row["file"] = Path(row["path"]).name
    plan = Plan(TrainConfig("cells"), output, folds=3, seed=1, word="patient", holdout=0.2,
                ensemble=str(output / "ensemble.model"))  # fmt: skip

    table = judge_holdout(plan, held, CLASSES, ensemble=True)

    with open(output / "holdout-predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["file"] for r in rows] == [row["file"] for row in held[:-1]]
    probs = {
        name: np.array([[float(r[f"{name}_prob_{c}"]) for c in CLASSES] for r in rows])
        for name in ("fold-1", "fold-2", "fold-3", "ensemble")
    }
    folds = [probs[f"fold-{k}"] for k in (1, 2, 3)]
    assert np.abs(folds[0] - folds[1]).max() > 1e-3, "the folds must differ to test a mean"
    np.testing.assert_allclose(probs["ensemble"], np.mean(folds, axis=0), atol=1e-5)
    for name in probs:
        right = np.mean([r[f"{name}_predicted"] == r["label"] for r in rows])
        line = next(x for x in table.splitlines() if x.startswith(f"| {name} |"))
        assert f"| {right:.4f} |" in line, (name, right, line)
    assert (output / "holdout.md").read_text() == table
    assert "| mean of folds |" in table
