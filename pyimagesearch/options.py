"""The options several commands share, declared once each with one validator each.

A command's own options stay in its ``parse_args``; an option two commands take lives
here, so that ``--seed``, ``--image-size`` or ``--precision`` accept the same values,
with the same error, everywhere. Validators are argparse ``type=`` functions: a bad
value is one usage line and exit status 2, before any work.

The limits themselves (``safety.MAX_PIXELS``, ``safety.MAX_INPUT_SIDE``) are the
defaults; a command passes the value it parsed to the code that needs it.
"""

from __future__ import annotations

import argparse
from typing import Any

from pyimagesearch.core import safety
from pyimagesearch.core.recipes import (
    DEFAULT_RECIPE,
    OPTIMIZERS,
    PURPOSES,
    RECIPES,
    TRAINING_PRECISIONS,  # noqa: F401 (re-exported: the choices of --precision in training)
    TrainConfig,
    describe,
    recipe_fields,
)

SEED_MAX = 2**31 - 1  # NumPy, TensorFlow and the epoch seeds all accept 0..2**31-1
# Each epoch gets its own seeded pipeline, built before fit(): a bound keeps a typo
# (--epochs 100000) from building for minutes before the first step.
MAX_EPOCHS = 1000
# Inference arithmetic of the stored OpenVINO network (auto: bfloat16 where native).
INFERENCE_PRECISIONS = ("auto", "float32", "mixed_bfloat16", "int8")
RUNTIMES = ("auto", "openvino", "tensorflow")


# --- validators (argparse types) ---------------------------------------------------


def _parsed(text: str, kind: type[int] | type[float]) -> int | float:
    """TEXT as an int or float, or the argparse error every validator here gives."""
    try:
        return kind(text)
    except ValueError:
        wanted = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}") from None


def seed(text: str) -> int:
    """A seed in 0..2**31-1."""
    value = _parsed(text, int)
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be between 0 and {SEED_MAX}, got {text}")
    return value


def positive_count(text: str) -> int:
    """A positive integer (--batch-size, --max-pixels, --workers, ...)."""
    value = _parsed(text, int)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def sha256_hex(text: str) -> str:
    """argparse type: a whole SHA-256, 64 hex digits (what sha256sum prints)."""
    value = text.strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise argparse.ArgumentTypeError(
            f"must be a SHA-256 of 64 hex digits (sha256sum FILE prints it), got {text!r}"
        )
    return value


def add_expect_sha256(parser: argparse.ArgumentParser) -> None:
    """--expect-sha256: run the model file only if it is exactly the one meant."""
    parser.add_argument(
        "--expect-sha256",
        type=sha256_hex,
        metavar="HEX",
        help="refuse the model file unless its SHA-256 is HEX (64 hex digits, as sha256sum "
        "prints; default: no check). The file's own manifest catches accidents only: "
        "whoever can edit the file can rewrite it",
    )


def count(text: str) -> int:
    """Zero or a positive integer (--samples 0: every image; --top 0: no montage)."""
    value = _parsed(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or positive, got {text}")
    return value


def positive_number(text: str) -> float:
    """A finite number above zero (--learning-rate)."""
    value = _parsed(text, float)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def image_side(text: str) -> int:
    """--image-size, from 32 (two stride-2 stages and the final 8x8 average pooling need
    it) to safety.MAX_INPUT_SIDE."""
    value = positive_count(text)
    if value < 32:
        raise argparse.ArgumentTypeError(f"must be at least 32 pixels, got {text}")
    if value > safety.MAX_INPUT_SIDE:
        raise argparse.ArgumentTypeError(
            f"must be at most {safety.MAX_INPUT_SIDE} pixels (raise the bound with "
            f"$PYIMAGESEARCH_MAX_INPUT_SIDE), got {text}"
        )
    return value


def epoch_count(text: str) -> int:
    """--epochs, from 1 to MAX_EPOCHS."""
    value = positive_count(text)
    if value > MAX_EPOCHS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_EPOCHS}, got {text}")
    return value


def fraction(text: str) -> float:
    """A share strictly between 0 and 0.5 (--val-split, --test-split, --validation)."""
    value = _parsed(text, float)
    if not 0 < value < 0.5:
        raise argparse.ArgumentTypeError(f"must be between 0 and 0.5, got {text}")
    return value


# --- the shared options -----------------------------------------------------------


def command_parser(description: str, module: str | None = None) -> argparse.ArgumentParser:
    """The parser of a command whose --help begins with its module docstring, laid out
    as written; MODULE names a ``python -m`` command in the usage line."""
    return argparse.ArgumentParser(
        prog=f"python -m {module}" if module else None,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_debug(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")


def add_seed(parser: argparse.ArgumentParser, default: int | None, purpose: str) -> None:
    """-s/--seed; PURPOSE says what it seeds in this command."""
    shown = "" if default is None else f" (default: {default})"
    parser.add_argument("-s", "--seed", type=seed, default=default, help=purpose + shown)


def add_overwrite(parser: argparse.ArgumentParser, what: str) -> None:
    """--overwrite; WHAT is the earlier output it may replace (docs/reliability.md)."""
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help=f"replace {what} (never anything else: a file the tool did not write is named "
        "and refused)",
    )


def add_positive_class(parser: argparse.ArgumentParser) -> None:
    """--positive-class, for every command that reports metrics."""
    parser.add_argument(
        "--positive-class",
        metavar="NAME",
        help="the class that sensitivity, specificity and ROC AUC are about (default: "
        "Parasitized when present; for two other classes the second in sorted order, said "
        "so; more classes report the macro one-vs-rest AUC)",
    )


def add_max_pixels(parser: argparse.ArgumentParser, action: str = "skip") -> None:
    """--max-pixels, the same bound for every command that decodes images."""
    parser.add_argument(
        "--max-pixels",
        type=positive_count,
        default=safety.MAX_PIXELS,
        help=f"{action} images whose header declares more pixels than this, before decoding "
        f"(default: {safety.MAX_PIXELS:,}; also $PYIMAGESEARCH_MAX_PIXELS)",
    )


def add_batch_size(parser: argparse.ArgumentParser, default: int | None, purpose: str) -> None:
    shown = "from --recipe" if default is None else default
    help_text = f"{purpose} (default: {shown})"
    parser.add_argument("-b", "--batch-size", type=positive_count, default=default, help=help_text)


def add_runtime(parser: argparse.ArgumentParser, fallback: str) -> None:
    """--runtime; FALLBACK says what runs a model file without a stored network."""
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="auto",
        help="engine that runs the network: auto (default) uses the OpenVINO network stored in "
        f"the model file, without TensorFlow; {fallback}; tensorflow forces the Keras model",
    )


PRECISION_HELP = {
    "inference": "auto (default): bfloat16 on OpenVINO where the CPU computes it natively "
    "(AMX or AVX512-BF16: faster, its probabilities a little off float32's: "
    "docs/benchmarks.md), float32 elsewhere; float32 gives Keras' probabilities (within "
    "1e-5); int8 runs the quantized network that python -m pyimagesearch.quantize adds to "
    "the file (its accuracy: bench/RESULTS.md)",
}


def add_precision(parser: argparse.ArgumentParser, kind: str = "inference") -> None:
    """--precision of inference (the stored network); training's is a recipe field
    (``add_recipe``)."""
    parser.add_argument(
        "--precision", choices=INFERENCE_PRECISIONS, default="auto", help=PRECISION_HELP[kind]
    )


def add_recipe(parser: argparse.ArgumentParser) -> None:
    """--recipe and the fields a command line may override (save_model, crossval): one
    option per recipe field of ``recipes.TrainConfig``, made from its metadata; and
    --tensorboard, which both commands write."""
    parser.add_argument(
        "--recipe",
        choices=tuple(RECIPES),
        default=DEFAULT_RECIPE,
        help="the settings below, named; any of them given on the command line wins. "
        + "; ".join(
            f"{name}{' (default)' if name == DEFAULT_RECIPE else ''}: {PURPOSES[name]}: "
            f"{describe(name)}"
            for name in RECIPES
        ),
    )
    for setting in recipe_fields():
        meta = setting.metadata
        if setting.name in RECIPES[DEFAULT_RECIPE]:
            default = f"from --recipe; {RECIPES[DEFAULT_RECIPE][setting.name]} for {DEFAULT_RECIPE}"
        else:
            default = "none" if setting.default is None else setting.default
        parser.add_argument(
            *meta["flags"],
            choices=meta["choices"],
            type=globals()[meta["parse"]] if meta["parse"] else None,
            help=f"{meta['help']} (default: {default})",
        )

    parser.add_argument(
        "--tensorboard",
        metavar="DIR",
        help="write TensorBoard logs (loss, accuracy and learning rate per epoch) to DIR "
        "(crossval: DIR/fold-K); see them with 'tensorboard --logdir DIR'",
    )


# What a --recipe sets and the command line may override.
RECIPE_FIELDS = tuple(setting.name for setting in recipe_fields())


def apply_recipe(args: argparse.Namespace) -> None:
    """Fill every field the command line left unset from --recipe."""
    recipe = RECIPES[args.recipe]
    if args.optimizer not in (None, recipe["optimizer"]) and args.learning_rate is None:
        args.learning_rate = OPTIMIZERS[args.optimizer]  # the recipe's suits its optimizer
    for setting in recipe_fields():
        if getattr(args, setting.name) is None:
            setattr(args, setting.name, recipe.get(setting.name, setting.default))


def config_from_options(args: argparse.Namespace, **fields: Any) -> TrainConfig:
    """The settings save_model.py and crossval share, from their parsed options (after
    ``apply_recipe``), as the training code takes them; FIELDS are the command's own
    (seed, checkpoint, ...)."""
    shared = {name: getattr(args, name) for name in RECIPE_FIELDS}
    shared["image_size"] = (args.image_size, args.image_size)
    for name in ("recipe", "exclude", "positive_class", "max_pixels", "tensorboard"):
        shared[name] = getattr(args, name)
    return TrainConfig(args.dataset, **{**shared, **fields})


def class_list(text: str) -> list[str]:
    """--classes: comma-separated, distinct, non-empty names (A,B,...)."""
    names = [name.strip() for name in text.split(",")]
    if len(names) < 2 or not all(names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"must be two or more distinct names separated by commas, got {text!r}"
        )
    return names


def add_adoption(parser: argparse.ArgumentParser) -> None:
    """--classes, --interpolation and --scale: reading a Keras model file saved elsewhere,
    which carries none of our metadata (``modelfile.Adoption``)."""
    from pyimagesearch.core.preprocessing import INTERPOLATIONS, SCALES

    parser.add_argument(
        "--classes",
        type=class_list,
        metavar="A,B,...",
        help="for a Keras model file saved elsewhere (.h5 from Keras 2/tf.keras, .keras, any "
        "name) that names no classes: its class names in output order; the image size is "
        "the model's input (python -m pyimagesearch.adopt makes such a file a full one)",
    )
    parser.add_argument(
        "--interpolation",
        choices=tuple(INTERPOLATIONS),
        help="with --classes: the resize the model was trained with (default: nearest, as "
        "the tutorial's flow_from_directory)",
    )
    parser.add_argument(
        "--scale",
        choices=tuple(SCALES),
        help="with --classes: the factor pixels are multiplied by (default: 1/255, as the "
        "tutorial; 1 for a network that rescales inside itself)",
    )


def adoption(args: argparse.Namespace):
    """The options of ``add_adoption`` as a ``modelfile.Adoption``, or None without --classes."""
    from pyimagesearch.core.errors import UserError
    from pyimagesearch.core.modelfile import Adoption

    if args.classes is None:
        if args.interpolation or args.scale:
            raise UserError("--interpolation and --scale describe a model file saved "
                            "elsewhere; give its --classes too")  # fmt: skip
        return None
    return Adoption(args.classes, args.interpolation, args.scale)
