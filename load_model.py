"""Load a model saved by save_model.py and classify images with its own preprocessing.

    python load_model.py --images malaria/testing --model saved_model.model

Images are sampled at random (--samples, --seed), classified in batches, and the
first 16 are drawn as a 4x4 montage: each label in its class's colour (for the malaria
example red for Parasitized, green for Uninfected), with the confidence; when the true
class is known from the parent folder's name, wrong predictions get an amber frame and
the word WRONG, and a report follows (sensitivity, specificity and AUC of the positive
class, --positive-class).

--explain overlays each tile with a Grad-CAM heatmap: red where the evidence for the
predicted class lies (docs/audit.md says what it shows and what it cannot).

When the model stores a temperature (fitted by save_model.py on the validation
split), every probability printed, drawn or written is the calibrated one.

Large jobs (--samples 0 on a folder of thousands) stream through the network in
batches; on a machine without a GPU the network then runs on OpenVINO (--runtime).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import random
import sys
from pathlib import Path

from pyimagesearch import safety
from pyimagesearch.errors import UserError, run_command, start_tensorflow

MONTAGE_TILES = 16
MONTAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
EXPLAIN_MARKER = "GRADCAM.txt"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "-i",
        "--images",
        required=True,
        nargs="+",
        help="folder(s) searched recursively, and/or image files",
    )
    parser.add_argument("-m", "--model", required=True, help="model file written by save_model.py")
    parser.add_argument(
        "-n",
        "--samples",
        type=int,
        default=16,
        help="how many images to classify, drawn at random (default: 16; 0 = every image)",
    )
    parser.add_argument(
        "-o", "--output", default="montage.png", help="montage image (default: montage.png)"
    )
    parser.add_argument(
        "--csv", help="write one row per image: path, label, probability of each class"
    )
    parser.add_argument(
        "--confusion",
        help="save the confusion matrix as an image (when folder names give the true classes)",
    )
    parser.add_argument(
        "--show",
        action="store_true",
        help="also open the montage in a matplotlib window (where there is a display)",
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="overlay each montage tile with its Grad-CAM heatmap (red: where the evidence "
        "for the predicted class lies; computed by the float32 Keras model on TensorFlow)",
    )
    parser.add_argument(
        "--explain-dir",
        metavar="DIR",
        help="also save one Grad-CAM overlay PNG per classified image in DIR (implies "
        "--explain; DIR must be new, empty, or an earlier --explain-dir, which is replaced)",
    )
    parser.add_argument(
        "-s", "--seed", type=safety.seed, default=None, help="seed of the random sample"
    )
    safety.add_positive_class_argument(parser)
    safety.add_max_pixels_argument(parser)
    parser.add_argument(
        "-b", "--batch-size", type=int, default=64, help="images per batch (default: 64)"
    )
    parser.add_argument(
        "--precision",
        choices=("float32", "mixed_bfloat16"),
        default="float32",
        help="float32 (default) gives Keras' probabilities (within 1e-4 on OpenVINO); "
        "mixed_bfloat16 is faster on CPUs with AMX or AVX512-BF16 (on OpenVINO about 2.6x "
        "its float32 speed on a 2-core AMX CPU), "
        "probabilities differ by up to about 0.02",
    )
    parser.add_argument(
        "--runtime",
        choices=("auto", "openvino", "tensorflow"),
        default="auto",
        help="engine that runs the network: auto (default) uses OpenVINO for 1,000 images or "
        "more on a machine without a GPU, TensorFlow otherwise",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    args = parser.parse_args(argv)
    if args.samples < 0:
        raise UserError(f"--samples must be 0 (all) or a positive number, got {args.samples}")
    if args.batch_size <= 0:
        raise UserError(f"--batch-size must be positive, got {args.batch_size}")
    args.explain = args.explain or args.explain_dir is not None
    return args


def check_explain_dir(args: argparse.Namespace) -> None:
    """--explain-dir is replaced as a whole: refuse one that holds other files or outputs."""
    folder = Path(args.explain_dir).resolve()
    for flag, value in (("--output", args.output), ("--csv", args.csv)):
        if value and folder in Path(value).resolve().parents:
            raise UserError(f"{flag} '{value}' is inside --explain-dir '{args.explain_dir}'")
    safety.check_own_folder(
        args.explain_dir, "--explain-dir", EXPLAIN_MARKER, lambda name: name.endswith(".png")
    )


def save_explanations(
    model, paths: list[str], kept: list[int], predicted: list[int], recipe: dict, folder: str
) -> None:
    """One Grad-CAM overlay PNG per classified image (of its predicted class) in FOLDER."""
    import cv2

    from pyimagesearch.gradcam import iter_heatmaps
    from pyimagesearch.montage import cell_tile

    chosen = [paths[i] for i in kept]
    names: set[str] = set()
    print(f"[INFO] saving Grad-CAM overlays of {len(chosen)} images to '{folder}'...")
    with safety.staged_folder(folder) as staging:
        for index, heatmap in iter_heatmaps(model, chosen, recipe, predicted):
            stem, number = Path(chosen[index]).stem, 1
            name = f"{stem}.png"
            while name in names:  # same file name in two folders
                number += 1
                name = f"{stem}-{number}.png"
            names.add(name)
            if not cv2.imwrite(str(staging / name), cell_tile(chosen[index], heatmap)):
                raise OSError("OpenCV could not write an overlay")
        (staging / EXPLAIN_MARKER).write_text(
            "Grad-CAM overlays written by load_model.py --explain-dir (of the predicted "
            "class); a later --explain-dir may replace this folder.\n"
        )
    print(f"[INFO] {len(names)} Grad-CAM overlays written to '{folder}'")


def gather_images(sources: list[str]) -> list[str]:
    from pyimagesearch.data import list_images

    paths: list[str] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            paths.extend(list_images(path))
        elif path.exists():  # a FIFO or device given by name is skipped with a warning
            paths.extend(safety.usable_images([str(path)]))
        else:
            raise UserError(f"'{source}' does not exist")
    if not paths:
        raise UserError(
            f"no image files (.png, .jpg, .jpeg, .bmp, .gif) found in {', '.join(sources)}"
        )
    return paths


def choose_samples(paths: list[str], samples: int, seed: int | None) -> list[str]:
    if samples == 0:
        return paths
    if samples > len(paths):
        print(f"[INFO] --samples {samples} is more than the {len(paths)} images found; using all")
        return paths
    return random.Random(seed).sample(paths, samples)


def describe(metadata: dict) -> None:
    import keras

    provenance = metadata.get("provenance", {})
    if provenance:
        metrics = provenance.get("final_metrics", {})
        accuracy = metrics.get("test_accuracy")
        print(
            f"[INFO] model: classes {metadata['class_names']}, saved "
            f"{provenance.get('saved_at', '?')} with Keras {provenance.get('keras_version', '?')}, "
            f"{provenance.get('epochs', '?')} epochs, seed {provenance.get('seed')}"
            + (f", test accuracy {accuracy:.4f}" if accuracy is not None else "")
        )
    if "calibration" in metadata:
        calibration = metadata["calibration"]
        images = calibration.get("images")
        print(
            f"[INFO] probabilities calibrated with temperature {calibration['temperature']}"
            + (f" (fitted on {images} validation images)" if type(images) is int else "")
        )
    if provenance:
        saved_with = provenance.get("keras_version")
        if saved_with and saved_with != keras.__version__:
            print(
                f"[WARNING] model saved with Keras {saved_with}, running Keras {keras.__version__}",
                file=sys.stderr,
            )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start_tensorflow(args.debug)
    safety.MAX_PIXELS = args.max_pixels
    safety.check_paths(
        {
            "--output": args.output,
            "--csv": args.csv,
            "--confusion": args.confusion,
            "--explain-dir": args.explain_dir,
        },
        {"--model": args.model, "--images": args.images},
    )
    if args.explain_dir:
        check_explain_dir(args)
    safety.check_output_file(args.output, "--output", MONTAGE_SUFFIXES)
    if args.csv:
        safety.check_output_file(args.csv, "--csv")
    if args.confusion:
        safety.check_output_file(args.confusion, "--confusion", safety.figure_suffixes())
    paths = choose_samples(gather_images(args.images), args.samples, args.seed)

    import cv2
    import keras

    from pyimagesearch.calibration import temperature_of
    from pyimagesearch.data import warn_skipped
    from pyimagesearch.montage import build_montage, labelled_tile, show_montage
    from pyimagesearch.predict import choose_runtime, iter_predictions, make_predictor
    from pyimagesearch.serialization import load_model

    print("[INFO] loading pre-trained network...")
    model, metadata = load_model(args.model)
    describe(metadata)
    class_names = metadata["class_names"]
    recipe = metadata["preprocessing"]
    from pyimagesearch.evaluation import choose_positive

    positive = choose_positive(class_names, args.positive_class or metadata.get("positive_class"))

    batches = -(-len(paths) // args.batch_size)
    runtime = choose_runtime(args.runtime, len(paths))
    if runtime == "openvino":
        print(f"[INFO] compiling the network with OpenVINO ({args.precision})...")
    # Every probability below (CSV, montage, report, confident errors) is calibrated when
    # the model stores a temperature: it is applied inside the predictor.
    predict = make_predictor(model, args.precision, batches, runtime, temperature_of(metadata))
    print(f"[INFO] classifying {len(paths)} images...")
    progress = keras.utils.Progbar(len(paths), unit_name="image") if len(paths) > 256 else None
    kept, tiles, truths, scores = [], [], [], []
    # The CSV goes to a temporary file renamed over --csv only when the run succeeds.
    with contextlib.ExitStack() as outputs:
        writer = None
        if args.csv:
            csv_file = outputs.enter_context(
                open(outputs.enter_context(safety.replacing(args.csv)), "w", newline="")
            )
            writer = csv.writer(csv_file)
            writer.writerow(["path", "label", *[f"p_{name}" for name in class_names]])
        for indices, probabilities in iter_predictions(predict, paths, recipe, args.batch_size):
            for index, row in zip(indices, probabilities, strict=True):
                path = paths[index]
                label = class_names[int(row.argmax())]
                parent = Path(path).parent.name
                true_label = parent if parent in class_names else None
                kept.append(index)
                truths.append(true_label)
                scores.append(row)
                if writer:
                    writer.writerow([path, label, *[f"{p:.6f}" for p in row]])
                if len(tiles) < MONTAGE_TILES:
                    tiles.append((path, label, float(row.max()), true_label))
            if progress:
                progress.add(len(indices))

        import numpy as np

        warn_skipped(paths, np.asarray(kept, dtype="int64"))
        if not kept:
            raise UserError("none of the images could be read")
    if args.csv:
        print(f"[INFO] predictions written to '{args.csv}'")

    known = [i for i, truth in enumerate(truths) if truth is not None]
    if known:
        from pyimagesearch.evaluation import print_report

        labels = np.asarray([class_names.index(truths[i]) for i in known])
        known_probabilities = np.stack([scores[i] for i in known])
        print_report(
            [paths[kept[i]] for i in known], labels, known_probabilities, class_names,
            positive=positive,
        )  # fmt: skip
        if args.confusion:
            from pyimagesearch.plots import plot_confusion_matrix

            predicted = known_probabilities.argmax(axis=1)
            with safety.replacing(args.confusion) as temporary:
                plot_confusion_matrix(
                    [class_names[i] for i in labels],
                    [class_names[i] for i in predicted],
                    class_names,
                    str(temporary),
                )
            print(f"[INFO] confusion matrix written to '{args.confusion}'")
    elif args.confusion:
        print("[INFO] no folder names a class, so there is no confusion matrix to draw")

    predicted = [int(row.argmax()) for row in scores]
    heat = {}
    if args.explain:
        from pyimagesearch.gradcam import explain_files

        print(f"[INFO] Grad-CAM of the {len(tiles)} montage tiles...")
        heat = explain_files(model, [t[0] for t in tiles], recipe, predicted[: len(tiles)])
    montage = build_montage(
        [
            labelled_tile(path, label, confidence, class_names, truth, heat.get(i))
            for i, (path, label, confidence, truth) in enumerate(tiles)
        ]
    )
    with safety.replacing(args.output) as temporary:
        if not cv2.imwrite(str(temporary), montage):
            raise OSError("OpenCV could not write the image")
    print(f"[INFO] montage written to '{args.output}'")
    if args.explain_dir:
        save_explanations(model, paths, kept, predicted, recipe, args.explain_dir)
    if args.show:
        show_montage(montage, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
