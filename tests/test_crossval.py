"""Patient-grouped cross-validation and --exclude: no patient leaks, every image judged once."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, run_script

from pyimagesearch.build_dataset import patient_of
from pyimagesearch.core.errors import UserError
from pyimagesearch.core.splitting import read_file_list
from pyimagesearch.crossval import choose_threshold, make_folds
from pyimagesearch.training.data import Split, without_files
from tests.test_resume import read_until


def synthetic_patients(count: int = 30, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Infected patients with mostly Parasitized cells, healthy ones with none."""
    rng = np.random.default_rng(seed)
    labels, patients = [], []
    for index in range(count):
        cells = int(rng.integers(5, 40))
        infected = index % 2 == 0
        labels += [0 if infected and rng.random() < 0.8 else 1 for _ in range(cells)]
        patients += [f"P{index}"] * cells
    return np.asarray(labels), patients


def test_folds_keep_each_patient_in_one_place():
    labels, patients = synthetic_patients()
    folds = make_folds(labels, patients, folds=5, seed=3)
    groups = np.asarray(patients)
    tested = np.concatenate([f.testing for f in folds])
    assert sorted(tested) == list(range(len(labels))), "every image is tested exactly once"
    for fold in folds:
        parts = [
            set(groups[fold.training]),
            set(groups[fold.validation]),
            set(groups[fold.testing]),
        ]
        assert parts[0] and parts[1] and parts[2]
        assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
        assert len(fold.training) + len(fold.validation) + len(fold.testing) == len(labels)
        # Stratified: both classes in every fold's test and training images.
        assert set(labels[fold.testing]) == {0, 1} and set(labels[fold.training]) == {0, 1}


def test_folds_are_seeded():
    labels, patients = synthetic_patients()
    first = make_folds(labels, patients, folds=4, seed=7)
    again = make_folds(labels, patients, folds=4, seed=7)
    other = make_folds(labels, patients, folds=4, seed=8)
    assert all(np.array_equal(a.testing, b.testing) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a.testing, b.testing) for a, b in zip(first, other, strict=True))


def test_too_few_patients_is_a_user_error():
    with pytest.raises(UserError, match="2 groups cannot fill 3 folds"):
        make_folds(np.array([0, 1, 0]), ["P1", "P1", "P2"], folds=3, seed=1)


def test_threshold_separates_validation_patients():
    fractions = np.array([0.0, 0.02, 0.04, 0.30, 0.55, 0.9])
    infected = np.array([False, False, False, True, True, True])
    threshold = choose_threshold(fractions, infected)
    assert 0.04 < threshold < 0.30
    # One healthy patient with many false alarms moves the cut above them if that is best.
    threshold = choose_threshold(
        np.array([0.0, 0.4, 0.6, 0.8]), np.array([False, False, True, True])
    )
    assert 0.4 < threshold < 0.6


def test_only_names_existing_folds():
    from pyimagesearch.crossval import parse_args

    base = ["-d", "data", "-o", "cv", "--folds", "3"]
    assert parse_args([*base, "--only", "3,1,3"]).only == [1, 3]
    with pytest.raises(UserError, match="there are 3 folds"):
        parse_args([*base, "--only", "4"])
    for wrong in ("0", "a,b", ""):
        with pytest.raises(SystemExit) as exit_:
            parse_args([*base, "--only", wrong])
        assert exit_.value.code == 2


def test_exclusion_lists_match_file_names(tmp_path: Path):
    issues = tmp_path / "issues.csv"
    issues.write_text("path,file,patient\nsome/where/a.png,a.png,P1\nelse/b.png,b.png,P2\n")
    assert read_file_list(issues) == {"a.png", "b.png"}
    paths_only = tmp_path / "paths.csv"
    paths_only.write_text("path\nx/Parasitized/c.png\n")
    assert read_file_list(paths_only) == {"c.png"}
    plain = tmp_path / "list.txt"
    plain.write_text("d.png\n\ne.png\n")
    assert read_file_list(plain) == {"d.png", "e.png"}
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(UserError, match="lists no files"):
        read_file_list(empty)
    with pytest.raises(UserError, match="cannot read"):
        read_file_list(tmp_path / "missing.csv")
    split = Split("training", ["t/a.png", "t/z.png", "u/d.png"], np.array([0, 0, 1]), ["A", "B"])
    kept = without_files(split, {"a.png", "d.png"})
    assert kept.paths == ["t/z.png"] and kept.labels.tolist() == [0]


@pytest.fixture(scope="module")
def few_patients(malaria_source: Path, tmp_path_factory) -> Path:
    """Real cells of 10 patients (5 infected, 5 healthy), at most 16 cells each."""
    by_patient: dict[str, list[Path]] = defaultdict(list)
    for class_dir in sorted(malaria_source.iterdir()):
        if class_dir.is_dir():
            for path in sorted(class_dir.iterdir()):
                by_patient[patient_of(path.name) or ""].append(path)
    infected = [p for p in sorted(by_patient) if p.startswith("P")][:5]
    healthy = [p for p in sorted(by_patient) if p.startswith("C")][:5]
    root = tmp_path_factory.mktemp("few_patients")
    for patient in infected + healthy:
        for path in by_patient[patient][:16]:
            target = root / path.parent.name / path.name
            target.parent.mkdir(exist_ok=True)
            os.symlink(path.resolve(), target)
    return root


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def assert_one_fold_summarised(output: Path) -> None:
    partial = (output / "summary.md").read_text()
    assert "1 of 2 folds finished so far" in partial
    # What the run overrode of its recipe is named with it, not only in settings.json.
    assert "--epochs 2 --image-size 32` on " in partial.splitlines()[0]
    mean_row = next(line for line in partial.splitlines() if line.startswith("| mean"))
    assert "+/-" not in mean_row.split("|", 2)[2], "one fold has no spread to report"


def test_crossval_on_real_patients_resumes_and_excludes(few_patients: Path, tmp_path: Path, capsys):
    """The real command: every image judged once by a model that never saw its patient,
    the fold's saved model gives the oof probabilities, a run stopped by --only or by
    SIGTERM resumes (by fold, and inside a fold from its checkpoint), and --exclude drops
    images from training only. Each fold writes its history.csv and, with --tensorboard
    DIR, its logs to DIR/fold-K. (Mutations: run_fold without history= or tensorboard=
    fails the per-fold files; a history appended after a resume repeats epoch 2.)"""
    from pyimagesearch.core.splitting import NIH_GROUP_PATTERN
    from pyimagesearch.crossval import groups_of
    from pyimagesearch.training.data import list_split

    data = tmp_path / "data"  # a copy: one image is removed at the end
    shutil.copytree(few_patients, data, symlinks=True)
    found = list_split(few_patients)
    images = found.paths
    # Two images that fold 1 would train on (the folds are seeded: --seed 5, 0.1).
    planned = make_folds(
        found.labels, groups_of(images, NIH_GROUP_PATTERN, "patient"), folds=2, seed=5
    )
    listed = [os.path.basename(images[i]) for i in planned[0].training[:2]]
    exclude = tmp_path / "exclude.txt"
    exclude.write_text("\n".join(listed) + "\n")
    output = tmp_path / "cv"
    command = (
        "-m", "pyimagesearch.crossval", "--dataset", str(data), "--output", str(output),
        "--folds", "2", "--epochs", "2", "--image-size", "32", "--seed", "5",
        "--exclude", str(exclude), "--tensorboard", str(tmp_path / "tb"),
    )  # fmt: skip
    # --only 2 trains fold 2 alone and summarises it; fold 1 is left for the next run.
    part = run_script(*command, "--only", "2")
    assert part.returncode == 0, part.stderr[-3000:]
    assert "fold 1/2 left for another run" in part.stdout
    assert not (output / "fold-1").exists()
    assert_one_fold_summarised(output)
    fold2_model = (output / "fold-2/model.keras").stat().st_mtime_ns

    # The rerun, without --only, keeps fold 2 and trains fold 1. SIGTERM in its second
    # epoch: exit 130, fold 2's results summarised, fold 1 checkpointed.
    process = subprocess.Popen(
        [sys.executable, *command], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    seen = read_until(process, b"fold 1/2: training on")
    seen += read_until(process, b"Epoch 2/2")
    process.send_signal(signal.SIGTERM)
    out = (seen + process.stdout.read()).decode()
    assert process.wait(timeout=300) == 130, out[-3000:]
    assert "fold 1/2 interrupted" in out and "Traceback" not in out
    assert_one_fold_summarised(output)
    assert {r["fold"] for r in read_rows(output / "oof.csv")} == {"2"}
    assert (output / "fold-1/model.keras.checkpoint").is_file()
    assert not (output / "fold-1/result.json").exists()

    # The same command again finishes fold 1 from its checkpoint; fold 2 is kept.
    first = run_script(*command)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "fold 2/2 already done" in first.stdout
    assert "fold 1/2: training on" in first.stdout and "resuming" in first.stdout
    assert "Epoch 1/2" not in first.stdout.replace("\r", "\n")
    assert (output / "fold-2/model.keras").stat().st_mtime_ns == fold2_model
    assert not (output / "fold-1/model.keras.checkpoint").exists()
    # Each fold's history: one row per epoch, the resumed fold's without a repeated or
    # missing epoch; each fold's TensorBoard logs in a folder of its own.
    for fold in (1, 2):
        epochs = [row["epoch"] for row in read_rows(output / f"fold-{fold}/history.csv")]
        assert epochs == ["1", "2"], (fold, epochs)
        assert list((tmp_path / "tb" / f"fold-{fold}" / "validation").iterdir()), fold

    rows = read_rows(output / "oof.csv")
    assert sorted(r["file"] for r in rows) == sorted(os.path.basename(p) for p in images)
    assert set(listed) <= {r["file"] for r in rows}, "excluded images are still judged"
    results = [json.loads((output / f"fold-{k}/result.json").read_text()) for k in (1, 2)]
    for result in results:
        fold = result["fold"]
        tested = {r["patient"] for r in rows if int(r["fold"]) == fold}
        assert len(tested) == result["patients"]["testing"]
        metadata = json.loads((output / f"fold-{fold}/result.json").read_text())
        assert metadata["images"]["testing"] == sum(int(r["fold"]) == fold for r in rows)
    # Fold 1 trained without the two listed images; fold 2 judged them with their labels.
    assert results[0]["images"]["training"] == len(planned[0].training) - 2
    assert results[1]["images"]["training"] == len(planned[1].training)

    # The saved fold model, loaded afresh, gives the probabilities oof.csv holds.
    from pyimagesearch.training.serialization import load_model

    model, metadata = load_model(output / "fold-1/model.keras")
    assert metadata["provenance"]["excluded"]["list"] == exclude.name  # no path: it travels
    assert metadata["provenance"]["crossval"] == {"fold": 1, "folds": 2}
    fold_rows = [r for r in rows if r["fold"] == "1"]
    from pyimagesearch.crossval import predict_files

    _, probabilities = predict_files(model, metadata, [r["path"] for r in fold_rows])
    stored = np.array(
        [[float(r["prob_Parasitized"]), float(r["prob_Uninfected"])] for r in fold_rows]
    )
    np.testing.assert_allclose(probabilities, stored, atol=2e-6)

    summary = (output / "summary.md").read_text()
    assert "mean +/- std" in summary and "| 1 |" in summary and "| 2 |" in summary
    assert "| balanced_accuracy |" in summary
    diagnosis = read_rows(output / "patients.csv")
    assert len(diagnosis) == 10 and {d["infected"] for d in diagnosis} == {"True", "False"}

    # The refusals below come before any training; they run in this process (the same
    # main, without a TensorFlow start-up each).
    from pyimagesearch import crossval
    from pyimagesearch.core.errors import run_command

    argv = list(command[2:])
    capsys.readouterr()

    def refused(args: list[str], fragment: str) -> None:
        assert run_command(crossval.main, args) == 2
        printed = capsys.readouterr()
        assert len(printed.err.splitlines()) == 1 and fragment in printed.err, printed.err
        assert "training on" not in printed.out

    # Other settings in the same folder are refused.
    refused([*argv[:-2], "--validation", "0.2"], "other settings")
    # The same command on a folder that lost an image is refused: the folds would differ.
    next(data.glob("Uninfected/*.png")).unlink()
    refused(argv, "other settings")
    # A folder of the user's own is never written into.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "summary.md").write_text("my notes")
    refused(
        [*argv[:3], str(mine), *argv[4:]], "was not written by this tool (it has no settings.json)"
    )
    assert (mine / "summary.md").read_text() == "my notes" and len(list(mine.iterdir())) == 1


def test_holdout_sets_whole_patients_aside():
    """--holdout: about the share asked for, whole patients of both classes, seeded, and
    none of them left in what the folds are made of."""
    from pyimagesearch.crossval import hold_out, without

    labels, patients = synthetic_patients(40)
    paths = [f"cell{i}.png" for i in range(len(labels))]
    held = hold_out(labels, patients, 0.25, seed=3)
    assert np.array_equal(held, hold_out(labels, patients, 0.25, seed=3))
    assert not np.array_equal(held, hold_out(labels, patients, 0.25, seed=4))
    assert 0.15 < len(held) / len(labels) < 0.35 and set(labels[held]) == {0, 1}
    rest_paths, rest_labels, rest_patients = without(paths, labels, patients, held)
    held_patients = {patients[i] for i in held}
    assert not held_patients & set(rest_patients), "a held-out patient is in the folds"
    assert (
        len(rest_paths) + len(held) == len(paths) == len(set(rest_paths) | {paths[i] for i in held})
    )
    assert len(rest_labels) == len(rest_patients) == len(rest_paths)
    with pytest.raises(UserError, match="too few"):
        hold_out(labels[:3], patients[:3], 0.25, seed=3)


RETRACING = """
import logging, sys
import keras, numpy as np, tensorflow as tf
from pyimagesearch.inference.predict import make_predictor
{install}
seen = []
handler = logging.Handler()
handler.emit = lambda record: seen.append(record.getMessage())
tf.get_logger().addHandler(handler)
for seed in range(6):  # a new model a fold, each with its own traced predictor
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(2, activation="softmax")])
    make_predictor(model)(np.zeros((3, 4, 4, 3), "float32"))
other = tf.function(lambda x: x * 2)
for size in range(1, 7):  # a real retracing: a new shape every call
    other(tf.zeros([size]))
print("PER-MODEL", sum("tensorflow_predictor" in m and "retracing" in m for m in seen))
print("OTHER", sum("<lambda>" in m and "retracing" in m for m in seen))
"""


@pytest.mark.parametrize("installed", [False, True])
def test_crossval_silences_only_the_per_model_retracing_warning(installed: bool):
    """A new model a fold traces its predictor once: TensorFlow counts those traces
    together and warns of "retracing"; crossval drops that warning and no other."""
    install = "from pyimagesearch.crossval import quiet_per_model_tracing\n"
    code = RETRACING.format(install=install + "quiet_per_model_tracing()" if installed else "")
    result = run_script("-c", code, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = {
        name: int(number)
        for name, number in (line.split() for line in result.stdout.splitlines())
        if name in ("PER-MODEL", "OTHER")
    }
    assert counts["OTHER"] > 0, result.stdout  # TensorFlow's warning, as a user would see it
    assert (counts["PER-MODEL"] == 0) == installed, result.stdout
