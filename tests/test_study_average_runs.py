"""studies.average_runs: what averaging finished cross-validation runs would score.

The study runs as its command, in a fresh process: the tests import no study."""

import csv
from pathlib import Path

from tests.conftest import run_script


def average(*runs: str):
    return run_script("-m", "studies.average_runs", *runs, timeout=120)


def write_run(folder: Path, probabilities: list[float]) -> str:
    """Two folds of two cells each (Parasitized, Uninfected), with these P(Parasitized)."""
    for fold in (1, 2):
        path = folder / f"fold-{fold}" / "predictions.csv"
        path.parent.mkdir(parents=True)
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file", "fold", "label", "prob_Parasitized", "prob_Uninfected"])
            for offset, label in enumerate(("Parasitized", "Uninfected")):
                p = probabilities[2 * (fold - 1) + offset]
                writer.writerow([f"c{fold}{offset}.png", fold, label, p, 1 - p])
    return f"{folder.name}={folder}/fold-*/predictions.csv"


def test_averaged_runs_classify_by_their_mean_probability(tmp_path: Path):
    """Run a errs on one cell of fold 1 by a little, run b on one of fold 2 by a little;
    each is confidently right where the other errs, so their mean is right on every cell.
    (Mutations: classifying by the first run of a combination leaves its error in;
    not checking the folds lets a run of other folds through.)"""
    a = write_run(tmp_path / "a", [0.45, 0.1, 0.9, 0.1])
    b = write_run(tmp_path / "b", [0.95, 0.1, 0.9, 0.6])
    result = average(a, b)
    assert result.returncode == 0, result.stderr
    rows = {line.split(" | ")[0][2:]: line for line in result.stdout.splitlines()}
    assert rows["a"].startswith("| a | 0.5000 | 1.0000 | 0.7500 +/- 0.3536 |")
    assert rows["b"].startswith("| b | 1.0000 | 0.5000 | 0.7500 +/- 0.3536 |")
    assert rows["a + b"].startswith("| a + b | 1.0000 | 1.0000 | 1.0000 +/- 0.0000 |")


def test_runs_of_other_folds_are_refused(tmp_path: Path):
    a = write_run(tmp_path / "a", [0.9, 0.1, 0.9, 0.1])
    b = write_run(tmp_path / "b", [0.9, 0.1, 0.9, 0.1])
    moved = tmp_path / "b" / "fold-2" / "predictions.csv"
    moved.write_text(moved.read_text().replace(",2,", ",3,"))
    result = average(a, b)
    assert result.returncode == 2
    assert "not of the same folds" in result.stderr and "Traceback" not in result.stderr
    assert average(f"c={tmp_path}/none/*.csv").returncode == 2
