"""load_model.py --show opens the montage in a matplotlib window where it can (OpenCV is
the headless build) and otherwise says in one [INFO] line why not and where the montage
is; --show never makes the command fail."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from pyimagesearch.core.preprocessing import default_recipe
from pyimagesearch.training.serialization import save_model
from pyimagesearch.training.train import build_model
from tests.conftest import run_script, write_image

NO_DISPLAY = "[INFO] no display (DISPLAY and WAYLAND_DISPLAY are unset)"
NO_BACKEND = "[INFO] matplotlib found no backend that opens windows here"
FAILED = "[INFO] the window could not open (the display went away)"


@pytest.fixture(scope="module")
def command(tmp_path_factory) -> tuple[list[str], Path]:
    """load_model.py --show on three images with an untrained model, and its montage path."""
    folder = tmp_path_factory.mktemp("show")
    model = folder / "tiny.model"
    metadata = {"class_names": ["Parasitized", "Uninfected"], "preprocessing": default_recipe()}
    save_model(build_model(2), model, metadata, compiled=True)
    for i in range(3):
        write_image(folder / "images" / f"cell{i}.png", seed=i)
    montage = folder / "montage.png"
    args = ["load_model.py", "-i", str(folder / "images"), "-m", str(model),
            "-o", str(montage), "--show"]  # fmt: skip
    return args, montage


def shown(command, monkeypatch: pytest.MonkeyPatch, **env: str):
    """Run the command with the display variables unset, then ENV added."""
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "MPLBACKEND", "WINDOW_FAIL"):
        monkeypatch.delenv(name, raising=False)
    args, montage = command
    montage.unlink(missing_ok=True)
    result = run_script(*args, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert montage.is_file()
    return result


def test_without_a_display_show_says_so_and_succeeds(command, monkeypatch):
    result = shown(command, monkeypatch)
    lines = [line for line in result.stdout.splitlines() if line.startswith(NO_DISPLAY)]
    assert lines == [f"{NO_DISPLAY}, so --show cannot open a window; the montage is in "
                     f"'{command[1]}'"]  # fmt: skip


@pytest.mark.parametrize("backend", ["agg", "tkagg"])
def test_without_a_window_backend_show_says_so_and_succeeds(command, monkeypatch, backend):
    """A display named but unreachable (:987), with matplotlib's files-only backend, or
    with Tk (not built into every Python, and headless without a reachable display)."""
    result = shown(command, monkeypatch, DISPLAY=":987", MPLBACKEND=backend)
    assert NO_BACKEND in result.stdout
    assert f"the montage is in '{command[1]}'" in result.stdout
    assert "cannot be shown" not in result.stderr  # matplotlib's warning for Agg's show()


def test_with_a_window_backend_show_displays_the_montage_in_rgb(command, monkeypatch, tmp_path):
    record = tmp_path / "window.npy"
    result = shown(
        command,
        monkeypatch,
        DISPLAY=":987",
        MPLBACKEND="module://tests.window_recorder",
        WINDOW_RECORD=str(record),
    )
    assert "[INFO] no display" not in result.stdout and NO_BACKEND not in result.stdout
    written = cv2.imread(str(command[1]))
    np.testing.assert_array_equal(np.load(record), cv2.cvtColor(written, cv2.COLOR_BGR2RGB))


def test_a_window_that_fails_to_open_does_not_fail_the_command(command, monkeypatch):
    result = shown(
        command,
        monkeypatch,
        DISPLAY=":987",
        MPLBACKEND="module://tests.window_recorder",
        WINDOW_FAIL="1",
    )
    assert f"{FAILED}; the montage is in '{command[1]}'" in result.stdout
