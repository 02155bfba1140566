"""python -m studies.patients --source DIR [--recipe stable] [--seeds 1-5] [--output DIR]
                           [save_model.py options, e.g. --augmentation tutorial+colour]

Judges a training command on patients its training never saw (issue 22): the figure a
user of a malaria classifier cares about, where a test split drawn from the same
patients flatters the model.

1. Held-out patients, drawn once: the source's patients (read from the file names,
   ``splitting.NIH_GROUP_PATTERN``) are shared out by ``splitting.split_by_fractions``
   with the fixed seed HOLDOUT_SEED, a third of the images to the held-out patients,
   infected and healthy people separately. Every seed and every recipe is judged on the
   same patients, as long as the source holds the same files.
2. For each seed: the tutorial's split sizes (360 training / 40 validation / 100
   testing, ``build_dataset.tutorial_split`` with that seed) drawn from the training
   patients only, hard-linked (copied across file systems) into a temporary folder.
3. ``save_model.py --dataset THAT --seed SEED --recipe RECIPE [options]`` in its own
   process, exactly as a user runs it (the default command with the default recipe).
4. Every image of the held-out patients classified by the saved model through
   load_model.py's path (``predict.load_engine``, ``iter_predictions``: the one
   preprocessing, the stored network), judged by ``evaluation.classification_metrics``
   with Parasitized as the positive class.

Prints a Markdown table (per seed, mean and lowest; the test split's accuracy beside, as
save_model.py reported it, for contrast) with the CPU. ``--output DIR`` also keeps
``summary.md``, ``summary.json``, ``held-out.csv`` (the held-out patients) and per seed
``seed-N-split.csv`` (the images it trained, validated and tested on),
``seed-N-predictions.csv`` (every held-out image's prediction), and ``seed-N-plot.png``
and ``seed-N-save_model.log`` (the training curve and output: did a failed seed ever
leave the plateau?). Temporary folders are removed.

Choose recipes on these figures (or cross-validation), never on a test split.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pyimagesearch.build_dataset import (
    CLASSES,
    find_class_root,
    list_class_files,
    patient_of,
    tutorial_split,
    write_split,
)
from pyimagesearch.core import safety
from pyimagesearch.core.errors import UserError, run_command
from pyimagesearch.core.recipes import DEFAULT_RECIPE, RECIPES
from pyimagesearch.core.splitting import NIH_GROUP_PATTERN, groups_for, split_by_fractions

ROOT = Path(__file__).resolve().parent.parent
HOLDOUT_SEED = 22  # issue 22; fixed, so that every run is judged on the same patients
HOLDOUT_SHARE = 1 / 3  # of the images; the rest is where each seed's split is drawn from
POSITIVE = "Parasitized"
# save_model.py options this command sets itself: each seed's own dataset, model and seed.
OWN_OPTIONS = {
    "dataset": "--dataset",
    "model": "--model",
    "seed": "--seed",
    "recipe": "--recipe",
    "plot": "--plot",
    "calibration_plot": "--calibration-plot",
    "checkpoint": "--checkpoint",
    "resume": "--resume",
    "val_split": "--val-split",
    "test_split": "--test-split",
    "group_pattern": "--group-pattern",
    "split_seed": "--split-seed",
    "distribute": "--distribute",
}


def seed_list(text: str) -> list[int]:
    """``1-5`` or ``1,3,7``: the training seeds."""
    try:
        if "-" in text:
            first, last = (int(part) for part in text.split("-"))
            seeds = list(range(first, last + 1))
        else:
            seeds = [int(part) for part in text.split(",")]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"expected seeds such as 1-5 or 1,3,7, got '{text}'")
    return seeds


def hold_out(files: dict[str, list[str]]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(training patients' files, held-out patients' files), each by class: no patient in
    both, a third of the images held out, drawn with the fixed HOLDOUT_SEED."""
    entries = [(name, f) for name in CLASSES for f in files[name]]
    labels = np.asarray([CLASSES.index(name) for name, _ in entries])
    patients = groups_for([f for _, f in entries], NIH_GROUP_PATTERN, "patient")
    shares = split_by_fractions(labels, patients, (1 - HOLDOUT_SHARE, HOLDOUT_SHARE), HOLDOUT_SEED)
    parts = []
    for index in shares:
        part: dict[str, list[str]] = {name: [] for name in CLASSES}
        for i in index:
            name, file_name = entries[i]
            part[name].append(file_name)
        parts.append(part)
    return parts[0], parts[1]


def patient(file_name: str) -> str:
    """The NIH patient (or healthy slide) of a file; a name without one is its own."""
    return patient_of(file_name) or file_name


def check_extra(extra: list[str], recipe: str) -> None:
    """The extra options must be save_model.py's, and none of those set per seed here."""
    import save_model

    base = ["--dataset", "-", "--model", "-", "--seed", "0", "--recipe", recipe]
    plain, given = vars(save_model.parse_args(base)), vars(save_model.parse_args(base + extra))
    taken = [flag for key, flag in OWN_OPTIONS.items() if plain[key] != given[key]]
    if taken:
        raise UserError(
            f"{', '.join(taken)} is set per seed by this command; give --recipe to it and "
            "leave the rest out"
        )


def train(folder: Path, seed: int, recipe: str, extra: list[str]) -> float:
    """save_model.py in its own process, as a user runs it, on FOLDER/data, saving
    FOLDER/model.keras; its wall time in seconds."""
    command = [sys.executable, str(ROOT / "save_model.py"), "--dataset", str(folder / "data"),
               "--model", str(folder / "model.keras"), "--plot", str(folder / "plot.png"),
               "--seed", str(seed), "--recipe", recipe, *extra]  # fmt: skip
    print(f"[INFO] seed {seed}: save_model.py --seed {seed} --recipe {recipe} {' '.join(extra)}")
    log = folder / "save_model.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    with open(log, "w") as handle:
        done = subprocess.run(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise UserError(f"save_model.py failed for seed {seed} (exit {done.returncode}):\n{tail}")
    return seconds


def judge(model: Path, paths: list[str], classes: list[str]) -> dict:
    """Classify PATHS (of classes CLASSES) as load_model.py would; the figures and predictions."""
    from pyimagesearch.core.evaluation import classification_metrics
    from pyimagesearch.inference.predict import iter_predictions, load_engine

    started = time.perf_counter()
    engine = load_engine(str(model), images=len(paths), batch_size=64)
    names = engine.metadata["class_names"]
    kept, probabilities = [], []
    stream = iter_predictions(engine.predict, paths, engine.metadata["preprocessing"], 64)
    for indices, batch in stream:
        kept.append(indices)
        probabilities.append(batch)
    seconds = time.perf_counter() - started
    index, probabilities = np.concatenate(kept), np.concatenate(probabilities)
    labels = np.asarray([names.index(classes[i]) for i in index])
    metrics = classification_metrics(labels, probabilities, names, names.index(POSITIVE))
    rows = [
        {"file": os.path.basename(paths[i]), "patient": patient(os.path.basename(paths[i])),
         "label": classes[i], "predicted": names[int(p.argmax())],
         f"prob_{POSITIVE}": f"{p[names.index(POSITIVE)]:.6f}"}
        for i, p in zip(index, probabilities, strict=True)
    ]  # fmt: skip
    provenance = engine.metadata.get("provenance", {})
    test_accuracy = provenance.get("final_metrics", {})
    return {
        **metrics,
        "images": len(index),
        "test_split_accuracy": test_accuracy.get("test_accuracy"),
        # "auto" trains in bfloat16 on some CPUs only: say what this seed trained in.
        "training_precision": provenance.get("training_precision"),
        "judging_seconds": seconds,
        "engine": engine.description,
        "rows": rows,
    }


def cpu_description() -> str:
    """The CPU's name and the vector units that decide training speed, for every figure."""
    from bench.measure import describe_machine

    flags: set[str] = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    units = [name for flag, name in (("avx2", "AVX2"), ("avx512f", "AVX-512"),
                                     ("amx_tile", "AMX")) if flag in flags]  # fmt: skip
    return f"{describe_machine()}; CPU flags: {', '.join(units) or 'none of AVX2/AVX-512/AMX'}"


def markdown(results: list[dict], title: str, machine: str) -> str:
    """Per seed, then the mean and the lowest of each figure."""

    columns = [("accuracy", ".3f"), ("sensitivity", ".3f"), ("specificity", ".3f"),
               ("auc", ".3f"), ("test_split_accuracy", ".2f"), ("training_seconds", ".1f"),
               ("judging_seconds", ".1f")]  # fmt: skip
    lines = [
        f"**{title}**",
        "",
        "| seed | accuracy | sensitivity | specificity | AUC | test split (100 images) "
        "| training (s) | judging (s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in results:
        values = ["n/a" if result.get(k) is None else format(result[k], s) for k, s in columns]
        lines.append(f"| {result['seed']} | " + " | ".join(values) + " |")
    for label, pick in (("mean", np.mean), ("lowest", np.min)):
        values = []
        for key, spec in columns:
            known = [r[key] for r in results if r.get(key) is not None]
            values.append(format(float(pick(known)), spec) if known else "n/a")
        lines.append(f"| **{label}** | " + " | ".join(values) + " |")
    trained_in = sorted({str(r.get("training_precision")) for r in results})
    lines += [
        "",
        f"Trained in {', '.join(trained_in)}. "
        "Judged on every image of the held-out patients; the test split is the 100 images "
        "save_model.py judged itself on (same patients as its training). Training: "
        "save_model.py's process, start-up to saved model (TensorFlow import, decoding, "
        "training, test report, calibration, saving with the compiled network, plot). "
        "Judging: loading the model and classifying the held-out images (decoding "
        f"included). Machine: {machine}.",
    ]
    return "\n".join(lines)


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m studies.patients",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # anything not ours goes to save_model.py whole
    )
    parser.add_argument(
        "--source",
        default=os.environ.get("MALARIA_SOURCE"),
        help="folder holding Parasitized/ and Uninfected/ (or cell_images/ with them); "
        "default: $MALARIA_SOURCE",
    )
    parser.add_argument("--recipe", choices=tuple(RECIPES), default=DEFAULT_RECIPE)
    parser.add_argument(
        "--seeds", type=seed_list, default=[1, 2, 3, 4, 5], help="e.g. 1-5 (default) or 1,3"
    )
    parser.add_argument("--output", help="folder for the table, figures and predictions")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    args, extra = parser.parse_known_args(argv)
    if not args.source:
        raise UserError("give --source (the NIH cell images) or set MALARIA_SOURCE")
    return args, extra


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(argv)
    check_extra(extra, args.recipe)
    root = find_class_root(Path(args.source))
    output = Path(args.output) if args.output else None
    if output is not None:
        safety.check_paths({"--output": output}, {"--source": root})
        safety.check_output_folder(output, "--output")
        if output.is_dir() and any(output.iterdir()):
            raise UserError(f"--output '{output}' is not empty; give a new or empty folder")
    files = list_class_files(root)
    training, held = hold_out(files)
    held_paths = [str(root / name / f) for name in CLASSES for f in held[name]]
    held_classes = [name for name in CLASSES for _ in held[name]]
    held_patients = sorted({patient(f) for name in CLASSES for f in held[name]})
    trained_patients = {patient(f) for name in CLASSES for f in training[name]}
    print(
        f"[INFO] held out {len(held_paths)} images of {len(held_patients)} patients "
        f"(seed {HOLDOUT_SEED}); splits are drawn from {sum(map(len, training.values()))} "
        f"images of {len(trained_patients)} patients"
    )
    machine = cpu_description()
    title = f"--recipe {args.recipe} {' '.join(extra)}".strip()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-patients-") as scratch:
        for seed in args.seeds:
            folder = Path(scratch) / f"seed-{seed}"
            split = tutorial_split(training, seed)
            folder.mkdir()
            write_split(root, folder / "data", split, link=True)
            seconds = train(folder, seed, args.recipe, extra)
            figures = judge(folder / "model.keras", held_paths, held_classes)
            rows = figures.pop("rows")
            results.append({"seed": seed, **figures, "training_seconds": seconds})
            print(
                f"[INFO] seed {seed}: accuracy {figures['accuracy']:.4f}, sensitivity "
                f"{figures['sensitivity']:.4f}, specificity {figures['specificity']:.4f} on "
                f"{figures['images']} held-out images; trained in {seconds:.1f} s"
            )
            if output is not None:
                output.mkdir(parents=True, exist_ok=True)
                write_csv(output / f"seed-{seed}-predictions.csv", rows)
                write_csv(
                    output / f"seed-{seed}-split.csv",
                    [{"split": s, "label": name, "file": f, "patient": patient(f)}
                     for s, by_class in split.items() for name, names in by_class.items()
                     for f in names],
                )  # fmt: skip
                # The curve and the log show whether a failed seed ever left the plateau.
                shutil.copyfile(folder / "plot.png", output / f"seed-{seed}-plot.png")
                shutil.copyfile(folder / "save_model.log", output / f"seed-{seed}-save_model.log")
            shutil.rmtree(folder)  # the next seed's split, not this one's, holds the disk
    table = markdown(results, title, machine)
    print(table)
    if output is not None:
        write_csv(
            output / "held-out.csv",
            [{"patient": p, "images": sum(patient(f) == p for n in CLASSES for f in held[n])}
             for p in held_patients],
        )  # fmt: skip
        (output / "summary.md").write_text(table + "\n")
        summary = {"recipe": args.recipe, "options": extra, "holdout_seed": HOLDOUT_SEED,
                   "machine": machine, "seeds": results}  # fmt: skip
        (output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(f"[INFO] table and predictions written to '{output}'")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
