"""A first run prints our lines only: TensorFlow's C++ start-up log stays out unless --debug."""

import re
from pathlib import Path

from pyimagesearch.core.preprocessing import default_recipe
from pyimagesearch.training.serialization import save_model
from pyimagesearch.training.train import build_model
from tests.conftest import run_script, write_image


def test_load_model_prints_only_its_own_lines(tmp_path: Path):
    model = tmp_path / "tiny.model"
    metadata = {"class_names": ["Parasitized", "Uninfected"], "preprocessing": default_recipe()}
    save_model(build_model(2), model, metadata)
    for i in range(2):
        write_image(tmp_path / "images" / f"cell{i}.png", seed=i)
    args = ("load_model.py", "-i", str(tmp_path / "images"), "-m", str(model),
            "-o", str(tmp_path / "montage.png"))  # fmt: skip
    result = run_script(*args, env={"TF_CPP_MIN_LOG_LEVEL": ""})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == ""
    assert all(line.startswith("[INFO] ") for line in result.stdout.splitlines())
    # --debug lets TensorFlow's own log through (absl's lines: I0000/W0000/E0000 ...).
    debug = run_script(*args, "--debug", env={"TF_CPP_MIN_LOG_LEVEL": ""})
    assert debug.returncode == 0, debug.stderr[-2000:]
    assert re.search(r"^[IWEF]\d{4} ", debug.stderr, re.MULTILINE), debug.stderr[-2000:]
    assert debug.stdout == result.stdout  # the same run, only louder on stderr


def test_a_redirected_training_log_is_plain_lines(digits_run):
    """save_model.py ... > train.log: one plain line per epoch, no progress-bar escapes."""
    _, result = digits_run
    assert "\x1b" not in result.stdout and "\r" not in result.stdout
    assert re.findall(r"^Epoch (\d+)/4$", result.stdout, re.MULTILINE) == ["1", "2", "3", "4"]
