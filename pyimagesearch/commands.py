"""The console commands that ``pip install .`` puts on PATH.

``pyimagesearch COMMAND ...`` runs one of the project's commands, as Ultralytics'
``yolo train``/``yolo predict`` does; ``save-model``, ``load-model`` and ``serve-model``
are the tutorial's own two scripts and the server under their own names. Each command is
the module a user can also run as ``python save_model.py`` or ``python -m
pyimagesearch.NAME``; it is imported only when asked for, so ``pyimagesearch --help`` and
a TensorFlow-free command start fast.
"""

from __future__ import annotations

import importlib
import sys

from pyimagesearch.core.errors import run_command

# command name -> (module, what it does)
COMMANDS: dict[str, tuple[str, str]] = {
    "build-dataset":("pyimagesearch.build_dataset", "split class folders into a dataset"),
    "train": ("save_model", "train a network and save it with its preprocessing (save_model.py)"),
    "classify": ("load_model", "classify images with a saved model (load_model.py)"),
    "serve": ("serve_model", "serve a saved model over HTTP with a page (serve_model.py)"),
    "export": ("pyimagesearch.export", "export a saved model to ONNX, LiteRT or TF SavedModel"),
    "quantize": ("pyimagesearch.quantize", "add an int8 network to a saved model"),
    "crossval": ("pyimagesearch.crossval", "grouped k-fold cross-validation of a recipe"),
    "audit": ("pyimagesearch.audit", "find images that look mislabelled (cleanlab)"),
    "example-sets": ("pyimagesearch.example_sets", "write a non-malaria example set"),
    "adopt": ("pyimagesearch.adopt", "make a model saved elsewhere a full model file"),
    "verify": ("pyimagesearch.verify", "check a model file's networks agree with its Keras model"),
}  # fmt: skip


def usage() -> str:
    commands = COMMANDS
    width = max(map(len, commands))
    lines = [f"  {name:<{width}}  {about}" for name, (_, about) in commands.items()]
    return (
        "usage: pyimagesearch COMMAND [OPTIONS]  (pyimagesearch COMMAND --help for its options)"
        "\n\ncommands:\n" + "\n".join(lines)
    )


def run(module: str, argv: list[str], prog: str) -> int:
    """MODULE's main on ARGV, its usage lines naming PROG (argparse reads sys.argv[0])."""
    sys.argv = [prog, *argv]
    return run_command(importlib.import_module(module).main, argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = COMMANDS
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] not in commands:
        print(f"[ERROR] unknown command {argv[0]!r}\n{usage()}", file=sys.stderr)
        return 2
    return run(commands[argv[0]][0], argv[1:], f"pyimagesearch {argv[0]}")


def save_model() -> int:
    return run("save_model", sys.argv[1:], "save-model")


def load_model() -> int:
    return run("load_model", sys.argv[1:], "load-model")


def serve_model() -> int:
    return run("serve_model", sys.argv[1:], "serve-model")


if __name__ == "__main__":
    sys.exit(main())
