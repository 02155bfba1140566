"""Does test-time augmentation help on unseen patients? Measured on a cross-validation run.

    python -m studies.tta --cv cv [--images DIR]

For each finished fold of a ``pyimagesearch.crossval`` run, the fold's saved model
classifies its held-out patients' images twice: as ``load_model.py`` does (one view),
and as the mean probability over the 8 orientations of each image (4 rotations, each
mirrored; the full recipe trains with any orientation, and a cell has no "up"). Both
use the model's own preprocessing and stored temperature; the views are turned after
``preprocessing.load_image``, so nothing new resizes or scales. Prints cell accuracy and
AUC per fold and their means, and the time of each pass (decode included).
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np


def orientations(images):
    """The 8 views of a batch: rotations by 0/90/180/270 degrees, each also mirrored."""
    import tensorflow as tf

    views = []
    for turns in range(4):
        turned = tf.image.rot90(images, k=turns)
        views += [turned, tf.reverse(turned, axis=[2])]
    return views


def classify(model, metadata: dict, paths: list[str], views: bool) -> np.ndarray:
    from pyimagesearch.core.calibration import temperature_of
    from pyimagesearch.inference.predict import iter_predictions, make_predictor

    predictor = make_predictor(
        model, temperature=temperature_of(metadata), recipe=metadata["preprocessing"]
    )
    if views:
        single = predictor

        def predictor(images):
            return np.mean([single(view) for view in orientations(images)], axis=0)

    kept, probabilities = [], []
    for indices, batch in iter_predictions(predictor, paths, metadata["preprocessing"], 256):
        kept.append(indices)
        probabilities.append(batch)
    assert len(np.concatenate(kept)) == len(paths), "an image did not decode"
    return np.concatenate(probabilities)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cv", required=True, help="a crossval --output folder")
    parser.add_argument(
        "--images", help="folder of the images, where oof paths are relative or moved"
    )
    args = parser.parse_args()
    from sklearn.metrics import roc_auc_score

    from bench.measure import describe_machine
    from pyimagesearch.training.serialization import load_model

    cv = Path(args.cv)
    print(f"[INFO] {describe_machine()}")
    print("| fold | images | accuracy, 1 view | accuracy, 8 views | AUC, 1 view | AUC, 8 views "
          "| time, 1 view | time, 8 views |")  # fmt: skip
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    table = []
    for result in sorted(cv.glob("fold-*/result.json")):
        folder = result.parent
        with open(folder / "predictions.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        model, metadata = load_model(folder / "model.keras")
        classes = metadata["class_names"]
        paths = [
            str(Path(args.images) / r["label"] / r["file"]) if args.images else r["path"]
            for r in rows
        ]
        labels = np.array([classes.index(r["label"]) for r in rows])
        positive = classes.index("Parasitized") if "Parasitized" in classes else 0
        line = []
        for views in (False, True):
            start = time.perf_counter()
            probabilities = classify(model, metadata, paths, views)
            seconds = time.perf_counter() - start
            accuracy = float((probabilities.argmax(axis=1) == labels).mean())
            auc = roc_auc_score(labels == positive, probabilities[:, positive])
            line.append((accuracy, auc, seconds))
        table.append(line)
        (a1, u1, t1), (a8, u8, t8) = line
        print(f"| {folder.name[5:]} | {len(rows)} | {a1:.4f} | {a8:.4f} | {u1:.4f} | {u8:.4f} "
              f"| {t1:.1f} s | {t8:.1f} s |", flush=True)  # fmt: skip
    values = np.array([[a for a, _, _ in line] + [u for _, u, _ in line] for line in table])
    means = [f"{m:.4f} +/- {s:.4f}" for m, s in zip(values.mean(0), values.std(0), strict=True)]
    print(f"| mean +/- std | | {' | '.join(means)} | | |")
    gain = values[:, 1] - values[:, 0]
    print(f"[INFO] 8 views minus 1 view, accuracy: {', '.join(f'{g:+.4f}' for g in gain)}")


if __name__ == "__main__":
    main()
