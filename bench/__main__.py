"""python -m bench --dataset DIR [--seeds 1 2 3 4 5] [--images DIR] [--limit N] [--smoke]

Trains once per seed with three commands, in turn: the project's default command
(``save_model.py``, the default recipe), the project with the original article's
hyperparameters (``--recipe tutorial``) and the tf_keras legacy reference
(``bench.legacy``, the same 25-epoch recipe). Then bulk-classifies and classifies
16 images with the project and the legacy loop. Each run is its own process.

Two tables come out: "time to a good model" (wall time, start to saved model, and
test accuracy per seed, for the three commands) and project vs legacy on the same
recipe (wall times, images/s from the steps each side reports, peak RSS, inference),
with the ratio project / legacy. Times are means over the seeds. The tables and a
description of the machine go to --output.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import zipfile
from pathlib import Path

from bench.measure import (
    Child,
    describe_machine,
    link_images,
    list_images,
    markdown_table,
    run_and_report,
    run_child,
    warm_cache,
)

SMOKE_EPOCHS = 1
SMOKE_IMAGES = 32
SAMPLE = 16
SPLITS = ("training", "validation", "testing")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--dataset", required=True, help="tutorial split: DIR/training, ...")
    parser.add_argument(
        "--epochs",
        type=int,
        help="epochs for every training command (default: each recipe's own; legacy 25)",
    )
    parser.add_argument("--images", help="bulk-inference images (default: the dataset folder)")
    parser.add_argument("--limit", type=int, default=0, help="cap the bulk images (0 = all)")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[1, 2, 3, 4, 5],
        help="training seeds; the first also draws the images (default: 1 2 3 4 5)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"CI check: {SMOKE_EPOCHS} epoch, one seed, {SMOKE_IMAGES} images per split and "
        "to classify",
    )
    parser.add_argument(
        "--output",
        help="markdown file (default: bench/RESULTS.md; with --smoke, "
        "bench_smoke_RESULTS.md in the temp folder)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs of each short inference measurement; the median is reported (default: 3)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder and logs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.epochs, args.limit, args.seeds = SMOKE_EPOCHS, SMOKE_IMAGES, args.seeds[:1]
        args.repeats = 1
    if args.output is None:
        smoke = Path(tempfile.gettempdir(), "bench_smoke_RESULTS.md")
        args.output = str(smoke if args.smoke else Path(__file__).parent / "RESULTS.md")
    return args


def per_second(count: int, seconds: float | None) -> float | None:
    return count / seconds if seconds else None


def mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def images_per_second(child: Child, skip_first: bool = False) -> float | None:
    """Images the child says it trained on (steps x batch size), over its training time."""
    seconds = child.report.get("epoch_train_s", [])[int(skip_first) :]
    steps = child.report.get("epoch_steps", [])[int(skip_first) :]
    batch = child.report.get("batch_size")
    return per_second(sum(steps) * batch, sum(seconds)) if seconds and batch else None


def accuracy(child: Child) -> float | None:
    return child.report.get("test_accuracy")


def train_rows(project: list[Child], legacy: list[Child], seeds: list[int]) -> list:
    def both(measure) -> tuple[float | None, float | None]:
        return mean([measure(c) for c in project]), mean([measure(c) for c in legacy])

    runs = f"mean of {len(seeds)} runs" if len(seeds) > 1 else "one run"
    return [
        (f"training: run wall time, s (start-up, data, fit, test, save; {runs})",
         *both(lambda c: c.wall_s), ".1f"),
        ("training: CPU time (user+sys), s", *both(lambda c: c.cpu_s), ".1f"),
        ("training: `fit` wall time incl. validation, s",
         *both(lambda c: c.report.get("fit_s")), ".1f"),
        ("training: images/s, all epochs (augmentation on)", *both(images_per_second), ".1f"),
        ("training: images/s, epochs 2+ (augmentation on)",
         *both(lambda c: images_per_second(c, skip_first=True)), ".1f"),
        *[(f"training: test accuracy, seed {seed}", accuracy(p), accuracy(c), ".4f")
          for seed, p, c in zip(seeds, project, legacy, strict=True)],
        (f"training: test accuracy, mean of {len(seeds)} seed(s)", *both(accuracy), ".4f"),
        ("training: peak RSS, MiB (largest run)",
         max(c.peak_rss_mib for c in project), max(c.peak_rss_mib for c in legacy), ".0f"),
    ]  # fmt: skip


def good_model_table(runs: dict[str, list[Child]], seeds: list[int]) -> str:
    """Wall time (start to saved model) and test accuracy per seed of each training command;
    the last column of the time rows is the first command's time over the last's."""
    names = list(runs)
    first, last = runs[names[0]], runs[names[-1]]

    def fmt(value: float | None, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    def row(label: str, values: list[float | None], spec: str, ratio: str = "") -> str:
        return f"| {label} | " + " | ".join(fmt(v, spec) for v in values) + f" | {ratio} |"

    walls = [mean([c.wall_s for c in runs[n]]) for n in names]
    epochs = [mean([len(c.report.get("epoch_train_s", [])) for c in runs[n]]) for n in names]
    accuracies = [[accuracy(c) for c in runs[n]] for n in names]
    known = [[a for a in column if a is not None] for column in accuracies]
    ratio = f"{walls[0] / walls[-1]:.2f}" if walls[0] and walls[-1] else "n/a"
    lines = [
        "| measure | " + " | ".join(names) + f" | {names[0]} / {names[-1]} |",
        "|---|" + "---:|" * (len(names) + 1),
        row("epochs", epochs, ".0f"),
        row("wall time, start to saved model, s (mean)", walls, ".1f", ratio),
        row("wall time, slowest seed, s", [max(c.wall_s for c in runs[n]) for n in names],
            ".1f", f"{max(c.wall_s for c in first) / max(c.wall_s for c in last):.2f}"),
        *[row(f"test accuracy, seed {seed}", [column[i] for column in accuracies], ".2f")
          for i, seed in enumerate(seeds)],
        row(f"test accuracy, mean of {len(seeds)}", [mean(k) for k in known], ".3f"),
        row("test accuracy, lowest seed", [min(k) if k else None for k in known], ".2f"),
    ]  # fmt: skip
    return "\n".join(lines)


def infer_rows(
    bulk: tuple[Child, Child], sample: tuple[Child, Child], images: int, variants: dict
) -> list:
    """Rows for the inference runs; ``variants`` maps a flag description to its bulk run."""
    (pb, lb), (ps, ls) = bulk, sample

    def rate(child: Child) -> float | None:
        return per_second(child.report.get("images", 0), child.report.get("classify_s"))

    return [
        (f"bulk {images} images: classification images/s (child's timer, decode incl.; "
         "default flags)", rate(pb), rate(lb), ".1f"),
        *[(f"bulk {images} images: same, project with {flags}", rate(child), rate(lb), ".1f")
          for flags, child in variants.items()],
        (f"bulk {images} images: end-to-end wall time incl. start-up, s", pb.wall_s, lb.wall_s,
         ".1f"),
        (f"bulk {images} images: end-to-end images/s", images / pb.wall_s, images / lb.wall_s,
         ".1f"),
        (f"bulk {images} images: peak RSS, MiB", pb.peak_rss_mib, lb.peak_rss_mib, ".0f"),
        (f"{SAMPLE} images: end-to-end wall time incl. start-up, s", ps.wall_s, ls.wall_s, ".1f"),
        (f"{SAMPLE} images: peak RSS, MiB", ps.peak_rss_mib, ls.peak_rss_mib, ".0f"),
    ]  # fmt: skip


def saved_test_accuracy(model: str) -> float | None:
    """The test accuracy that save_model.py stored in the model file's metadata."""
    try:
        with zipfile.ZipFile(model) as archive:
            document = json.loads(archive.read("pyimagesearch.json"))
        return document["provenance"]["final_metrics"]["test_accuracy"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def run(args: argparse.Namespace, work: Path) -> str:
    dataset = Path(args.dataset).resolve()
    missing = [s for s in SPLITS if not (dataset / s).is_dir()]
    if missing:
        raise SystemExit(f"[bench] '{dataset}' lacks {', '.join(missing)}")
    machine = describe_machine()
    if args.smoke:  # a few images per split: start-up and tracing dominate anyway
        for split in SPLITS:
            link_images(dataset / split, work / "dataset" / split, SMOKE_IMAGES, args.seeds[0])
        dataset = work / "dataset"
    train_images = len(list_images(dataset / "training"))
    images_dir = work / "images"
    images = link_images(Path(args.images or dataset), images_dir, args.limit, args.seeds[0])
    warm_cache([dataset, images_dir])
    logs = work / "logs"
    logs.mkdir()
    seed = str(args.seeds[0])
    epochs = ["--epochs", str(args.epochs)] if args.epochs else []
    trained: dict[str, list[Child]] = {"default command": [], "--recipe tutorial": [], "legacy": []}
    for run_seed in map(str, args.seeds):
        for name, recipe in (("default", []), ("tutorial", ["--recipe", "tutorial"])):
            model = str(work / f"{name}{run_seed}.model")
            child = run_child(
                f"project-{name}-seed{run_seed}",
                ["-m", "bench.instrument", "save_model.py", "-d", str(dataset), "-m", model,
                 "-p", str(work / "plot.png"), "--seed", run_seed, *recipe, *epochs],
                logs,
            )  # fmt: skip
            child.report["test_accuracy"] = saved_test_accuracy(model)
            trained["default command" if name == "default" else "--recipe tutorial"].append(child)
        trained["legacy"].append(
            run_child(
                f"legacy-train-seed{run_seed}",
                ["-m", "bench.legacy", "train", "--dataset", str(dataset), "--model",
                 str(work / f"legacy{run_seed}.h5"), "--epochs", str(args.epochs or 25),
                 "--seed", run_seed],
                logs,
            )
        )  # fmt: skip
    # Inference uses the models of the first seed.
    model, legacy_model = str(work / f"default{seed}.model"), str(work / f"legacy{seed}.h5")

    def median_of(runs: int, name: str, args: list[str]) -> Child:
        """Short runs are at the mercy of other load: keep the median of RUNS by wall time."""
        children = [run_child(f"{name}-{i + 1}", args, logs) for i in range(runs)]
        return sorted(children, key=lambda child: child.wall_s)[len(children) // 2]

    runs = args.repeats

    def bulk(name: str, *flags: str) -> Child:
        return median_of(
            runs,
            name,
            ["-m", "bench.instrument", "load_model.py", "--images", str(images_dir), "--model",
             model, "--samples", "0", "--csv", str(work / f"{name}.csv"),
             "--output", str(work / f"{name}.png"), *flags],
        )  # fmt: skip

    project_bulk = bulk("project-bulk")
    variants = {
        "`--precision mixed_bfloat16`": bulk("project-bulk-bf16", "--precision", "mixed_bfloat16"),
        "`--runtime tensorflow`": bulk("project-bulk-tf", "--runtime", "tensorflow"),
    }
    # The legacy loop runs for minutes, where a burst of other load matters little: once.
    legacy_bulk = run_child(
        "legacy-bulk",
        ["-m", "bench.legacy", "predict", "--images", str(images_dir), "--model", legacy_model],
        logs,
    )
    project_sample = median_of(
        runs,
        "project-16",
        ["load_model.py", "--images", str(images_dir), "--model", model,
         "--output", str(work / "sample.png"), "--seed", seed],
    )  # fmt: skip
    legacy_sample = median_of(
        runs,
        "legacy-16",
        ["-m", "bench.legacy", "predict", "--images", str(images_dir), "--model", legacy_model,
         "--samples", str(SAMPLE), "--seed", seed],
    )  # fmt: skip

    table = markdown_table(
        train_rows(trained["--recipe tutorial"], trained["legacy"], args.seeds)
        + infer_rows((project_bulk, legacy_bulk), (project_sample, legacy_sample), images, variants)
    )
    # Folder names only: the report is meant to be shared, local paths are not.
    source = Path(args.images or args.dataset).name
    return "\n".join(
        [
            f"# Benchmark: project (Keras 3) vs legacy (tf_keras){' (smoke)' * args.smoke}",
            "",
            f"Machine: {machine}.",
            "",
            f"Settings: seed(s) {' '.join(map(str, args.seeds))}, "
            f"epochs {args.epochs or 'of each recipe (legacy: 25)'}, "
            f"{train_images} training images "
            f"from `{Path(args.dataset).name}`; "
            f"bulk inference over {images} images from `{source}`. "
            "Legacy inference loads the HDF5 model that `bench.legacy train` trained.",
            "",
            "## Time to a good model",
            "",
            "The default command (`python save_model.py --dataset DIR --model M`), the same "
            "with the original hyperparameters (`--recipe tutorial`), and the legacy Keras 2 "
            "recipe, once per seed, in turn. Wall time is the whole process, start-up to saved "
            "model; accuracy is on the testing split.",
            "",
            good_model_table(trained, args.seeds),
            "",
            "## Same recipe: project (`--recipe tutorial`) vs legacy, and inference",
            "",
            "ratio = project / legacy: below 1 is better for times and memory, above 1 for "
            "images/s. Each program ran alone in its own process, but other load on the "
            f"machine makes single timings noisy: the project's inference rows and both "
            f"16-image rows are the median of {args.repeats} run(s) (by wall time); the legacy "
            "bulk loop ran once.",
            "",
            table,
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_and_report(run, args, "bench_", args.keep)


if __name__ == "__main__":
    raise SystemExit(main())
