"""Issue 20: an option several commands take is declared once (pyimagesearch/options.py),
so every command refuses a bad value the same way, before any work."""

from __future__ import annotations

import importlib

import pytest

# Each command with the least arguments it needs to get as far as the option checks.
COMMANDS = {
    "save_model": ["-d", "data", "-m", "m.keras"],
    "load_model": ["-i", "images", "-m", "m.keras"],
    "serve_model": ["-m", "m.keras"],
    "pyimagesearch.crossval": ["-d", "data", "-o", "cv"],
    "pyimagesearch.build_dataset": [],
    "pyimagesearch.quantize": ["-m", "m.keras", "-i", "images"],
    "pyimagesearch.audit": ["--oof", "oof.csv", "-o", "out"],
    "pyimagesearch.export": ["-m", "m.keras", "-f", "onnx", "-o", "out"],
    "pyimagesearch.verify": ["-m", "m.keras"],
}
# A bad value of each shared option, and the one refusal every command must give.
BAD_VALUES = {
    "--seed": ("-1", "must be between 0 and 2147483647, got -1"),
    "--image-size": ("8", "must be at least 32 pixels, got 8"),
    "--batch-size": ("0", "must be positive, got 0"),
    "--max-pixels": ("0", "must be positive, got 0"),
    "--learning-rate": ("0", "must be a positive number, got 0"),
    "--epochs": ("100000", "must be at most 1000, got 100000"),
    "--precision": ("fp8", "invalid choice: 'fp8'"),
    "--runtime": ("gpu", "invalid choice: 'gpu'"),
    "--expect-sha256": ("abc123", "must be a SHA-256 of 64 hex digits"),
}


def refusal(command: str, argv: list[str], capsys) -> str | None:
    """The error argparse printed for ARGV, or None when COMMAND has no such option."""
    parse_args = importlib.import_module(command).parse_args
    with pytest.raises(SystemExit) as stopped:
        parse_args(argv)
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    return None if "unrecognized arguments" in error else error


@pytest.mark.parametrize("option", BAD_VALUES)
def test_a_shared_option_is_refused_alike_by_every_command_that_takes_it(option, capsys):
    """Mutation: crossval's --seed back to type=int (or its --learning-rate to float, which
    took 0 as "use the recipe's") fails this."""
    value, message = BAD_VALUES[option]
    takers = {}
    for command, argv in COMMANDS.items():
        error = refusal(command, [*argv, option, value], capsys)
        if error is not None:
            takers[command] = error
    assert len(takers) >= 2, f"{option} is taken by {list(takers)} only"
    for command, error in takers.items():
        assert f"{option}: {message}" in error, (command, error)


def test_the_recipe_fills_only_what_the_command_line_left_unset():
    """save_model and crossval take the same recipe fields; crossval had no --schedule
    and its --learning-rate 0 silently became the recipe's. Mutation: apply_recipe
    overwriting a given value fails this."""
    import save_model
    from pyimagesearch import crossval
    from pyimagesearch.core.recipes import RECIPES
    from pyimagesearch.options import apply_recipe

    base = {"save_model": ["-d", "d", "-m", "m.keras"], "crossval": ["-d", "d", "-o", "cv"]}
    for parse_args, argv in ((save_model.parse_args, base["save_model"]),
                             (crossval.parse_args, base["crossval"])):  # fmt: skip
        args = parse_args([*argv, "--recipe", "tutorial", "--epochs", "3", "--schedule", "cosine"])
        apply_recipe(args)
        assert (args.epochs, args.schedule) == (3, "cosine")
        assert args.learning_rate == RECIPES["tutorial"]["learning_rate"]
        assert args.augmentation == RECIPES["tutorial"]["augmentation"]
