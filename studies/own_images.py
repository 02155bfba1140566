"""The README's "Your own images" figures: save_model.py on scikit-learn's digits.

    python -m studies.own_images [--seeds 1 2 3] [--output bench/OWN_IMAGES.md]

Writes the 10-class digits set (48x48 grey PNGs, ``pyimagesearch.example_sets``) to a
scratch folder, then trains the README's command on it, as a user would (a fresh
process each), for each seed, and the same with the tutorial's augmentation (its
horizontal flips turn digits into other shapes) and at the default 64 px. Each row:
test accuracy (181 images: one image is 0.0055), best validation accuracy, and the
wall time of the whole command (start-up, decoding, 12 epochs, evaluation, saving).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pyimagesearch.example_sets import write_set

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "README: --image-size 32 --augmentation none": ["--image-size", "32", "--augmentation", "none"],
    "--image-size 32, tutorial augmentation (flips)": ["--image-size", "32"],
    "--image-size 64 (default) --augmentation none": ["--augmentation", "none"],
}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def run(dataset: Path, scratch: Path, seed: int, extra: list[str]) -> dict:
    from pyimagesearch.training.serialization import read_metadata

    model = scratch / f"digits-{seed}-{len(extra)}.keras"
    command = [sys.executable, str(ROOT / "save_model.py"), "--dataset", str(dataset),
               "--model", str(model), "--plot", str(scratch / "plot.png"),
               "--seed", str(seed), *extra]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=scratch)
    seconds = time.perf_counter() - started
    metrics = read_metadata(model)["provenance"]["final_metrics"]
    history = read_metadata(model)["provenance"]["history"]
    return {
        "seed": seed,
        "test_accuracy": metrics["test_accuracy"],
        "best_val_accuracy": max(history["val_accuracy"]),
        "seconds": round(seconds, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--variants", type=int, nargs="+", default=list(range(len(VARIANTS))))
    parser.add_argument("--output", help="also write the table (Markdown) here")
    args = parser.parse_args()
    lines = [
        f"save_model.py on scikit-learn's digits (1,797 images, 10 classes; CPU: {cpu_name()})",
        "",
        "| command | seed | test accuracy | best val accuracy | wall time |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        write_set("digits", scratch / "digits")
        for number, (name, extra) in enumerate(VARIANTS.items()):
            if number not in args.variants:
                continue
            for seed in args.seeds:
                row = {"variant": name, **run(scratch / "digits", scratch, seed, extra)}
                rows.append(row)
                lines.append(
                    f"| {name} | {seed} | {row['test_accuracy']:.4f} | "
                    f"{row['best_val_accuracy']:.4f} | {row['seconds']:.0f} s |"
                )
                print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n```json\n" + json.dumps(rows, indent=1) + "\n```\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
