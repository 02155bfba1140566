"""Add an int8 network to a model file: post-training quantization with NNCF.

    python -m pyimagesearch.quantize --model saved_model.model --images malaria/training

NNCF (OpenVINO's own quantization tool) measures the float network's activations on
at most --limit images (default 300, drawn at random with --seed from --images: use
training images, never the test split) and writes an int8 copy of the network into the
model file beside the float one, with the calibration images' names and count in its
manifest. ``load_model.py --precision int8`` then runs it (without TensorFlow, as the
float network). The file is replaced atomically; its Keras members are not touched.
Measure the int8 accuracy against float32 on images the model never saw before
relying on it (bench/RESULTS.md has the figures).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import zipfile
from pathlib import Path

from pyimagesearch import options
from pyimagesearch.core import compiled, modelfile, report, safety
from pyimagesearch.core.errors import UserError, run_command

MAX_CALIBRATION_IMAGES = 300


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = options.command_parser(__doc__, "pyimagesearch.quantize")
    parser.add_argument("-m", "--model", required=True, help="model file saved by save_model.py")
    parser.add_argument("-i", "--images", required=True, help="calibration images (searched "
                        "recursively): the training split")  # fmt: skip
    parser.add_argument(
        "--limit",
        type=options.positive_count,
        default=MAX_CALIBRATION_IMAGES,
        help=f"most calibration images (default and maximum: {MAX_CALIBRATION_IMAGES})",
    )
    options.add_seed(parser, 42, "seed of the draw")
    options.add_debug(parser)
    args = parser.parse_args(argv)
    if args.limit > MAX_CALIBRATION_IMAGES:
        raise UserError(f"--limit is at most {MAX_CALIBRATION_IMAGES}, got {args.limit}")
    return args


def calibration_set(folder: str, recipe: dict, limit: int, seed: int):
    """(names, one-image batches of resized pixels) through the one preprocessing."""
    from pyimagesearch.core.preprocessing import iter_pixel_batches, warn_skipped
    from pyimagesearch.core.splitting import list_images

    if not Path(folder).is_dir():
        raise UserError(f"--images '{folder}' is not a folder")
    paths = list_images(Path(folder))
    if not paths:
        raise UserError(f"no image files found in '{folder}'")
    chosen = sorted(random.Random(seed).sample(paths, min(limit, len(paths))))
    names, batches, kept, failed = [], [], [], {}
    for indices, pixels, unread in iter_pixel_batches(chosen, recipe, 32):
        failed.update(unread)
        for index, image in zip(indices, pixels, strict=True):
            kept.append(index)
            names.append(Path(chosen[index]).name)
            batches.append(image[None])
    warn_skipped(chosen, kept, failed)  # each unreadable image by name, and why
    if not batches:
        raise UserError(f"none of the images in '{folder}' could be read")
    return names, batches


def quantize(path: str, folder: str, limit: int, seed: int) -> int:
    """Write the int8 network into PATH; return the number of calibration images."""
    try:
        import nncf
    except ImportError:
        raise UserError("quantizing needs the package 'nncf' (pip install nncf)") from None
    metadata = modelfile.read_metadata(path)
    if metadata is None:
        raise UserError(f"'{path}' holds no metadata; save it with save_model.py")
    modelfile.validate_metadata(metadata, path)
    try:
        xml, weights = compiled.read_ir(path, metadata)
    except compiled.Stale as why:
        raise UserError(f"'{path}': {why}; save it again with save_model.py") from None
    names, batches = calibration_set(folder, metadata["preprocessing"], limit, seed)
    report.info(f"calibrating on {len(batches)} images from '{folder}'...")
    ov = compiled.import_openvino()
    network = ov.Core().read_model(xml, ov.Tensor(weights))
    quantized = nncf.quantize(network, nncf.Dataset(batches), subset_size=len(batches))
    with tempfile.TemporaryDirectory(prefix="pyimagesearch-int8-") as scratch:
        target = Path(scratch) / "int8.xml"
        ov.save_model(quantized, str(target), compress_to_fp16=False)
        members = {
            compiled.INT8_XML: target.read_bytes(),
            compiled.INT8_BIN: target.with_suffix(".bin").read_bytes(),
        }
    with safety.open_replacing(path, "wb") as temporary, zipfile.ZipFile(path) as source:
        manifest = compiled.read_manifest(source)
        with zipfile.ZipFile(temporary, "w") as archive:
            for info in source.infolist():
                if info.filename not in (*members, compiled.MANIFEST):
                    archive.writestr(info, source.read(info.filename))
            for name, data in members.items():
                archive.writestr(name, data, zipfile.ZIP_DEFLATED)
                manifest["sha256"][name] = compiled.sha256_bytes(data)
            manifest["int8"] = {"calibration_images": len(names), "names": names,
                                "seed": seed, "nncf": nncf.__version__}  # fmt: skip
            archive.writestr(compiled.MANIFEST, json.dumps(manifest, indent=2))
    return len(names)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    count = quantize(args.model, args.images, args.limit, args.seed)
    report.info(f"int8 network written into '{args.model}' (calibrated on {count} images); "
          "use it with load_model.py --precision int8")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
