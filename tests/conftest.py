"""Shared fixtures: real NIH images via $MALARIA_SOURCE, small synthetic images otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def run_script(
    *args: str, cwd: Path | None = None, timeout: int = 900, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run one of the project's commands in a fresh Python process, as a user would."""
    env = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd or ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def malaria_source() -> Path:
    source = os.environ.get("MALARIA_SOURCE")
    if not source or not Path(source).is_dir():
        pytest.skip("set MALARIA_SOURCE to a folder of NIH cell images for the real-data tests")
    return Path(source)


@pytest.fixture(scope="session")
def tutorial_dataset(malaria_source: Path, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("data") / "malaria"
    result = run_script(
        "-m",
        "pyimagesearch.build_dataset",
        "--source",
        str(malaria_source),
        "--output",
        str(output),
    )
    assert result.returncode == 0, result.stderr
    return output


@pytest.fixture(scope="session")
def trained_model(tutorial_dataset: Path, tmp_path_factory) -> Path:
    """A model trained for two epochs on the real tutorial split, saved to a '.model' path."""
    folder = tmp_path_factory.mktemp("model")
    model_path = folder / "saved_model.model"
    result = run_script(
        "save_model.py",
        "--dataset",
        str(tutorial_dataset),
        "--model",
        str(model_path),
        "--plot",
        str(folder / "plot.png"),
        "--epochs",
        "2",
        "--seed",
        "7",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return model_path


def write_image(
    path: Path, mode: str = "RGB", size=(90, 70), fmt: str | None = None, seed: int = 0
) -> Path:
    """A small random image in the given PIL mode and format."""
    rng = np.random.default_rng(seed)
    width, height = size
    if mode == "I;16":
        array = rng.integers(0, 65535, (height, width), dtype=np.uint16)
        image = Image.fromarray(array)  # 16-bit grayscale
    else:
        array = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        image = Image.fromarray(array, mode="RGB").convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt)
    return path


def write_dataset(root: Path, counts: dict[str, int], size=(90, 70)) -> Path:
    """root/<split>/{Parasitized,Uninfected}/ with counts[split] random images per class."""
    for split, count in counts.items():
        for label, name in enumerate(("Parasitized", "Uninfected")):
            for i in range(count):
                write_image(
                    root / split / name / f"{name}_{i}.png", size=size, seed=label * 1000 + i
                )
    return root


@pytest.fixture
def synthetic_dataset(tmp_path: Path) -> Path:
    """training/validation/testing with two classes of a few random images each."""
    return write_dataset(tmp_path / "synthetic", {"training": 8, "validation": 4, "testing": 4})
