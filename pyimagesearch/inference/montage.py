"""The labelled montage of classified images that load_model.py writes (and shows)."""

from __future__ import annotations

import os
import sys

import cv2
import imutils
import numpy as np

from pyimagesearch.core import report
from pyimagesearch.core.palette import LABEL_BOX, WRONG, bgr, colour_for
from pyimagesearch.core.preprocessing import decode_rgb

TILE = 128
# Labels: OpenCV's plain font, each line on a filled box of palette.LABEL_BOX, so it reads
# over light cells and over Grad-CAM heat alike.
FONT = cv2.FONT_HERSHEY_SIMPLEX
PAD = 2  # pixels of box around the text, left and right; 1 above and below
MIN_SCALE = 0.3  # a label shrinks to this font scale to fit, then is cut with "..."
# Backends that open windows, in matplotlib's own order of preference.
WINDOW_BACKENDS = ("macosx", "qtagg", "gtk4agg", "gtk3agg", "tkagg", "wxagg")


def label_height(scale: float, thickness: int) -> int:
    """Height of a label's box at SCALE: the tallest letters above the baseline and the
    deepest (g, y, _) below it, so every line of one style has one height."""
    (_, above), below = cv2.getTextSize("Wg_|", FONT, scale, thickness)
    return above + below + 2


def fit_label(text: str, scale: float, thickness: int, width: int) -> tuple[str, float, int]:
    """TEXT, font scale and thickness that fit WIDTH pixels (box included): the scale
    shrinks (down to MIN_SCALE, thinner strokes below 0.4), then the text is cut and
    ends in "..."; what fits already is left as it is."""

    def fits(candidate: str, size: float, stroke: int) -> bool:
        return cv2.getTextSize(candidate, FONT, size, stroke)[0][0] + 2 * PAD <= width

    if fits(text, scale, thickness):
        return text, scale, thickness
    text_width = cv2.getTextSize(text, FONT, scale, thickness)[0][0]
    scale = max(MIN_SCALE, round(scale * (width - 2 * PAD) / text_width - 0.005, 2))
    thickness = 1 if scale < 0.4 else thickness
    while not fits(text, scale, thickness) and scale > MIN_SCALE:  # rounding
        scale = max(MIN_SCALE, scale - 0.01)
    if fits(text, scale, thickness):
        return text, scale, thickness
    for end in range(len(text) - 1, 0, -1):
        if fits(text[:end] + "...", scale, thickness):
            return text[:end] + "...", scale, thickness
    return "...", scale, thickness


def draw_label(
    tile: np.ndarray,
    text: str,
    origin: tuple[int, int],
    colour: tuple[int, int, int],
    scale: float = 0.45,
    thickness: int = 1,
) -> tuple[int, int, int, int]:
    """Draw TEXT in COLOUR (BGR) on a filled LABEL_BOX box whose top-left corner is ORIGIN,
    in place, shrunk or cut (see fit_label) to end as far from the tile's right edge as
    ORIGIN is from its left. The box is label_height(SCALE, THICKNESS) high even when the
    text shrinks, so stacked lines stay joined. Returns the box as (left, top, right,
    bottom), the right and bottom edges exclusive."""
    left, top = origin
    height = label_height(scale, thickness)
    text, scale, thickness = fit_label(text, scale, thickness, tile.shape[1] - 2 * left)
    (width, above), _ = cv2.getTextSize(text, FONT, scale, thickness)
    box = (left, top, left + width + 2 * PAD, top + height)
    cv2.rectangle(tile, box[:2], (box[2] - 1, box[3] - 1), bgr(LABEL_BOX), cv2.FILLED)
    baseline = top + (height - label_height(scale, thickness)) // 2 + 1 + above
    cv2.putText(tile, text, (left + PAD, baseline), FONT, scale, colour, thickness, cv2.LINE_AA)
    return box


Line = tuple[str, tuple[int, int, int], float, int]  # text, BGR colour, scale, thickness


def draw_labels(tile: np.ndarray, lines: list[Line], bottom: bool = False, margin: int = 3) -> None:
    """Draw LINES (each a draw_label) one under the other from the top left of the tile,
    or with BOTTOM, so that the last ends at the bottom edge; MARGIN pixels from the edges."""
    heights = [label_height(scale, thickness) for _, _, scale, thickness in lines]
    top = tile.shape[0] - margin - sum(heights) if bottom else margin
    for (text, colour, scale, thickness), height in zip(lines, heights, strict=True):
        draw_label(tile, text, (margin, top), colour, scale, thickness)
        top += height


def cell_tile(
    path: str, heatmap: np.ndarray | None = None, max_pixels: int | None = None
) -> np.ndarray:
    """The image as decoded for the model, as a 128x128 BGR display tile, with HEATMAP
    (a Grad-CAM map in [0, 1], see pyimagesearch.inference.gradcam) blended on when given."""
    rgb = decode_rgb(path, max_pixels)
    # Display only: the model's input was made by pyimagesearch.core.preprocessing.
    tile = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), (TILE, TILE))
    if heatmap is not None:
        from pyimagesearch.inference.gradcam import overlay

        tile = overlay(tile, heatmap)
    return tile


def labelled_tile(
    path: str,
    label: str,
    confidence: float,
    class_names: list[str],
    true_label: str | None,
    heatmap: np.ndarray | None = None,
    max_pixels: int | None = None,
) -> np.ndarray:
    """One 128x128 display tile: the image as decoded for the model (with its Grad-CAM
    HEATMAP when given), with its label and confidence in the class's palette colour and,
    when TRUE_LABEL differs, an amber frame, WRONG and the true class; every line on a
    dark box, inside the frame."""
    tile = cell_tile(path, heatmap, max_pixels)
    colour = colour_for(label, class_names)
    draw_labels(tile, [(label, colour, 0.5, 2), (f"{confidence:.1%}", colour, 0.45, 1)])
    if true_label is not None and true_label != label:
        wrong = bgr(WRONG)
        cv2.rectangle(tile, (0, 0), (TILE - 1, TILE - 1), wrong, 4)  # 3 px in from each edge
        draw_labels(tile, [("WRONG", wrong, 0.5, 2), (f"is {true_label}", wrong, 0.4, 1)], True)
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
        report.info(
            "no display (DISPLAY and WAYLAND_DISPLAY are unset), so --show cannot "
            f"open a window; the montage is in '{path}'"
        )
        return
    if window_backend() is None:
        report.info(
            "matplotlib found no backend that opens windows here (none installed, "
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
        report.info(f"the window could not open ({error}); the montage is in '{path}'")
