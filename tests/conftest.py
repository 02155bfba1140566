"""Shared fixtures: real NIH images via $MALARIA_SOURCE, small synthetic images otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pyimagesearch.build_dataset import find_class_root
from pyimagesearch.core.errors import UserError

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


@pytest.fixture(autouse=True)
def float32_after_each_test():
    """A test that trains in the test process (the default recipe trains in bfloat16 on a
    CPU with AMX) leaves Keras' global policy set; the next test on that worker would
    build its models in bfloat16. Reset it, without importing Keras where no test did."""
    yield
    if "keras" in sys.modules:
        sys.modules["keras"].mixed_precision.set_global_policy("float32")


# A script run in a fresh interpreter where importing TensorFlow, Keras or scikit-learn
# fails: a command that reaches for them (to classify, or before refusing bad input)
# fails with an ImportError instead of passing slowly.
WITHOUT_TENSORFLOW = """
import runpy, sys

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf_keras", "sklearn"):
            raise ImportError(f"{name} is blocked by the test")
        return None

sys.meta_path.insert(0, Blocked())
script = sys.argv[1]
sys.argv = [script, *sys.argv[2:]]
runpy.run_path(script, run_name="__main__")
"""


def without_tensorflow(script: str) -> tuple[str, ...]:
    """run_script's arguments that run SCRIPT with TensorFlow, Keras and scikit-learn blocked."""
    return ("-c", WITHOUT_TENSORFLOW, script)


def resolve_malaria_source(source: str, scratch: Path) -> Path:
    """The folder directly holding Parasitized/ and Uninfected/, from any form the README
    allows: that folder, a folder holding cell_images/ (the NIH zip's layout), or the zip
    itself, extracted into SCRATCH (never beside the source, which may be read-only)."""
    path = Path(source)
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            archive.extractall(scratch)
        path = scratch
    return find_class_root(path)


@pytest.fixture(scope="session")
def real_images(tmp_path_factory) -> Path | None:
    """The NIH class folders from $MALARIA_SOURCE, or None when it is unset.

    Set but unusable fails the run: CI sets it, and a silent skip would turn
    "the real-data tests never ran" into a green run."""
    source = os.environ.get("MALARIA_SOURCE")
    if not source:
        return None
    try:
        return resolve_malaria_source(source, tmp_path_factory.mktemp("malaria_source"))
    except UserError as error:
        pytest.fail(f"MALARIA_SOURCE={source!r} is unusable: {error}", pytrace=False)


@pytest.fixture(scope="session")
def malaria_source(real_images: Path | None) -> Path:
    if real_images is None:
        pytest.skip("set MALARIA_SOURCE to the NIH cell images (folder or zip) for real-data tests")
    return real_images


# The one skip a real-data test may take under MALARIA_SOURCE: no browser on this machine
# (README command 2 installs none). .ci/run sets REQUIRE_BROWSER=1, which makes a missing
# browser a failure there instead (tests/serving.py's chromium()).
NO_BROWSER = "no browser: the page test needs Debian's chromium and chromium-driver (apt-get)"


def allowed_skip(report) -> bool:
    reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    return NO_BROWSER in str(reason) and not os.environ.get("REQUIRE_BROWSER")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With MALARIA_SOURCE set, a real-data test that skips (for any reason) fails instead."""
    outcome = yield
    report = outcome.get_result()
    if (
        report.skipped
        and os.environ.get("MALARIA_SOURCE")
        and "malaria_source" in getattr(item, "fixturenames", ())
        and not allowed_skip(report)
    ):
        report.outcome = "failed"
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"MALARIA_SOURCE is set, but this real-data test skipped: {reason}"


# Under pytest-xdist (``-n 2``, the README's test command) each worker builds its own
# session fixtures. The models that many files share take minutes to train, so every test
# that needs one runs in the worker that trained it; the rest go file by file, so a
# module's own fixtures are built once too.
SHARED_MODELS = ("trained_run", "digits_run")  # the session fixtures worth a worker each
# The groups that take a worker a minute or more, costliest first (seconds of one 2-core
# run, CONTRIBUTING.md): handed out first, longest first, so that the two workers finish
# together and the last group to run is a short one. xdist's own reordering (by the
# number of tests in a group) is off in pyproject.toml: it put these last.
COSTLY_GROUPS = (
    "trained_run",  # 331 s
    "test_own_images.py",  # 195 s
    "test_resume.py",  # 156 s
    "test_gradcam.py",  # 150 s
    "digits_run",  # 145 s
    "test_crossval.py",  # 106 s
    "test_untouched.py",  # about 105 s (71 s, then a 35 s live-server test added)
    "test_distribute.py",  # 89 s
    "test_export.py",  # 70 s
)


def test_group(item: pytest.Item) -> str:
    """The xdist group of ITEM: the shared model it needs, or else its file."""
    return next((name for name in SHARED_MODELS if name in item.fixturenames), item.path.name)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups from the marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    groups = {item.nodeid: test_group(item) for item in items}
    for item in items:
        item.add_marker(pytest.mark.xdist_group(groups[item.nodeid]))
    first = {group: index for index, group in enumerate(COSTLY_GROUPS)}
    items.sort(key=lambda item: first.get(groups[item.nodeid], len(first)))  # stable


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


@dataclass
class TrainedRun:
    """What save_model.py's main trained and saved, seen from inside the training code."""

    model_path: Path  # the file save_model.py wrote
    model: Any  # the keras.Model train() returned: the one it evaluated and saved
    metadata: dict
    decoded: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    fed: list[tuple[np.ndarray, Any]] = field(default_factory=list)  # make_dataset: in, out

    def fed_to_model(self, split: str) -> np.ndarray:
        """The images of SPLIT as its un-augmented tf.data pipeline handed them to Keras."""
        images = self.decoded[split][0]
        dataset = next(out for source, out in self.fed if source is images)
        return np.concatenate([batch.numpy() for batch, _ in dataset])


def train_in_process(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> TrainedRun:
    """Run save_model.py's main here, recording what training decoded, fed and returned."""
    import save_model
    from pyimagesearch.training import train as training

    run = TrainedRun(Path(argv[argv.index("--model") + 1]), None, {})
    real_evaluate, real_load_split, real_make_dataset = (
        training.evaluate_network,
        training.load_split,
        training.make_dataset,
    )

    def evaluate_network(state):
        result = real_evaluate(state)
        run.model, run.metadata = result.model, result.metadata
        return result

    def load_split(split, *args, **kwargs):
        run.decoded[split.name] = real_load_split(split, *args, **kwargs)
        return run.decoded[split.name]

    def make_dataset(images, *args, **kwargs):
        dataset = real_make_dataset(images, *args, **kwargs)
        run.fed.append((images, dataset))  # make_dataset never augments (train.py does)
        return dataset

    monkeypatch.setattr(training, "evaluate_network", evaluate_network)
    monkeypatch.setattr(training, "load_split", load_split)
    monkeypatch.setattr(training, "make_dataset", make_dataset)
    assert save_model.main(argv) == 0
    return run


@pytest.fixture(scope="session")
def trained_run(tutorial_dataset: Path, tmp_path_factory) -> TrainedRun:
    """Two epochs on the real tutorial split through save_model.py, saved to a '.model' path.

    The ``stable`` recipe (SGD), named so that the figures the tests rely on do not move
    when the default recipe does.
    Enough to move the BatchNormalization statistics away from their initial values; the
    gentle learning rate keeps the probabilities away from 0 and 1 (at 0.1 they saturate
    after two epochs, and a saturated model hides a wrong weight in rounding)."""
    folder = tmp_path_factory.mktemp("model")
    argv = ["--dataset", str(tutorial_dataset), "--model", str(folder / "saved_model.model"),
            "--plot", str(folder / "plot.png"), "--epochs", "2", "--seed", "7",
            "--calibration-plot", str(folder / "calibration.png"),
            "--learning-rate", "0.01", "--recipe", "stable"]  # fmt: skip
    with pytest.MonkeyPatch.context() as monkeypatch:
        return train_in_process(argv, monkeypatch)


@pytest.fixture(scope="session")
def trained_model(trained_run: TrainedRun) -> Path:
    """The '.model' file save_model.py wrote for ``trained_run``."""
    return trained_run.model_path


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


# ------------------------------------------- a 10-class set that is not malaria


@pytest.fixture(scope="session")
def digits(tmp_path_factory) -> Path:
    """scikit-learn's digits as a flat folder of 10 classes of 48x48 grey PNGs."""
    from pyimagesearch.example_sets import write_set

    root = tmp_path_factory.mktemp("digits") / "digits"
    counts = write_set("digits", root)
    assert len(counts) == 10 and sum(counts.values()) == 1797
    return root


@pytest.fixture(scope="session")
def digits_run(digits: Path, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """save_model.py on the flat digits folder, as the README's example runs it: the one
    10-class model that test_own_images and test_export share (training it is minutes)."""
    folder = tmp_path_factory.mktemp("digits_model")
    model = folder / "digits.keras"
    result = run_script("save_model.py", "--dataset", str(digits), "--model", str(model),
                        "--plot", str(folder / "plot.png"), "--image-size", "32",
                        "--augmentation", "none", "--epochs", "4", "--seed", "1")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return model, result
