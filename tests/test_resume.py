"""Ctrl-C stops cleanly with a checkpoint; --resume reaches the uninterrupted run's weights;
SIGKILL never damages the model already at --model."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pyimagesearch.core.errors import run_command
from pyimagesearch.core.preprocessing import default_recipe
from pyimagesearch.training.serialization import load_model, save_model
from pyimagesearch.training.train import build_model
from tests.conftest import ROOT, run_script, write_dataset

ARGS = ["--epochs", "3", "--batch-size", "2", "--seed", "5", "--image-size", "32"]
# The resume test trains in bfloat16, which keeps the opt-in mixed-precision path
# (checkpoint, resume, float32 model saved from it) covered; on CPUs without AMX it is
# emulated, slower but exact. The SIGKILL test is about files, so it runs in float32.
BFLOAT16 = ["--precision", "mixed_bfloat16"]


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    counts = {"training": 16, "validation": 2, "testing": 2}
    return write_dataset(tmp_path / "data", counts, size=(40, 40))


def start_training(dataset: Path, model: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "save_model.py",
            "-d",
            str(dataset),
            "-m",
            str(model),
            "-p",
            str(model.with_suffix(".png")),
            *ARGS,
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def read_until(process: subprocess.Popen, marker: bytes, limit: float = 300) -> bytes:
    """The output up to MARKER; fails when the process ends or LIMIT passes without it, so a
    run that crashed or finished early cannot pass as one stopped at MARKER."""
    seen = b""
    deadline = time.monotonic() + limit
    while marker not in seen and time.monotonic() < deadline:
        chunk = process.stdout.read1(4096)
        if not chunk:
            break
        seen += chunk
    assert marker in seen, (
        f"{marker!r} never appeared; output ends: {seen[-500:].decode(errors='replace')}"
    )
    return seen


def weights(path: Path) -> list[np.ndarray]:
    return [np.asarray(w) for w in load_model(path)[0].weights]


def test_interrupt_then_resume_matches_an_uninterrupted_run(dataset: Path, tmp_path: Path, capsys):
    import keras

    import save_model

    full = tmp_path / "full.model"
    result = run_script(
        "save_model.py",
        "-d",
        str(dataset),
        "-m",
        str(full),
        "-p",
        str(tmp_path / "full.png"),
        *ARGS,
        *BFLOAT16,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # The default recipe's stain "auto" on the NIH classes (the resume below must match it).
    assert "[INFO] stain normalisation: grey-world (auto: stained blood cells" in result.stdout

    part = tmp_path / "part.model"
    process = start_training(dataset, part, *BFLOAT16)
    read_until(process, b"Epoch 2/3")
    process.send_signal(signal.SIGINT)
    output = process.stdout.read().decode()
    assert process.wait(timeout=300) == 130, output[-3000:]
    assert "--resume" in output and "Traceback" not in output
    assert not part.exists()
    checkpoint = Path(str(part) + ".checkpoint")
    assert load_model(checkpoint)[1]["checkpoint"]["epoch"] == 1

    # A checkpoint continues only the recipe that made it: not another learning rate.
    # (Refused before training: run here, without a TensorFlow start-up of its own.)
    other_rate = ["-d", str(dataset), "-m", str(part), "-p", str(tmp_path / "part.png"),
                  *ARGS, *BFLOAT16, "--learning-rate", "0.05", "--resume"]  # fmt: skip
    assert run_command(save_model.main, other_rate) == 2
    refusal = capsys.readouterr().err
    assert "'learning_rate': 0.05" in refusal and checkpoint.exists(), refusal
    assert keras.mixed_precision.global_policy().name == "float32"  # refused before set

    resumed = run_script(
        "save_model.py",
        "-d",
        str(dataset),
        "-m",
        str(part),
        "-p",
        str(tmp_path / "part.png"),
        *ARGS,
        "--resume",  # no --precision: auto keeps the checkpoint's bfloat16 on any CPU
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout
    assert not checkpoint.exists()
    for resumed_weight, full_weight in zip(weights(part), weights(full), strict=True):
        np.testing.assert_array_equal(resumed_weight, full_weight)
    # Trained in bfloat16, saved as the plain float32 model users load.
    model, metadata = load_model(part)
    assert metadata["provenance"]["training_precision"] == "mixed_bfloat16"
    assert {w.dtype for w in model.weights} == {"float32"}
    assert metadata["provenance"]["stain"] == "grey-world" and model.get_layer("stain")


def test_sigkill_never_damages_the_previous_model(dataset: Path, tmp_path: Path):
    model = tmp_path / "m.model"  # an earlier model, as save_model.py saves one
    metadata = {"class_names": ["Parasitized", "Uninfected"], "preprocessing": default_recipe()}
    save_model(build_model(2), model, metadata, compiled=True)
    before = model.read_bytes()
    for marker in (b"Epoch 2/3", b"serializing"):
        process = start_training(dataset, model)
        read_until(process, marker)
        process.kill()
        # Killed by the signal, not ended on its own before it arrived.
        assert process.wait(timeout=60) == -signal.SIGKILL, marker
        loaded, metadata = load_model(model)  # the file at --model is always whole
        assert metadata["class_names"] == ["Parasitized", "Uninfected"]
        if marker == b"Epoch 2/3":  # mid-training: nothing was saved over it yet
            assert model.read_bytes() == before
    assert model.read_bytes() == before or load_model(model)[1]["provenance"]["epochs"] == 3
