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

The network runs on the OpenVINO copy that save_model.py stores in the model file,
without importing TensorFlow (about a second for 16 images, where Keras alone takes
four); a file without one (or whose copy does not match its weights) is loaded by
Keras instead, with one [INFO] line saying why (--runtime tensorflow forces Keras).
Large jobs (--samples 0 on a folder of thousands) stream through the network in
batches while threads decode the next ones.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pyimagesearch import options
from pyimagesearch.core import modelfile, preprocessing, report, safety
from pyimagesearch.core.errors import UserError, run_command
from pyimagesearch.inference import predict

MONTAGE_TILES = 16
SPLIT_NAMES = ("training", "validation", "testing", "train", "val", "test")
MONTAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
EXPLAIN_MARKER = "GRADCAM.txt"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = options.command_parser(__doc__)
    parser.add_argument(
        "-i",
        "--images",
        required=True,
        nargs="+",
        help="folder(s) searched recursively, and/or image files",
    )
    parser.add_argument(
        "-m",
        "--model",
        required=True,
        help="model file written by save_model.py (or by Keras elsewhere, with --classes)",
    )
    parser.add_argument(
        "--split",
        choices=SPLIT_NAMES,
        help="classify exactly this split of the folder the model was trained on (--images "
        "names that folder): its split sub-folder, or the files a flat folder's recorded "
        "split drew; refused when the folder no longer holds the files it was trained on",
    )
    parser.add_argument(
        "-n",
        "--samples",
        type=options.count,
        help="how many images to classify, drawn at random (default: 16, or every image of "
        "--split; 0 = every image)",
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
    options.add_adoption(parser)
    options.add_seed(parser, None, "seed of the random sample")
    options.add_positive_class(parser)
    options.add_max_pixels(parser)
    options.add_batch_size(parser, 64, "images per batch")
    options.add_precision(parser, "inference")
    options.add_expect_sha256(parser)
    options.add_runtime(
        parser,
        "a file without one is loaded by Keras (then OpenVINO for 1,000 images or more on a "
        "machine without a GPU)",
    )
    options.add_debug(parser)
    args = parser.parse_args(argv)
    args.explain = args.explain or args.explain_dir is not None
    if args.samples is None:
        args.samples = 0 if args.split else 16
    if args.split and len(args.images) != 1:
        parser.error("--split takes one --images folder: the one the model was trained on")
    return args


def split_images(folder: str, split: str, model: str, metadata: dict, max_pixels: int) -> list[str]:
    """The files of SPLIT of FOLDER, as the model's training drew them: a split folder's
    sub-folder, or the recorded split of a flat folder, redrawn from the same scan and
    refused when the folder's files are no longer those it was trained on."""
    from pyimagesearch.core.splitting import SPLIT_FOLDERS, scan_classes, split_files

    name = next(key for key, names in SPLIT_FOLDERS.items() if split in names)
    provenance = metadata.get("provenance") or {}
    layout = provenance.get("layout") if isinstance(provenance, dict) else None
    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"--images '{folder}' is not a folder")
    if not isinstance(layout, dict) or layout.get("layout") not in ("split", "flat"):
        raise UserError(f"'{model}' records no split to classify")
    if layout["layout"] == "split":
        sub = (layout.get("folders") or {}).get(name)
        if not isinstance(sub, str) or not (root / sub).is_dir():
            raise UserError(f"'{folder}' has no {name} folder '{sub}' as the model's training had")
        return gather_images([str(root / sub)], max_pixels)
    if "files_sha256" not in layout:
        raise UserError(
            "the model was trained before splits were recorded; retrain it to use --split"
        )
    files = scan_classes(root, max_pixels)
    if files.class_names != metadata["class_names"] or files.digest() != layout["files_sha256"]:
        raise UserError(
            f"'{folder}' no longer holds the files the model was trained on ({len(files.paths)} "
            f"images of classes {files.class_names} now, {layout.get('images')} of "
            f"{metadata['class_names']} then): its {name} split cannot be drawn again"
        )
    index = split_files(
        files, layout["fractions"], int(layout["split_seed"]), layout.get("group_pattern")
    )[("training", "validation", "testing").index(name)]
    report.info(f"the {name} split of '{folder}' as training drew it: {len(index)} images")
    return [files.full(i) for i in index]


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
    model,
    paths: list[str],
    kept: list[int],
    predicted: list[int],
    recipe: dict,
    args: argparse.Namespace,
) -> None:
    """One Grad-CAM overlay PNG per classified image (of its predicted class) in FOLDER."""
    import cv2

    from pyimagesearch.inference.gradcam import iter_heatmaps
    from pyimagesearch.inference.montage import cell_tile

    chosen = [paths[i] for i in kept]
    folder, bound = args.explain_dir, args.max_pixels
    names: set[str] = set()
    report.info(f"saving Grad-CAM overlays of {len(chosen)} images to '{folder}'...")
    with safety.staged_folder(folder) as staging:
        for index, heatmap in iter_heatmaps(model, chosen, recipe, predicted, max_pixels=bound):
            stem, number = Path(chosen[index]).stem, 1
            name = f"{stem}.png"
            while name in names:  # same file name in two folders
                number += 1
                name = f"{stem}-{number}.png"
            names.add(name)
            if not cv2.imwrite(str(staging / name), cell_tile(chosen[index], heatmap, bound)):
                raise OSError("OpenCV could not write an overlay")
        (staging / EXPLAIN_MARKER).write_text(
            "Grad-CAM overlays written by load_model.py --explain-dir (of the predicted "
            "class); a later --explain-dir may replace this folder.\n"
        )
    report.info(f"{len(names)} Grad-CAM overlays written to '{folder}'")


def gather_images(sources: list[str], max_pixels: int) -> list[str]:
    from pyimagesearch.core.splitting import list_images

    paths: list[str] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            paths.extend(list_images(path, max_pixels))
        elif path.exists():  # a FIFO or device given by name is skipped with a warning
            paths.extend(safety.usable_images([str(path)], max_pixels=max_pixels))
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
        report.info(f"--samples {samples} is more than the {len(paths)} images found; using all")
        return paths
    return random.Random(seed).sample(paths, samples)


def describe(engine, sha256: str) -> None:
    """What was loaded, in one or two lines (and a warning when Keras versions differ):
    which file by its SHA-256 (short), its classes and, when saved, how it was trained."""
    metadata = engine.metadata
    provenance = metadata.get("provenance", {})
    summary = (
        f"model: SHA-256 {sha256[: modelfile.SHORT_SHA256]}, classes {metadata['class_names']}"
    )
    if provenance:
        metrics = provenance.get("final_metrics", {})
        accuracy = metrics.get("test_accuracy")
        trained = "epochs" in provenance  # an adopted file was trained elsewhere
        parent = modelfile.lineage(provenance)
        summary += (
            f", saved {provenance.get('saved_at', '?')} with Keras "
            f"{provenance.get('keras_version', '?')}"
            + (f", {provenance['epochs']} epochs, seed {provenance.get('seed')}" if trained else "")
            + (f", test accuracy {accuracy:.4f}" if accuracy is not None else "")
            + (f", {parent}" if parent else "")
        )
    report.info(summary)
    if isinstance(provenance, dict) and provenance.get("stain") == "grey-world":
        report.info(
            "stain normalisation: grey-world, a layer of the network (each cell's "
            "colour cast taken out; plain Keras loads it after "
            "`import pyimagesearch.network.stain`)"
        )
    ensemble = provenance.get("ensemble") if isinstance(provenance, dict) else None
    if isinstance(ensemble, dict) and isinstance(ensemble.get("members"), list):
        report.info(
            f"ensemble: the mean of {len(ensemble['members'])} models' calibrated "
            "probabilities (python -m pyimagesearch.crossval --ensemble)"
        )
    if "calibration" in metadata:
        calibration = metadata["calibration"]
        images = calibration.get("images")
        report.info(
            f"probabilities calibrated with temperature {calibration['temperature']}"
            + (f" (fitted on {images} validation images)" if type(images) is int else "")
        )
    from pyimagesearch.core.evaluation import not_learnt_warning

    if isinstance(provenance, dict) and (warning := not_learnt_warning(provenance.get("learning"))):
        report.warning(warning)
    keras = sys.modules.get("keras")  # only on the Keras path: the fast path needs none
    saved_with = provenance.get("keras_version") if provenance else None
    if keras is not None and saved_with and saved_with != keras.__version__:
        report.warning(f"model saved with Keras {saved_with}, running Keras {keras.__version__}")
    report.info(f"running on {engine.description}")


def check_outputs(args: argparse.Namespace) -> None:
    """Every output path is judged before any work (docs/reliability.md)."""
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


@dataclass
class Results:
    """Per classified image (in classification order): its index into the paths, its
    probabilities, and its true class when the parent folder names one."""

    kept: list[int] = field(default_factory=list)
    scores: list = field(default_factory=list)
    truths: list[str | None] = field(default_factory=list)


def classify(
    engine, paths: list[str], batch_size: int, csv_path: str | None, max_pixels: int
) -> Results:
    """Every image through the engine, the CSV written as rows arrive (renamed over
    --csv only when the run succeeds), unreadable files named."""
    from tqdm import tqdm

    from pyimagesearch.inference.predict import iter_predictions

    class_names = engine.metadata["class_names"]
    recipe = engine.metadata["preprocessing"]
    results, skipped = Results(), []
    report.info(f"classifying {len(paths)} images...")
    progress = tqdm(total=len(paths), unit="image", disable=len(paths) <= 256)
    with contextlib.ExitStack() as outputs:
        writer = None
        if csv_path:
            handle = outputs.enter_context(safety.open_replacing(csv_path, "w", newline=""))
            writer = csv.writer(handle)
            header = ["path", "label", *[f"p_{name}" for name in class_names]]
            writer.writerow(safety.csv_row(header))
        predictions = iter_predictions(
            engine.predict, paths, recipe, batch_size, skipped, max_pixels
        )
        for indices, probabilities in predictions:
            for index, row in zip(indices, probabilities, strict=True):
                # The nearest folder that names a class: a nested image (Stripes/more/x.png)
                # counts for the class of its top folder.
                parent = next(
                    (p for p in Path(paths[index]).parent.parts[::-1] if p in class_names), None
                )
                results.kept.append(int(index))
                results.scores.append(row)
                results.truths.append(parent if parent in class_names else None)
                if writer:
                    label = class_names[int(row.argmax())]
                    cells = [paths[index], label, *[f"{p:.6f}" for p in row]]
                    writer.writerow(safety.csv_row(cells))
            progress.update(len(indices))
        progress.close()
        preprocessing.warn_skipped(paths, results.kept, dict(skipped))
        if not results.kept:
            raise UserError("none of the images could be read")
    if csv_path:
        report.info(f"predictions written to '{csv_path}'")
    return results


def report_scores(args: argparse.Namespace, engine, paths: list[str], results: Results) -> None:
    """The report and confusion matrix over the images whose folder names their class."""
    import numpy as np

    from pyimagesearch.core.evaluation import choose_positive, print_report

    class_names = engine.metadata["class_names"]
    known = [i for i, truth in enumerate(results.truths) if truth is not None]
    if not known:
        if args.confusion:
            report.info("no folder names a class, so there is no confusion matrix to draw")
        return
    requested = args.positive_class or engine.metadata.get("positive_class")
    labels = np.asarray([class_names.index(results.truths[i]) for i in known])
    probabilities = np.stack([results.scores[i] for i in known])
    shown = [paths[results.kept[i]] for i in known]
    positive = choose_positive(class_names, requested)
    print_report(shown, labels, probabilities, class_names, positive=positive)
    if args.confusion:
        from pyimagesearch.training.plots import plot_confusion_matrix

        predicted = probabilities.argmax(axis=1)
        with safety.replacing(args.confusion) as temporary:
            plot_confusion_matrix(
                [class_names[i] for i in labels],
                [class_names[i] for i in predicted],
                class_names,
                str(temporary),
            )
        report.info(f"confusion matrix written to '{args.confusion}'")


def draw_montage(args: argparse.Namespace, engine, paths: list[str], results: Results):
    """16 classified images (a seeded sample) as labelled tiles (Grad-CAM under --explain)."""
    import cv2

    from pyimagesearch.inference.montage import build_montage, labelled_tile

    class_names = engine.metadata["class_names"]
    # A seeded sample of the classified images (with -n 0 the first 16 in sorted order
    # would all be one class), in classification order.
    chosen = range(len(results.kept))
    if len(chosen) > MONTAGE_TILES:
        chosen = sorted(random.Random(args.seed).sample(chosen, MONTAGE_TILES))
    shown = [results.kept[n] for n in chosen]
    predicted = [int(results.scores[n].argmax()) for n in chosen]
    heat = {}
    if args.explain:
        from pyimagesearch.inference.gradcam import iter_heatmaps

        report.info(f"Grad-CAM of the {len(shown)} montage tiles...")
        recipe = engine.metadata["preprocessing"]
        shown_paths = [paths[i] for i in shown]
        heat = dict(
            iter_heatmaps(engine.model, shown_paths, recipe, predicted, max_pixels=args.max_pixels)
        )
    montage = build_montage(
        [
            labelled_tile(
                paths[index],
                class_names[predicted[k]],
                float(results.scores[n].max()),
                class_names,
                results.truths[n],
                heat.get(k),
                args.max_pixels,
            )
            for k, (n, index) in enumerate(zip(chosen, shown, strict=True))
        ]
    )
    with safety.replacing(args.output) as temporary:
        if not cv2.imwrite(str(temporary), montage):
            raise OSError("OpenCV could not write the image")
    report.info(f"montage written to '{args.output}'")
    return montage


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_outputs(args)
    if args.split:
        from pyimagesearch.core.modelfile import read_metadata

        metadata = read_metadata(args.model) or {}
        found = split_images(args.images[0], args.split, args.model, metadata, args.max_pixels)
    else:
        found = gather_images(args.images, args.max_pixels)
    paths = choose_samples(found, args.samples, args.seed)

    sha256 = modelfile.check_sha256(args.model, args.expect_sha256)
    report.info("loading pre-trained network...")
    engine = predict.load_engine(
        args.model,
        args.runtime,
        args.precision,
        images=len(paths),
        batch_size=min(args.batch_size, len(paths)),
        need_keras=args.explain,
        debug=args.debug,
        adoption=options.adoption(args),
    )
    describe(engine, sha256)

    results = classify(engine, paths, args.batch_size, args.csv, args.max_pixels)
    report_scores(args, engine, paths, results)
    montage = draw_montage(args, engine, paths, results)

    if args.explain_dir:
        predicted = [int(row.argmax()) for row in results.scores]
        recipe = engine.metadata["preprocessing"]
        save_explanations(engine.model, paths, results.kept, predicted, recipe, args)
    if args.show:
        from pyimagesearch.inference.montage import show_montage

        show_montage(montage, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
