"""One palette of class colours for every picture the project draws and the web page.

Class K (in the model's sorted class order) gets ``PALETTE[K % len(PALETTE)]``. The first
two are red and green, so the malaria example keeps the tutorial's convention
(Parasitized sorts first: red; Uninfected: green) with no special case. Every colour is
bright enough to read as text on the dark label box, and far from ``WRONG``, the amber
frame that marks a wrong prediction.
"""

from __future__ import annotations

# RGB hex, as the web page uses them; ``bgr`` converts for OpenCV.
PALETTE: tuple[str, ...] = (
    "#ff3b3b",  # red
    "#2ee65a",  # green
    "#4d9dff",  # blue
    "#ff5cf0",  # magenta
    "#1fe0e0",  # cyan
    "#a77bff",  # violet
    "#ffa3b8",  # pink
    "#b9f56a",  # lime
    "#ffffff",  # white
    "#c48a5a",  # brown
    "#9ec9ff",  # sky blue
    "#3fb8a0",  # teal
)
WRONG = "#ffd700"  # amber: the frame and word of a wrong prediction
LABEL_BOX = "#000000"  # labels sit on a box of this colour, so they read over any image


def class_colours(class_names: list[str]) -> dict[str, str]:
    """Each class's hex colour, by its index in the model's class order."""
    return {name: PALETTE[index % len(PALETTE)] for index, name in enumerate(class_names)}


def bgr(hex_colour: str) -> tuple[int, int, int]:
    """'#rrggbb' as the (blue, green, red) tuple OpenCV draws with."""
    value = hex_colour.lstrip("#")
    red, green, blue = (int(value[i : i + 2], 16) for i in (0, 2, 4))
    return blue, green, red


def colour_for(label: str, class_names: list[str]) -> tuple[int, int, int]:
    """OpenCV colour of LABEL; a name outside CLASS_NAMES gets a neutral grey."""
    if label not in class_names:
        return 200, 200, 200
    return bgr(PALETTE[class_names.index(label) % len(PALETTE)])
