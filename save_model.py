"""Train the tutorial's ResNet on a folder of image classes and save it, with its
preprocessing, to --model.

python save_model.py --dataset malaria --model saved_model.model --plot plot.png
python save_model.py --dataset digits --model digits.keras --image-size 32 --augmentation none

DATASET is split already (training/validation/testing/<class>/, or train/val/test/)
or a flat folder of one sub-folder per class, split here by --val-split and
--test-split. The malaria cells (python -m pyimagesearch.build_dataset) are the worked
example; any classes work.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pyimagesearch import safety
from pyimagesearch.augmentation import AUGMENTATIONS
from pyimagesearch.errors import UserError, run_command, start_tensorflow
from pyimagesearch.recipes import DEFAULT_RECIPE, RECIPES, SCHEDULES
from pyimagesearch.splitting import check_dataset

if TYPE_CHECKING:
    from pyimagesearch.train import TrainConfig

NOT_CHIEF = (
    "[INFO] this worker is not the chief, so it writes nothing: the chief (the "
    "'chief' task in TF_CONFIG, or worker 0) saves the model, checkpoint and plot"
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "-d",
        "--dataset",
        required=True,
        help="folder of images: training/validation/testing/<class>/, train/val/test/<class>/ "
        "(or valid/), or a flat folder of <class>/ sub-folders, split here (--val-split, "
        "--test-split); the malaria example is built by 'python -m pyimagesearch.build_dataset'",
    )
    parser.add_argument(
        "--val-split",
        type=safety.fraction,
        help="a flat folder: share of images held out for validation (default 0.1)",
    )
    parser.add_argument(
        "--test-split",
        type=safety.fraction,
        help="a flat folder: share of images held out for testing (default 0.1)",
    )
    parser.add_argument(
        "--group-pattern",
        metavar="REGEX",
        help="a flat folder: keep every group in one split, the group being the first "
        "capture group of REGEX in the file name (e.g. '^(\\w+?)_' for 'alice_001.png'); "
        "default: the patient rule for the NIH malaria classes, else none (split by file)",
    )
    parser.add_argument(
        "--split-seed",
        type=safety.seed,
        default=42,
        help="seed of a flat folder's split, apart from --seed so that every training run "
        "on a folder is judged on the same test images (default 42)",
    )
    safety.add_positive_class_argument(parser)
    parser.add_argument(
        "-m",
        "--model",
        required=True,
        help="where to save the model (any name, e.g. saved_model.model; "
        "'.h5' gives a legacy HDF5 file, anything else the native Keras format)",
    )
    parser.add_argument(
        "--exclude",
        metavar="LIST",
        help="leave these training images out: the label audit's issues.csv (python -m "
        "pyimagesearch.audit) or a text file of file names, one per line; validation and "
        "testing keep every image and its label, and the model's provenance records the list",
    )
    parser.add_argument("-p", "--plot", default="plot.png", help="loss/accuracy plot (PNG)")
    parser.add_argument(
        "--calibration-plot",
        metavar="FILE",
        help="reliability diagram of the testing split before and after temperature scaling "
        "(the temperature is fitted on the validation split and stored in the model, so "
        "load_model.py and every export give calibrated probabilities)",
    )
    parser.add_argument(
        "--recipe",
        choices=tuple(RECIPES),
        default=DEFAULT_RECIPE,
        help="stable (default): the tutorial's network and augmentation, 12 epochs, SGD "
        "warmed up for one epoch to 0.03 then cosine to zero; a good model for any seed. "
        "tutorial: the original article's exact hyperparameters (25 epochs, SGD 0.1 with "
        "time decay), whose result depends on the seed. full: 12 epochs, batch 64, cosine, "
        "images rotated to any angle and flipped both ways (made for the whole NIH malaria "
        "set split by patient)",
    )
    parser.add_argument("-e", "--epochs", type=safety.epoch_count, help="default: from --recipe")
    parser.add_argument(
        "--learning-rate",
        type=safety.positive_number,
        help="peak learning rate of SGD (momentum 0.9) (default: from --recipe)",
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
        "(default: from --recipe, tutorial)",
    )
    parser.add_argument(
        "-b", "--batch-size", type=safety.positive_count, help="default: from --recipe"
    )
    parser.add_argument(
        "--image-size",
        type=safety.image_side,
        help="side in pixels of the square the images are resized to; it is stored in the "
        "model, so load_model.py follows it (default: from --recipe, 64). About the "
        "images' own size or less: 32 for 48-pixel images is as good and 3-4x faster",
    )
    parser.add_argument(
        "-s", "--seed", type=safety.seed, default=None, help="random seed for a repeatable run"
    )
    safety.add_max_pixels_argument(parser)
    parser.add_argument(
        "--checkpoint",
        help="where each finished epoch is checkpointed (default: MODEL.checkpoint); "
        "removed once the model is saved",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from its checkpoint (same dataset, epochs, batch size)",
    )
    parser.add_argument(
        "--precision",
        choices=("float32", "mixed_bfloat16", "mixed_float16"),
        default="float32",
        help="training arithmetic (default float32). mixed_bfloat16 trains about 1.3x faster "
        "on CPUs with AMX, mixed_float16 is for GPUs; both cost this recipe accuracy in our "
        "runs. The saved model is float32 either way",
    )
    parser.add_argument(
        "--distribute",
        choices=("mirrored", "multi-worker"),
        help="train on all local GPUs (mirrored) or on several machines (multi-worker, "
        "each started with TF_CONFIG and the same --seed; only the chief writes files); "
        "default: one device",
    )
    parser.add_argument(
        "--cpu-devices",
        type=safety.positive_count,
        default=1,
        help="split the CPU into N logical devices (tries --distribute without GPUs)",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    args = parser.parse_args(argv)
    if args.distribute == "multi-worker" and args.seed is None:
        # Each worker would otherwise draw its own seed, shuffling and augmenting apart.
        raise UserError("--distribute multi-worker needs --seed, the same on every worker")
    recipe = RECIPES[args.recipe]
    args.epochs = args.epochs or recipe["epochs"]
    args.batch_size = args.batch_size or recipe["batch_size"]
    args.learning_rate = args.learning_rate or recipe["learning_rate"]
    args.schedule = args.schedule or recipe["schedule"]
    args.augmentation = args.augmentation or recipe["augmentation"]
    args.image_size = args.image_size or recipe["image_size"]
    return args


def write_calibration_plot(calibration, path: str) -> None:
    """The reliability diagram on the testing split, or one [INFO] line saying why not."""
    from pyimagesearch.calibration import calibrate
    from pyimagesearch.plots import plot_reliability

    if calibration is None or not len(calibration.test_labels):
        print(f"[INFO] no temperature was fitted, so '{path}' was not written")
        return
    before = calibration.test_probabilities
    with safety.replacing(path) as temporary:
        plot_reliability(
            calibration.test_labels,
            before,
            calibrate(before, calibration.temperature),
            calibration.temperature,
            str(temporary),
        )
    print(f"[INFO] calibration plot written to '{path}'")


def training_config(args: argparse.Namespace) -> TrainConfig:
    """The options as the training code takes them (``train.TrainConfig``)."""
    from pyimagesearch.distribute import is_chief
    from pyimagesearch.train import TrainConfig, checkpoint_path_for

    return TrainConfig(
        args.dataset,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        checkpoint=args.checkpoint or str(checkpoint_path_for(args.model)),
        resume=args.resume,
        precision=args.precision,
        distribute=args.distribute,
        cpu_devices=args.cpu_devices,
        learning_rate=args.learning_rate,
        schedule=args.schedule,
        augmentation=args.augmentation,
        recipe=args.recipe,
        exclude=args.exclude,
        val_split=args.val_split,
        test_split=args.test_split,
        group_pattern=args.group_pattern,
        split_seed=args.split_seed,
        positive_class=args.positive_class,
        image_size=(args.image_size, args.image_size),
        # In a multi-worker run only the chief writes; the others train and write nothing.
        chief=args.distribute != "multi-worker" or is_chief(),
    )


def check_outputs(args: argparse.Namespace, config: TrainConfig) -> None:
    """Every path judged before any work (docs/reliability.md): outputs first, then the
    dataset's layout, then an existing --checkpoint, which must be one of ours."""
    from pyimagesearch.serialization import check_is_checkpoint, check_writable

    checkpoint = config.checkpoint
    safety.check_paths(
        {
            "--model": args.model,
            "--plot": args.plot,
            "--calibration-plot": args.calibration_plot,
            "--checkpoint": checkpoint,
        },
        {"--dataset": args.dataset, "--exclude": args.exclude},
    )
    safety.check_output_file(args.plot, "--plot", safety.figure_suffixes())
    if args.calibration_plot:
        safety.check_output_file(
            args.calibration_plot, "--calibration-plot", safety.figure_suffixes()
        )
    outputs = {"--model": args.model, "--plot": args.plot, "--checkpoint": checkpoint}
    for flag, path in outputs.items() if config.chief else ():
        check_writable(path, flag)
    check_dataset(args.dataset, args.val_split, args.test_split, args.group_pattern)
    if config.chief and Path(checkpoint).exists():
        check_is_checkpoint(checkpoint)
        if not args.resume:
            print(
                f"[INFO] '{checkpoint}' is left from an interrupted run; starting afresh "
                "(add --resume to continue it instead)"
            )


def save_plots(args: argparse.Namespace, result) -> None:
    """The training curves (--plot) and, when asked, the reliability diagram."""
    from pyimagesearch.plots import plot_history

    with safety.replacing(args.plot) as temporary:
        plot_history(result.history, str(temporary))
    print(f"[INFO] plot written to '{args.plot}'")
    if args.calibration_plot:
        write_calibration_plot(result.calibration, args.calibration_plot)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start_tensorflow(args.debug)
    # Imported after parsing so that --help and bad arguments answer at once.
    from pyimagesearch import train as steps
    from pyimagesearch.serialization import save_model

    safety.MAX_PIXELS = args.max_pixels
    config = training_config(args)
    check_outputs(args, config)

    run = steps.load_splits(config)  # the article's generators: "Found N images ..."
    steps.build_network(run)  # ResNet.build (or the checkpoint's, with --resume)
    steps.compile_network(run)  # SGD and the recipe's learning-rate schedule
    try:
        steps.fit_network(run)  # model.fit, a checkpoint after every epoch
    except steps.TrainingInterrupted as stop:
        print(f"[INFO] training interrupted: {stop}")
        if Path(config.checkpoint).exists():
            print("[INFO] continue with the same command plus --resume")
        return 130
    result = steps.evaluate_network(run)  # classification_report on the testing split
    print(result.report)
    if not config.chief:
        print(NOT_CHIEF)
        return 0

    print(f"[INFO] serializing network to '{args.model}'...")
    save_model(result.model, args.model, result.metadata, compiled=True)
    Path(config.checkpoint).unlink(missing_ok=True)
    save_plots(args, result)
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
