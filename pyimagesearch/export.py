"""Export a saved classifier for serving: raw RGB pixels in, class probabilities out.

    python -m pyimagesearch.export --model saved_model.model --format onnx --output exported

The exported graph takes a batch of equal-sized RGB images as uint8, shape
[batch, height, width, 3], any batch size and any height and width (every
format keeps these dimensions dynamic), and does the resize and [0, 1] scaling
itself with the model's own recipe (``preprocessing.to_model_input``), so a
client sends pixels and gets probabilities in the order of the class names.

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
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from pyimagesearch import safety
from pyimagesearch.errors import UserError, run_command

if TYPE_CHECKING:  # imported lazily below: --help and early errors need no TensorFlow
    import keras
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
ENDPOINT = "serve"
# Resizes that the ONNX, LiteRT and OpenVINO graphs reproduce as TensorFlow does (checked on this
# stack): tf2onnx's "area" is off by up to 0.9 per pixel and its "bicubic" fails in
# onnxruntime when shrinking; LiteRT has neither as a built-in op; OpenVINO's TensorFlow
# reader has no ResizeBicubic (its bilinear and nearest match within 2e-7 on NIH cells).
PORTABLE_RESIZES = ("bilinear", "nearest")
# Everything an export folder of ours holds at its top level, whatever the format: the
# SavedModel's files, each format's model file, and METADATA_NAME (always written).
EXPORT_ENTRIES = frozenset(
    {"saved_model.pb", "fingerprint.pb", "variables", "assets", METADATA_NAME}
    | {"model.onnx", "model.tflite", "model.xml", "model.bin"}
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pyimagesearch.export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-m", "--model", required=True, help="model file written by save_model.py")
    parser.add_argument(
        "-f", "--format", required=True, choices=tuple(FORMATS), help="what to export to"
    )
    parser.add_argument(
        "-o", "--output", required=True, help="folder to write (must not exist, or be empty)"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace OUTPUT if it is an earlier export (nothing else is ever replaced)",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    return parser.parse_args(argv)


def check_packages(fmt: str) -> None:
    """Say which package is missing before spending time on loading the model."""
    for name in REQUIRED_PACKAGES[fmt]:
        if importlib.util.find_spec(name) is None:
            raise UserError(
                f"--format {fmt} needs the Python package '{name}', which is not installed "
                "(pip install -r requirements.txt)"
            )


def check_output(output: Path, overwrite: bool, model: str) -> None:
    """Refuse an OUTPUT we would have to clobber or could not write, before any work.

    --overwrite replaces only a folder this tool exported (METADATA_NAME beside nothing
    but format files): anything else in OUTPUT is the user's and is named in the refusal.
    """
    safety.check_paths({"--output": output}, {"--model": model})
    if output.exists() and not output.is_dir():
        raise UserError(f"--output '{output}' is a file; give a folder name")
    safety.check_output_folder(output, "--output")
    if not output.is_dir() or not any(output.iterdir()):
        return
    if not overwrite:
        raise UserError(f"--output '{output}' is not empty; pass --overwrite to replace it")
    for entry in sorted(output.iterdir()):
        if entry.name not in EXPORT_ENTRIES:
            raise UserError(
                f"--overwrite replaces only an earlier export; '{entry}' is not part of one"
            )
    if not (output / METADATA_NAME).is_file():
        raise UserError(
            f"--overwrite replaces only an earlier export; '{output}' has no {METADATA_NAME}"
        )


def check_recipe(fmt: str, recipe: dict) -> None:
    """Refuse an export that would preprocess differently from the Keras model."""
    interpolation = recipe["interpolation"]
    if fmt != "tf_saved_model" and interpolation not in PORTABLE_RESIZES:
        raise UserError(
            f"--format {fmt} cannot reproduce this model's '{interpolation}' resize "
            f"(only {', '.join(PORTABLE_RESIZES)}); use --format tf_saved_model"
        )


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

    from pyimagesearch.calibration import forward
    from pyimagesearch.preprocessing import to_model_input

    network = forward(model, temperature)

    def serve(images: tf.Tensor) -> tf.Tensor:
        return network(to_model_input(images, recipe))

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
    from pyimagesearch.predict import import_openvino

    openvino = import_openvino()
    with tempfile.TemporaryDirectory() as tmp:
        archive.write_out(tmp, verbose=False)
        converted = openvino.Core().read_model(tmp)
        converted.set_rt_info(document, METADATA_NAME)
        openvino.save_model(converted, str(path), compress_to_fp16=False)


def export(model: keras.Model, metadata: dict, fmt: str, folder: Path) -> None:
    """Write FORMAT into FOLDER (which exists and is empty), plus pyimagesearch.json."""
    from pyimagesearch.calibration import temperature_of

    document = json.dumps(metadata, indent=2)
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    output = Path(args.output)
    check_packages(args.format)
    check_output(output, args.overwrite, args.model)

    from pyimagesearch.serialization import load_model

    print(f"[INFO] loading '{args.model}'...")
    model, metadata = load_model(args.model)
    check_recipe(args.format, metadata["preprocessing"])
    print(f"[INFO] exporting to {args.format} (classes {metadata['class_names']})...")
    if "calibration" in metadata:
        temperature = metadata["calibration"]["temperature"]
        print(f"[INFO] the exported probabilities are calibrated (temperature {temperature})")
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
    staging.chmod(0o755)  # mkdtemp makes it private; OUTPUT should look like any folder
    try:
        safety.replace_folder(staging, output)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise UserError(f"cannot write '{output}': {error.strerror or error}") from None
    print(f"[INFO] {args.format} export written to '{output}'")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
