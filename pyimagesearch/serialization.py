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
import re
import shutil
import socket
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

import keras

# Registers FusedBatchNormalization, which training checkpoints hold, with Keras.
import pyimagesearch.acceleration  # noqa: F401
from pyimagesearch import safety
from pyimagesearch.calibration import check_temperature
from pyimagesearch.errors import UserError
from pyimagesearch.preprocessing import INTERPOLATIONS

METADATA_NAME = "pyimagesearch.json"
METADATA_FORMAT = 1
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
LEGACY_SUFFIXES = (".h5", ".hdf5")
# Keras 3 releases before 3.11.3 silently ignore safe_mode for HDF5 files (CVE-2025-9905):
# a Lambda layer in a .h5 model, or in a .model file holding HDF5, runs its code on load.
SAFE_KERAS = (3, 11, 3)
# What zipfile, zlib, h5py and json raise for damaged or hostile files (ValueError covers
# bad JSON and bad UTF-8, RuntimeError an encrypted member, NotImplementedError an
# unknown compression method).
READ_ERRORS = (
    OSError,
    ValueError,
    KeyError,
    RuntimeError,
    NotImplementedError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
)


def check_keras_version(version: str | None = None) -> None:
    """Refuse to load any model with a Keras whose safe mode an HDF5 file can bypass."""
    version = version or keras.__version__
    numbers = tuple(int(part) for part in re.findall(r"\d+", version)[:3])
    if numbers < SAFE_KERAS:
        raise UserError(
            f"Keras {version} ignores safe mode for HDF5 model files (CVE-2025-9905), so "
            "loading one could run its code; install Keras 3.11.3 or later "
            "(pip install -r requirements.txt)"
        )


def check_writable(path: str | Path, flag: str = "--model") -> None:
    """Fail before a long training run, not after it, when PATH (given as FLAG) cannot be
    written (see ``safety.check_output_file``: a device or FIFO there is refused too)."""
    safety.check_output_file(path, flag)


# This host's name as it appears in temporary names (no path separators, no oddities).
HOST = re.sub(r"[^\w.-]", "_", socket.gethostname()) or "localhost"


def temporary_prefix(path: Path) -> str:
    """Start of the temporary name a save uses beside PATH; the writer's pid follows.

    It carries the host's name: on shared storage (multi-worker training) other hosts
    save beside us, and their process ids mean nothing here."""
    return f".{path.name}.saving.{HOST}."


def remove_stale_temporaries(path: Path) -> None:
    """Delete half-written saves left by a process that was killed (SIGKILL, power loss).

    Their name carries the writer's host and process id; only this host's, whose writer
    is gone, are garbage. Another host's file is never touched: it may be a save in
    progress.
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
    except OSError as error:  # a full disk or lost permission: say so, keep any earlier file
        Path(tmp_name).unlink(missing_ok=True)
        raise UserError(f"cannot save to '{path}': {error.strerror or error}") from error
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def read_metadata(path: str | Path) -> dict | None:
    """The project metadata stored in a model file, or None when it has none."""
    kind = file_kind(path)
    if kind == "keras":
        with zipfile.ZipFile(path) as archive:
            check_archive(archive, path)
            if METADATA_NAME not in archive.namelist():
                return None
            with archive.open(METADATA_NAME) as member:
                # Read one byte past the bound: the size in the zip header may lie.
                document = member.read(safety.MAX_METADATA_BYTES + 1)
    else:
        import h5py

        with h5py.File(path, "r") as handle:
            if METADATA_NAME not in handle.attrs:
                return None
            size = handle.attrs.get_id(METADATA_NAME).get_storage_size()
            if size > safety.MAX_METADATA_BYTES:
                raise UserError(f"'{path}': its metadata is {size:,} bytes; this is not ours")
            document = handle.attrs[METADATA_NAME]
    if len(document) > safety.MAX_METADATA_BYTES:
        raise UserError(
            f"'{path}': its metadata is larger than {safety.MAX_METADATA_BYTES:,} bytes"
        )
    try:
        return json.loads(document)
    except RecursionError:  # json has no depth limit of its own; the 1 MB bound caps the cost
        raise UserError(f"'{path}': its metadata is nested too deeply") from None


def check_archive(archive: zipfile.ZipFile, path: str | Path) -> None:
    """Refuse a .keras zip we should not unpack: encrypted or oddly compressed members,
    or a config/metadata member that inflates beyond any real model's (a zip bomb)."""
    for info in archive.infolist():
        if info.flag_bits & 0x1:
            raise UserError(f"'{path}': member '{info.filename}' is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise UserError(
                f"'{path}': member '{info.filename}' uses compression method "
                f"{info.compress_type}, which Keras files never use"
            )
        bound = (
            safety.MAX_METADATA_BYTES
            if info.filename == METADATA_NAME
            else safety.MAX_CONFIG_BYTES
            if info.filename.endswith(".json")
            else None
        )
        if bound is not None and info.file_size > bound:
            raise UserError(
                f"'{path}': member '{info.filename}' inflates to {info.file_size:,} bytes "
                f"(at most {bound:,} expected)"
            )


def file_kind(path: str | Path) -> str:
    """'keras' (zip) or 'h5', from the file's content rather than its name."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"model file '{path}' does not exist")
    if path.is_dir():
        raise UserError(f"model path '{path}' is a folder, not a model file")
    if not safety.is_regular_file(path):  # a FIFO would hang, a device never end
        raise UserError(f"model path '{path}' is not a regular file")
    if path.stat().st_size == 0:
        raise UserError(f"model file '{path}' is empty (0 bytes)")
    if zipfile.is_zipfile(path):
        return "keras"
    with open(path, "rb") as handle:
        if handle.read(8) == HDF5_SIGNATURE:
            return "h5"
    raise UserError(f"'{path}' is not a Keras model file (neither a .keras zip nor HDF5)")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "..."


def validate_metadata(metadata: object, path: str | Path) -> dict:
    """Check the metadata's types and ranges before anything is built from it.

    Class names: distinct non-empty strings; height and width: integers from 1 to
    MAX_INPUT_SIDE (a bigger stored size would make every image gigabytes); a known
    interpolation, colour and scale; a calibration, when present, is a temperature
    within the fit's bounds (a hostile file must not turn every answer into 0 or 1, or
    NaN). Provenance is informative only: a malformed one
    is dropped with a warning rather than refusing the model.
    """
    if not isinstance(metadata, dict):
        raise UserError(f"'{path}' has unusable metadata: not a JSON object")
    names = metadata.get("class_names")
    if not (
        isinstance(names, list)
        and names
        and all(isinstance(name, str) and name for name in names)
        and len(set(names)) == len(names)
    ):
        raise UserError(
            f"'{path}' has unusable metadata: class_names must be a list of distinct "
            f"non-empty strings, got {_shown(names)}"
        )
    recipe = metadata.get("preprocessing")
    if not isinstance(recipe, dict):
        raise UserError(f"'{path}' has unusable metadata: preprocessing is {_shown(recipe)}")
    for key in ("height", "width"):
        value = recipe.get(key)
        # bool is an int in Python; True is no image size.
        if type(value) is not int or not 1 <= value <= safety.MAX_INPUT_SIDE:
            raise UserError(
                f"'{path}' has unusable metadata: {key} must be an integer from 1 to "
                f"{safety.MAX_INPUT_SIDE} (raise with $PYIMAGESEARCH_MAX_INPUT_SIDE), "
                f"got {_shown(value)}"
            )
    interpolation = recipe.get("interpolation")
    if not isinstance(interpolation, str) or interpolation not in INTERPOLATIONS:
        raise UserError(f"'{path}' asks for an unknown interpolation {_shown(interpolation)}")
    if recipe.get("color") != "RGB":
        raise UserError(f"'{path}' asks for an unknown colour order {_shown(recipe.get('color'))}")
    if recipe.get("scale") != "1/255":
        raise UserError(f"'{path}' asks for an unknown pixel scale {_shown(recipe.get('scale'))}")
    calibration = metadata.get("calibration")
    if calibration is not None:
        # It changes every probability the model gives: refuse one we cannot trust.
        method = calibration.get("method") if isinstance(calibration, dict) else None
        if method != "temperature":
            raise UserError(
                f"'{path}' asks for an unknown calibration {_shown(calibration)}; "
                "only a temperature is known"
            )
        problem = check_temperature(calibration.get("temperature"))
        if problem:
            raise UserError(
                f"'{path}' has unusable metadata: its calibration temperature {problem}"
            )
    positive = metadata.get("positive_class")
    if positive is not None and positive not in names:
        print(f"[WARNING] '{path}': ignoring its positive class {_shown(positive)}, not a class")
        del metadata["positive_class"]
    provenance = metadata.get("provenance")
    if provenance is not None:
        metrics = provenance.get("final_metrics") if isinstance(provenance, dict) else None
        accuracy = metrics.get("test_accuracy") if isinstance(metrics, dict) else None
        if (
            not isinstance(provenance, dict)
            or not isinstance(metrics, dict | None)
            or not isinstance(accuracy, int | float | None)
            or isinstance(accuracy, bool)
        ):
            print(f"[WARNING] '{path}': ignoring its malformed provenance", file=sys.stderr)
            metadata["provenance"] = {}
    return metadata


def check_is_checkpoint(path: str | Path) -> None:
    """Refuse to replace (or resume from) an existing --checkpoint file unless its own
    metadata says it is a training checkpoint of this project: a user's file given by
    mistake must never be overwritten, and then deleted when training ends."""
    try:
        metadata = read_metadata(path)
    except (UserError, OSError, ValueError, zipfile.BadZipFile):
        metadata = None
    if not isinstance(metadata, dict) or not isinstance(metadata.get("checkpoint"), dict):
        raise UserError(
            f"--checkpoint '{path}' exists and is not a training checkpoint of this project; "
            "refusing to overwrite it (give another --checkpoint)"
        )


def public_metadata(metadata: dict) -> dict:
    """The metadata as it may leave the machine (the server's /model, every export): the
    training folder and an --exclude list by their last name only, never the absolute
    path they had on the training machine (models saved before this rule carry one)."""
    public = json.loads(json.dumps(metadata))
    provenance = public.get("provenance")
    if isinstance(provenance, dict):
        if isinstance(provenance.get("dataset"), str):
            provenance["dataset"] = Path(provenance["dataset"]).name
        excluded = provenance.get("excluded")
        if isinstance(excluded, dict) and isinstance(excluded.get("list"), str):
            excluded["list"] = Path(excluded["list"]).name
    return public


def check_metadata(metadata: dict | None, model: keras.Model, path: str | Path) -> dict:
    """Refuse metadata the loader cannot use, with one line saying why."""
    if metadata is None:
        raise UserError(
            f"'{path}' holds no class names or preprocessing recipe; "
            "save it with save_model.py so the loader knows how to use it"
        )
    validate_metadata(metadata, path)
    class_names = metadata["class_names"]
    size = (metadata["preprocessing"]["height"], metadata["preprocessing"]["width"])
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
    check_keras_version()
    kind = file_kind(path)
    try:
        metadata = read_metadata(path)
    except READ_ERRORS as error:
        raise UserError(f"cannot read '{path}': {type(error).__name__}: {error}") from error
    if metadata is not None:  # checked before Keras builds a network of the size it names
        validate_metadata(metadata, path)
    with tempfile.TemporaryDirectory() as tmp:
        # Keras 3 picks its reader from the suffix; give it the one matching the content.
        readable = Path(tmp) / ("model.keras" if kind == "keras" else "model.h5")
        try:
            shutil.copyfile(path, readable)
        except OSError as error:
            raise UserError(f"cannot read '{path}': {error.strerror or error}") from error
        try:
            model = keras.saving.load_model(readable, compile=compile, safe_mode=True)
        except Exception as error:  # Keras raises many types for bad files
            reason = " ".join(str(error).split())
            if len(reason) > 300:
                reason = reason[:300] + "..."
            raise UserError(f"cannot load model '{path}': {reason}") from error
    return model, check_metadata(metadata, model, path)
