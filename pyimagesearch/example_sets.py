"""Non-malaria image sets made from data that a pip package ships: no download.

    python -m pyimagesearch.example_sets digits --output digits
    python -m pyimagesearch.example_sets zero-one --output zero-one

``digits``: scikit-learn's 1,797 handwritten digits (8x8, 16 grey levels, from the UCI
optical recognition set), written as 48x48 grey PNGs in one sub-folder per class,
``digit_0`` ... ``digit_9``: the "your own images" worked example of the README, a
flat folder of class sub-folders. ``zero-one``: the same images of 0 and 1 only, as two
classes named ``zero`` and ``one``, a binary set whose names are not the malaria ones.
File names carry the writer's group of 100 images in order (``w07_0713.png``), so
``--group-pattern '^(w\\d+)_'`` has something to keep together.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pyimagesearch import options
from pyimagesearch.core import report
from pyimagesearch.core.errors import UserError, run_command

SETS = ("digits", "zero-one")
SIDE = 48
GROUP_PATTERN = r"^(w\d+)_"


def write_set(name: str, output: str | Path, side: int = SIDE) -> dict[str, int]:
    """Write set NAME under OUTPUT/<class>/ and return the image count per class."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    if name not in SETS:
        raise UserError(f"unknown example set '{name}'; choose one of {', '.join(SETS)}")
    digits = load_digits()
    if name == "digits":
        names = {d: f"digit_{d}" for d in range(10)}
    else:
        names = {0: "zero", 1: "one"}
    counts: dict[str, int] = {}
    for index, (image, target) in enumerate(zip(digits.images, digits.target, strict=True)):
        if int(target) not in names:
            continue
        folder = Path(output) / names[int(target)]
        folder.mkdir(parents=True, exist_ok=True)
        grey = Image.fromarray(np.uint8(np.round(image * 255 / 16)), mode="L")
        grey.resize((side, side), Image.Resampling.BICUBIC).save(
            folder / f"w{index // 100:02d}_{index:04d}.png"
        )
        counts[folder.name] = counts.get(folder.name, 0) + 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = options.command_parser(__doc__, "pyimagesearch.example_sets")
    parser.add_argument("name", choices=SETS, help="which set to write")
    parser.add_argument("-o", "--output", required=True, help="folder to write (must be new)")
    options.add_debug(parser)
    args = parser.parse_args(argv)
    output = Path(args.output)
    if output.exists():
        raise UserError(f"--output '{output}' already exists; give a new folder")
    counts = write_set(args.name, output)
    report.info(
        f"wrote {sum(counts.values())} images of {len(counts)} classes to '{output}': "
        + ", ".join(f"{n} {c}" for c, n in sorted(counts.items()))
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
