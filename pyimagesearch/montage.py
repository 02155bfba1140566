"""The labelled montage of classified images that load_model.py writes (and shows)."""

from __future__ import annotations

import os
import sys

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
# Backends that open windows, in matplotlib's own order of preference.
WINDOW_BACKENDS = ("macosx", "qtagg", "gtk4agg", "gtk3agg", "tkagg", "wxagg")


def colour_for(label: str, class_names: list[str]) -> tuple[int, int, int]:
    if label in COLOURS:
        return COLOURS[label]
    return OTHER_COLOURS[class_names.index(label) % len(OTHER_COLOURS)]


def cell_tile(path: str, heatmap: np.ndarray | None = None) -> np.ndarray:
    """The image as decoded for the model, as a 128x128 BGR display tile, with HEATMAP
    (a Grad-CAM map in [0, 1], see pyimagesearch.gradcam) blended on when given."""
    rgb = decode_rgb(tf.io.read_file(path)).numpy()
    # Display only: the model's input was made by pyimagesearch.preprocessing.
    tile = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), (TILE, TILE))
    if heatmap is not None:
        from pyimagesearch.gradcam import overlay

        tile = overlay(tile, heatmap)
    return tile


def labelled_tile(
    path: str,
    label: str,
    confidence: float,
    class_names: list[str],
    true_label: str | None,
    heatmap: np.ndarray | None = None,
) -> np.ndarray:
    """One 128x128 display tile: the image as decoded for the model (with its Grad-CAM
    HEATMAP when given), with its label drawn."""
    tile = cell_tile(path, heatmap)
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
    return build_pages(tiles, grid)[0]


def build_pages(tiles: list[np.ndarray], grid: tuple[int, int] = (4, 4)) -> list[np.ndarray]:
    """Every page of tiles (all of one size), GRID columns x rows each (imutils lays
    them out)."""
    height, width = tiles[0].shape[:2]
    return imutils.build_montages(tiles, (width, height), grid)


def window_backend() -> str | None:
    """Switch pyplot to a backend that opens windows and return its name, or None.

    $MPLBACKEND, when set, is the only one tried. pyplot's own choice is not used: plots.py
    pins Agg (files only) once imported, e.g. by --confusion."""
    import matplotlib.pyplot as plt
    from matplotlib.backends import BackendFilter, backend_registry

    files_only = backend_registry.list_builtin(BackendFilter.NON_INTERACTIVE)
    requested = os.environ.get("MPLBACKEND")
    for name in [requested] if requested else WINDOW_BACKENDS:
        if name.lower() in files_only:
            continue
        try:
            plt.switch_backend(name)
        except (ImportError, ValueError):  # toolkit not installed, or no display it can use
            continue
        return name
    return None


def show_montage(montage: np.ndarray, path: str) -> None:
    """Open the montage in a matplotlib window (OpenCV here is the headless build, which
    has none) until it is closed. Where no window can open, say so in one line and carry
    on: the montage is already on disk at PATH."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        print(
            "[INFO] no display (DISPLAY and WAYLAND_DISPLAY are unset), so --show cannot "
            f"open a window; the montage is in '{path}'"
        )
        return
    if window_backend() is None:
        print(
            "[INFO] matplotlib found no backend that opens windows here (none installed, "
            f"e.g. tkinter or PyQt, or the display refused it); the montage is in '{path}'"
        )
        return
    import matplotlib.pyplot as plt

    try:
        height, width = montage.shape[:2]
        figure = plt.figure("Results", figsize=(width / 100, height / 100), dpi=100)
        axis = figure.add_axes((0, 0, 1, 1))
        axis.imshow(montage[..., ::-1])  # OpenCV's BGR to matplotlib's RGB
        axis.set_axis_off()
        plt.show()
    except Exception as error:  # a toolkit failing at run time must not fail the command
        print(f"[INFO] the window could not open ({error}); the montage is in '{path}'")
