"""python -m studies.calibration_rule train --output DIR [--seeds 1-5] [--source DIR]
python -m studies.calibration_rule judge DIR

The study behind ``calibration.determined`` (issue 40): when may a 40-image validation
split store a temperature? Choosing the rule needs each model's probabilities *before*
any temperature, on data the temperature never saw, for many candidate rules; so the
models are trained once and their raw probabilities kept.

``train``: for each seed, studies.patients' split (the tutorial's sizes, drawn from the
training patients only; the held-out patients of HOLDOUT_SEED never enter it), then the
default command (``save_model.py --seed N``) in its own process, then the saved network's
uncalibrated probabilities (Keras, no temperature) on its validation split, its test
split, ``--pool`` other images of the training patients that the split left out, and
every image of the held-out patients. ``DIR/seed-N.npz`` keeps them with their labels
and the temperature save_model.py stored (NaN for none).

``judge``: each candidate rule's decision per seed, with ECE (15 bins) and NLL before
and after the stored temperature; the rule is chosen on the *pool* images (training
patients, never used by the split), then reported on the held-out patients.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
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
from studies.patients import hold_out, seed_list, train


def raw_probabilities(model_path: Path, paths: list[str]) -> np.ndarray:
    """The saved network's softmax without the stored temperature, in float32."""
    from pyimagesearch.core.preprocessing import load_image
    from pyimagesearch.training.serialization import load_model

    model, metadata = load_model(model_path)
    recipe = metadata["preprocessing"]
    names = metadata["class_names"]
    assert names == list(CLASSES), names
    out = []
    for start in range(0, len(paths), 256):
        batch = np.stack([load_image(p, recipe) for p in paths[start : start + 256]])
        out.append(np.asarray(model(batch, training=False), dtype="float32"))
    return np.concatenate(out)


def train_seeds(args: argparse.Namespace) -> None:
    root = find_class_root(Path(args.source))
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    files = list_class_files(root)
    training, held = hold_out(files)
    held_paths = [str(root / c / f) for c in CLASSES for f in held[c]]
    held_labels = np.asarray([i for i, c in enumerate(CLASSES) for _ in held[c]])
    for seed in args.seeds:
        target = output / f"seed-{seed}.npz"
        if target.exists():
            print(f"[INFO] seed {seed}: {target} exists, skipped")
            continue
        split = tutorial_split(training, seed)
        used = {f for by_class in split.values() for names in by_class.values() for f in names}
        left = [(i, c, f) for i, c in enumerate(CLASSES) for f in training[c] if f not in used]
        pool = random.Random(f"pool-{seed}").sample(left, min(args.pool, len(left)))
        with tempfile.TemporaryDirectory(prefix="calibration-rule-") as scratch:
            folder = Path(scratch)
            write_split(root, folder / "data", split, link=True)
            seconds = train(folder, seed, "adam-then-sgd", [])
            model = folder / "model.keras"
            from pyimagesearch.core.modelfile import read_metadata

            stored = (read_metadata(str(model)) or {}).get("calibration") or {}
            arrays = {"temperature": np.float64(stored.get("temperature", np.nan))}
            for part, name in (("validation", "validation"), ("testing", "test")):
                paths = [str(root / c / f) for c in CLASSES for f in split[part][c]]
                arrays[f"{name}_labels"] = np.asarray(
                    [i for i, c in enumerate(CLASSES) for _ in split[part][c]]
                )
                arrays[f"{name}_probabilities"] = raw_probabilities(model, paths)
            arrays["pool_labels"] = np.asarray([i for i, _, _ in pool])
            arrays["pool_probabilities"] = raw_probabilities(
                model, [str(root / c / f) for _, c, f in pool]
            )
            arrays["held_labels"] = held_labels
            arrays["held_probabilities"] = raw_probabilities(model, held_paths)
            np.savez(target, **arrays)
            shutil.copyfile(folder / "save_model.log", output / f"seed-{seed}-save_model.log")
            print(f"[INFO] seed {seed}: trained in {seconds:.0f} s, kept {target}")
    (output / "held-out.json").write_text(json.dumps({"images": len(held_paths)}) + "\n")


CHOSEN = "at least 5 errors and cross-fitted gain > 0 (the rule: calibration.undetermined)"


def candidates() -> dict:
    """Each candidate rule: (validation probabilities, labels) -> temperature or None."""
    from pyimagesearch.core.calibration import (
        cross_fitted_gain,
        fit_temperature,
        on_bound,
        undetermined,
    )

    def fitted(p, y):
        t = fit_temperature(p, y)
        return None if on_bound(t) else t

    def errors(p, y):
        return int((p.argmax(axis=1) != y).sum())

    rules = {"store unless on a bound (before)": fitted}
    for k in (3, 5, 10):
        rules[f"at least {k} errors"] = lambda p, y, k=k: (
            fitted(p, y) if errors(p, y) >= k else None
        )
    rules["T >= 1 only (soften, never sharpen)"] = lambda p, y: (
        t if (t := fitted(p, y)) is not None and t >= 1 else None
    )
    rules["cross-fitted NLL gain > 0"] = lambda p, y: (
        fitted(p, y) if cross_fitted_gain(p, y) > 0 else None
    )
    rules[CHOSEN] = lambda p, y: None if undetermined(p, y, t := fit_temperature(p, y)) else t
    rules["at least 3 errors and cross-fitted gain > 0.02"] = lambda p, y: (
        fitted(p, y) if errors(p, y) >= 3 and cross_fitted_gain(p, y) > 0.02 else None
    )
    return rules


def judge_folder(folder: Path, draws: int = 200) -> str:
    """Choose on the pool (training patients, never in a split): per seed, DRAWS random
    40-image validation splits (18/22, the tutorial's) drawn from it, each rule's
    temperature judged on the rest of the pool. Then the rules on each seed's own
    validation split, judged on the held-out patients."""
    from pyimagesearch.core.calibration import calibrate, expected_calibration_error
    from pyimagesearch.core.calibration import negative_log_likelihood as nll

    seeds = sorted(int(f.stem.split("-")[1]) for f in folder.glob("seed-*.npz"))
    data = {s: dict(np.load(folder / f"seed-{s}.npz")) for s in seeds}
    rules = candidates()
    lines = [f"Selection: {draws} drawn 40-image validation splits per seed from the pool, "
             f"judged on the rest of the pool; seeds {seeds}.", "",
             "| rule | stored | mean ECE change | worst ECE change | mean NLL change |",
             "| --- | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for name, rule in rules.items():
        stored, d_ece, d_nll = 0, [], []
        for s in seeds:
            p, y = data[s]["pool_probabilities"], data[s]["pool_labels"]
            rng = np.random.default_rng(s)
            for _ in range(draws):
                pick = np.r_[rng.choice(np.flatnonzero(y == 0), 18, replace=False),
                             rng.choice(np.flatnonzero(y == 1), 22, replace=False)]  # fmt: skip
                rest = np.setdiff1d(np.arange(len(y)), pick)
                t = rule(p[pick], y[pick])
                if t is None:
                    d_ece.append(0.0)
                    d_nll.append(0.0)
                    continue
                stored += 1
                before = expected_calibration_error(p[rest], y[rest])
                d_ece.append(expected_calibration_error(calibrate(p[rest], t), y[rest]) - before)
                d_nll.append(nll(p[rest], y[rest], t) - nll(p[rest], y[rest], 1.0))
        lines.append(f"| {name} | {stored}/{draws * len(seeds)} | {np.mean(d_ece):+.4f} | "
                     f"{np.max(d_ece):+.4f} | {np.mean(d_nll):+.4f} |")  # fmt: skip
    header = (
        "| rule | seed | errors / 40 | T stored | ECE before | ECE after | NLL before | NLL after |"
    )
    lines += ["", "On the held-out patients (each seed's own 40-image validation split):", "",
              header, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for name, rule in rules.items():
        if name not in (CHOSEN, "store unless on a bound (before)"):
            continue
        for s in seeds:
            pv, yv = data[s]["validation_probabilities"], data[s]["validation_labels"]
            ph, yh = data[s]["held_probabilities"], data[s]["held_labels"]
            t = rule(pv, yv)
            errors = int((pv.argmax(axis=1) != yv).sum())
            after = calibrate(ph, t) if t is not None else ph
            lines.append(
                f"| {name} | {s} | {errors} | {'none' if t is None else f'{t:.4f}'} | "
                f"{expected_calibration_error(ph, yh):.4f} | "
                f"{expected_calibration_error(after, yh):.4f} | {nll(ph, yh, 1.0):.4f} | "
                f"{nll(ph, yh, t or 1.0):.4f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.calibration_rule")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("train", help="train the seeds, keep raw probabilities")
    run.add_argument("--source", default=None, help="the NIH cells; default $MALARIA_SOURCE")
    run.add_argument("--seeds", type=seed_list, default=[1, 2, 3, 4, 5])
    run.add_argument("--pool", type=int, default=1000, help="training-patient images to keep")
    run.add_argument("--output", required=True)
    judge = commands.add_parser("judge", help="the candidate rules on the kept probabilities")
    judge.add_argument("folder")
    judge.add_argument("--draws", type=int, default=200, help="validation splits per seed")
    args = parser.parse_args(argv)
    if args.command == "train":
        import os

        args.source = args.source or os.environ.get("MALARIA_SOURCE")
        if not args.source:
            raise UserError("give --source (the NIH cell images) or set MALARIA_SOURCE")
        train_seeds(args)
    else:
        print(judge_folder(Path(args.folder), args.draws))
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
