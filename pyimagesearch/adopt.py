"""Give a Keras model file saved elsewhere the metadata this project's tools need.

    python -m pyimagesearch.adopt --model saved_model.model --classes Parasitized,Uninfected \
        --output adopted.model

MODEL is any Keras classifier file without our metadata: the article's own
``saved_model.model`` (HDF5 from Keras 2 / tf.keras), a ``.keras`` file from Keras 3,
any name. It is loaded in Keras' safe mode (a Lambda layer is refused) and written to
OUTPUT as a full model file: the class names (--classes, in output order), the
preprocessing (the image size from the model's input; nearest-neighbour resize and
scale 1/255, what the tutorial's training did, unless --interpolation or --scale say
otherwise), the provenance "adopted from MODEL" with its SHA-256, and the compiled
OpenVINO network. load_model.py, serve_model.py and the exports then need no
--classes, and no TensorFlow. MODEL itself is never written.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

from pyimagesearch import options
from pyimagesearch.core import modelfile, report, safety
from pyimagesearch.core.errors import UserError, run_command, start_tensorflow


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = options.command_parser(__doc__, "pyimagesearch.adopt")
    parser.add_argument(
        "-m", "--model", required=True, help="Keras model file without our metadata (read only)"
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        help="the full model file to write (any name but .h5/.hdf5, which cannot hold the "
        "compiled network; never MODEL itself)",
    )
    options.add_adoption(parser)
    options.add_overwrite(parser, "an earlier OUTPUT of this command")
    options.add_debug(parser)
    args = parser.parse_args(argv)
    if args.classes is None:
        raise UserError("give the model's class names in output order with --classes A,B,...")
    return args


def check_paths(args: argparse.Namespace) -> None:
    """Before TensorFlow starts: OUTPUT is a new file (or an earlier adopted one, with
    --overwrite) and never MODEL; MODEL has no metadata to adopt it from."""
    output = Path(args.output)
    safety.check_paths({"--output": output}, {"--model": args.model})
    if output.suffix.lower() in modelfile.LEGACY_SUFFIXES:
        raise UserError(
            f"--output '{output}': an HDF5 file cannot hold the compiled network; "
            "give another name (e.g. adopted.model or adopted.keras)"
        )
    safety.check_output_file(output, "--output")
    if output.exists():
        adopted = None
        try:
            adopted = (modelfile.read_metadata(output) or {}).get("provenance", {})
        except (UserError, *modelfile.READ_ERRORS):
            pass
        if not args.overwrite:
            raise UserError(f"--output '{output}' exists; add --overwrite to replace it")
        if not (isinstance(adopted, dict) and "adopted_from" in adopted):
            raise UserError(
                f"--output '{output}' exists and is not a file this command wrote; keeping it"
            )
    if modelfile.read_metadata(args.model) is not None:
        raise UserError(
            f"'{args.model}' already carries this project's metadata; it needs no adopting"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_paths(args)
    sha256 = modelfile.file_sha256(args.model)
    made_with = modelfile.saved_with(args.model)
    start_tensorflow(args.debug)
    import keras

    import pyimagesearch
    from pyimagesearch.training.serialization import load_model, save_model

    model, metadata = load_model(args.model, adoption=options.adoption(args))
    metadata["provenance"] = {
        "project_version": pyimagesearch.__version__,
        "keras_version": keras.__version__,
        "saved_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "adopted_from": {
            "file": Path(args.model).name,
            "sha256": sha256,
            "saved_with": made_with,
            "layers": len(model.layers),
        },
    }
    report.info(f"writing '{args.output}' (the compiled network included)...")
    save_model(model, args.output, metadata, compiled=True)
    report.info(
        f"'{args.output}' adopted from '{args.model}' (sha256 {sha256[:12]}): load_model.py, "
        "serve_model.py and the exports now need no --classes"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
