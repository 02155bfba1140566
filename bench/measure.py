"""Parent-side measurement: run one child, read its peak RSS, CPU time and JSON line."""

from __future__ import annotations

import datetime
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from bench.instrument import TAG

ROOT = Path(__file__).resolve().parent.parent
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


@dataclass
class Child:
    """What one child process cost, and what it reported about itself."""

    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    report: dict[str, Any] = field(default_factory=dict)


def run_child(name: str, args: list[str], log_dir: Path) -> Child:
    """Run ``python ARGS`` from the repository root; output goes to LOG_DIR/NAME.log.

    ``os.wait4`` gives the rusage of this one child, so each side's ``ru_maxrss``
    (KiB on Linux) is measured on its own.
    """
    log = log_dir / f"{name}.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    print(f"[bench] {name}: {' '.join(args)}", flush=True)
    with open(log, "w") as handle:
        start = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT
        )
        _, status, usage = os.wait4(process.pid, 0)
        wall_s = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text(errors="replace")
    if process.returncode != 0:
        tail = "\n".join(text.splitlines()[-30:])
        raise SystemExit(f"[bench] {name} failed (exit {process.returncode}); log {log}:\n{tail}")
    lines = [line for line in text.splitlines() if line.startswith(TAG)]
    report = json.loads(lines[-1][len(TAG) :]) if lines else {}
    child = Child(wall_s, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, report)
    print(f"[bench] {name}: {wall_s:.1f} s, peak RSS {child.peak_rss_mib:.0f} MiB", flush=True)
    return child


def list_images(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs.sort()
        found.extend(Path(root, f) for f in sorted(files) if f.lower().endswith(EXTENSIONS))
    return found


def link_images(source: Path, target: Path, limit: int, seed: int) -> int:
    """Symlink (at most LIMIT, drawn at random) images of SOURCE into TARGET/<parent name>/,
    so both sides read the same files and the class folder names survive."""
    paths = list_images(source)
    if not paths:
        raise SystemExit(f"[bench] no images under '{source}'")
    if 0 < limit < len(paths):
        paths = random.Random(seed).sample(paths, limit)
    for index, path in enumerate(paths):
        folder = target / path.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{index:06d}_{path.name}").symlink_to(path.resolve())
    return len(paths)


def warm_cache(folders: list[Path]) -> None:
    """Read every image once so that neither side pays for a cold page cache."""
    for folder in folders:
        for path in list_images(folder):
            path.read_bytes()


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def describe_machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    load = ", ".join(f"{x:.2f}" for x in psutil.getloadavg())
    return (
        f"{cpu}, {len(os.sched_getaffinity(0))} cores usable ({os.cpu_count()} online), "
        f"{psutil.virtual_memory().total / 2**30:.1f} GiB RAM, load average {load} at start; "
        f"Python {platform.python_version()}, TensorFlow {version('tensorflow')}, "
        f"Keras {version('keras')}, tf_keras {version('tf_keras')}; "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC"
    )


def markdown_table(rows: list[tuple[str, float | None, float | None, str]]) -> str:
    """Rows of (measure, project, legacy, number format); ratio = project / legacy."""

    def cell(value: float | None, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    lines = ["| measure | project | legacy | ratio |", "|---|---:|---:|---:|"]
    for name, project, legacy, spec in rows:
        ratio = f"{project / legacy:.2f}" if project is not None and legacy else "n/a"
        lines.append(f"| {name} | {cell(project, spec)} | {cell(legacy, spec)} | {ratio} |")
    return "\n".join(lines)


def run_and_report(run, args, prefix: str, keep: bool = False) -> int:
    """RUN(args, work) in a fresh work folder, kept with its logs when it fails (or with
    KEEP); the report it returns is printed and, with args.output, written there."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        report = run(args, work)
    except BaseException:
        print(f"[bench] failed; work folder and logs kept in '{work}'")
        raise
    if keep:
        print(f"[bench] work folder and logs kept in '{work}'")
    else:
        shutil.rmtree(work, ignore_errors=True)
    print(report)
    if args.output:
        Path(args.output).write_text(report)
        print(f"[bench] written to '{args.output}'")
    return 0
