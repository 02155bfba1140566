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
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

import keras

# Registers FusedBatchNormalization, which training checkpoints hold, with Keras.
import pyimagesearch.network.acceleration  # noqa: F401

# Registers GreyWorld, the stain normalisation layer a saved network may begin with.
import pyimagesearch.network.stain  # noqa: F401
from pyimagesearch.core import report, safety
from pyimagesearch.core.errors import UserError
from pyimagesearch.core.modelfile import (  # noqa: F401 (the TF-free half, re-exported)
    HDF5_SIGNATURE,
    LEGACY_SUFFIXES,
    METADATA_FORMAT,
    METADATA_NAME,
    READ_ERRORS,
    Adoption,
    check_archive,
    check_is_checkpoint,
    file_kind,
    no_metadata,
    public_metadata,
    read_metadata,
    validate_metadata,
)

# Keras 3 releases before 3.11.3 silently ignore safe_mode for HDF5 files (CVE-2025-9905):
# a Lambda layer in a .h5 model, or in a .model file holding HDF5, runs its code on load.
SAFE_KERAS = (3, 11, 3)
# The word in a model save's temporary name (``safety.temporary_prefix``).
SAVING = "saving"


HOST = safety.HOST


def temporary_prefix(path: Path) -> str:
    """Start of a model save's temporary name beside PATH (``safety.temporary_prefix``)."""
    return safety.temporary_prefix(path, SAVING)


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


def save_model(
    model: keras.Model, path: str | Path, metadata: dict, compiled: bool = False
) -> None:
    """Save the model with its metadata, replacing PATH atomically.

    ``compiled`` also writes the fast path's OpenVINO network into a ``.keras`` file
    (``pyimagesearch.core.compiled``): finished models, not training checkpoints.
    """
    path = Path(path)
    legacy = path.suffix.lower() in LEGACY_SUFFIXES
    document = json.dumps({"format": METADATA_FORMAT, **metadata}, indent=2)
    # The one atomic writer (safety.replacing), with the suffix Keras picks its format by.
    with safety.replacing(path, SAVING, suffix=".h5" if legacy else ".keras") as temporary:
        tmp_name = str(temporary)
        model.save(tmp_name)
        if legacy:
            import h5py

            with h5py.File(tmp_name, "a") as handle:
                handle.attrs[METADATA_NAME] = document
        else:
            with zipfile.ZipFile(tmp_name, "a") as archive:
                archive.writestr(METADATA_NAME, document)
            if compiled:
                add_compiled_network(tmp_name, model, metadata)


def add_compiled_network(path: str, model: keras.Model, metadata: dict) -> None:
    """Write the fast path's network into the file; a failure costs speed, not the model."""
    from pyimagesearch.core.calibration import temperature_of
    from pyimagesearch.core.compiled import write_ir

    try:
        write_ir(path, model, temperature_of(metadata), metadata.get("preprocessing"))
    except (ImportError, RuntimeError) as error:  # no OpenVINO, or it cannot convert
        reason = " ".join(str(error).split())[:200]
        report.warning(
            f"the model is saved without its OpenVINO network ({reason}); "
            "load_model.py will load it with Keras"
        )


def check_metadata(metadata: dict | None, model: keras.Model, path: str | Path) -> dict:
    """Refuse metadata the loader cannot use, with one line saying why."""
    if metadata is None:
        raise no_metadata(path)
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


def load_model(
    path: str | Path, compile: bool = False, adoption: Adoption | None = None
) -> tuple[keras.Model, dict]:
    """Load a model in Keras' safe mode (no arbitrary code), with its metadata.

    ``compile=True`` also restores the optimizer state (for resuming training).
    ``adoption`` (``--classes``) reads a Keras file saved elsewhere, without our
    metadata: Keras 3 or 2 (tf.keras, HDF5), any name; one [INFO] line says what was
    assumed. Safe mode applies all the same: a Lambda layer is refused."""
    check_keras_version()
    kind = file_kind(path)
    try:
        metadata = read_metadata(path)
    except READ_ERRORS as error:
        raise UserError(f"cannot read '{path}': {type(error).__name__}: {error}") from error
    if metadata is not None:  # checked before Keras builds a network of the size it names
        validate_metadata(metadata, path)
        if adoption is not None:
            adoption.check(metadata, path)
    elif kind == "h5" and not has_model_config(path):
        raise UserError(
            f"cannot load model '{path}': it holds weights only (Keras' save_weights), "
            "not a network; load it into the network it came from"
        )
    elif adoption is None:  # refused before Keras reads it: the fix is the user's
        raise no_metadata(path)
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
    if metadata is None:
        metadata = adoption.metadata(model.input_shape, model.output_shape[-1], path)
        report.info(adoption.describe(metadata["preprocessing"], path))
    return model, check_metadata(metadata, model, path)


def has_model_config(path: str | Path) -> bool:
    """Whether an HDF5 file holds a whole model (Keras and tf.keras write its config as
    the root's 'model_config' attribute) rather than save_weights' weights alone."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            return "model_config" in handle.attrs
    except OSError:
        return True  # not ours to judge: Keras' own reader says what is wrong
