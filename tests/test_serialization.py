"""Saving and loading: any path, exact round trip, atomic replace, safe mode, clear refusals."""

import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from pyimagesearch.core import safety
from pyimagesearch.core.errors import UserError
from pyimagesearch.core.preprocessing import default_recipe
from pyimagesearch.training.serialization import (
    HDF5_SIGNATURE,
    HOST,
    load_model,
    save_model,
    temporary_prefix,
)
from pyimagesearch.training.train import build_model, compile_model
from tests.conftest import write_image

METADATA = {"class_names": ["Parasitized", "Uninfected"], "preprocessing": default_recipe()}
BATCH = np.random.default_rng(0).random((5, 64, 64, 3), dtype="float32")


@pytest.fixture(scope="module")
def model():
    model = build_model(2)
    compile_model(model, epochs=2)
    model.predict(BATCH, verbose=0)
    return model


@pytest.mark.parametrize("name", ["saved_model.model", "model.keras", "model.h5", "no_suffix"])
def test_round_trip_gives_identical_predictions(tmp_path: Path, model, name):
    path = tmp_path / name
    save_model(model, path, METADATA)
    loaded, metadata = load_model(path)
    assert metadata["class_names"] == METADATA["class_names"]
    assert metadata["preprocessing"] == METADATA["preprocessing"]
    assert np.array_equal(loaded.predict(BATCH, verbose=0), model.predict(BATCH, verbose=0))
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temp files left
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # like any file the user saves


def test_a_save_sweeps_only_this_hosts_dead_temporaries(tmp_path: Path, model, monkeypatch):
    """On shared storage (multi-worker) other hosts save beside us and their process ids
    mean nothing here: only this host's temporaries whose writer is dead are removed
    (a save killed midway, as in tests/test_resume.py, leaves one).
    """
    path = tmp_path / "m.model"
    written = []
    real_save = keras.Model.save

    def save(self, filepath, *args, **kwargs):
        written.append(Path(filepath).name)
        return real_save(self, filepath, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save", save)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    prefix = temporary_prefix(path)
    assert prefix.startswith(".m.model.saving.") and len(prefix) > len(".m.model.saving.")
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as alive:

        def leftover(pid: int) -> str:  # the name safety.temporary_name gives PID's save
            fields = f"{pid}.{safety.BOOT}.{safety.process_start(pid)}.0"
            return f"{prefix}{fields}.{safety._seal(prefix, fields, '.keras')}.keras"

        stale = tmp_path / leftover(dead.pid)
        busy = tmp_path / leftover(alive.pid)
        elsewhere = tmp_path / leftover(dead.pid).replace(f".{HOST}.", ".other-host.", 1)
        for leftover in (stale, busy, elsewhere):
            leftover.write_bytes(b"half")
        save_model(model, path, METADATA)
        alive.kill()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [path.name, busy.name, elsewhere.name]
    )
    assert written[0].startswith(f".m.model.saving.{HOST}.{os.getpid()}.")
    assert load_model(path)[1]["class_names"] == METADATA["class_names"]


def test_failed_save_keeps_the_previous_model(tmp_path: Path, model, monkeypatch):
    path = tmp_path / "saved_model.model"
    save_model(model, path, METADATA)
    before = path.read_bytes()

    def crash(self, filepath, *args, **kwargs):
        Path(filepath).write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(keras.Model, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_model(model, path, METADATA)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["saved_model.model"]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b"just some text\n", "not a Keras model file"),
    ],
)
def test_unusable_files_are_refused_clearly(tmp_path: Path, content, message):
    path = tmp_path / "bad.model"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        load_model(path)


def test_missing_file(tmp_path: Path):
    with pytest.raises(UserError, match="does not exist"):
        load_model(tmp_path / "nope.model")


def test_truncated_keras_file_is_refused(tmp_path: Path, model):
    path = tmp_path / "m.keras"
    save_model(model, path, METADATA)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError):
        load_model(path)


def test_weights_only_h5_is_refused(tmp_path: Path, model):
    path = tmp_path / "only.weights.h5"
    model.save_weights(path)
    with pytest.raises(UserError, match="cannot load model"):
        load_model(path)


def test_model_without_metadata_is_refused(tmp_path: Path, model):
    path = tmp_path / "plain.keras"
    model.save(path)
    with pytest.raises(UserError, match="no class names"):
        load_model(path)


def test_metadata_that_disagrees_with_the_model_is_refused(tmp_path: Path, model):
    path = tmp_path / "m.model"
    save_model(model, path, {**METADATA, "class_names": ["a", "b", "c"]})
    with pytest.raises(UserError, match="3 class names"):
        load_model(path)
    save_model(model, path, {**METADATA, "preprocessing": default_recipe((96, 96))})
    with pytest.raises(UserError, match="does not match"):
        load_model(path)


def hostile_model(marker: Path) -> keras.Model:
    """A model whose Lambda layer creates MARKER whenever it is called, e.g. while loading."""
    inputs = keras.Input((64, 64, 3))
    code = f"lambda x: (open({str(marker)!r}, 'w').close(), x)[1]"
    hostile = keras.layers.Lambda(eval(code))(inputs)
    outputs = keras.layers.Dense(2, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(hostile)
    )
    model = keras.Model(inputs, outputs)
    marker.unlink(missing_ok=True)  # building it called the lambda once
    return model


def test_lambda_layer_code_never_runs(tmp_path: Path):
    marker = tmp_path / "pwned"
    model = hostile_model(marker)
    path = tmp_path / "hostile.model"
    save_model(model, path, METADATA)
    with zipfile.ZipFile(path) as archive:
        assert "config.json" in archive.namelist()
    with pytest.raises(UserError, match="(?i)lambda|safe"):
        load_model(path)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["hostile.h5", "hostile.model"])
def test_lambda_layer_in_hdf5_never_runs(tmp_path: Path, name: str):
    """Keras before 3.11.3 skipped safe mode for HDF5 (CVE-2025-9905); a '.model' name
    holding HDF5 bytes takes the same path, so both must be refused unexecuted."""
    marker = tmp_path / "pwned"
    written = tmp_path / "written.h5"
    save_model(hostile_model(marker), written, METADATA)
    path = tmp_path / name
    path.write_bytes(written.read_bytes())
    assert path.read_bytes()[:8] == HDF5_SIGNATURE
    with pytest.raises(UserError, match="(?i)lambda|safe"):
        load_model(path)
    assert not marker.exists()
    # The file does carry code that runs when safe mode is off: the refusal above is real.
    keras.saving.load_model(written, safe_mode=False)(BATCH[:1])
    assert marker.exists()


@pytest.mark.parametrize("version", ["3.11.2", "3.10.0", "3.0.0"])
def test_keras_without_the_hdf5_safe_mode_fix_is_refused(tmp_path: Path, monkeypatch, version):
    marker = tmp_path / "pwned"
    path = tmp_path / "hostile.h5"
    save_model(hostile_model(marker), path, METADATA)
    monkeypatch.setattr(keras, "__version__", version)
    with pytest.raises(UserError, match=f"Keras {version} .*CVE-2025-9905.*3.11.3"):
        load_model(path)
    assert not marker.exists()


@pytest.mark.parametrize("version", ["3.11.3", "3.12.0", "3.15.1", "4.0.0.dev2026"])
def test_keras_with_the_fix_loads_an_hdf5_model(tmp_path: Path, model, monkeypatch, version):
    path = tmp_path / "plain.h5"
    save_model(model, path, METADATA)
    monkeypatch.setattr(keras, "__version__", version)
    loaded, metadata = load_model(path)
    assert metadata["class_names"] == METADATA["class_names"]
    assert np.array_equal(loaded.predict(BATCH, verbose=0), model.predict(BATCH, verbose=0))


def test_debug_shows_what_went_wrong_inside(tmp_path: Path, model, capsys):
    """Without --debug one line and exit 2; with it, the traceback keeps the underlying error."""
    import load_model as load_script
    from pyimagesearch.core.errors import run_command

    path = tmp_path / "m.keras"
    save_model(model, path, METADATA)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("config.json", "{not json")  # readable zip, unusable model
    write_image(tmp_path / "images" / "cell.png")
    argv = ["-i", str(tmp_path / "images"), "-m", str(path), "-o", str(tmp_path / "montage.png")]
    assert run_command(load_script.main, argv) == 2
    assert capsys.readouterr().err.startswith("[ERROR] cannot load model")
    with pytest.raises(UserError) as caught:
        run_command(load_script.main, [*argv, "--debug"])
    assert caught.value.__cause__ is not None
