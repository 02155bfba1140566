"""Check that the networks stored in a model file answer as its Keras model does.

    python -m pyimagesearch.verify --model saved_model.model [--images DIR]

load_model.py and serve_model.py run the OpenVINO network stored in the file (float,
or int8 with --precision int8), not the Keras weights. The file's manifest ties that
network to the weights, but whoever can edit the file can rewrite the manifest too
(docs/reliability.md, the threat model). This command runs every stored network and the
Keras model (loaded in safe mode from the weights, as --runtime tensorflow does) on the
same images, reports the largest probability difference and any changed label, and
exits 1 when a network differs beyond its precision's tolerance. Without --images it
uses built-in probe images (colours, gradients, noise, stripes and discs at the model's
input size), so it needs no data.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from pyimagesearch import options
from pyimagesearch.core import modelfile, report, safety
from pyimagesearch.core.errors import UserError, run_command, start_tensorflow

# The largest probability difference from Keras' float32 each stored network may show.
# The float network computes what Keras computes (about 1e-6 apart on AVX2 and AVX-512
# CPUs); int8 moves probabilities by up to 0.05 on the malaria test images
# (tests/test_predict.py), and further on probes unlike any training image.
TOLERANCE = {"float32": 1e-3, "int8": 0.15}
PROBES = 32


def probe_images(height: int, width: int, count: int = PROBES) -> np.ndarray:
    """COUNT deterministic images, float32 [0, 255] at HEIGHT x WIDTH: plain colours,
    gradients, stripes, discs and noise, so that two different networks of the same
    shapes almost surely answer some of them differently."""
    rng = np.random.default_rng(20261207)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    images = []
    for index in range(count):
        colour = rng.uniform(0, 255, size=3).astype(np.float32)
        kind = index % 5
        if kind == 0:
            image = np.broadcast_to(colour, (height, width, 3))
        elif kind == 1:
            ramp = (rows / max(height - 1, 1))[..., None]
            image = ramp * colour + (1 - ramp) * (255 - colour)
        elif kind == 2:
            stripes = ((cols // max(1, width // rng.integers(2, 9))) % 2)[..., None]
            image = stripes * colour + (1 - stripes) * (255 - colour) / 2
        elif kind == 3:
            radius = rng.uniform(0.2, 0.5) * min(height, width)
            inside = (((rows - height / 2) ** 2 + (cols - width / 2) ** 2) < radius**2)[..., None]
            image = np.where(inside, colour, np.float32(230))
        else:
            image = rng.uniform(0, 255, size=(height, width, 3))
        images.append(np.asarray(image, dtype=np.float32))
    return np.stack(images)


def folder_images(folder: str, recipe: dict, limit: int) -> tuple[np.ndarray, int]:
    """Up to LIMIT images of FOLDER (recursively, sorted) at the model's input size."""
    from pyimagesearch.core.preprocessing import iter_readable_batches
    from pyimagesearch.core.splitting import list_images

    if not Path(folder).is_dir():
        raise UserError(f"--images '{folder}' is not a folder")
    paths = list_images(Path(folder))[:limit]
    batches = [pixels for _, pixels in iter_readable_batches(paths, recipe, 32)]
    if not batches:
        raise UserError(f"--images '{folder}' holds no readable image")
    pixels = np.concatenate(batches)
    return pixels, len(pixels)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = options.command_parser(__doc__, "pyimagesearch.verify")
    parser.add_argument("-m", "--model", required=True, help="model file written by save_model.py")
    parser.add_argument(
        "-i",
        "--images",
        metavar="DIR",
        help="images to compare on, searched recursively (default: built-in probe images)",
    )
    parser.add_argument(
        "--limit",
        type=options.positive_count,
        default=256,
        help="most images of --images to use (default: 256)",
    )
    options.add_expect_sha256(parser)
    options.add_debug(parser)
    return parser.parse_args(argv)


def compare(name: str, answers: np.ndarray, reference: np.ndarray, class_names: list[str]) -> bool:
    """One line on how NAME's probabilities differ from Keras'; True when within tolerance."""
    difference = float(np.abs(answers - reference).max())
    changed = np.flatnonzero(answers.argmax(axis=1) != reference.argmax(axis=1))
    tolerance = TOLERANCE[name]
    agrees = difference <= tolerance
    labels = (
        "no label changed"
        if not len(changed)
        else f"{len(changed)} label(s) changed (first: image {changed[0]}, "
        f"{class_names[reference[changed[0]].argmax()]} -> "
        f"{class_names[answers[changed[0]].argmax()]})"
    )
    line = (
        f"stored {name} network against Keras: largest probability difference "
        f"{difference:.2g} (tolerance {tolerance:g}), {labels}"
    )
    if agrees:
        report.info(line + ": agrees")
    else:
        report.error(line + ": it is not the network of these weights")
    return agrees


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not safety.is_regular_file(args.model):
        raise UserError(f"--model '{args.model}' is not a readable file")
    sha256 = modelfile.check_sha256(args.model, args.expect_sha256)
    report.info(f"model '{args.model}': SHA-256 {sha256}")
    from pyimagesearch.core import compiled

    networks = {}
    for precision in ("float32", "int8"):
        try:
            networks[precision] = compiled.load(args.model, precision)[0]
        except compiled.Stale as why:
            report.info(f"no stored {precision} network is run: {why}")
    start_tensorflow(args.debug)
    from pyimagesearch.core.calibration import temperature_of
    from pyimagesearch.inference.predict import tensorflow_predictor
    from pyimagesearch.training.serialization import load_model

    model, metadata = load_model(args.model)
    recipe = metadata["preprocessing"]
    if args.images:
        pixels, count = folder_images(args.images, recipe, args.limit)
        report.info(f"comparing on {count} images of '{args.images}'")
    else:
        pixels = probe_images(recipe["height"], recipe["width"])
        report.info(f"comparing on {len(pixels)} built-in probe images")
    keras_predict = tensorflow_predictor(
        model, "float32", 1, temperature_of(metadata), metadata["preprocessing"]
    )
    reference = np.concatenate(
        [keras_predict(pixels[i : i + 32]) for i in range(0, len(pixels), 32)]
    )
    if not networks:
        report.info("the file holds no stored network to check; Keras runs it")
        return 0
    agreed = [
        compare(name, network(pixels), reference, metadata["class_names"])
        for name, network in networks.items()
    ]
    return 0 if all(agreed) else 1


if __name__ == "__main__":
    sys.exit(run_command(main))
