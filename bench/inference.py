"""python -m bench.inference --dataset DIR [--images DIR] [--limit 5000] [--repeats 3]

"Load your model and use it", side by side in one run, each program alone in its own
process (whole-process wall time: interpreter start, imports, model load, decoding,
classification, writing the outputs):
- 16 images: load_model.py (its default: the model file's OpenVINO network, no
  TensorFlow), the same with --runtime tensorflow, and the tutorial's load_model.py
  loop on tf_keras (``bench.legacy predict --samples 16``);
- bulk (--limit images drawn from --images): load_model.py --samples 0 in its default
  precision, in float32, and with --runtime tensorflow, against a batched tf_keras
  ``model.predict`` (batch 256: what a user would write instead); accuracy from the
  folder names, and the default's labels against the Keras path's;
- the server: time from start to a ready /readyz and memory per worker, at 1 and 2
  --workers, then ``bench.serve``'s 16-client load test at each.

Without --model / --legacy-model, both are trained first (--epochs, default 2: the
timings do not depend on how well a model is trained; the accuracy rows then say
little about the recipes, only whether the engines agree). Medians of --repeats runs.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

from bench.measure import (
    ROOT,
    Child,
    describe_machine,
    link_images,
    list_images,
    run_and_report,
    run_child,
    warm_cache,
)
from bench.serve import drive, multipart_one
from pyimagesearch import options
from pyimagesearch.serving.server_process import get_json, stop, wait_until_ready

SAMPLE = 16
PEER_BATCH = 256


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = options.command_parser(__doc__, "bench.inference")
    parser.add_argument("--dataset", required=True, help="DIR/training, validation, testing")
    parser.add_argument("--images", help="bulk images (default: --dataset)")
    parser.add_argument("--limit", type=int, default=5000, help="bulk images (default: 5000)")
    parser.add_argument("--model", help="model saved by save_model.py (default: train one)")
    parser.add_argument("--legacy-model", help="HDF5 from bench.legacy train (default: train)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs when training (default: 2)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per row (default: 3)")
    parser.add_argument("--requests", type=int, default=400, help="server load test requests")
    parser.add_argument("--output", help="markdown file (default: print only)")
    parser.add_argument("--smoke", action="store_true", help="CI check: 64 images, 1 repeat")
    args = parser.parse_args(argv)
    if args.smoke:
        args.limit, args.repeats, args.requests, args.epochs = 64, 1, 32, 1
    return args


def median_child(repeats: int, name: str, command: list[str], logs: Path) -> Child:
    children = [run_child(f"{name}-{i + 1}", command, logs) for i in range(repeats)]
    return sorted(children, key=lambda child: child.wall_s)[len(children) // 2]


def csv_rows(path: Path) -> dict[str, tuple[str, list[float]]]:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    return {Path(r[0]).name: (r[1], [float(x) for x in r[2:]]) for r in rows}


def accuracy(rows: dict[str, tuple[str, list[float]]], images: Path) -> float:
    truth = {path.name: path.parent.name for path in list_images(images)}
    return sum(label == truth[name] for name, (label, _) in rows.items()) / len(rows)


def server_row(model: str, workers: int, work: Path, requests: int) -> dict:
    """Start the server, time it to a ready /readyz, measure each worker's memory, load it."""
    log = work / f"server-{workers}.log"
    command = [sys.executable, "serve_model.py", "--model", model, "--port", "0"]
    command += ["--workers", str(workers)]
    start = time.perf_counter()
    with open(log, "w") as handle:
        process = subprocess.Popen(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)
    try:
        url = wait_until_ready(process, log, 180)
        ready_s = time.perf_counter() - start
        # Every worker answers /readyz only once ready: wait for all before measuring.
        for _ in range(100):
            if all(get_json(url + "readyz")[0] == 200 for _ in range(4 * workers)):
                break
            time.sleep(0.1)
        parent = psutil.Process(process.pid)
        workers_rss = [p.memory_info().rss / 2**20 for p in parent.children(recursive=True)]
        workers_rss = [r for r in workers_rss if r > 50] or [parent.memory_info().rss / 2**20]
        bodies = [multipart_one(p.name, p.read_bytes()) for p in list_images(work / "bulk")]
        drive(url, bodies, 16, 32, 60)  # warm-up
        load = drive(url, bodies, 16, requests, 120)
    finally:
        stop(process)
    done = len(load.latencies_s)
    return {
        "workers": workers,
        "ready_s": ready_s,
        "rss": statistics.mean(workers_rss),
        "rate": (done - len(load.errors)) / load.wall_s,
        "p99": load.percentile(99) * 1000,
        "errors": len(load.errors),
    }


def run(args: argparse.Namespace, work: Path) -> str:
    logs = work / "logs"
    logs.mkdir()
    dataset = Path(args.dataset).resolve()
    machine = describe_machine()
    model, legacy = args.model, args.legacy_model
    if model is None:
        model = str(work / "project.model")
        run_child("train-project", ["save_model.py", "-d", str(dataset), "-m", model,
                  "-p", str(work / "plot.png"), "--epochs", str(args.epochs)], logs)  # fmt: skip
    if legacy is None:
        legacy = str(work / "legacy.h5")
        run_child("train-legacy", ["-m", "bench.legacy", "train", "--dataset", str(dataset),
                  "--model", legacy, "--epochs", str(args.epochs)], logs)  # fmt: skip
    bulk_dir = work / "bulk"
    count = link_images(Path(args.images or dataset), bulk_dir, args.limit, seed=1)
    testing = dataset / "testing"
    warm_cache([bulk_dir, testing])

    def ours(name: str, images: Path, *flags: str) -> Child:
        return median_child(args.repeats, name, ["load_model.py", "-i", str(images), "-m", model,
                            "-o", str(work / f"{name}.png"), *flags], logs)  # fmt: skip

    def peer(name: str, images: Path, *flags: str) -> Child:
        return median_child(args.repeats, name, ["-m", "bench.legacy", "predict", "--images",
                            str(images), "--model", legacy, *flags], logs)  # fmt: skip

    sample = {
        "load_model.py (stored OpenVINO network, default)": ours("fast-16", testing, "--seed", "1"),
        "load_model.py --runtime tensorflow": ours(
            "keras-16", testing, "--seed", "1", "--runtime", "tensorflow"
        ),
        "tutorial's load_model.py loop (tf_keras)": peer("tutorial-16", testing, "--samples", "16"),
    }
    bulk = {}
    for name, flags in (
        ("load_model.py -n 0 (default precision)", ()),
        ("load_model.py -n 0 --precision float32", ("--precision", "float32")),
        ("load_model.py -n 0 --runtime tensorflow", ("--runtime", "tensorflow")),
    ):
        key = f"bulk{len(bulk)}"
        child = ours(key, bulk_dir, "-n", "0", "--csv", str(work / f"{key}.csv"), *flags)
        child.report["rows"] = csv_rows(work / f"{key}.csv")
        bulk[name] = child
    bulk[f"batched tf_keras model.predict (batch {PEER_BATCH})"] = peer(
        "peer-bulk", bulk_dir, "--batch-size", str(PEER_BATCH)
    )
    servers = [server_row(model, workers, work, args.requests) for workers in (1, 2)]

    tutorial = sample["tutorial's load_model.py loop (tf_keras)"]
    lines = ["| 16 images, end to end | wall s | peak RSS MiB | wall / tutorial |",
             "|---|---:|---:|---:|"]  # fmt: skip
    for name, child in sample.items():
        lines.append(f"| {name} | {child.wall_s:.2f} | {child.peak_rss_mib:.0f} | "
                     f"{child.wall_s / tutorial.wall_s:.2f} |")  # fmt: skip
    peer_child = bulk[f"batched tf_keras model.predict (batch {PEER_BATCH})"]
    keras_rows = bulk["load_model.py -n 0 --runtime tensorflow"].report["rows"]
    lines += ["", f"| {count} images, end to end (start-up included) | wall s | images/s | "
              "peak RSS MiB | images/s / peer | accuracy | labels differing from Keras |",
              "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, child in bulk.items():
        rows = child.report.get("rows")
        agree = f"{sum(rows[n][0] != keras_rows[n][0] for n in keras_rows)}" if rows else "n/a"
        acc = f"{accuracy(rows, bulk_dir):.4f}" if rows else "n/a"
        lines.append(f"| {name} | {child.wall_s:.1f} | {count / child.wall_s:.0f} | "
                     f"{child.peak_rss_mib:.0f} | {peer_child.wall_s / child.wall_s:.2f} | "
                     f"{acc} | {agree} |")  # fmt: skip
    lines += [
        "",
        "| server | start to ready /readyz, s | RSS per worker, MiB | "
        "16 clients: images/s | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in servers:
        lines.append(f"| --workers {row['workers']} | {row['ready_s']:.2f} | {row['rss']:.0f} | "
                     f"{row['rate']:.1f} | {row['p99']:.0f} | {row['errors']} |")  # fmt: skip
    # Folder and file names only: the report is meant to be shared, local paths are not.
    shown = [Path(arg).name if "/" in arg else arg for arg in sys.argv[1:]]
    command = "python -m bench.inference " + " ".join(shown)
    return "\n".join([f"# Inference{' (smoke)' * args.smoke}", "", f"Machine: {machine}.", "",
                      f"Command: `{command}`; medians of {args.repeats} run(s) by wall time.",
                      "", *lines, ""])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    return run_and_report(run, parse_args(argv), "bench_inference_")


if __name__ == "__main__":
    raise SystemExit(main())
