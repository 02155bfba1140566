"""python -m studies.stain_spread --source DIR [--cells 15]

How much the colour of the cells differs between patients' slides: the measurement
behind the ranges of the ``+colour`` augmentation (``pyimagesearch/network/augmentation.py``).

For each patient (``splitting.NIH_GROUP_PATTERN``), CELLS cells drawn with a fixed seed;
in each cell the pixels that are not the black background (brightest channel above 0.1)
give a mean hue (weighted by saturation, as the hue of a grey pixel means nothing), a
mean saturation and a mean value (HSV, OpenCV). Printed: the spread of the per-patient
means, as quantiles around the middle patient (hue as an angle around the circular mean).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

import cv2
import numpy as np

from pyimagesearch.build_dataset import CLASSES, find_class_root, list_class_files
from pyimagesearch.core.errors import UserError, run_command
from pyimagesearch.core.splitting import NIH_GROUP_PATTERN, groups_for


def cell_colour(path: Path) -> tuple[float, float, float]:
    """(hue in degrees, saturation, value) of the cell's pixels, background left out."""
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB).astype("float32") / 255
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)  # hue in degrees, saturation and value in [0, 1]
    cell = rgb.max(axis=2) > 0.1
    hue, saturation, value = np.deg2rad(hsv[..., 0][cell]), hsv[..., 1][cell], hsv[..., 2][cell]
    mean_hue = np.angle((saturation * np.exp(1j * hue)).mean(), deg=True)
    return float(mean_hue), float(saturation.mean()), float(value.mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.stain_spread", description=__doc__)
    parser.add_argument("--source", default=os.environ.get("MALARIA_SOURCE"))
    parser.add_argument("--cells", type=int, default=15, help="cells per patient (default 15)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    args = parser.parse_args(argv)
    if not args.source:
        raise UserError("give --source (the NIH cell images) or set MALARIA_SOURCE")
    root = find_class_root(Path(args.source))
    files = list_class_files(root)
    paths = [root / name / f for name in CLASSES for f in files[name]]
    by_patient: dict[str, list[Path]] = {}
    patients = groups_for([p.name for p in paths], NIH_GROUP_PATTERN)
    for path, patient in zip(paths, patients, strict=True):
        by_patient.setdefault(patient, []).append(path)
    print(f"[INFO] {len(paths)} images of {len(by_patient)} patients, {args.cells} cells each")
    means = np.array(
        [
            np.mean(
                [
                    cell_colour(p)
                    for p in random.Random(0).sample(cells, min(args.cells, len(cells)))
                ],
                axis=0,
            )  # fmt: skip
            for _, cells in sorted(by_patient.items())
        ]
    )
    hue = np.deg2rad(means[:, 0])
    turned = np.rad2deg(np.angle(np.exp(1j * (hue - np.angle(np.exp(1j * hue).mean())))))
    quantiles = (5, 25, 75, 95)
    print("[INFO] per-patient mean, quantiles 5/25/75/95 around the middle patient:")
    print("[INFO] hue (degrees from the circular mean): "
          + " / ".join(f"{np.percentile(turned, q):+.0f}" for q in quantiles))  # fmt: skip
    for column, name in ((1, "saturation"), (2, "value")):
        ratio = means[:, column] / np.median(means[:, column])
        print(f"[INFO] {name} (x the median patient's): "
              + " / ".join(f"{np.percentile(ratio, q):.2f}" for q in quantiles))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
