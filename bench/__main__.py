"""python -m bench --dataset DIR [--epochs 25] [--seeds 1 2 3] [--images DIR] [--limit N] [--smoke]

Trains (once per seed, project and legacy alternating), bulk-classifies and
classifies 16 images with the project and with the tf_keras legacy reference
(``bench.legacy``), each in its own process, and prints a markdown table of wall
times, throughputs, test accuracies (each seed and their mean) and peak RSS, with
the ratio project / legacy. Times are means over the seeds. The table and a
description of the machine go to --output.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import zipfile
from pathlib import Path

from bench.measure import (
    Child,
    describe_machine,
    link_images,
    list_images,
    markdown_table,
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
    parser.add_argument("--epochs", type=int, default=25, help="default: 25")
    parser.add_argument("--images", help="bulk-inference images (default: the dataset folder)")
    parser.add_argument("--limit", type=int, default=0, help="cap the bulk images (0 = all)")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[1, 2, 3],
        help="training seeds; the first also draws the images (default: 1 2 3)",
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


def train_rows(
    project: list[Child], legacy: list[Child], train_images: int, seeds: list[int]
) -> list:
    def steady(child: Child) -> float | None:
        later = child.report.get("epoch_train_s", [])[1:]
        return per_second(train_images * len(later), sum(later)) if later else None

    def overall(child: Child) -> float | None:
        epochs = child.report.get("epoch_train_s", [])
        return per_second(train_images * len(epochs), sum(epochs))

    def both(measure) -> tuple[float | None, float | None]:
        return mean([measure(c) for c in project]), mean([measure(c) for c in legacy])

    def accuracy(child: Child) -> float | None:
        return child.report.get("test_accuracy")

    runs = f"mean of {len(seeds)} runs" if len(seeds) > 1 else "one run"
    return [
        (f"training: run wall time, s (start-up, data, fit, test, save; {runs})",
         *both(lambda c: c.wall_s), ".1f"),
        ("training: CPU time (user+sys), s", *both(lambda c: c.cpu_s), ".1f"),
        ("training: `fit` wall time incl. validation, s",
         *both(lambda c: c.report.get("fit_s")), ".1f"),
        ("training: images/s, all epochs (augmentation on)", *both(overall), ".1f"),
        ("training: images/s, epochs 2+ (augmentation on)", *both(steady), ".1f"),
        *[(f"training: test accuracy, seed {seed}", accuracy(p), accuracy(c), ".4f")
          for seed, p, c in zip(seeds, project, legacy, strict=True)],
        (f"training: test accuracy, mean of {len(seeds)} seed(s)", *both(accuracy), ".4f"),
        ("training: peak RSS, MiB (largest run)",
         max(c.peak_rss_mib for c in project), max(c.peak_rss_mib for c in legacy), ".0f"),
    ]  # fmt: skip


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
    epochs, seed = str(args.epochs), str(args.seeds[0])
    project_train, legacy_train = [], []
    for run_seed in map(str, args.seeds):
        model, legacy_model = (
            str(work / f"project{run_seed}.model"),
            str(work / f"legacy{run_seed}.h5"),
        )
        project_train.append(
            run_child(
                f"project-train-seed{run_seed}",
                ["-m", "bench.instrument", "save_model.py", "-d", str(dataset), "-m", model,
                 "-p", str(work / "plot.png"), "--epochs", epochs, "--seed", run_seed],
                logs,
            )
        )  # fmt: skip
        project_train[-1].report["test_accuracy"] = saved_test_accuracy(model)
        legacy_train.append(
            run_child(
                f"legacy-train-seed{run_seed}",
                ["-m", "bench.legacy", "train", "--dataset", str(dataset), "--model",
                 legacy_model, "--epochs", epochs, "--seed", run_seed],
                logs,
            )
        )  # fmt: skip
    # Inference uses the models of the first seed.
    model, legacy_model = str(work / f"project{seed}.model"), str(work / f"legacy{seed}.h5")

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
        train_rows(project_train, legacy_train, train_images, args.seeds)
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
            f"Settings: {args.epochs} epoch(s), seed(s) {' '.join(map(str, args.seeds))}, "
            f"{train_images} training images "
            f"from `{Path(args.dataset).name}`; "
            f"bulk inference over {images} images from `{source}`. "
            "Legacy inference loads the HDF5 model that `bench.legacy train` trained.",
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
    work = Path(tempfile.mkdtemp(prefix="bench_"))
    try:
        report = run(args, work)
    except BaseException:
        print(f"[bench] failed; work folder and logs kept in '{work}'")
        raise
    if args.keep:
        print(f"[bench] work folder and logs kept in '{work}'")
    else:
        shutil.rmtree(work, ignore_errors=True)
    print(report)
    Path(args.output).write_text(report)
    print(f"[bench] written to '{args.output}'")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
