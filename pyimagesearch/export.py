"""Export a saved classifier for serving: raw RGB pixels in, class probabilities out.

    python -m pyimagesearch.export --model saved_model.model --format onnx --output exported

The exported graph takes a batch of equal-sized RGB images as uint8, shape
[batch, height, width, 3], any batch size and any height and width (every
format keeps these dimensions dynamic), and does the resize and [0, 1] scaling
itself with the model's own recipe (``graph_model_input``: the preprocessing's resize
and scaling as TensorFlow ops), so a client sends pixels and gets probabilities
in the order of the class names.

OUTPUT is a folder; OUTPUT/pyimagesearch.json holds the class names and the
recipe (and the calibration, when the model stores a temperature: the exported
probabilities are then the calibrated ones) for every format, and each format also
carries them inside:
  tf_saved_model  OUTPUT is the SavedModel: endpoint `serve` (also `serving_default`),
                  and `metadata()` returns the same JSON as a string
  onnx            OUTPUT/model.onnx, input `images`; JSON in metadata_props["pyimagesearch.json"]
  litert          OUTPUT/model.tflite, signature `serve`; JSON in the flatbuffer's
                  metadata entry "pyimagesearch.json"
  openvino        OUTPUT/model.xml + model.bin (OpenVINO IR, float32 weights), input
                  `images`; JSON in the model's rt_info entry "pyimagesearch.json"
The JSON is the model's metadata as it may leave the machine
(``serialization.public_metadata``): the training folder and an --exclude list by
their last name only, never a path of the training machine.

--check DIR classifies every image under DIR (recursively, load_model.py's listing)
twice before OUTPUT is written: with the new export, run by its own runtime
(TensorFlow, ONNX Runtime, LiteRT, OpenVINO in float32) on the decoded uint8 pixels
exactly as a client sends them, and with the Keras model through load_model.py's
path (its preprocessing and stored temperature). It prints

    [INFO] --check: 120 images, largest probability difference 3.1e-06, 0 labels changed

and names the images whose label changed (file, Keras label, export label; the first
20). Any changed label fails the command: exit status 1 with one [ERROR] line, and
OUTPUT is left as it was (an export that disagrees with its model is a failed export,
and a CI step or a script can rely on the status alone). Rerun without --check to
write such an export anyway and inspect it. The difference itself is reported, not
judged: float32 runtimes differ from TensorFlow by about 1e-7 to 1e-6 in the order of
their arithmetic, and what a client acts on is the label. A missing or empty DIR, or
a runtime that is not installed (the error names the pip package), is refused with
exit status 2 before any export work.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pyimagesearch import options
from pyimagesearch.core import modelfile, report, safety
from pyimagesearch.core.errors import UserError, run_command, start_tensorflow

if TYPE_CHECKING:  # imported lazily below: --help and early errors need no TensorFlow
    import keras
    import numpy as np
    import tensorflow as tf

METADATA_NAME = "pyimagesearch.json"  # the same name as inside a saved .keras file
FORMATS = {
    "tf_saved_model": None,
    "onnx": "model.onnx",
    "litert": "model.tflite",
    "openvino": "model.xml",
}
# Python packages (import names) each format needs beyond TensorFlow and Keras.
REQUIRED_PACKAGES = {
    "tf_saved_model": (),
    "onnx": ("tf2onnx", "onnx"),
    "litert": (),
    "openvino": ("openvino",),
}
# The pip package that provides each import name above and each --check runtime below.
PIP_PACKAGES = {
    "tf2onnx": "tf2onnx",
    "onnx": "onnx",
    "openvino": "openvino",
    "onnxruntime": "onnxruntime",
    "ai_edge_litert": "ai-edge-litert",
}
# The runtime --check runs each format's export with, as a client of that format would.
# LiteRT: its own package, else the interpreter TensorFlow still ships (deprecated there).
CHECK_RUNTIMES = {
    "tf_saved_model": "TensorFlow",
    "onnx": "ONNX Runtime",
    "litert": "the LiteRT interpreter",
    "openvino": "OpenVINO",
}
# Images per batch for both sides of --check (load_model.py's default).
CHECK_BATCH_SIZE = 64
# Changed labels named one by one before "... and N more".
CHECK_LISTED = 20
ENDPOINT = "serve"
# Resizes that the ONNX, LiteRT and OpenVINO graphs reproduce as TensorFlow does (checked on this
# stack): tf2onnx's "area" is off by up to 0.9 per pixel and its "bicubic" fails in
# onnxruntime when shrinking; LiteRT has neither as a built-in op; OpenVINO's TensorFlow
# reader has no ResizeBicubic (its bilinear and nearest match within 2e-7 on NIH cells).
PORTABLE_RESIZES = ("bilinear", "nearest")
# The files an export folder of ours holds at its top level, whatever the format: the
# SavedModel's files, each format's model file, and METADATA_NAME (always written). The
# SavedModel's variables/ and assets/ folders are checked file by file (``exported``).
EXPORT_ENTRIES = frozenset(
    {"saved_model.pb", "fingerprint.pb", METADATA_NAME}
    | {"model.onnx", "model.tflite", "model.xml", "model.bin"}
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = options.command_parser(__doc__, "pyimagesearch.export")
    parser.add_argument(
        "-m",
        "--model",
        required=True,
        help="model file written by save_model.py (or by Keras elsewhere, with --classes)",
    )
    options.add_adoption(parser)
    parser.add_argument(
        "-f", "--format", required=True, choices=tuple(FORMATS), help="what to export to"
    )
    parser.add_argument(
        "-o", "--output", required=True, help="folder to write (must not exist, or be empty)"
    )
    options.add_expect_sha256(parser)
    options.add_overwrite(parser, "OUTPUT if it is an earlier export")
    parser.add_argument(
        "--check",
        metavar="DIR",
        help="before writing OUTPUT, classify every image under DIR (recursively) with the "
        "export, in its own runtime on raw uint8 pixels as a client would, and with the "
        "Keras model (its stored temperature applied); print the largest probability "
        "difference and each image whose label changed. Any changed label exits with "
        "status 1 and leaves OUTPUT as it was, so a CI step can trust the exit status "
        "alone (rerun without --check to write the export anyway)",
    )
    options.add_debug(parser)
    return parser.parse_args(argv)


def not_installed(name: str, needed_by: str) -> UserError:
    """One line naming the missing import NAME and the pip package that provides it."""
    package = PIP_PACKAGES.get(name, name)
    return UserError(
        f"{needed_by} needs the Python package '{name}', which is not installed "
        f"(pip install {package})"
    )


def tensorflow_litert_interpreter() -> type | None:
    """The LiteRT interpreter TensorFlow ships (deprecated there), or None without one."""
    import tensorflow as tf

    return getattr(getattr(tf, "lite", None), "Interpreter", None)


def litert_interpreter() -> type:
    """LiteRT's Interpreter class: the ai_edge_litert package's, else TensorFlow's."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tensorflow_litert_interpreter()
        if Interpreter is None:
            raise not_installed("ai_edge_litert", "--check of a litert export") from None
    return Interpreter


def check_packages(fmt: str, check: bool = False) -> None:
    """Say which package is missing before spending time on loading the model: the ones
    the export needs, and with --check the runtime that runs the export."""
    for name in REQUIRED_PACKAGES[fmt]:
        if importlib.util.find_spec(name) is None:
            raise not_installed(name, f"--format {fmt}")
    if not check:
        return
    needed_by = f"--check of a {fmt} export"
    if fmt == "onnx" and importlib.util.find_spec("onnxruntime") is None:
        raise not_installed("onnxruntime", needed_by)
    if fmt == "openvino" and importlib.util.find_spec("openvino") is None:
        raise not_installed("openvino", needed_by)
    if (
        fmt == "litert"
        and importlib.util.find_spec("ai_edge_litert") is None
        and tensorflow_litert_interpreter() is None
    ):
        raise not_installed("ai_edge_litert", needed_by)


def check_check_folder(folder: str) -> None:
    """Refuse a missing --check folder, or a file given for one (no TensorFlow needed)."""
    path = Path(folder)
    if not path.exists():
        raise UserError(f"--check folder '{folder}' does not exist")
    if not path.is_dir():
        raise UserError(f"--check '{folder}' is not a folder")


def list_check_images(folder: str) -> list[str]:
    """The images --check classifies: every image file under FOLDER, listed as
    load_model.py lists a folder; a FOLDER without any is refused."""
    from pyimagesearch.core.preprocessing import IMAGE_EXTENSIONS
    from pyimagesearch.core.splitting import list_images

    paths = list_images(Path(folder))
    if not paths:
        raise UserError(
            f"--check folder '{folder}' holds no image files ({', '.join(IMAGE_EXTENSIONS)})"
        )
    return paths


def check_output(output: Path, overwrite: bool, model: str) -> None:
    """Refuse an OUTPUT we would have to clobber or could not write, before any work.

    --overwrite replaces only a folder this tool exported: METADATA_NAME in it and every
    file, at any depth, one an export writes (``exported``); anything else in OUTPUT, in
    ``variables/`` or ``assets/`` too, is the user's and is named in the refusal.
    """
    safety.check_paths({"--output": output}, {"--model": model})
    if output.exists() and not output.is_dir():
        raise UserError(f"--output '{output}' is a file; give a folder name")
    safety.check_own_folder(output, "--output", METADATA_NAME, exported, overwrite)


def exported(relative: str) -> bool:
    """Whether RELATIVE (a path inside an export folder, a folder's ending in "/", as
    ``safety.foreign_entry`` gives it) is one an export writes: the format files at the
    top, and a SavedModel's variables folder with its index and data shards. ``assets/``
    may be there, empty: this project's models have no asset files."""
    if relative in EXPORT_ENTRIES or relative in ("variables/", "assets/"):
        return True
    return relative == "variables/variables.index" or bool(
        re.fullmatch(r"variables/variables\.data-\d{5}-of-\d{5}", relative)
    )


def check_recipe(fmt: str, recipe: dict) -> None:
    """Refuse an export that would preprocess differently from the Keras model."""
    interpolation = recipe["interpolation"]
    if fmt != "tf_saved_model" and interpolation not in PORTABLE_RESIZES:
        raise UserError(
            f"--format {fmt} cannot reproduce this model's '{interpolation}' resize "
            f"(only {', '.join(PORTABLE_RESIZES)}); use --format tf_saved_model"
        )


def graph_model_input(images: tf.Tensor, recipe: dict) -> tf.Tensor:
    """The recipe's resize and scaling as TensorFlow ops, inside the exported graph.

    The export's twin of ``preprocessing.resize`` + ``to_model_input`` (OpenCV, outside
    any graph): an exported model must resize by itself, in its own runtime. Bilinear
    sampling is the same in both (half-pixel centres, no antialiasing, to float
    rounding); --check measures every export against the one definition.
    """
    import tensorflow as tf

    from pyimagesearch.core.preprocessing import scale_factor

    size = (recipe["height"], recipe["width"])
    method = recipe["interpolation"]
    return tf.image.resize(tf.cast(images, tf.float32), size, method=method) * scale_factor(recipe)


def build_archive(
    model: keras.Model, recipe: dict, document: str, temperature: float | None = None
) -> tuple[keras.export.ExportArchive, tf.types.experimental.PolymorphicFunction]:
    """A Keras ExportArchive whose `serve` endpoint preprocesses raw uint8 images itself,
    and that endpoint's tf.function (what the ONNX converter takes).

    The resize and scaling are ``to_model_input``, the same function training and
    ``load_model.py`` use, and the network's output goes through
    ``calibration.forward`` as load_model.py's does, so every format's probabilities
    carry the model's stored temperature: an exported model cannot drift from the
    Keras one.
    """
    import keras
    import tensorflow as tf

    from pyimagesearch.core.calibration import forward

    network = forward(model, temperature)

    def serve(images: tf.Tensor) -> tf.Tensor:
        return network(graph_model_input(images, recipe))

    archive = keras.export.ExportArchive()
    archive.track(model)
    traced = archive.add_endpoint(
        ENDPOINT, serve, input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, "images")]
    )
    archive.add_endpoint("metadata", lambda: tf.constant(document), input_signature=[])
    return archive, traced


def write_onnx(serve: tf.types.experimental.PolymorphicFunction, document: str, path: Path) -> None:
    """tf2onnx on the archive's `serve` function, as Keras' own ONNX export does on TF."""
    import onnx
    import tf2onnx

    proto, _ = tf2onnx.convert.from_function(serve, serve.input_signature)
    onnx.helper.set_model_props(proto, {METADATA_NAME: document})
    onnx.save(proto, str(path))


def write_litert(archive: keras.export.ExportArchive, document: str, path: Path) -> None:
    """The TF Lite converter on the SavedModel's `serve` signature, metadata added to the file.

    Only `serve` is converted: the converter drops a signature without inputs, so the
    JSON goes into the flatbuffer's own metadata table, where LiteRT tools look for it.
    """
    import tensorflow as tf
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    with tempfile.TemporaryDirectory() as tmp:
        archive.write_out(tmp, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=[ENDPOINT])
        flat = converter.convert()
    litert_model = flatbuffer_utils.convert_bytearray_to_object(flat)
    buffer = schema.BufferT()
    buffer.data = list(document.encode())
    litert_model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(litert_model.buffers) - 1
    litert_model.metadata = [*(litert_model.metadata or []), entry]
    path.write_bytes(flatbuffer_utils.convert_object_to_bytearray(litert_model))


def write_openvino(archive: keras.export.ExportArchive, document: str, path: Path) -> None:
    """OpenVINO's runtime reads the SavedModel (its `serving_default`, i.e. `serve`) and
    writes IR; weights stay float32 (``save_model`` would halve them to float16)."""
    from pyimagesearch.core.compiled import import_openvino

    openvino = import_openvino()
    with tempfile.TemporaryDirectory() as tmp:
        archive.write_out(tmp, verbose=False)
        converted = openvino.Core().read_model(tmp)
        converted.set_rt_info(document, METADATA_NAME)
        openvino.save_model(converted, str(path), compress_to_fp16=False)


def export(model: keras.Model, metadata: dict, fmt: str, folder: Path) -> None:
    """Write FORMAT into FOLDER (which exists and is empty), plus pyimagesearch.json.

    Every copy of the JSON (the file and the one inside the format) is the public
    metadata: no absolute path of the training machine leaves with the export."""
    from pyimagesearch.core.calibration import temperature_of
    from pyimagesearch.training.serialization import public_metadata

    document = json.dumps(public_metadata(metadata), indent=2)
    archive, serve = build_archive(
        model, metadata["preprocessing"], document, temperature_of(metadata)
    )
    if fmt == "tf_saved_model":
        archive.write_out(str(folder), verbose=False)
    elif fmt == "onnx":
        write_onnx(serve, document, folder / FORMATS[fmt])
    elif fmt == "litert":
        write_litert(archive, document, folder / FORMATS[fmt])
    else:
        write_openvino(archive, document, folder / FORMATS[fmt])
    (folder / METADATA_NAME).write_text(document + "\n")


Runner = Callable[["np.ndarray"], "np.ndarray"]


def open_export(fmt: str, folder: Path) -> Runner:
    """The export in FOLDER loaded by its own runtime, as a client of that runtime would
    load it: a batch of raw RGB uint8 pixels [n, height, width, 3] in, probabilities out."""
    import numpy as np

    if fmt == "tf_saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(folder))
        return lambda images: loaded.serve(tf.constant(images)).numpy()
    path = str(folder / FORMATS[fmt])
    if fmt == "onnx":
        try:
            import onnxruntime
        except ImportError:
            raise not_installed("onnxruntime", "--check of an onnx export") from None
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        return lambda images: session.run(None, {"images": images})[0]
    if fmt == "litert":
        serve = litert_interpreter()(model_path=path).get_signature_runner(ENDPOINT)
        return lambda images: next(iter(serve(images=images).values()))
    from pyimagesearch.core.compiled import import_openvino

    try:
        openvino = import_openvino()
    except ImportError:
        raise not_installed("openvino", "--check of an openvino export") from None
    core = openvino.Core()
    # float32 asked for: on CPUs with AMX OpenVINO would compute in bfloat16 by default.
    compiled = core.compile_model(core.read_model(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return lambda images: np.asarray(compiled(images)[0])


@dataclass
class KerasAnswers:
    """The Keras model's calibrated probabilities for the readable files among PATHS."""

    paths: list[str]  # the files that decoded, in order
    probabilities: np.ndarray


@dataclass
class CheckResult:
    images: int
    largest_difference: float
    changed: list[tuple[str, str, str]] = field(default_factory=list)  # file, Keras, export


def keras_answers(model: keras.Model, metadata: dict, paths: list[str]) -> KerasAnswers:
    """load_model.py's classification of PATHS: the one preprocessing, the float32
    network on TensorFlow, the stored temperature applied by ``calibration.forward``."""
    import numpy as np

    from pyimagesearch.core.calibration import temperature_of
    from pyimagesearch.inference.predict import iter_predictions, make_predictor
    from pyimagesearch.training.data import warn_skipped

    batches = -(-len(paths) // CHECK_BATCH_SIZE)
    predict = make_predictor(
        model, "float32", batches, "tensorflow", temperature_of(metadata), metadata["preprocessing"]
    )
    kept, rows = [], []
    recipe = metadata["preprocessing"]
    for indices, probabilities in iter_predictions(predict, paths, recipe, CHECK_BATCH_SIZE):
        kept.extend(int(i) for i in indices)
        rows.append(np.asarray(probabilities, dtype="float32"))
    warn_skipped(paths, np.asarray(kept, dtype="int64"))
    if not kept:
        raise UserError("--check: none of the images could be read")
    return KerasAnswers([paths[i] for i in kept], np.concatenate(rows))


def pixel_batches(paths: list[str], batch_size: int = CHECK_BATCH_SIZE):
    """Yield (first index, uint8 batch [n, h, w, 3]) of consecutive equal-sized images,
    decoded by ``preprocessing.decode_rgb``: what a client hands the export."""
    import numpy as np

    from pyimagesearch.core.preprocessing import decode_rgb

    start, pending = 0, []
    for index, path in enumerate(paths):
        pixels = decode_rgb(path)
        if pending and (pixels.shape != pending[0].shape or len(pending) == batch_size):
            yield start, np.stack(pending)
            start, pending = index, []
        pending.append(pixels)
    if pending:
        yield start, np.stack(pending)


def compare(run: Runner, answers: KerasAnswers, class_names: list[str]) -> CheckResult:
    """RUN's probabilities for the same files beside the Keras model's."""
    import numpy as np

    result = CheckResult(len(answers.paths), 0.0)
    for start, pixels in pixel_batches(answers.paths):
        got = np.asarray(run(pixels), dtype="float32")
        expected = answers.probabilities[start : start + len(pixels)]
        if got.shape != expected.shape:
            raise UserError(
                f"--check: the export gave probabilities of shape {got.shape} for a batch "
                f"of {len(pixels)} images and {len(class_names)} classes"
            )
        # A NaN from the export counts as an infinite difference, not as none.
        difference = float(np.abs(got - expected).max()) if np.isfinite(got).all() else np.inf
        result.largest_difference = max(result.largest_difference, difference)
        for offset in np.flatnonzero(got.argmax(axis=1) != expected.argmax(axis=1)):
            row = start + int(offset)
            result.changed.append(
                (
                    answers.paths[row],
                    class_names[int(expected[offset].argmax())],
                    class_names[int(got[offset].argmax())],
                )
            )
    return result


def check_export(
    fmt: str, folder: Path, answers: KerasAnswers, class_names: list[str]
) -> CheckResult:
    """Run the export in FOLDER on the checked images and print what differs."""
    report.info(
        f"--check: classifying {len(answers.paths)} images with the {fmt} export "
        f"({CHECK_RUNTIMES[fmt]})..."
    )
    try:
        run = open_export(fmt, folder)
        result = compare(run, answers, class_names)
    except UserError:
        raise
    except Exception as error:  # runtimes raise many types; say which and why in one line
        reason = " ".join(str(error).split())[:300]
        raise UserError(
            f"--check cannot run the {fmt} export: {type(error).__name__}: {reason}"
        ) from error
    report.info(
        f"--check: {result.images} images, largest probability difference "
        f"{result.largest_difference:.2g}, {len(result.changed)} labels changed"
    )
    for path, keras_label, export_label in result.changed[:CHECK_LISTED]:
        report.info(f"--check: label changed: '{path}' Keras {keras_label}, {fmt} {export_label}")
    if len(result.changed) > CHECK_LISTED:
        report.info(f"--check: ... and {len(result.changed) - CHECK_LISTED} more")
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    adoption = options.adoption(args)
    output = Path(args.output)
    check_packages(args.format, check=args.check is not None)
    check_output(output, args.overwrite, args.model)
    modelfile.check_sha256(args.model, args.expect_sha256)  # before TensorFlow starts
    if args.check is not None:
        safety.check_paths({"--output": output}, {"--check": args.check})
        check_check_folder(args.check)
    start_tensorflow(args.debug)
    if args.check is not None:
        check_images = list_check_images(args.check)

    from pyimagesearch.training.serialization import load_model

    report.info(f"loading '{args.model}'...")
    model, metadata = load_model(args.model, adoption=adoption)
    check_recipe(args.format, metadata["preprocessing"])
    answers = None
    if args.check is not None:
        # The Keras side first: a folder with no readable image fails before the export.
        report.info(f"--check: classifying {len(check_images)} images with the Keras model...")
        answers = keras_answers(model, metadata, check_images)
    report.info(f"exporting to {args.format} (classes {metadata['class_names']})...")
    if "calibration" in metadata:
        temperature = metadata["calibration"]["temperature"]
        report.info(f"the exported probabilities are calibrated (temperature {temperature})")
    # Build beside OUTPUT and rename at the end: a failed export leaves OUTPUT as it was.
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.resolve().parent))
    try:
        export(model, metadata, args.format, staging)
    except Exception as error:  # converters raise many types; say which and why in one line
        shutil.rmtree(staging, ignore_errors=True)
        reason = " ".join(str(error).split())[:300]
        raise UserError(
            f"cannot export to {args.format}: {type(error).__name__}: {reason}"
        ) from error
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if answers is not None:
        try:
            result = check_export(args.format, staging, answers, metadata["class_names"])
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if result.changed:
            shutil.rmtree(staging, ignore_errors=True)
            report.error(
                f"--check: {len(result.changed)} of {result.images} labels changed "
                f"between the Keras model and the {args.format} export; '{output}' was not "
                "written (rerun without --check to write it anyway)"
            )
            return 1
    staging.chmod(0o755)  # mkdtemp makes it private; OUTPUT should look like any folder
    try:
        safety.replace_folder(staging, output)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise UserError(f"cannot write '{output}': {error.strerror or error}") from None
    report.info(f"{args.format} export written to '{output}'")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
