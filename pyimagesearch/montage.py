"""The labelled montage of classified images that load_model.py writes."""

from __future__ import annotations

import cv2
import imutils
import numpy as np
import tensorflow as tf

from pyimagesearch.preprocessing import decode_rgb

TILE = 128
# OpenCV colours are BGR. The tutorial's convention: red for the disease class.
COLOURS = {"Parasitized": (0, 0, 255), "Uninfected": (0, 255, 0)}
OTHER_COLOURS = [(255, 128, 0), (255, 0, 255), (0, 255, 255), (128, 128, 255)]
WRONG_COLOUR = (0, 215, 255)  # amber frame marks a wrong prediction


def colour_for(label: str, class_names: list[str]) -> tuple[int, int, int]:
    if label in COLOURS:
        return COLOURS[label]
    return OTHER_COLOURS[class_names.index(label) % len(OTHER_COLOURS)]


def labelled_tile(
    path: str, label: str, confidence: float, class_names: list[str], true_label: str | None
) -> np.ndarray:
    """One 128x128 display tile: the image as decoded for the model, with its label drawn."""
    rgb = decode_rgb(tf.io.read_file(path)).numpy()
    # Display only: the model's input was made by pyimagesearch.preprocessing.
    tile = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), (TILE, TILE))
    cv2.putText(
        tile, label, (3, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour_for(label, class_names), 2
    )
    cv2.putText(
        tile,
        f"{confidence:.1%}",
        (3, 34),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.45,
        colour_for(label, class_names),
        1,
    )
    if true_label is not None and true_label != label:
        cv2.rectangle(tile, (0, 0), (TILE - 1, TILE - 1), WRONG_COLOUR, 4)
        cv2.putText(tile, "WRONG", (3, TILE - 24), cv2.FONT_HERSHEY_SIMPLEX, 0.5, WRONG_COLOUR, 2)
        cv2.putText(
            tile, f"is {true_label}", (3, TILE - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.4, WRONG_COLOUR, 1
        )
    return tile


def build_montage(tiles: list[np.ndarray], grid: tuple[int, int] = (4, 4)) -> np.ndarray:
    """The first page of tiles as one image (imutils lays them out)."""
    return imutils.build_montages(tiles, (TILE, TILE), grid)[0]
