"""Where the default command's training time goes, and its time against the legacy tutorial.

    python -m bench.train_time --dataset malaria [--runs 3] [--seed 1] [--output FILE.md]
    python -m bench.train_time --dataset malaria --phases-only

Each run is a whole process, started here, with ``os.wait4`` giving its wall and CPU
time (user + system). ``--runs N`` runs the default command (``save_model.py --dataset
DIR --seed SEED``) and the legacy reference (``python -m bench.legacy train``: the
tutorial's Keras 2 recipe on tf_keras, 25 epochs) in turn, A B A B ..., so that both
sides see the same drift of a shared machine, and prints each pair's ratio with the
median and range. ``--phases-only`` runs the default command alone.

The default command runs unchanged under ``bench.train_time child``, which wraps the
training steps with timers (no extra work; the run's output is the user's). Its phases,
medians over the runs:

- start-up: process start to TensorFlow's import (Python, our imports, the option and
  path checks);
- TensorFlow import: ``start_tensorflow`` and the training modules;
- decode: the images read once into memory (``train.load_splits``);
- build and compile: the network and optimizer (``build_network``, ``compile_network``);
- input pipeline: the epochs' ``tf.data`` pipeline (``make_epochs``);
- first step: fit's first training batch, the training step's tracing included;
- training steps: every other training batch;
- validation: the validation pass after each epoch (the first one traces);
- checkpoints: the checkpoint written after each epoch;
- BatchNormalization statistics: ``recompute_batch_norm``;
- evaluation: the portable copy and its forward pass over testing and validation, the
  report and the temperature's fit (BatchNormalization statistics left out);
- saving: the model file, its OpenVINO network included;
- plot: the training curve;
- exit: the last phase's end to the process' end;
- other: what no phase covers (the wall time less the phases).
"""

from __future__ import annotations

import argparse
import functools
import os
import runpy
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.instrument import emit
from bench.measure import Child, describe_machine, run_and_report, run_child, warm_cache

START_VARIABLE = "BENCH_TRAIN_TIME_START"  # the parent's clock when it started the child
PHASES = (
    "start-up",
    "TensorFlow import",
    "decode",
    "build and compile",
    "input pipeline",
    "first step",
    "training steps",
    "validation",
    "checkpoints",
    "BatchNormalization statistics",
    "evaluation",
    "saving",
    "plot",
    "exit",
    "other",
)


# --- child side: the default command with timers around its steps --------------------


class Timers:
    """Seconds per phase, added up, and the clock's last mark."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.seconds: dict[str, float] = {}
        self.marks: dict[str, float] = {}

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds

    def mark(self, name: str) -> None:
        self.marks[name] = time.time() - self.start

    def wrap(self, module: Any, name: str, phase: str) -> None:
        original = getattr(module, name)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            begin = time.time()
            try:
                return original(*args, **kwargs)
            finally:
                self.add(phase, time.time() - begin)
                self.mark("last")

        setattr(module, name, timed)


def epoch_callback(timers: Timers) -> Any:
    """A Keras callback splitting fit() into first step, steps and validation."""
    import keras

    class EpochPhases(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.begin, self.batches = time.time(), 0

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self.batches += 1
            now = time.time()
            first = self.batches == 1 and "first step" not in timers.seconds
            timers.add("first step" if first else "training steps", now - self.begin)
            self.begin = now

        def on_test_begin(self, logs: dict | None = None) -> None:
            self.validation = time.time()

        def on_test_end(self, logs: dict | None = None) -> None:
            timers.add("validation", time.time() - self.validation)

    return EpochPhases()


def install_timers(timers: Timers) -> None:
    """Wrap the training steps once TensorFlow is up (so its import is its own phase)."""
    import pyimagesearch.core.errors as errors

    start_tensorflow = errors.start_tensorflow

    def timed_start(*args: Any, **kwargs: Any) -> None:
        timers.add("start-up", time.time() - timers.start)
        begin = time.time()
        start_tensorflow(*args, **kwargs)
        import keras

        import pyimagesearch.training.plots as plots
        import pyimagesearch.training.serialization as serialization
        import pyimagesearch.training.train as train

        timers.add("TensorFlow import", time.time() - begin)
        timers.wrap(train, "load_splits", "decode")
        timers.wrap(train, "build_network", "build and compile")
        timers.wrap(train, "compile_network", "build and compile")
        timers.wrap(train, "make_epochs", "input pipeline")
        timers.wrap(train, "save_model", "checkpoints")  # train's own name: checkpoints only
        timers.wrap(train, "recompute_batch_norm", "BatchNormalization statistics")
        timers.wrap(train, "evaluate_network", "evaluation")
        timers.wrap(serialization, "save_model", "saving")  # save_model.py's: the model
        timers.wrap(plots, "plot_history", "plot")
        fit = keras.Model.fit

        def timed_fit(self: keras.Model, *args: Any, **kwargs: Any) -> Any:
            kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), epoch_callback(timers)]
            return fit(self, *args, **kwargs)

        keras.Model.fit = timed_fit

    errors.start_tensorflow = timed_start


def child(argv: list[str]) -> None:
    """python -m bench.train_time child SCRIPT ARGS...: run SCRIPT as __main__, timed."""
    timers = Timers(float(os.environ.get(START_VARIABLE, time.time())))
    install_timers(timers)
    sys.argv = list(argv)
    try:
        runpy.run_path(argv[0], run_name="__main__")
    finally:
        seconds = dict(timers.seconds)
        # BatchNormalization statistics run inside evaluate_network: counted once.
        seconds["evaluation"] = seconds.get("evaluation", 0.0) - seconds.get(
            "BatchNormalization statistics", 0.0
        )
        emit({"phases": seconds, "last_mark_s": timers.marks.get("last", 0.0)})


# --- parent side ----------------------------------------------------------------------


def run_project(dataset: Path, seed: int, work: Path, name: str, epochs: int | None) -> Child:
    model = work / f"{name}.model"
    plot = work / f"{name}.png"
    args = ["-m", "bench.train_time", "child", "save_model.py", "--dataset", str(dataset),
            "--model", str(model), "--plot", str(plot), "--seed", str(seed)]  # fmt: skip
    if epochs:
        args += ["--epochs", str(epochs)]
    os.environ[START_VARIABLE] = repr(time.time())
    result = run_child(name, args, work)
    phases = result.report.get("phases", {})
    # Exit: from the last timed phase's end to the end of the process, as the parent saw it.
    phases["exit"] = max(result.wall_s - result.report.get("last_mark_s", result.wall_s), 0.0)
    phases["other"] = max(result.wall_s - sum(phases.values()), 0.0)
    return result


def run_legacy(dataset: Path, seed: int, work: Path, name: str, epochs: int | None) -> Child:
    args = ["-m", "bench.legacy", "train", "--dataset", str(dataset),
            "--model", str(work / f"{name}.h5"), "--seed", str(seed)]  # fmt: skip
    if epochs:
        args += ["--epochs", str(epochs)]
    return run_child(name, args, work)


def spread(values: list[float], spec: str = ".2f") -> str:
    """median (min-max)"""
    return f"{statistics.median(values):{spec}} ({min(values):{spec}}-{max(values):{spec}})"


def phase_table(runs: list[Child]) -> str:
    lines = ["| phase | seconds, median | share of the wall time |", "| --- | ---: | ---: |"]
    wall = statistics.median(run.wall_s for run in runs)
    for phase in PHASES:
        values = [run.report.get("phases", {}).get(phase, 0.0) for run in runs]
        median = statistics.median(values)
        lines.append(f"| {phase} | {median:.2f} | {median / wall:.0%} |")
    lines.append(f"| **whole process (wall)** | **{wall:.1f}** | |")
    return "\n".join(lines)


def pair_table(project: list[Child], legacy: list[Child]) -> str:
    lines = [
        "| run | default wall s | legacy wall s | wall ratio | default CPU s | legacy CPU s "
        "| CPU ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for index, (ours, theirs) in enumerate(zip(project, legacy, strict=True), start=1):
        lines.append(
            f"| {index} | {ours.wall_s:.1f} | {theirs.wall_s:.1f} | "
            f"{ours.wall_s / theirs.wall_s:.3f} | {ours.cpu_s:.1f} | {theirs.cpu_s:.1f} | "
            f"{ours.cpu_s / theirs.cpu_s:.3f} |"
        )
    walls = [a.wall_s / b.wall_s for a, b in zip(project, legacy, strict=True)]
    cpus = [a.cpu_s / b.cpu_s for a, b in zip(project, legacy, strict=True)]
    lines += [
        "",
        f"Wall time: default {spread([r.wall_s for r in project], '.1f')} s, legacy "
        f"{spread([r.wall_s for r in legacy], '.1f')} s; ratio **{spread(walls, '.3f')}**.",
        f"CPU time (user + system): default {spread([r.cpu_s for r in project], '.1f')} s, "
        f"legacy {spread([r.cpu_s for r in legacy], '.1f')} s; ratio **{spread(cpus, '.3f')}**.",
        "Medians with the range over the pairs in brackets.",
    ]
    return "\n".join(lines)


def measure(args: argparse.Namespace, work: Path) -> str:
    dataset = Path(args.dataset).resolve()
    warm_cache([dataset])
    project: list[Child] = []
    legacy: list[Child] = []
    machine = describe_machine()
    for index in range(1, args.runs + 1):
        project.append(run_project(dataset, args.seed, work, f"default-{index}", args.epochs))
        if not args.phases_only:
            legacy.append(run_legacy(dataset, args.seed, work, f"legacy-{index}", args.epochs))
    epochs = f" --epochs {args.epochs}" if args.epochs else ""
    parts = [
        "# Training time: the default command, phase by phase"
        + ("" if args.phases_only else ", against the legacy tutorial"),
        "",
        f"Machine: {machine}.",
        "",
        f"Default: `python save_model.py --dataset {dataset.name} --seed {args.seed}{epochs}`. "
        + (
            ""
            if args.phases_only
            else f"Legacy: `python -m bench.legacy train --dataset {dataset.name} "
            f"--seed {args.seed}{epochs}` (the tutorial's Keras 2 recipe on tf_keras, "
            f"{args.epochs or 25} epochs). Run in turn, A B A B, {args.runs} of each; whole "
            "processes, start-up and exit included."
        ),
        "",
        f"## Phases of the default command (median of {len(project)} runs)",
        "",
        phase_table(project),
    ]
    if legacy:
        parts += ["", "## Paired against the legacy reference", "", pair_table(project, legacy)]
    return "\n".join(parts) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.train_time",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dataset", required=True, help="tutorial split: DIR/training, ...")
    parser.add_argument("--runs", type=int, default=3, help="runs of each command (default 3)")
    parser.add_argument("--seed", type=int, default=1, help="training seed (default 1)")
    parser.add_argument(
        "--epochs", type=int, help="epochs for both commands (default: each one's own)"
    )
    parser.add_argument("--phases-only", action="store_true", help="time the default command only")
    parser.add_argument("--output", help="also write the Markdown report here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder and logs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["child"]:
        child(argv[1:])
        return 0
    args = parse_args(argv)
    return run_and_report(measure, args, "bench-train-time-", args.keep)


if __name__ == "__main__":
    sys.exit(main())
