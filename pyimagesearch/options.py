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

from pyimagesearch import safety
from pyimagesearch.augmentation import AUGMENTATIONS
from pyimagesearch.recipes import (
    BN_STATISTICS,
    DEFAULT_RECIPE,
    HEADS,
    OPTIMIZERS,
    RECIPES,
    SCHEDULES,
    STAIN_CHOICES,
)

SEED_MAX = 2**31 - 1  # NumPy, TensorFlow and the epoch seeds all accept 0..2**31-1
# Each epoch gets its own seeded pipeline, built before fit(): a bound keeps a typo
# (--epochs 100000) from building for minutes before the first step.
MAX_EPOCHS = 1000
# Training arithmetic (Keras mixed-precision policies, or auto: bfloat16 where the CPU
# has AMX, acceleration.training_precision); the saved model is float32.
TRAINING_PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
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
    "training": "training arithmetic (default: from --recipe; auto for adam-then-sgd, "
    "float32 for the others). auto: mixed_bfloat16 on a CPU with AMX, whose steps it "
    "makes about 1.2x faster, with the default recipe as accurate on unseen patients "
    "(docs/accuracy.md), float32 elsewhere; mixed_float16 is for GPUs. The saved model "
    "is float32 either way, and records the arithmetic it was trained in",
    "inference": "auto (default): bfloat16 on OpenVINO where the CPU computes it natively "
    "(AMX or AVX512-BF16: faster, its probabilities a little off float32's: "
    "docs/benchmarks.md), float32 elsewhere; float32 gives Keras' probabilities (within "
    "1e-5); int8 runs the quantized network that python -m pyimagesearch.quantize adds to "
    "the file (its accuracy: bench/RESULTS.md)",
}


def add_precision(parser: argparse.ArgumentParser, kind: str) -> None:
    """--precision of training (Keras policies) or of inference (the stored network)."""
    choices, default = (
        (TRAINING_PRECISIONS, None) if kind == "training" else (INFERENCE_PRECISIONS, "auto")
    )
    parser.add_argument("--precision", choices=choices, default=default, help=PRECISION_HELP[kind])


def add_recipe(parser: argparse.ArgumentParser) -> None:
    """--recipe and the fields a command line may override (save_model, crossval)."""
    parser.add_argument(
        "--recipe",
        choices=tuple(RECIPES),
        default=DEFAULT_RECIPE,
        help="adam-then-sgd (default): the tutorial's network and augmentation, 12 "
        "epochs in batches of 16: Adam (peak 0.001) for the first 3, then SGD (momentum "
        "0.9) warmed up again for one epoch to 0.03 and cosine to zero, the "
        "BatchNormalization statistics recomputed after training, in bfloat16 where the CPU "
        "has AMX (--precision auto); on patients the model never saw: 0.942-0.955 over ten "
        "splits (0.938-0.956 in float32). stable: SGD alone, warmed up to 0.03 "
        "then cosine, 12 epochs; as good or slightly better where it learns, but one split "
        "in ten it never learns (0.695). "
        "adam: stable with Adam (peak 0.001) and recomputed statistics; never fails, never "
        "as good. "
        "tutorial: the original article's exact hyperparameters (25 epochs, SGD 0.1 with "
        "time decay), whose result depends on the seed. full: 12 epochs, batch 64, cosine, "
        "images rotated to any angle and flipped both ways (made for the whole NIH malaria "
        "set split by patient). gap96: full at 96 px with the global-average-pooling head",
    )
    parser.add_argument("-e", "--epochs", type=epoch_count, help="default: from --recipe")
    parser.add_argument(
        "--learning-rate",
        type=positive_number,
        help="peak learning rate of the optimizer (default: from --recipe; with an "
        "--optimizer other than the recipe's, that optimizer's: sgd 0.03, adam 0.001, "
        "adam-then-sgd 0.03 for its SGD phase)",
    )
    parser.add_argument(
        "--optimizer",
        choices=tuple(OPTIMIZERS),
        help="sgd: SGD with momentum 0.9, as the article; adam: Adam; adam-then-sgd: Adam "
        "(peak 0.001) for a quarter of the epochs, then SGD (peak --learning-rate, warmed up "
        "again, cosine to zero) for the rest (default: from --recipe)",
    )
    parser.add_argument(
        "--bn-statistics",
        choices=BN_STATISTICS,
        help="BatchNormalization statistics the saved model keeps: moving, the averages "
        "kept during training; recomputed, their plain mean over the un-augmented training "
        "images after training (needed with adam) (default: from --recipe)",
    )
    parser.add_argument(
        "--schedule",
        choices=SCHEDULES,
        help="learning rate: time-decay is the original lr / (1 + decay * iterations); cosine "
        "warms up for one epoch, then falls to zero (default: from --recipe)",
    )
    parser.add_argument(
        "--augmentation",
        choices=AUGMENTATIONS,
        help="none: no augmentation; flip: horizontal flips only; tutorial: the original's "
        "(rotation 20 degrees, zoom, shifts, shear, horizontal flips); any-orientation: any "
        "rotation and both flips; tutorial+colour, any-orientation+colour: the same plus random "
        "hue (up to 36 degrees) and saturation (0.5-1.5x) per image, as stains differ between "
        "slides (training only). Flips are wrong where left and right differ (text, digits) "
        "(default: from --recipe)",
    )
    add_batch_size(parser, None, "images per training step")
    parser.add_argument(
        "--image-size",
        type=image_side,
        help="side in pixels of the square the images are resized to; it is stored in the "
        "model, so load_model.py follows it (default: from --recipe, 64). About the "
        "images' own size or less: 32 for 48-pixel images is as good and 3-4x faster",
    )
    parser.add_argument(
        "--head",
        choices=HEADS,
        help="the network's head: tutorial, the article's 8x8 average pooling + Flatten (its "
        "Dense layer grows with --image-size), or gap, global average pooling (the same "
        "parameters at any size); stored in the model (default: from --recipe, tutorial)",
    )
    parser.add_argument(
        "--stain",
        choices=STAIN_CHOICES,
        help="stain normalisation, a layer of the network: none, or grey-world, each "
        "channel divided by its mean over the cell's pixels (the black background left "
        "out), so every cell averages to grey whatever its slide's stain; stored in the "
        "model, so training and every loader apply it alike. auto: grey-world for the NIH "
        "malaria classes, none for other images, whose colour may tell the classes apart "
        "(default: from --recipe; auto for the default recipe, none for the others)",
    )


# What a --recipe sets and the command line may override (besides --image-size).
RECIPE_FIELDS = ("epochs", "batch_size", "learning_rate", "schedule", "augmentation", "head")
RECIPE_FIELDS += ("stain", "optimizer", "bn_statistics", "precision")


def apply_recipe(args: argparse.Namespace) -> None:
    """Fill every field the command line left unset from --recipe."""
    recipe = RECIPES[args.recipe]
    if args.optimizer not in (None, recipe["optimizer"]) and args.learning_rate is None:
        args.learning_rate = OPTIMIZERS[args.optimizer]  # the recipe's suits its optimizer
    for field in RECIPE_FIELDS:
        if getattr(args, field) is None:
            setattr(args, field, recipe[field])
    if args.image_size is None:
        args.image_size = recipe["image_size"]
