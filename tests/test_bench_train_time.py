"""bench.train_time: the default command's phases, timed inside the unchanged script."""

from __future__ import annotations

import re

from tests.conftest import run_script

# Phases every default run goes through, each timed by a wrapper around a named step:
# a step renamed or moved would leave its phase at zero and the table silently wrong.
TIMED = (
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
)


def test_the_phases_of_one_default_run_cover_its_wall_time(tutorial_dataset, tmp_path):
    """One short default run (2 epochs) under the bench: every phase is timed, and the
    phases with 'other' add up to the whole process' wall time. (Mutation: wrapping
    train.save_model under another name leaves 'checkpoints' at 0.00 and fails.)"""
    report = tmp_path / "train_time.md"
    result = run_script("-m", "bench.train_time", "--dataset", str(tutorial_dataset),
                        "--phases-only", "--runs", "1", "--epochs", "2",
                        "--output", str(report))  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    text = report.read_text()
    seconds = {
        name: float(value)
        for name, value in re.findall(r"^\| ([^|*]+?) \| ([\d.]+) \|", text, re.M)
    }
    assert set(TIMED) <= set(seconds), text
    assert [name for name in TIMED if seconds[name] <= 0] == [], text
    wall = float(re.search(r"whole process \(wall\)\*\* \| \*\*([\d.]+)", text).group(1))
    assert abs(sum(seconds.values()) - wall) < 0.05 * wall, text  # no phase counted twice
