"""Would averaging models help on unseen patients? Measured from finished cross-validation
runs, with no training.

    python -m studies.average_runs full='docs/crossval/fold-*/predictions.csv' \\
        grey='docs/crossval/trials/grey-world/fold-*/predictions.csv'

Each argument names a run and the ``predictions.csv`` files of its folds (a glob). The
runs must be of the same folds (same patients, same ``--seed``), so each cell was
classified by every run's model of the fold that never saw its patient. For every run
alone and every combination of two or more, the cells are classified by the mean of the
runs' probabilities, and the cross-validated accuracy (per fold, mean +/- std) and the
ROC AUC are printed: what an ensemble of those recipes, one model each per fold, would
score. The runs' probabilities are those each fold wrote, calibrated where the fold
stored a temperature.
"""

from __future__ import annotations

import argparse
import csv
import glob
import itertools
import sys

import numpy as np

from pyimagesearch.core.errors import UserError, run_command


def read_run(pattern: str) -> dict[str, dict]:
    """file name -> its row (label, fold, prob_<class>) over the run's fold files."""
    rows = {}
    files = sorted(glob.glob(pattern))
    if not files:
        raise UserError(f"no predictions.csv matches '{pattern}'")
    for name in files:
        with open(name, newline="") as handle:
            for row in csv.DictReader(handle):
                rows[row["file"]] = row
    return rows


def average(runs: dict[str, dict[str, dict]]) -> list[dict]:
    """One row per combination of runs: per-fold accuracy, its mean and spread, and AUC."""
    from sklearn.metrics import roc_auc_score

    from pyimagesearch.crossval import mean_std

    first = next(iter(runs.values()))
    for name, rows in runs.items():
        if set(rows) != set(first) or any(rows[f]["fold"] != first[f]["fold"] for f in first):
            raise UserError(f"run '{name}' is not of the same folds and cells as the first")
    files = sorted(first)
    classes = [key[5:] for key in first[files[0]] if key.startswith("prob_")]
    positive = classes.index("Parasitized") if "Parasitized" in classes else 0
    labels = np.array([classes.index(first[f]["label"]) for f in files])
    folds = np.array([int(first[f]["fold"]) for f in files])
    probabilities = {
        name: np.array([[float(rows[f][f"prob_{c}"]) for c in classes] for f in files])
        for name, rows in runs.items()
    }
    table = []
    for size in range(1, len(runs) + 1):
        for combination in itertools.combinations(runs, size):
            mean = np.mean([probabilities[name] for name in combination], axis=0)
            right = mean.argmax(axis=1) == labels
            accuracy = [float(right[folds == k].mean()) for k in sorted(set(folds))]
            table.append(
                {
                    "runs": " + ".join(combination),
                    "folds": accuracy,
                    "mean": mean_std(accuracy),
                    "auc": float(roc_auc_score(labels == positive, mean[:, positive])),
                }
            )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Each RUN is NAME=GLOB, the glob matching that run's fold-K/predictions.csv.",
    )
    parser.add_argument("runs", nargs="+", metavar="RUN")
    args = parser.parse_args(argv)
    runs = {}
    for argument in args.runs:
        name, separator, pattern = argument.partition("=")
        if not separator or not name or not pattern:
            parser.error(f"'{argument}' is not NAME=GLOB")
        runs[name] = read_run(pattern)
    table = average(runs)
    count = len(table[0]["folds"])
    print("| models averaged | " + " | ".join(f"fold {k}" for k in range(1, count + 1)) +
          " | mean +/- std | AUC, all cells |")  # fmt: skip
    print("| --- |" + " ---: |" * (count + 2))
    for row in table:
        folds = " | ".join(f"{a:.4f}" for a in row["folds"])
        print(f"| {row['runs']} | {folds} | {row['mean']} | {row['auc']:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
