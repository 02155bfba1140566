"""What does a recipe cost against another? Trained in turn, in one process.

    python -m studies.recipe_time --dataset DIR [--recipes stable adam-then-sgd] [--rounds 1]

Whole-command times on a shared 2-core machine vary by a third between identical runs,
so two recipes whose costs are close cannot be ranked that way (docs/accuracy.md).
Here each recipe trains on the same decoded split (DIR/training, validation, testing),
through save_model.py's own steps (``pyimagesearch.training.train``), in the order A B B A per
round so that neither always goes first. Each run's time is its steps: building,
compiling, fitting (every tracing), the test report, any BatchNormalization
recomputation and calibration.
TensorFlow's start-up and decoding are outside (they are the same for both). Prints a
Markdown table of the runs (with each epoch's seconds, its validation and any tracing
in it included), each recipe's mean and the ratio to the first recipe.
"""

from __future__ import annotations

import argparse
import time

from bench.measure import describe_machine


def epoch_stamps(train) -> list[float]:
    """The time each epoch ends, recorded from the training's own checkpoint callback."""
    stamps: list[float] = []
    original = train._EpochCheckpoints.on_epoch_end

    def stamped(self, epoch, logs=None):
        stamps.append(time.perf_counter())
        return original(self, epoch, logs)

    train._EpochCheckpoints.on_epoch_end = stamped
    return stamps


def train_once(
    dataset: str, recipe: str, seed: int, epochs: int | None, arrays_cache: dict
) -> tuple[float, float, list[float]]:
    """(seconds of the training steps, test accuracy, each epoch's seconds) of one run of
    RECIPE; an epoch's seconds include its validation and any tracing in it."""
    import keras

    from pyimagesearch.core.recipes import RECIPES
    from pyimagesearch.training import train

    keras.backend.clear_session()  # each run starts from the same state
    fields = dict(RECIPES[recipe])
    size = fields.pop("image_size")
    fields["epochs"] = epochs or fields["epochs"]
    config = train.TrainConfig(
        dataset, seed=seed, recipe=recipe, image_size=(size, size), verbose=0, **fields
    )
    if recipe not in arrays_cache:  # decoding is not what is compared
        arrays_cache[recipe] = train.load_splits(config)
    loaded = arrays_cache[recipe]
    run = train.Run(config, loaded.splits, loaded.layout, loaded.excluded, loaded.arrays,
                    loaded.class_names, loaded.positive, loaded.recipe)  # fmt: skip
    original = train._EpochCheckpoints.on_epoch_end
    stamps = epoch_stamps(train)
    start = time.perf_counter()
    try:
        train.build_network(run)
        train.compile_network(run)
        fit_start = time.perf_counter()
        train.fit_network(run)
        result = train.evaluate_network(run)
    finally:
        train._EpochCheckpoints.on_epoch_end = original
    seconds = time.perf_counter() - start
    per_epoch = [b - a for a, b in zip([fit_start, *stamps], stamps, strict=False)]
    return seconds, result.metadata["provenance"]["final_metrics"]["test_accuracy"], per_epoch


def main(argv: list[str] | None = None) -> None:
    from pyimagesearch.core.recipes import RECIPES

    parser = argparse.ArgumentParser(
        prog="python -m studies.recipe_time",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dataset", required=True, help="DIR/training, validation, testing")
    parser.add_argument("--recipes", nargs=2, choices=tuple(RECIPES),
                        default=["stable", "adam-then-sgd"])  # fmt: skip
    parser.add_argument("--rounds", type=int, default=1, help="A B B A rounds (default 1)")
    parser.add_argument("--epochs", type=int, help="default: each recipe's own")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    machine = describe_machine()
    first, second = args.recipes
    cache: dict = {}
    times: dict[str, list[float]] = {first: [], second: []}
    rows = []
    for round_number in range(1, args.rounds + 1):
        for recipe in (first, second, second, first):
            seconds, accuracy, per_epoch = train_once(
                args.dataset, recipe, args.seed, args.epochs, cache
            )
            times[recipe].append(seconds)
            epochs = " / ".join(f"{value:.1f}" for value in per_epoch)
            rows.append(
                f"| {round_number} | `{recipe}` | {seconds:.1f} s | {accuracy:.2f} | {epochs} |"
            )
            print(f"[INFO] round {round_number}: {recipe} {seconds:.1f} s", flush=True)
    means = {recipe: sum(values) / len(values) for recipe, values in times.items()}
    print(f"\nMachine: {machine}\n")
    print("| round | recipe | training steps | test accuracy | each epoch (s) |")
    print("| --- | --- | ---: | ---: | --- |")
    print("\n".join(rows))
    print(f"\nMeans: `{first}` {means[first]:.1f} s, `{second}` {means[second]:.1f} s; "
          f"ratio {second} / {first}: {means[second] / means[first]:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
