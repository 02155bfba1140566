"""Grouped K-fold cross-validation: how good is the recipe on groups it never saw?

python -m pyimagesearch.crossval --dataset cell_images --folds 5 --recipe full --output cv
python -m pyimagesearch.crossval -d digits --folds 3 --image-size 32 --augmentation none -o cv

DATASET is a flat folder of class sub-folders (the NIH download's ``cell_images``), or
a split one (training/validation/testing or train/val/test), whose images are pooled.
Every group's images go to exactly one fold (``--group-pattern``; for the NIH malaria
classes the patient, read from the file name, see ``pyimagesearch.core.splitting``; without
a pattern each file is its own group), folds are balanced by class, and the split is
seeded. For fold k the other folds are split again by group into training and
validation; the model trained there classifies fold k. Written to OUTPUT:

- ``fold-K/model.keras`` and ``fold-K/predictions.csv`` as each fold finishes (a run
  that stops resumes at the first unfinished fold, and inside it from its last epoch),
  and ``fold-K/history.csv``, one row per epoch (as ``save_model.py --history``);
  with ``--tensorboard DIR``, each fold's TensorBoard logs in ``DIR/fold-K``;
- ``oof.csv``: the out-of-sample probabilities of every image, its group (column
  ``patient`` for the malaria set) and fold, the input of ``python -m pyimagesearch.audit``;
- ``summary.md`` / ``summary.json``: per fold and mean +/- std accuracy, and sensitivity,
  specificity and ROC AUC of the positive class (``--positive-class``), or the macro
  one-vs-rest AUC of a multi-class set;
- malaria only, ``patients.csv``: each patient's predicted parasitized fraction and
  diagnosis. A patient is called infected when the share of their cells called
  Parasitized is above a threshold chosen on that fold's validation patients, never on
  the fold it is judged on;
- with ``--ensemble OUT.model``, once every fold is done: one model file whose output is
  the mean of the fold models' calibrated probabilities (``pyimagesearch.training.ensemble``). A
  finished run given the same command with ``--ensemble`` only writes the file;
- with ``--holdout FRACTION``: that share of the groups is set aside before the folds
  are made (``holdout.csv``) and never trained or validated on; ``holdout.md`` judges
  each fold model, their mean and the ensemble on them, and ``holdout-predictions.csv``
  holds each model's probabilities per held-out image.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from pyimagesearch import options
from pyimagesearch.core import report, safety
from pyimagesearch.core.errors import UserError, run_command, start_tensorflow
from pyimagesearch.core.evaluation import not_learnt_warning
from pyimagesearch.core.recipes import TrainConfig
from pyimagesearch.core.splitting import NIH_POSITIVE

POSITIVE = NIH_POSITIVE


@dataclass
class Plan:
    """A cross-validation run as ``main`` resolved it from the command line: what the
    folds, the summary and the held-out judgement take (never the ``Namespace``)."""

    training: TrainConfig  # every fold's settings; a fold's seed is seed + its number
    output: Path
    folds: int
    seed: int
    word: str = "group"  # what a group is called: "patient" for the malaria cells
    diagnose: bool = False  # the malaria patients' diagnosis (Parasitized cells per patient)
    grouped: bool = False  # groups from a file-name pattern, not one file a group
    holdout: float | None = None
    ensemble: str | None = None
    overrides: str = ""  # what the command line changed of the recipe, for summary.md
    arguments: dict = field(default_factory=dict)  # the command's options, for summary.json


@dataclass
class Fold:
    """Indices into the image list of one fold's training, validation and test images."""

    number: int
    training: np.ndarray
    validation: np.ndarray
    testing: np.ndarray


def groups_of(
    paths: list[str], pattern: str | None, word: str, root: str | Path | None = None
) -> list[str]:
    """Each image's group (its patient for the malaria set); a file without one, or every
    file when there is no pattern, is its own group, named by its path under ROOT (its
    class folder included: IMG_0001.jpg in two class folders is two files, two groups)."""
    from pyimagesearch.core.splitting import groups_for

    def own(path: str) -> str:
        relative = os.path.relpath(path, root) if root is not None else path
        return "file:" + Path(relative).as_posix()

    return [
        g if not g.startswith("file:") else own(g[5:]) for g in groups_for(paths, pattern, word)
    ]


def make_folds(
    labels: np.ndarray, patients: list[str], folds: int, seed: int, validation: float = 0.1
) -> list[Fold]:
    """Patient-grouped, class-stratified folds, each with validation patients of its own.

    The validation share is of all images (0.1: about 1 patient in 10), taken from the
    training folds by the same grouped, stratified rule.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    groups = np.asarray(patients)
    if len(set(patients)) < folds:
        raise UserError(f"{len(set(patients))} groups cannot fill {folds} folds")
    outer = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    result = []
    for number, (rest, testing) in enumerate(outer.split(np.zeros(len(labels)), labels, groups), 1):
        # A tiny trial may have fewer patients left than the share asks for.
        counts = np.bincount(labels[rest], minlength=int(labels.max()) + 1)
        smallest = int(counts.min()) if len(rest) else 0
        if smallest < 2:
            raise UserError(
                f"fold {number} leaves fewer than 2 training images of a class to split a "
                "validation set from; use fewer --folds or more images"
            )
        inner_splits = max(
            2, min(round((1 - 1 / folds) / validation), len(set(groups[rest])), smallest)
        )
        inner = StratifiedGroupKFold(
            n_splits=inner_splits, shuffle=True, random_state=seed + number
        )
        training, held = next(inner.split(np.zeros(len(rest)), labels[rest], groups[rest]))
        result.append(Fold(number, rest[training], rest[held], testing))
    return result


def choose_threshold(fractions: np.ndarray, infected: np.ndarray) -> float:
    """The share of Parasitized cells above which a patient is called infected.

    Picks the cut with the most patients right (ties: the middle of the widest gap),
    over cuts half-way between the observed fractions.
    """
    values = np.unique(np.concatenate([[0.0, 1.0], fractions]))
    cuts = (values[:-1] + values[1:]) / 2
    if len(cuts) == 0:
        return 0.5
    correct = np.array([((fractions > c) == infected).sum() for c in cuts])
    best = np.flatnonzero(correct == correct.max())
    return float(cuts[best[len(best) // 2]])


def patient_table(
    patients: np.ndarray, labels: np.ndarray, predicted: np.ndarray, positive: int
) -> dict[str, dict]:
    """Per patient: cells, true and predicted Parasitized share, truly infected or not."""
    table = {}
    for patient in np.unique(patients):
        mine = patients == patient
        table[str(patient)] = {
            "cells": int(mine.sum()),
            "labelled_parasitized": float((labels[mine] == positive).mean()),
            "predicted_parasitized": float((predicted[mine] == positive).mean()),
            "infected": bool((labels[mine] == positive).any()),
        }
    return table


def fold_metrics(
    labels: np.ndarray, probabilities: np.ndarray, class_names: list[str], positive: str | None
) -> dict:
    from pyimagesearch.core.evaluation import choose_positive, classification_metrics

    counts = np.bincount(labels, minlength=len(class_names)).tolist()
    index = choose_positive(class_names, positive, counts).index
    return classification_metrics(labels, probabilities, class_names, index)


def predict_files(
    model, metadata: dict, paths: list[str], max_pixels: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the files that decoded, probabilities) as load_model.py gives them:
    the model's own preprocessing, and its temperature when it stores one."""
    from pyimagesearch.core.calibration import temperature_of
    from pyimagesearch.inference.predict import iter_predictions, make_predictor

    predictor = make_predictor(
        model, temperature=temperature_of(metadata), recipe=metadata["preprocessing"]
    )
    kept, probabilities = [], []
    recipe = metadata["preprocessing"]
    for indices, batch in iter_predictions(predictor, paths, recipe, 256, None, max_pixels):
        kept.append(indices)
        probabilities.append(batch)
    return np.concatenate(kept), np.concatenate(probabilities)


def run_fold(plan: Plan, fold: Fold, images, folder: Path) -> dict:
    """Train on the fold's training patients, then classify its held-out patients."""
    from pyimagesearch.core.modelfile import checkpoint_path_for
    from pyimagesearch.training.data import Split
    from pyimagesearch.training.serialization import save_model
    from pyimagesearch.training.train import best_weights_path, train

    paths, labels, class_names, patients = images
    folder.mkdir(parents=True, exist_ok=True)
    model_path = folder / "model.keras"
    checkpoint = checkpoint_path_for(model_path)

    def split(name: str, index: np.ndarray) -> Split:
        return Split(name, [paths[i] for i in index], labels[index], class_names)

    splits = {
        "training": split("training", fold.training),
        "validation": split("validation", fold.validation),
        "testing": split("testing", fold.testing),
    }
    tensorboard = plan.training.tensorboard
    config = replace(
        plan.training,
        seed=plan.seed + fold.number,
        checkpoint=str(checkpoint),
        resume=checkpoint.exists(),
        history=str(folder / "history.csv"),
        tensorboard=str(Path(tensorboard) / folder.name) if tensorboard else None,
    )
    started = time.monotonic()
    result = train(config, splits)
    trained = time.monotonic() - started
    metadata = result.metadata
    metadata["provenance"]["crossval"] = {"fold": fold.number, "folds": plan.folds}
    save_model(result.model, model_path, metadata, compiled=True)
    checkpoint.unlink(missing_ok=True)
    best_weights_path(str(checkpoint)).unlink(missing_ok=True)

    test_paths = splits["testing"].paths
    max_pixels = config.max_pixels
    # Test and validation files in one pass: one traced predictor for this fold's model.
    both, both_probabilities = predict_files(
        result.model, metadata, test_paths + splits["validation"].paths, max_pixels
    )
    is_test = both < len(test_paths)
    kept, probabilities = both[is_test], both_probabilities[is_test]
    val_kept, val_probabilities = both[~is_test] - len(test_paths), both_probabilities[~is_test]
    threshold = None
    if plan.diagnose:
        positive = class_names.index(POSITIVE)
        val_index = fold.validation[val_kept]
        table = patient_table(
            np.asarray(patients)[val_index],
            labels[val_index],
            val_probabilities.argmax(axis=1),
            positive,
        )
        threshold = choose_threshold(
            np.array([t["predicted_parasitized"] for t in table.values()]),
            np.array([t["infected"] for t in table.values()]),
        )
    rows = []
    for index, probs in zip(fold.testing[kept], probabilities, strict=True):
        rows.append(
            {
                "path": paths[index],
                "file": os.path.basename(paths[index]),
                plan.word: patients[index],
                "fold": fold.number,
                "label": class_names[labels[index]],
                "predicted": class_names[int(probs.argmax())],
                **{f"prob_{name}": f"{p:.6f}" for name, p in zip(class_names, probs, strict=True)},
            }
        )
    write_csv(folder / "predictions.csv", rows)
    summary = {
        "fold": fold.number,
        "seed": config.seed,
        "patients": {
            name: len({patients[i] for i in index})
            for name, index in (
                ("training", fold.training),
                ("validation", fold.validation),
                ("testing", fold.testing),
            )
        },
        # As trained: after --exclude, without files that would not decode.
        "images": metadata["provenance"]["file_counts"],
        "metrics": fold_metrics(
            labels[fold.testing[kept]], probabilities, class_names, config.positive_class
        ),
        "diagnosis_threshold": threshold,
        "training_seconds": round(trained, 1),
        "calibration": metadata.get("calibration"),
        "learning": metadata["provenance"].get("learning"),
    }
    if warning := not_learnt_warning(summary["learning"]):
        report.warning(f"fold {fold.number}: {warning}")
    # Written last: its presence is what marks the fold finished.
    safety.write_text(folder / "result.json", json.dumps(summary, indent=2))
    return summary


def write_csv(path: Path, rows: list[dict]) -> None:
    with safety.open_replacing(path, "w", newline="") as handle:
        fields = list(rows[0])
        writer = csv.writer(handle)
        writer.writerow(safety.csv_row(fields))
        writer.writerows(safety.csv_row(row[field] for field in fields) for row in rows)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def mean_std(values: list[float]) -> str:
    if len(values) == 1:  # one fold (--only) has no spread to show
        return f"{values[0]:.4f}"
    return f"{np.mean(values):.4f} +/- {np.std(values, ddof=1):.4f}"


def summarise(plan: Plan, results: list[dict], class_names: list[str]) -> str:
    """oof.csv, patients.csv, summary.json and summary.md from the finished folds."""
    output = plan.output
    rows = [row for r in results for row in read_csv(output / f"fold-{r['fold']}/predictions.csv")]
    write_csv(output / "oof.csv", rows)

    diagnosis = []
    if plan.diagnose:
        thresholds = {r["fold"]: r["diagnosis_threshold"] for r in results}
        by_patient: dict[str, list[dict]] = {}
        for row in rows:
            by_patient.setdefault(row["patient"], []).append(row)
        for patient, cells in sorted(by_patient.items()):
            fold = int(cells[0]["fold"])
            labelled = np.mean([c["label"] == POSITIVE for c in cells])
            predicted = np.mean([c["predicted"] == POSITIVE for c in cells])
            infected = labelled > 0
            called = bool(predicted > thresholds[fold])
            diagnosis.append(
                {
                    "patient": patient,
                    "fold": fold,
                    "cells": len(cells),
                    "labelled_parasitized": f"{labelled:.3f}",
                    "predicted_parasitized": f"{predicted:.3f}",
                    "threshold": f"{thresholds[fold]:.3f}",
                    "infected": infected,
                    "called_infected": called,
                    "correct": called == infected,
                }
            )
        write_csv(output / "patients.csv", diagnosis)

    metrics = sorted(
        {k for r in results for k in r["metrics"]},
        key=[
            "accuracy",
            "balanced_accuracy",
            "sensitivity",
            "specificity",
            "auc",
            "auc_macro_ovr",
        ].index,
    )
    word = plan.word
    grouping = (
        ("Patient-grouped" if word == "patient" else "Grouped") if plan.grouped else "Stratified"
    )
    lines = [
        f"{grouping} {plan.folds}-fold cross-validation of `--recipe {plan.training.recipe}"
        f"{plan.overrides}` on "
        f"{len(rows)} images"
        + (f" of {len({r[word] for r in rows})} {word}s" if plan.grouped else "")
        + f" (`--seed {plan.seed}`)"
        + (
            f"; {len(results)} of {plan.folds} folds finished so far."
            if len(results) < plan.folds
            else "."
        ),
        "",
        f"| fold | {word}s (train/val/test) | test images | "
        + " | ".join(metrics)
        + (" | patients diagnosed right" if plan.diagnose else "")
        + " | training time |",
        "| ---: | :---: | ---: | "
        + " | ".join("---:" for _ in metrics)
        + (" | ---:" if plan.diagnose else "")
        + " | ---: |",
    ]
    for r in results:
        p = r["patients"]
        mine = [d for d in diagnosis if d["fold"] == r["fold"]]
        right = f" | {sum(d['correct'] for d in mine)}/{len(mine)}" if plan.diagnose else ""
        lines.append(
            f"| {r['fold']} | {p['training']}/{p['validation']}/{p['testing']} | "
            f"{r['images']['testing']} | "
            + " | ".join(f"{r['metrics'].get(m, float('nan')):.4f}" for m in metrics)
            + f"{right} | {r['training_seconds'] / 60:.1f} min |"
        )
    right = sum(d["correct"] for d in diagnosis)
    lines.append(
        "| mean +/- std | | | "
        + " | ".join(
            mean_std([r["metrics"][m] for r in results if m in r["metrics"]]) for m in metrics
        )
        + (f" | {right}/{len(diagnosis)}" if plan.diagnose else "")
        + " | |"
    )
    weak = [r["fold"] for r in results if not_learnt_warning(r.get("learning"))]
    if weak:
        lines += [
            "",
            f"**Fold(s) {', '.join(map(str, weak))} did not learn** (validation balanced "
            "accuracy near chance, or one class taking nearly every answer; result.json "
            "holds the figures): their figures above, and an audit of this run, say little.",
        ]
    text = "\n".join(lines) + "\n"
    safety.write_text(output / "summary.md", text)
    safety.write_text(
        output / "summary.json",
        json.dumps({"arguments": plan.arguments, "folds": results}, indent=2, default=str),
    )
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = options.command_parser(__doc__, "pyimagesearch.crossval")
    parser.add_argument(
        "-d",
        "--dataset",
        required=True,
        help="a flat folder of one sub-folder of images per class, or a split one "
        "(training/validation/testing or train/val/test), whose images are pooled",
    )
    parser.add_argument("-o", "--output", required=True, help="folder for the folds' results")
    parser.add_argument("-k", "--folds", type=options.positive_count, default=5)
    options.add_recipe(parser)
    parser.add_argument(
        "--group-pattern",
        metavar="REGEX",
        help="keep every group in one fold: the first capture group of REGEX in the file name "
        "(default: the patient rule for the NIH malaria classes, else none: each file alone)",
    )
    options.add_positive_class(parser)
    options.add_seed(parser, 1, "seeds the folds and, as seed + fold, each fold's training")
    parser.add_argument(
        "--validation",
        type=options.fraction,
        default=0.1,
        help="share of all images held out, by group, from each fold's training to "
        "validate (and, for malaria, to choose the diagnosis threshold) (default 0.1)",
    )
    parser.add_argument(
        "--exclude",
        metavar="LIST",
        help="leave these images out of every fold's training (the audit's issues.csv); "
        "they are still classified and judged with their given labels",
    )
    parser.add_argument(
        "--limit",
        type=options.positive_count,
        help="use only this many images, drawn by group (a quick trial)",
    )
    parser.add_argument(
        "--holdout",
        metavar="FRACTION",
        type=float,
        help="set aside about this share of the groups (stratified by class) before the "
        "folds are made; no fold sees them, and holdout.md judges the fold models and the "
        "ensemble on them, with each model's probabilities per image in "
        "holdout-predictions.csv (e.g. 0.2)",
    )
    parser.add_argument(
        "--ensemble",
        metavar="OUT.model",
        help="once every fold is done, write one model whose output is the mean of the fold "
        "models' calibrated probabilities (a finished run: just writes it)",
    )
    parser.add_argument(
        "--only",
        metavar="K[,K...]",
        type=fold_numbers,
        help="train only these folds now (e.g. 1,2 on one machine and 3,4,5 on another, "
        "into copies of the same --output); the others are left for a later run",
    )
    options.add_max_pixels(parser)
    options.add_debug(parser)
    args = parser.parse_args(argv)
    if args.folds < 2:
        raise UserError("--folds must be at least 2")
    if args.holdout is not None and not 0 < args.holdout <= 0.5:
        raise UserError("--holdout must be above 0 and at most 0.5")
    if args.only and max(args.only) > args.folds:
        raise UserError(f"--only names fold {max(args.only)}, but there are {args.folds} folds")
    return args


def fold_numbers(text: str) -> list[int]:
    """``--only 1,3``: fold numbers, counted from 1."""
    try:
        numbers = sorted({int(part) for part in text.split(",")})
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"expected fold numbers such as 1,3, got '{text}'"
        ) from error
    if numbers[0] < 1:
        raise argparse.ArgumentTypeError("folds are counted from 1")
    return numbers


def names_digest(paths: list[str], labels: np.ndarray, class_names: list[str]) -> str:
    """A fingerprint of which images, with which labels, the run is made of."""
    names = sorted(
        f"{class_names[label]}/{os.path.basename(p)}"
        for p, label in zip(paths, labels, strict=True)
    )
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


def hold_out(labels: np.ndarray, patients: list[str], fraction: float, seed: int) -> np.ndarray:
    """Indices of about FRACTION of the images, whole groups, stratified by class: one
    fold of a seeded ``StratifiedGroupKFold`` with 1/FRACTION folds."""
    from sklearn.model_selection import StratifiedGroupKFold

    splits = max(2, round(1 / fraction))
    if len(set(patients)) < splits:
        raise UserError(f"{len(set(patients))} groups are too few to hold out {fraction}")
    splitter = StratifiedGroupKFold(n_splits=splits, shuffle=True, random_state=seed)
    _, held = next(splitter.split(np.zeros(len(labels)), labels, np.asarray(patients)))
    return held


def without(paths: list[str], labels: np.ndarray, patients: list[str], index: np.ndarray):
    """The images not in INDEX: what the folds are made of once the held-out are set aside."""
    keep = np.setdiff1d(np.arange(len(paths)), index)
    return [paths[i] for i in keep], labels[keep], [patients[i] for i in keep]


def judge_holdout(plan: Plan, held: list[dict], class_names: list[str], ensemble: bool) -> str:
    """holdout.md: each finished fold model, their mean, and the ensemble, on the held-out
    groups (which no fold trained or validated on); holdout-predictions.csv: every model's
    probabilities per image, so that two runs on the same held-out groups pair cell by cell."""
    from pyimagesearch.training.serialization import load_model

    output = plan.output
    paths = [row["path"] for row in held]
    labels = np.array([class_names.index(row["label"]) for row in held])
    models = sorted(output.glob("fold-*/result.json"), key=lambda p: int(p.parent.name[5:]))
    judged = {}
    rows = [dict(row) for row in held]
    predicted = set(range(len(held)))
    for name, path in [(p.parent.name, p.parent / "model.keras") for p in models] + (
        [("ensemble", Path(plan.ensemble))] if ensemble else []
    ):
        model, metadata = load_model(path)
        kept, probabilities = predict_files(model, metadata, paths)
        judged[name] = fold_metrics(
            labels[kept], probabilities, class_names, plan.training.positive_class
        )
        predicted &= set(kept.tolist())
        for index, probs in zip(kept, probabilities, strict=True):
            rows[index][f"{name}_predicted"] = class_names[int(probs.argmax())]
            rows[index].update(
                {f"{name}_prob_{c}": f"{p:.6f}" for c, p in zip(class_names, probs, strict=True)}
            )
    # An image that would not decode has no predictions to pair.
    write_csv(output / "holdout-predictions.csv", [rows[i] for i in sorted(predicted)])
    folds = [m for name, m in judged.items() if name != "ensemble"]
    metrics = list(folds[0])
    word = plan.word
    lines = [
        f"Held-out {word}s: {len(held)} images of {len({r[word] for r in held})} {word}s "
        f"(`--holdout {plan.holdout}`), seen by no fold.",
        "",
        "| model | " + " | ".join(metrics) + " |",
        "| :--- | " + " | ".join("---:" for _ in metrics) + " |",
    ]
    for name, result in judged.items():
        if name != "ensemble":
            lines.append(f"| {name} | " + " | ".join(f"{result[m]:.4f}" for m in metrics) + " |")
    lines.append(
        "| mean of folds | " + " | ".join(mean_std([f[m] for f in folds]) for m in metrics) + " |"
    )
    if "ensemble" in judged:
        result = judged["ensemble"]
        lines.append("| ensemble | " + " | ".join(f"{result[m]:.4f}" for m in metrics) + " |")
    text = "\n".join(lines) + "\n"
    safety.write_text(output / "holdout.md", text)
    return text


def limit_by_patient(paths, labels, patients, limit: int, seed: int):
    """Whole groups, drawn in a seeded order, until ``limit`` images."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(sorted(set(patients)))
    chosen, total = set(), 0
    counts = Counter(patients)
    for patient in order:
        if total >= limit:
            break
        chosen.add(patient)
        total += counts[patient]
    keep = [i for i, p in enumerate(patients) if p in chosen]
    return [paths[i] for i in keep], labels[keep], [patients[i] for i in keep]


class _PerModelTracing(logging.Filter):
    """Drops TensorFlow's "triggered tf.function retracing" warning for the two predict
    functions that crossval makes once per model: Keras' own (in training's evaluation)
    and the loader's ``infer``. Each fold trains a new model, and each model's function
    is traced once (Keras' also once more for a last, smaller batch); TensorFlow counts
    the traces of every function made from the same code together, so by the third fold
    it calls them "retracing". Every other retracing warning still shows."""

    PER_MODEL = ("make_predict_function", "tensorflow_predictor.<locals>.infer")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "triggered tf.function retracing" not in message:
            return True
        return not any(name in message for name in self.PER_MODEL)


def quiet_per_model_tracing() -> None:
    """Installs :class:`_PerModelTracing` on TensorFlow's logger (once)."""
    logger = logging.getLogger("tensorflow")
    if not any(isinstance(f, _PerModelTracing) for f in logger.filters):
        logger.addFilter(_PerModelTracing())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from pyimagesearch.core.splitting import (
        compile_pattern,
        default_group_pattern,
        is_nih,
        read_file_list,
    )

    # Bad paths and lists fail here, at once: before TensorFlow starts, before any state.
    safety.check_paths(
        {"--output": args.output, "--ensemble": args.ensemble, "--tensorboard": args.tensorboard},
        {"--dataset": args.dataset, "--exclude": args.exclude},
    )
    if args.exclude:
        read_file_list(args.exclude)
    if args.group_pattern:
        compile_pattern(args.group_pattern)
    start_tensorflow(args.debug)
    quiet_per_model_tracing()
    from pyimagesearch.training.data import pool_dataset
    from pyimagesearch.training.train import TrainingInterrupted

    found = pool_dataset(args.dataset, args.max_pixels)
    paths, labels, class_names = found.paths, found.labels, found.class_names
    if args.positive_class and args.positive_class not in class_names:
        raise UserError(f"--positive-class '{args.positive_class}' is not one of {class_names}")
    # --only says what to run now, not what the run is: it may differ between reruns. An
    # option left unset is not recorded, so a run from before that option still resumes.
    settings = {
        k: v
        for k, v in vars(args).items()
        if k not in ("debug", "output", "only", "ensemble", "tensorboard") and v is not None
    }
    # The recipe as the command line gave it, for summary.md's first line.
    args.overrides = "".join(
        f" --{k.replace('_', '-')} {settings[k]}" for k in options.RECIPE_FIELDS if k in settings
    )
    options.apply_recipe(args)  # after: settings hold what the command line said
    pattern = args.group_pattern or default_group_pattern(class_names)
    args.group_pattern = pattern
    args.word = "patient" if is_nih(class_names) and pattern else "group"
    # The patients' diagnosis is the malaria example's: Parasitized cells per patient.
    args.diagnose = bool(is_nih(class_names) and pattern)
    patients = groups_of(paths, pattern, args.word, args.dataset)
    held = []
    if args.holdout:
        index = hold_out(labels, patients, args.holdout, args.seed)
        held = [
            {"path": paths[i], "file": os.path.basename(paths[i]), args.word: patients[i],
             "label": class_names[labels[i]]}
            for i in index
        ]  # fmt: skip
        paths, labels, patients = without(paths, labels, patients, index)
    if args.limit:
        paths, labels, patients = limit_by_patient(paths, labels, patients, args.limit, args.seed)
    folds = make_folds(labels, patients, args.folds, args.seed, args.validation)
    output = Path(args.output)
    # The folds follow from the files: resuming on another set of images would mix folds.
    settings["images"] = {
        "count": len(paths),
        "names_sha256": names_digest(paths, labels, class_names),
    }
    settings_file = output / "settings.json"
    # Only an earlier run's folder is reused (its folds resume): anything in it is kept.
    safety.check_own_folder(output, "--output", settings_file.name, lambda _: True)
    if settings_file.exists():
        try:
            previous = json.loads(settings_file.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise UserError(f"cannot read '{settings_file}': {error}") from None
        previous = {k: v for k, v in previous.items() if v is not None}
        if previous != settings:
            raise UserError(
                f"'{output}' holds a cross-validation run with other settings {previous}; "
                "choose another --output"
            )
    if args.ensemble:  # refused before anything is written or trained
        done = {f.number for f in folds if (output / f"fold-{f.number}/result.json").exists()}
        numbers = {f.number for f in folds}
        missing = sorted(numbers - done - (set(args.only) if args.only else numbers))
        if missing:
            raise UserError(
                f"--ensemble needs all {args.folds} folds, and fold(s) "
                f"{', '.join(map(str, missing))} are neither done nor in --only"
            )
    output.mkdir(parents=True, exist_ok=True)
    safety.write_text(settings_file, json.dumps(settings, indent=2))
    if held:
        write_csv(output / "holdout.csv", held)
    if args.ensemble:
        safety.check_output_file(args.ensemble, "--ensemble")
    plan = Plan(
        options.config_from_options(args, verbose=2),
        output,
        args.folds,
        args.seed,
        word=args.word,
        diagnose=args.diagnose,
        grouped=bool(pattern),
        holdout=args.holdout,
        ensemble=args.ensemble,
        overrides=args.overrides,
        arguments=dict(vars(args)),
    )
    grouped = f"grouped by {args.word}" if pattern else "stratified by class, one file a group"
    report.info(
        f"{len(paths)} images"
        + (f" of {len(set(patients))} {args.word}s" if pattern else "")
        + f", {args.folds} folds {grouped}"
    )
    results = []
    started = time.monotonic()
    for fold in folds:
        folder = output / f"fold-{fold.number}"
        if (folder / "result.json").exists():
            results.append(json.loads((folder / "result.json").read_text()))
            report.info(f"fold {fold.number}/{args.folds} already done, skipping")
            continue
        if args.only and fold.number not in args.only:
            report.info(f"fold {fold.number}/{args.folds} left for another run (--only)")
            continue
        report.info(
            f"fold {fold.number}/{args.folds}: training on {len(fold.training)} images, "
            f"validating on {len(fold.validation)}, testing {len(fold.testing)}"
            + (
                f" ({len({patients[i] for i in fold.testing})} unseen {args.word}s)"
                if pattern
                else ""
            )
        )
        try:
            result = run_fold(plan, fold, (paths, labels, class_names, patients), folder)
        except TrainingInterrupted as stop:
            report.info(f"fold {fold.number}/{args.folds} interrupted: {stop}")
            if results:
                report.plain(summarise(plan, results, class_names))
            report.info("run the same command again to continue where it stopped")
            return 130
        results.append(result)
        done = len(results)
        elapsed = time.monotonic() - started
        report.info(
            f"fold {fold.number}/{args.folds}: accuracy {result['metrics']['accuracy']:.4f} "
            f"in {result['training_seconds'] / 60:.1f} min ({done}/{args.folds} folds done, "
            f"{elapsed / 60:.1f} min so far)"
        )
    report.plain(summarise(plan, results, class_names))
    report.info(f"out-of-sample predictions written to '{output / 'oof.csv'}'")
    if args.ensemble:
        from pyimagesearch.training.ensemble import write_ensemble

        folders = [output / f"fold-{k}" for k in range(1, args.folds + 1)]
        unfinished = [f.name for f in folders if not (f / "result.json").exists()]
        if unfinished:
            raise UserError(f"--ensemble needs every fold; {', '.join(unfinished)} not done")
        extra = {"crossval": {"folds": args.folds, "seed": args.seed, "holdout": args.holdout}}
        write_ensemble([f / "model.keras" for f in folders], args.ensemble, extra)
    if held and results:
        report.plain(judge_holdout(plan, held, class_names, bool(args.ensemble)))
        report.info(f"held-out figures written to '{output / 'holdout.md'}'")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
