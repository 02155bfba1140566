"""Saving and loading: native Keras files that carry what the loader needs.

A saved model holds, beside the network, a small JSON document (``METADATA_NAME``
inside the ``.keras`` zip, or a root attribute of a legacy ``.h5`` file) with the
class names in index order and the preprocessing recipe, so ``load_model.py``
hard-codes none of them. Any path works, including the tutorial's
``saved_model.model``: Keras 3 insists on a ``.keras``/``.h5`` suffix, so we write
and read through a temporary file with the right suffix. Saves are atomic: the
file is written beside PATH and then renamed over it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import keras

# Registers FusedBatchNormalization, which training checkpoints hold, with Keras.
import pyimagesearch.acceleration  # noqa: F401
from pyimagesearch.errors import UserError
from pyimagesearch.preprocessing import INTERPOLATIONS

METADATA_NAME = "pyimagesearch.json"
METADATA_FORMAT = 1
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
LEGACY_SUFFIXES = (".h5", ".hdf5")


def check_writable(path: str | Path) -> None:
    """Fail before a long training run, not after it, when PATH cannot be written."""
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise UserError(f"cannot save to '{path}': folder '{folder}' does not exist")
    if Path(path).is_dir():
        raise UserError(f"cannot save to '{path}': it is a folder")
    if not os.access(folder, os.W_OK):
        raise UserError(f"cannot save to '{path}': folder '{folder}' is not writable")


def temporary_prefix(path: Path) -> str:
    return f".{path.name}.saving."


def remove_stale_temporaries(path: Path) -> None:
    """Delete half-written saves left by a process that was killed (SIGKILL, power loss).

    Their name carries the writer's process id; one whose writer is gone is garbage.
    """
    prefix = temporary_prefix(path)
    for leftover in path.parent.glob(f"{prefix}*"):
        pid = leftover.name[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            leftover.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def save_model(model: keras.Model, path: str | Path, metadata: dict) -> None:
    """Save the model with its metadata, replacing PATH atomically."""
    path = Path(path)
    legacy = path.suffix.lower() in LEGACY_SUFFIXES
    document = json.dumps({"format": METADATA_FORMAT, **metadata}, indent=2)
    remove_stale_temporaries(path)
    # Same folder as PATH, so the final rename never crosses file systems.
    fd, tmp_name = tempfile.mkstemp(
        prefix=f"{temporary_prefix(path)}{os.getpid()}.",
        suffix=".h5" if legacy else ".keras",
        dir=path.parent,
    )
    os.close(fd)
    try:
        model.save(tmp_name)
        if legacy:
            import h5py

            with h5py.File(tmp_name, "a") as handle:
                handle.attrs[METADATA_NAME] = document
        else:
            with zipfile.ZipFile(tmp_name, "a") as archive:
                archive.writestr(METADATA_NAME, document)
        with open(tmp_name, "rb+") as handle:
            os.fsync(handle.fileno())
        # mkstemp makes the file private (0600); give it the usual permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_name, 0o666 & ~umask)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def read_metadata(path: str | Path) -> dict | None:
    """The project metadata stored in a model file, or None when it has none."""
    kind = file_kind(path)
    if kind == "keras":
        with zipfile.ZipFile(path) as archive:
            if METADATA_NAME not in archive.namelist():
                return None
            return json.loads(archive.read(METADATA_NAME))
    import h5py

    with h5py.File(path, "r") as handle:
        document = handle.attrs.get(METADATA_NAME)
    return json.loads(document) if document is not None else None


def file_kind(path: str | Path) -> str:
    """'keras' (zip) or 'h5', from the file's content rather than its name."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"model file '{path}' does not exist")
    if path.is_dir():
        raise UserError(f"model path '{path}' is a folder, not a model file")
    if path.stat().st_size == 0:
        raise UserError(f"model file '{path}' is empty (0 bytes)")
    if zipfile.is_zipfile(path):
        return "keras"
    with open(path, "rb") as handle:
        if handle.read(8) == HDF5_SIGNATURE:
            return "h5"
    raise UserError(f"'{path}' is not a Keras model file (neither a .keras zip nor HDF5)")


def check_metadata(metadata: dict | None, model: keras.Model, path: str | Path) -> dict:
    """Refuse metadata the loader cannot use, with one line saying why."""
    if metadata is None:
        raise UserError(
            f"'{path}' holds no class names or preprocessing recipe; "
            "save it with save_model.py so the loader knows how to use it"
        )
    try:
        class_names = list(metadata["class_names"])
        recipe = metadata["preprocessing"]
        size = (int(recipe["height"]), int(recipe["width"]))
        interpolation = recipe["interpolation"]
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"'{path}' has unusable metadata (missing {error})") from None
    if interpolation not in INTERPOLATIONS or recipe.get("color") != "RGB":
        raise UserError(f"'{path}' asks for preprocessing this version cannot do: {recipe}")
    if recipe.get("scale") != "1/255":
        raise UserError(f"'{path}' asks for an unknown pixel scale {recipe.get('scale')!r}")
    input_shape = tuple(model.input_shape[1:3])
    if input_shape != size or model.input_shape[-1] != 3:
        raise UserError(
            f"'{path}': model input {model.input_shape[1:]} does not match its recipe {size}"
        )
    if model.output_shape[-1] != len(class_names):
        raise UserError(
            f"'{path}': model has {model.output_shape[-1]} outputs "
            f"but {len(class_names)} class names"
        )
    return metadata


def load_model(path: str | Path, compile: bool = False) -> tuple[keras.Model, dict]:
    """Load a model in Keras' safe mode (no arbitrary code), with its metadata.

    ``compile=True`` also restores the optimizer state (for resuming training)."""
    kind = file_kind(path)
    try:
        metadata = read_metadata(path)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise UserError(f"cannot read '{path}': {error}") from None
    with tempfile.TemporaryDirectory() as tmp:
        # Keras 3 picks its reader from the suffix; give it the one matching the content.
        readable = Path(tmp) / ("model.keras" if kind == "keras" else "model.h5")
        shutil.copyfile(path, readable)
        try:
            model = keras.saving.load_model(readable, compile=compile, safe_mode=True)
        except Exception as error:  # Keras raises many types for bad files
            reason = " ".join(str(error).split())
            if len(reason) > 300:
                reason = reason[:300] + "..."
            raise UserError(f"cannot load model '{path}': {reason}") from None
    return model, check_metadata(metadata, model, path)
