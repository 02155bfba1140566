"""The model file as data: what can be read and checked without TensorFlow or Keras.

A saved model is a ``.keras`` zip (or a legacy HDF5 file) holding, beside Keras' own
members, the project's JSON metadata (class names, preprocessing recipe, calibration,
provenance) and, for ``.keras`` files, the compiled network of the fast path
(``pyimagesearch.core.compiled``). Everything here runs before any network is built, and
on the fast path instead of Keras: the checks of safe loading must not need the
framework they protect.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from pyimagesearch.core import report, safety
from pyimagesearch.core.calibration import check_temperature
from pyimagesearch.core.errors import UserError
from pyimagesearch.core.preprocessing import (
    INTERPOLATIONS,
    SCALES,
    TUTORIAL_TRAINING,
    default_recipe,
)

METADATA_NAME = "pyimagesearch.json"
METADATA_FORMAT = 1
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
LEGACY_SUFFIXES = (".h5", ".hdf5")
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
    if not isinstance(recipe.get("scale"), str) or recipe.get("scale") not in SCALES:
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
        report.warning(f"'{path}': ignoring its positive class {_shown(positive)}, not a class")
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
            report.warning(f"'{path}': ignoring its malformed provenance")
            metadata["provenance"] = {}
    return metadata


def checkpoint_path_for(model_path: str | Path) -> Path:
    """Where training checkpoints a model by default: beside it, MODEL.checkpoint."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + ".checkpoint")


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


# How many hex digits of a model file's SHA-256 the summary line and GET /model show.
SHORT_SHA256 = 12


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of the whole model file (what ``sha256sum`` prints): which file answers.

    The manifest's hashes inside the file catch accidents (a re-save, a stale network);
    they cannot catch whoever edits the file, who rewrites them too. This one, compared
    with a hash kept elsewhere (``--expect-sha256``), can."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as error:
        raise UserError(f"cannot read '{path}': {error.strerror or error}") from None
    return digest.hexdigest()


def check_sha256(path: str | Path, expected: str | None) -> str:
    """PATH's SHA-256, after refusing the file when EXPECTED (--expect-sha256) differs."""
    file_kind(path)  # a missing file, a folder or a FIFO (which open() would wait on) first
    actual = file_sha256(path)
    if expected is not None and actual != expected.lower():
        raise UserError(
            f"'{path}' has SHA-256 {actual[:SHORT_SHA256]}..., not the "
            f"{expected[:SHORT_SHA256].lower()}... --expect-sha256 names; refusing to run it"
        )
    return actual


def no_metadata(path: str | Path) -> UserError:
    """The one refusal of a model file without our metadata: how to use it anyway."""
    return UserError(
        f"'{path}' holds no class names or preprocessing recipe (a Keras model saved "
        "elsewhere?): give its classes in output order with --classes A,B,..., or adopt it "
        f"once with python -m pyimagesearch.adopt --model '{path}' --classes A,B,... "
        "--output NEW.model"
    )


@dataclass
class Adoption:
    """How to read a Keras model file saved elsewhere, which names neither its classes
    nor its preprocessing: the classes in output order (``--classes``), and the
    preprocessing, by default what the tutorial's training did
    (``preprocessing.TUTORIAL_TRAINING``; ``--interpolation``, ``--scale``). The image
    size is the model's own input."""

    classes: list[str] | None  # None: a backbone for --init-from, its classifier replaced
    interpolation: str | None = None  # None: the tutorial training's
    scale: str | None = None

    def recipe(self, input_shape: tuple) -> dict:
        """The preprocessing recipe for a network whose input is INPUT_SHAPE."""
        return default_recipe(
            tuple(input_shape[1:3]),
            self.interpolation or TUTORIAL_TRAINING["interpolation"],
            self.scale or TUTORIAL_TRAINING["scale"],
        )

    def metadata(self, input_shape: tuple, outputs: int, path: str | Path) -> dict:
        """Our metadata for the file at PATH, or one line saying why it cannot have any."""
        if len(input_shape) != 4 or None in input_shape[1:] or input_shape[-1] != 3:
            raise UserError(
                f"'{path}': its input {tuple(input_shape[1:])} is not a fixed-size RGB "
                "image (height, width, 3), which is all this project can feed a network"
            )
        if self.classes is not None and outputs != len(self.classes):
            raise UserError(
                f"'{path}' has {outputs} outputs but --classes names {len(self.classes)}"
            )
        names = self.classes or [f"output {i}" for i in range(outputs)]
        return {"class_names": list(names), "preprocessing": self.recipe(input_shape)}

    def describe(self, recipe: dict, path: str | Path) -> str:
        """The [INFO] line that says what was assumed about the file."""
        tutorial = "the tutorial's training"
        read_as = (
            f"classes {', '.join(self.classes)} (its output order, --classes)"
            if self.classes
            else "a backbone (its last layer replaced by a new classifier)"
        )
        return (
            f"'{path}' has no metadata of this project: reading it as {read_as}, RGB at "
            f"{recipe['height']}x{recipe['width']} (its input), {recipe['interpolation']} "
            f"resize ({'--interpolation' if self.interpolation else tutorial}) and scale "
            f"{recipe['scale']} ({'--scale' if self.scale else tutorial})"
        )

    def check(self, metadata: dict, path: str | Path) -> None:
        """A file that has our metadata: --classes must agree with it, and the
        preprocessing it records is not to be overridden."""
        if self.interpolation or self.scale:
            raise UserError(
                f"'{path}' records its own preprocessing; --interpolation and --scale are "
                "for model files without it"
            )
        if self.classes is not None and list(self.classes) != metadata["class_names"]:
            raise UserError(
                f"--classes {','.join(self.classes)} differs from the classes '{path}' "
                f"records ({','.join(metadata['class_names'])}); leave --classes out"
            )


def saved_with(path: str | Path) -> str | None:
    """What a file without our metadata says made it ("Keras 2.21.0, HDF5"), if anything."""
    try:
        if file_kind(path) == "h5":
            import h5py

            with h5py.File(path, "r") as handle:
                version = handle.attrs.get("keras_version")
            version = version.decode() if isinstance(version, bytes) else version
            return f"Keras {version}, HDF5" if isinstance(version, str) else "HDF5"
        with zipfile.ZipFile(path) as archive:
            if "metadata.json" in archive.namelist():
                version = json.loads(archive.read("metadata.json")).get("keras_version")
                return f"Keras {version}, .keras" if isinstance(version, str) else ".keras"
    except (UserError, *READ_ERRORS):
        pass
    return None


def lineage(provenance: dict, depth: int = 0) -> str | None:
    """Where a model came from, in a few words, following its parents ("continued from
    'a.model' (sha256 12ab34cd, classes X, Y; adopted from 'legacy.model' ...)"), or None
    for a model trained from scratch here."""
    if not isinstance(provenance, dict) or depth > 8:
        return None
    for key, verb in (("adopted_from", "adopted from"), ("init_from", "continued from")):
        parent = provenance.get(key)
        if not isinstance(parent, dict):
            continue
        words = [f"sha256 {str(parent.get('sha256', '?'))[:12]}"]
        if isinstance(parent.get("class_names"), list):
            words.append("classes " + ", ".join(map(str, parent["class_names"])))
        if isinstance(parent.get("saved_with"), str):
            words.append(f"saved with {parent['saved_with']}")
        earlier = lineage(parent.get("provenance"), depth + 1)
        if earlier:
            words.append(earlier)
        summary = parent.get("summary")
        if isinstance(summary, str) and not earlier:
            words.append(summary)
        return f"{verb} '{parent.get('file', '?')}' ({'; '.join(words)})"
    return None
