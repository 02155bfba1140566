"""What the project draws: one palette of distinct class colours (malaria keeps red and
green), labels on dark boxes that fit the tile, a montage of ten classes each in its own
colour, the audit's suspect tiles for any class names, and a confusion matrix of 20
classes whose names neither overlap nor leave the figure. Small synthetic images only."""

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pyimagesearch.core.palette import LABEL_BOX, PALETTE, WRONG, bgr, colour_for
from pyimagesearch.inference import montage
from pyimagesearch.training import plots

DIGITS = [f"digit_{k}" for k in range(10)]
WHITE = (255, 255, 255)


def rgb(hex_colour: str) -> tuple[int, int, int]:
    return bgr(hex_colour)[::-1]


def pixels_of(image: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """Mask of the pixels of IMAGE (BGR) that are exactly COLOUR (BGR)."""
    return np.all(image == np.array(colour, dtype=image.dtype), axis=-1)


def blend(image: np.ndarray, colour: tuple[int, int, int], tolerance: float = 6) -> np.ndarray:
    """Per pixel of IMAGE, the share of COLOUR in a blend of the label box and COLOUR
    (OpenCV anti-aliases text), or -1 where the pixel is no such blend."""
    box = np.array(bgr(LABEL_BOX), dtype=float)
    direction = np.array(colour, dtype=float) - box
    offset = image.astype(float) - box
    share = np.clip(offset @ direction / (direction @ direction), 0, 1)
    apart = np.linalg.norm(offset - share[..., None] * direction, axis=-1)
    return np.where(apart <= tolerance, share, -1.0)


def inked(image: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """Mask of the pixels of text in COLOUR: at least half COLOUR, the rest the box."""
    return blend(image, colour) >= 0.5


def write_png(path: Path, value: int | tuple[int, int, int], size: int = 60) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), value if isinstance(value, tuple) else (value,) * 3).save(path)
    return path


# --- the palette ------------------------------------------------------------------------


def test_palette_has_twelve_distinct_colours_far_from_each_other_and_from_wrong_amber():
    assert len(set(PALETTE)) >= 12
    for first, second in itertools.combinations(PALETTE, 2):
        assert math.dist(rgb(first), rgb(second)) >= 60, (first, second)
    for colour in PALETTE:
        assert math.dist(rgb(colour), rgb(WRONG)) >= 100, colour
        assert math.dist(rgb(colour), rgb(LABEL_BOX)) >= 150, colour  # readable on the box


def test_malaria_classes_keep_red_and_green():
    classes = ["Parasitized", "Uninfected"]
    blue, green, red = colour_for("Parasitized", classes)
    assert red >= 200 and green <= 100 and blue <= 100
    blue, green, red = colour_for("Uninfected", classes)
    assert green >= 200 and red <= 100 and blue <= 100


# --- labels -----------------------------------------------------------------------------


def test_a_label_on_a_white_image_sits_on_a_dark_box_that_holds_all_its_text():
    tile = np.full((128, 128, 3), 255, dtype=np.uint8)
    colour = colour_for("digit_1", DIGITS)
    left, top, right, bottom = montage.draw_label(tile, "digit_1 gy", (3, 3), colour, 0.5, 2)
    box = tile[top:bottom, left:right]
    assert (blend(box, colour) >= 0).all()  # no white background shows through the box
    assert pixels_of(box, bgr(LABEL_BOX)).mean() > 0.5 and inked(box, colour).sum() > 30
    outside = np.ones(tile.shape[:2], dtype=bool)
    outside[top:bottom, left:right] = False
    assert pixels_of(tile, WHITE)[outside].all()  # nothing spills out of the box


def text_touches(tile: np.ndarray, colours: list, background: tuple[int, int, int]) -> bool:
    """Whether a text pixel of one of COLOURS, inside the 3-pixel frame, has a pixel of
    the BACKGROUND image as its neighbour (instead of the label box)."""
    import cv2

    inner = (slice(3, -3), slice(3, -3))
    text = np.zeros(tile.shape[:2], dtype=bool)
    for colour in colours:
        text |= inked(tile, colour)
    shown = pixels_of(tile, background).astype(np.uint8)
    near = cv2.dilate(shown, np.ones((3, 3), np.uint8)).astype(bool)
    return bool((text & near)[inner].any())


@pytest.mark.parametrize("name", ["digit_1", "class_name_17", "a_rather_long_class_name_indeed"])
def test_every_line_of_a_wrong_prediction_reads_on_dark_boxes_inside_the_tile(
    tmp_path: Path, name: str
):
    path = write_png(tmp_path / "white.png", 255)
    names = [name, "digit_2"]
    tile = montage.labelled_tile(str(path), name, 0.873, names, "digit_2")
    colours = [colour_for(name, names), bgr(WRONG)]
    assert inked(tile, colours[0]).sum() > 20  # the label and its confidence
    assert inked(tile[4:-4, 4:-4], colours[1]).sum() > 20  # WRONG and "is digit_2"
    assert not text_touches(tile, colours, WHITE)
    assert pixels_of(tile[:, -3:], colours[1]).all()  # the amber frame is not covered
    right = montage.labelled_tile(str(path), name, 0.873, names, name)
    assert pixels_of(right[:, -3:], WHITE).all()  # the label ends 3 pixels from the edge


def test_a_long_class_name_shrinks_then_is_cut_to_fit():
    width = montage.TILE - 6
    text, scale, _ = montage.fit_label("Parasitized_ring_stage", 0.5, 2, width)
    assert text == "Parasitized_ring_stage" and montage.MIN_SCALE <= scale < 0.5
    long = "a_class_name_far_too_long_for_any_tile_at_all"
    text, scale, thickness = montage.fit_label(long, 0.5, 2, width)
    assert text.endswith("...") and long.startswith(text[:-3]) and len(text) > 10
    assert scale == montage.MIN_SCALE
    assert montage.cv2.getTextSize(text, montage.FONT, scale, thickness)[0][0] <= width
    assert montage.fit_label("Parasitized", 0.5, 2, width) == ("Parasitized", 0.5, 2)


# --- the montage ------------------------------------------------------------------------


def test_a_ten_class_montage_draws_each_label_in_its_own_palette_colour(tmp_path: Path):
    grey = [90 + 15 * k for k in range(10)]  # backgrounds, left out of the counts below
    paths = [write_png(tmp_path / name / f"{k}.png", grey[k]) for k, name in enumerate(DIGITS)]
    tiles = [
        montage.labelled_tile(str(path), name, 0.9, DIGITS, name)
        for path, name in zip(paths, DIGITS, strict=True)
    ]
    page = montage.build_montage(tiles)
    colours = [colour_for(name, DIGITS) for name in DIGITS]
    assert len(set(colours)) == 10
    for k, colour in enumerate(colours):
        row, column = divmod(k, 4)
        tile = page[row * 128 : (row + 1) * 128, column * 128 : (column + 1) * 128]
        drawn = ~pixels_of(tile, (grey[k],) * 3)
        assert (inked(tile, colour) & drawn).sum() > 30, DIGITS[k]
        for other in colours[:k] + colours[k + 1 :]:
            assert not (inked(tile, other) & drawn).any(), (DIGITS[k], other)


# --- the audit's suspect tiles ----------------------------------------------------------


def test_suspect_tiles_draw_any_class_names(tmp_path: Path):
    from pyimagesearch.audit import suspect_tile

    lilac = (220, 180, 200)  # a light cell (RGB)
    path = write_png(tmp_path / "digit_3" / "cell.png", lilac)
    row = {"rank": 1, "given_label": "digit_3", "suggested_label": "digit_1",
           "patient": "P12", "fold": 2}  # fmt: skip
    tile = suspect_tile(row, path, None, 0.97, False, DIGITS)
    assert tile.shape == (128, 128, 3)
    suggested, wrong = colour_for("digit_1", DIGITS), bgr(WRONG)
    assert inked(tile[:40], suggested).sum() > 20 and inked(tile[:40], wrong).sum() > 20
    assert inked(tile[-20:], WHITE).sum() > 20  # patient and fold
    assert not text_touches(tile, [suggested, wrong, WHITE], lilac[::-1])
    heat = np.linspace(0, 1, 32 * 32, dtype="float32").reshape(32, 32)
    assert suspect_tile(row, path, heat, 0.97, True, DIGITS).shape == (128, 256, 3)
    assert suspect_tile(row, path, None, 0.97, True, DIGITS).shape == (128, 256, 3)


# --- the confusion matrix ---------------------------------------------------------------


def test_a_confusion_matrix_of_20_long_names_keeps_its_labels_apart_and_inside(
    tmp_path: Path, monkeypatch
):
    names = [f"class_name_{k}" for k in range(20)]
    rng = np.random.default_rng(0)
    true = [names[k] for k in rng.integers(0, 20, 600)]
    predicted = [t if rng.random() < 0.7 else names[rng.integers(0, 20)] for t in true]
    figures = []
    monkeypatch.setattr(plots.plt, "close", figures.append)  # keep the figure to measure
    plots.plot_confusion_matrix(true, predicted, names, str(tmp_path / "confusion.png"))
    assert (tmp_path / "confusion.png").is_file()
    (figure,) = figures
    renderer = figure.canvas.get_renderer()
    (axis,) = figure.axes
    inside = figure.bbox
    for labels, horizontal in ((axis.get_xticklabels(), True), (axis.get_yticklabels(), False)):
        assert [label.get_text() for label in labels] == names
        boxes = sorted(
            (label.get_window_extent(renderer) for label in labels),
            key=lambda box: box.x0 if horizontal else box.y0,
        )
        for first, second in itertools.pairwise(boxes):
            assert not first.overlaps(second), (first, second)
        for box in boxes:
            assert inside.x0 <= box.x0 and box.x1 <= inside.x1, box
            assert inside.y0 <= box.y0 and box.y1 <= inside.y1, box
    assert len(axis.texts) == 400  # the counts, one per cell
    plots.plt.close(figure)
