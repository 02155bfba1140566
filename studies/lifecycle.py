"""python -m studies.lifecycle --source DIR --output DIR [--parent MODEL] [--seeds 1-3]
                            [--parent-only] [save_model.py options for the continued runs]

Keep training a saved model (issue 39): is a model continued on a few new images
(``save_model.py --init-from PARENT``) better than the same images trained from
scratch, and no worse than its parent, on patients neither run saw?

1. The held-out patients are studies.patients' (``hold_out``: a third of the images,
   fixed seed): every figure here is judged on them, never trained or chosen on.
2. The other patients are shared out again (``splitting.split_by_fractions``, seed
   PATIENT_SEED), half to the parent, half to the "new" patients.
3. The parent: the default command (``save_model.py``, default recipe, seed 1) on the
   tutorial's split sizes (360/40/100) drawn from the parent's patients. Skipped when
   --parent names a model made so earlier.
4. For each seed: NEW_TRAINING images of the new patients (half of each class), plus
   NEW_VALIDATION and NEW_TESTING more of theirs; then
   ``save_model.py --init-from PARENT --epochs 4`` (the default recipe with --init-from,
   finetune) and ``save_model.py --epochs 4`` (the default recipe, from scratch), on
   exactly those images, with the same seed.
5. The parent and every run classified on every held-out image, as load_model.py does
   (``studies.patients.judge``).

Prints a Markdown table with the CPU; --output keeps summary.md, summary.json and the
logs. Recipes are chosen on the new patients' validation figures (the table gives
them), never on the held-out patients.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from pyimagesearch.build_dataset import (
    CLASSES,
    find_class_root,
    list_class_files,
    tutorial_split,
    write_split,
)
from pyimagesearch.core.errors import UserError, run_command
from pyimagesearch.core.splitting import NIH_GROUP_PATTERN, groups_for, split_by_fractions
from studies.patients import ROOT, cpu_description, hold_out, judge, seed_list

PATIENT_SEED = 39  # issue 39; the parent's and the new patients, drawn once
PARENT_SEED = 1
NEW_TRAINING = 40
NEW_VALIDATION = 200
NEW_TESTING = 100
EPOCHS = 4


def share_patients(files: dict[str, list[str]]) -> tuple[dict, dict]:
    """(parent's patients' files, new patients' files), by class: no patient in both."""
    entries = [(name, f) for name in CLASSES for f in files[name]]
    labels = np.asarray([CLASSES.index(name) for name, _ in entries])
    patients = groups_for([f for _, f in entries], NIH_GROUP_PATTERN, "patient")
    parts = []
    for index in split_by_fractions(labels, patients, (0.5, 0.5), PATIENT_SEED):
        part: dict[str, list[str]] = {name: [] for name in CLASSES}
        for i in index:
            part[entries[i][0]].append(entries[i][1])
        parts.append(part)
    return parts[0], parts[1]


def new_images(files: dict[str, list[str]], seed: int) -> dict[str, dict[str, list[str]]]:
    """The new images of one seed: training, validation and testing, drawn per class."""
    sizes = {"training": NEW_TRAINING, "validation": NEW_VALIDATION, "testing": NEW_TESTING}
    split: dict[str, dict[str, list[str]]] = {s: {} for s in sizes}
    for name in CLASSES:
        per_class = {s: n // len(CLASSES) for s, n in sizes.items()}
        chosen = random.Random(f"{seed}-{name}").sample(files[name], sum(per_class.values()))
        start = 0
        for s, count in per_class.items():
            split[s][name] = chosen[start : start + count]
            start += count
    return split


def validation_accuracy(folder: Path) -> float | None:
    """The last epoch's validation accuracy, from the saved model's provenance."""
    from pyimagesearch.core.modelfile import read_metadata

    metadata = read_metadata(folder / "model.keras") or {}
    return metadata.get("provenance", {}).get("final_metrics", {}).get("val_accuracy")


def train(folder: Path, seed: int, options: list[str]) -> float:
    """save_model.py in its own process, as a user types it (no --recipe unless OPTIONS
    give one: the default is what is measured); its wall time in seconds."""
    command = [sys.executable, str(ROOT / "save_model.py"), "--dataset", str(folder / "data"),
               "--model", str(folder / "model.keras"), "--plot", str(folder / "plot.png"),
               "--seed", str(seed), *options]  # fmt: skip
    print(f"[INFO] save_model.py --seed {seed} {' '.join(options)}")
    started = time.perf_counter()
    with open(folder / "save_model.log", "w") as handle:
        done = subprocess.run(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise UserError(f"save_model.py failed in '{folder}' (exit {done.returncode})")
    return time.perf_counter() - started


def run(folder: Path, seed: int, options: list[str], held: tuple) -> dict:
    seconds = train(folder, seed, options)
    figures = judge(folder / "model.keras", *held)
    figures.pop("rows")
    return {
        "accuracy": figures["accuracy"],
        "sensitivity": figures["sensitivity"],
        "specificity": figures["specificity"],
        "val_accuracy": validation_accuracy(folder),
        "training_seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m studies.lifecycle",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--source", default=os.environ.get("MALARIA_SOURCE"))
    parser.add_argument("--output", required=True, help="folder for the models and the table")
    parser.add_argument("--parent", help="a parent made by an earlier run (skips step 3)")
    parser.add_argument("--seeds", type=seed_list, default=[1, 2, 3])
    parser.add_argument("--parent-only", action="store_true", help="stop after the parent")
    parser.add_argument(
        "--no-scratch", action="store_true", help="continued runs only (a recipe candidate)"
    )
    args, extra = parser.parse_known_args(argv)
    if not args.source:
        raise UserError("give --source (the NIH cell images) or set MALARIA_SOURCE")
    root = find_class_root(Path(args.source))
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    training, held = hold_out(list_class_files(root))
    held_paths = [str(root / name / f) for name in CLASSES for f in held[name]]
    held_classes = [name for name in CLASSES for _ in held[name]]
    parents, new = share_patients(training)
    print(
        f"[INFO] {len(held_paths)} held-out images; parent's patients: "
        f"{sum(map(len, parents.values()))} images, new patients': {sum(map(len, new.values()))}"
    )
    results: dict = {"machine": cpu_description(), "options": extra, "runs": []}
    parent = Path(args.parent) if args.parent else output / "parent" / "model.keras"
    if not args.parent:
        folder = parent.parent
        folder.mkdir(exist_ok=True)
        write_split(root, folder / "data", tutorial_split(parents, PARENT_SEED), link=True)
        seconds = train(folder, PARENT_SEED, [])
        shutil.rmtree(folder / "data")
        print(f"[INFO] parent trained in {seconds:.1f} s")
    figures = judge(parent, held_paths, held_classes)
    results["parent"] = {k: figures[k] for k in ("accuracy", "sensitivity", "specificity")}
    print(f"[INFO] parent: held-out accuracy {figures['accuracy']:.4f}")
    if args.parent_only:
        (output / "summary.json").write_text(json.dumps(results, indent=2) + "\n")
        return 0
    for seed in args.seeds:
        split = new_images(new, seed)
        runs = [
            ("continued", ["--init-from", str(parent.resolve()), "--epochs", str(EPOCHS), *extra]),
            ("scratch", ["--epochs", str(EPOCHS)]),
        ]
        for name, options in runs[:1] if args.no_scratch else runs:
            folder = output / f"seed-{seed}-{name}"
            folder.mkdir(exist_ok=True)
            write_split(root, folder / "data", split, link=True)
            figures = run(folder, seed, options, (held_paths, held_classes))
            shutil.rmtree(folder / "data")
            results["runs"].append({"seed": seed, "run": name, **figures})
            print(f"[INFO] seed {seed} {name}: {figures}")
    lines = [
        f"Parent (default recipe, 360 images of other patients): held-out accuracy "
        f"{results['parent']['accuracy']:.4f}",
        "",
        "| seed | run | held-out accuracy | sensitivity | specificity | validation | seconds |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results["runs"]:
        val = "n/a" if r["val_accuracy"] is None else f"{r['val_accuracy']:.3f}"
        lines.append(
            f"| {r['seed']} | {r['run']} | {r['accuracy']:.4f} | {r['sensitivity']:.3f} | "
            f"{r['specificity']:.3f} | {val} | {r['training_seconds']:.0f} |"
        )
    for name in ("continued", "scratch"):
        values = [r["accuracy"] for r in results["runs"] if r["run"] == name]
        val = [r["val_accuracy"] for r in results["runs"] if r["run"] == name]
        if values:
            lines.append(f"| mean | {name} | {np.mean(values):.4f} | | | {np.mean(val):.3f} | |")
    lines += ["", f"Machine: {results['machine']}. Options: {' '.join(extra) or 'none'}."]
    table = "\n".join(lines)
    print(table)
    (output / "summary.md").write_text(table + "\n")
    (output / "summary.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
