"""The mirrored-strategy path, on two logical CPU devices, saves an ordinary model; in a
multi-worker run (two local processes) only the chief writes anything."""

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pyimagesearch.core.calibration import forward, temperature_of
from pyimagesearch.core.errors import UserError
from pyimagesearch.core.preprocessing import load_image
from pyimagesearch.training.distribute import is_chief
from pyimagesearch.training.serialization import load_model
from tests.conftest import ROOT, run_script


def test_mirrored_training_saves_a_model_that_loads_like_any_other(
    synthetic_dataset: Path, tmp_path: Path
):
    """Also trains at --image-size 48: the loader must follow the size stored in the model."""
    model_path = tmp_path / "mirrored.model"
    result = run_script(
        "save_model.py", "-d", str(synthetic_dataset), "-m", str(model_path),
        "-p", str(tmp_path / "plot.png"), "--epochs", "1", "--batch-size", "4", "--seed", "2",
        "--distribute", "mirrored", "--cpu-devices", "2", "--image-size", "48",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mirrored training on 2 devices" in result.stdout

    table = tmp_path / "p.csv"
    loaded = run_script(
        "load_model.py", "-i", str(synthetic_dataset / "testing"), "-m", str(model_path),
        "-n", "0", "--csv", str(table), "-o", str(tmp_path / "montage.png"),
        "--precision", "float32",  # "auto" is bfloat16 on CPUs with AMX: not Keras' float32
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    rows = list(csv.DictReader(table.open()))
    model, metadata = load_model(model_path)
    assert model.input_shape == (None, 48, 48, 3)
    assert (metadata["preprocessing"]["height"], metadata["preprocessing"]["width"]) == (48, 48)
    images = np.stack([load_image(r["path"], metadata["preprocessing"]) for r in rows])
    expected = forward(model, temperature_of(metadata))(images).numpy()  # calibrated, as served
    got = np.array([[float(r["p_Parasitized"]), float(r["p_Uninfected"])] for r in rows])
    np.testing.assert_allclose(got, expected, atol=2e-6)


@pytest.mark.parametrize(
    ("tf_config", "chief"),
    [
        (None, True),  # no cluster: a cluster of one
        ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}, True),
        ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}, False),
        ({"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "chief"}}, True),
        (
            {"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "worker"}},
            False,
        ),
    ],
)
def test_the_chief_is_the_chief_task_or_else_worker_0(monkeypatch, tf_config, chief):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert is_chief() is chief


def test_an_unusable_tf_config_is_named(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{cluster: worker}")
    with pytest.raises(UserError, match="TF_CONFIG is unusable"):
        is_chief()


def test_multi_worker_needs_a_seed(tmp_path: Path):
    result = run_script(
        "save_model.py", "-d", str(tmp_path), "-m", str(tmp_path / "m.model"),
        "--distribute", "multi-worker",
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "[ERROR] --distribute multi-worker needs --seed, the same on every worker"
    ]


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for each in sockets:
        each.bind(("127.0.0.1", 0))
    ports = [each.getsockname()[1] for each in sockets]
    for each in sockets:
        each.close()
    return ports


def small_split(source: Path, root: Path, per_class: int = 8) -> Path:
    """root/{training,validation,testing}/<class>/ with PER_CLASS real images each."""
    for name in ("Parasitized", "Uninfected"):
        images = sorted((source / name).glob("*.png"))[: 3 * per_class]
        for index, split in enumerate(("training", "validation", "testing")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for image in images[index * per_class : (index + 1) * per_class]:
                shutil.copy(image, folder)
    return root


def test_two_workers_train_together_and_only_the_chief_writes(malaria_source: Path, tmp_path: Path):
    """Two local processes on 127.0.0.1 stand for two hosts, each with its own output
    folder, for two epochs: the chief's holds the model and plot (its checkpoint removed
    after the save), the other worker's nothing, and the model loads."""
    data = small_split(malaria_source, tmp_path / "data")
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    workers = []
    for index in range(2):
        out = tmp_path / f"out{index}"
        out.mkdir()
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "TF_CONFIG": json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": index}}
            ),
        }
        log = open(tmp_path / f"worker{index}.log", "w")  # closed below
        command = [sys.executable, "save_model.py", "-d", str(data), "-m", str(out / "m.model"),
                   "-p", str(out / "plot.png"), "--epochs", "2", "--batch-size", "4",
                   "--seed", "5", "--distribute", "multi-worker", "--cpu-devices", "1"]  # fmt: skip
        workers.append((subprocess.Popen(command, cwd=ROOT, env=env, stdout=log,
                                         stderr=subprocess.STDOUT), log))  # fmt: skip
    try:
        deadline = time.monotonic() + 240  # a hung collective fails the test, not the run
        codes = [
            process.wait(timeout=max(deadline - time.monotonic(), 1)) for process, _ in workers
        ]
    finally:
        for process, log in workers:
            process.kill()
            process.wait()
            log.close()
    logs = [(tmp_path / f"worker{index}.log").read_text() for index in range(2)]
    assert codes == [0, 0], "\n\n".join(text[-3000:] for text in logs)
    for text in logs:  # the two formed one cluster, rather than training alone
        assert "[INFO] multi-worker training on 2 devices" in text
    assert "[INFO] serializing network to" in logs[0]
    assert "[INFO] this worker is not the chief, so it writes nothing" in logs[1]
    assert "serializing" not in logs[1]

    assert sorted(p.name for p in (tmp_path / "out0").iterdir()) == ["m.model", "plot.png"]
    assert list((tmp_path / "out1").iterdir()) == []

    montage = tmp_path / "montage.png"
    loaded = run_script(
        "load_model.py", "-i", str(data / "testing"), "-m", str(tmp_path / "out0" / "m.model"),
        "-n", "0", "-o", str(montage),
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert "seed 5" in loaded.stdout and montage.is_file()
