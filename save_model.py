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

from pyimagesearch import options
from pyimagesearch.core import report, safety
from pyimagesearch.core.errors import UserError, run_command, start_tensorflow
from pyimagesearch.core.modelfile import (
    check_is_checkpoint,
    checkpoint_path_for,
    read_metadata,
    validate_metadata,
)
from pyimagesearch.core.preprocessing import INTERPOLATIONS, SCALES
from pyimagesearch.core.recipes import CONTINUE_RECIPE, DEFAULT_RECIPE
from pyimagesearch.core.splitting import check_dataset, read_file_list
from pyimagesearch.training.distribute import is_chief

if TYPE_CHECKING:
    from pyimagesearch.core.recipes import TrainConfig

NOT_CHIEF = (
    "[INFO] this worker is not the chief, so it writes nothing: the chief (the "
    "'chief' task in TF_CONFIG, or worker 0) saves the model, checkpoint and plot"
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = options.command_parser(__doc__)
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
        type=options.fraction,
        help="a flat folder: share of images held out for validation (default 0.1)",
    )
    parser.add_argument(
        "--test-split",
        type=options.fraction,
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
        type=options.seed,
        default=42,
        help="seed of a flat folder's split, apart from --seed so that every training run "
        "on a folder is judged on the same test images (default 42)",
    )
    options.add_positive_class(parser)
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
    options.add_recipe(parser)
    parser.add_argument(
        "--history",
        metavar="FILE.csv",
        help="write one CSV row per epoch (epoch from 1, learning rate, every training and "
        "validation metric), rewritten after each epoch",
    )
    options.add_seed(parser, None, "random seed for a repeatable run")
    options.add_max_pixels(parser)
    parser.add_argument(
        "--init-from",
        metavar="MODEL",
        help="start from this saved model's weights instead of fresh ones: a model of this "
        "project, an adopted one, or any Keras classifier file. The same classes keep every "
        "weight; other classes keep all but the last layer, replaced by a new classifier; a "
        "file without our metadata is a backbone (its preprocessing from --interpolation "
        "and --scale). Its input size, head and stain layer are kept; the default recipe "
        "becomes finetune, and the provenance records the parent",
    )
    parser.add_argument(
        "--freeze-backbone",
        type=options.count,
        default=0,
        metavar="N",
        help="with --init-from: train only the last layer (the new classifier) for the first "
        "N epochs, then every layer (default: 0)",
    )
    parser.add_argument(
        "--interpolation",
        choices=tuple(INTERPOLATIONS),
        help="--init-from a Keras file without our metadata: the resize it was trained with "
        "(default: nearest, as the tutorial's flow_from_directory)",
    )
    parser.add_argument(
        "--scale",
        choices=tuple(SCALES),
        help="--init-from a Keras file without our metadata: the factor its pixels were "
        "multiplied by (default: 1/255; 1 for a network that rescales inside itself)",
    )
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
        "--distribute",
        choices=("mirrored", "multi-worker"),
        help="train on all local GPUs (mirrored) or on several machines (multi-worker, "
        "each started with TF_CONFIG and the same --seed; only the chief writes files); "
        "default: one device",
    )
    parser.add_argument(
        "--cpu-devices",
        type=options.positive_count,
        default=1,
        help="split the CPU into N logical devices (tries --distribute without GPUs)",
    )
    options.add_debug(parser)
    parser.set_defaults(recipe=None)  # finetune with --init-from, else the default recipe
    args = parser.parse_args(argv)
    check_init_from(args)
    args.recipe = args.recipe or (CONTINUE_RECIPE if args.init_from else DEFAULT_RECIPE)
    if args.distribute == "multi-worker" and args.seed is None:
        # Each worker would otherwise draw its own seed, shuffling and augmenting apart.
        raise UserError("--distribute multi-worker needs --seed, the same on every worker")
    options.apply_recipe(args)
    args.checkpoint = args.checkpoint or str(checkpoint_path_for(args.model))
    # In a multi-worker run only the chief writes; the others train and write nothing.
    args.chief = args.distribute != "multi-worker" or is_chief()
    return args


def check_init_from(args: argparse.Namespace) -> None:
    """The options that only mean something with --init-from, refused without it."""
    if args.init_from is None:
        given = {"--freeze-backbone": args.freeze_backbone, "--interpolation": args.interpolation,
                 "--scale": args.scale,
                 "--bn-statistics frozen": args.bn_statistics == "frozen"}  # fmt: skip
        for flag, value in given.items():
            if value:
                raise UserError(
                    f"{flag} is for a run that starts from a saved model: add --init-from"
                )
    elif args.image_size is not None:
        raise UserError("--image-size cannot change with --init-from: the model's input is kept")
    elif args.resume and args.freeze_backbone:
        raise UserError("--resume cannot continue a run with --freeze-backbone; start it again")


def write_calibration_plot(calibration, path: str) -> None:
    """The reliability diagram on the testing split, or one [INFO] line saying why not."""
    from pyimagesearch.core.calibration import calibrate
    from pyimagesearch.training.plots import plot_reliability

    if calibration is None or not len(calibration.test_labels):
        report.info(f"no temperature was fitted, so '{path}' was not written")
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
    report.info(f"calibration plot written to '{path}'")


def training_config(args: argparse.Namespace) -> TrainConfig:
    """The options as the training code takes them (``recipes.TrainConfig``)."""
    return options.config_from_options(
        args,
        seed=args.seed,
        checkpoint=args.checkpoint,
        resume=args.resume,
        distribute=args.distribute,
        cpu_devices=args.cpu_devices,
        val_split=args.val_split,
        test_split=args.test_split,
        group_pattern=args.group_pattern,
        split_seed=args.split_seed,
        chief=args.chief,
        history=args.history,
        init_from=args.init_from,
        freeze_backbone=args.freeze_backbone,
        parent_interpolation=args.interpolation,
        parent_scale=args.scale,
    )


def check_outputs(args: argparse.Namespace) -> None:
    """Every path judged before any work, before TensorFlow even starts
    (docs/reliability.md): outputs first, then the dataset's layout and the --exclude
    list, then an existing --checkpoint, which must be one of ours."""
    checkpoint = args.checkpoint
    safety.check_paths(
        {
            "--model": args.model,
            "--plot": args.plot,
            "--calibration-plot": args.calibration_plot,
            "--checkpoint": checkpoint,
            "--history": args.history,
            "--tensorboard": args.tensorboard,
        },
        {"--dataset": args.dataset, "--exclude": args.exclude, "--init-from": args.init_from},
    )
    safety.check_output_file(args.plot, "--plot", safety.figure_suffixes())
    if args.calibration_plot:
        safety.check_output_file(
            args.calibration_plot, "--calibration-plot", safety.figure_suffixes()
        )
    if args.history:
        safety.check_output_file(args.history, "--history", (".csv",))
    if args.tensorboard:
        safety.check_output_folder(args.tensorboard, "--tensorboard")
    outputs = {"--model": args.model, "--plot": args.plot, "--checkpoint": checkpoint}
    for flag, path in outputs.items() if args.chief else ():
        safety.check_output_file(path, flag)
    check_dataset(args.dataset, args.val_split, args.test_split, args.group_pattern)
    if args.init_from:
        parent = read_metadata(args.init_from)  # a model file, its metadata valid: before TF
        if parent is not None:
            validate_metadata(parent, args.init_from)
    if args.exclude:
        read_file_list(args.exclude)
    if args.chief and Path(checkpoint).exists():
        check_is_checkpoint(checkpoint)
        if not args.resume:
            report.info(
                f"'{checkpoint}' is left from an interrupted run; starting afresh "
                "(add --resume to continue it instead)"
            )


def save_plots(args: argparse.Namespace, result) -> None:
    """The training curves (--plot) and, when asked, the reliability diagram."""
    from pyimagesearch.training.plots import plot_history

    with safety.replacing(args.plot) as temporary:
        plot_history(result.history, str(temporary))
    report.info(f"plot written to '{args.plot}'")
    if args.calibration_plot:
        write_calibration_plot(result.calibration, args.calibration_plot)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_outputs(args)  # a bad path is refused at once, before TensorFlow starts
    start_tensorflow(args.debug)
    from pyimagesearch.training import train as steps
    from pyimagesearch.training.serialization import save_model

    config = training_config(args)

    run = steps.load_splits(config)  # the article's generators: "Found N images ..."
    steps.build_network(run)  # ResNet.build (or the checkpoint's, with --resume)
    steps.compile_network(run)  # SGD and the recipe's learning-rate schedule
    try:
        steps.fit_network(run)  # model.fit, a checkpoint after every epoch
    except steps.TrainingInterrupted as stop:
        report.info(f"training interrupted: {stop}")
        if Path(config.checkpoint).exists():
            report.info("continue with the same command plus --resume")
        return 130
    result = steps.evaluate_network(run)  # classification_report on the testing split
    report.plain(result.report)
    if not config.chief:
        report.plain(NOT_CHIEF)
        return 0

    report.info(f"serializing network to '{args.model}'...")
    save_model(result.model, args.model, result.metadata, compiled=True)
    Path(config.checkpoint).unlink(missing_ok=True)
    steps.best_weights_path(config.checkpoint).unlink(missing_ok=True)
    save_plots(args, result)
    warn_if_not_learnt(result.metadata)
    return 0


def warn_if_not_learnt(metadata: dict) -> None:
    """The last line a user sees, when the model is no better than guessing."""
    from pyimagesearch.core.evaluation import not_learnt_warning

    warning = not_learnt_warning(metadata.get("provenance", {}).get("learning"))
    if warning:
        report.warning(warning)


if __name__ == "__main__":
    sys.exit(run_command(main))
