"""Build malaria/{training,validation,testing}/{Parasitized,Uninfected} from the NIH images.

    python -m pyimagesearch.build_dataset --output malaria
    python -m pyimagesearch.build_dataset --source path/to/cell_images --output malaria

SOURCE is a folder holding Parasitized/ and Uninfected/ (directly or under
cell_images/), a cell_images.zip, or a URL; the default is the NIH download
(cached by Keras under ~/.keras/datasets). The environment variable
MALARIA_SOURCE, when set, replaces that default. Files are hard-linked (or
copied), never moved out of SOURCE.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import zipfile
from pathlib import Path

from pyimagesearch.errors import UserError, run_command

NIH_URL = "https://data.lhncbc.nlm.nih.gov/public/Malaria/cell_images.zip"
CLASSES = ("Parasitized", "Uninfected")
SPLITS = ("training", "validation", "testing")
# The tutorial's split: 500 images in all.
TUTORIAL_SIZES = {
    "training": {"Parasitized": 175, "Uninfected": 185},
    "validation": {"Parasitized": 18, "Uninfected": 22},
    "testing": {"Parasitized": 50, "Uninfected": 50},
}


def find_class_root(folder: Path) -> Path:
    """The folder that directly holds Parasitized/ and Uninfected/."""
    for candidate in (folder, folder / "cell_images", folder / "cell_images" / "cell_images"):
        if all((candidate / name).is_dir() for name in CLASSES):
            return candidate
    raise UserError(f"'{folder}' holds no Parasitized/ and Uninfected/ folders")


def resolve_source(source: str) -> Path:
    """Turn a folder, a zip or a URL into a local folder of class sub-folders."""
    import keras

    if source.startswith(("http://", "https://")):
        print(f"[INFO] downloading '{source}' (cached after the first time)...")
        try:
            archive = keras.utils.get_file(origin=source, extract=False)
        except Exception as error:
            raise UserError(f"cannot download '{source}': {error}") from None
        source = archive
    path = Path(source)
    if not path.exists():
        raise UserError(f"source '{source}' does not exist")
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise UserError(f"source '{source}' is neither a folder nor a zip archive")
        extracted = path.with_name(path.stem + "_extracted")
        if not extracted.is_dir():
            print(f"[INFO] extracting '{path}'...")
            partial = path.with_name(path.stem + "_extracting")
            shutil.rmtree(partial, ignore_errors=True)
            with zipfile.ZipFile(path) as handle:
                handle.extractall(partial)
            partial.rename(extracted)
        path = extracted
    return find_class_root(path)


def list_class_files(root: Path) -> dict[str, list[str]]:
    from pyimagesearch.preprocessing import is_image_file

    return {
        name: sorted(f.name for f in (root / name).iterdir() if is_image_file(f.name))
        for name in CLASSES
    }


def tutorial_split(files: dict[str, list[str]], seed: int) -> dict[str, dict[str, list[str]]]:
    """Draw the tutorial's fixed split sizes at random (seeded) from each class."""
    split: dict[str, dict[str, list[str]]] = {s: {} for s in SPLITS}
    for name in CLASSES:
        needed = sum(TUTORIAL_SIZES[s][name] for s in SPLITS)
        if len(files[name]) < needed:
            raise UserError(f"{name} has {len(files[name])} images; the split needs {needed}")
        chosen = random.Random(f"{seed}-{name}").sample(files[name], needed)
        start = 0
        for s in SPLITS:
            count = TUTORIAL_SIZES[s][name]
            split[s][name] = chosen[start : start + count]
            start += count
    return split


def link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def write_split(
    root: Path, output: Path, split: dict[str, dict[str, list[str]]], overwrite: bool
) -> None:
    existing = [output / s for s in SPLITS if (output / s).exists()]
    if existing and not overwrite:
        raise UserError(f"'{existing[0]}' already exists; pass --overwrite to rebuild the splits")
    for folder in existing:
        shutil.rmtree(folder)
    for split_name in SPLITS:
        for class_name in CLASSES:
            target = output / split_name / class_name
            target.mkdir(parents=True)
            for file_name in split[split_name][class_name]:
                link_or_copy(root / class_name / file_name, target / file_name)
            print(f"[INFO] {split_name}/{class_name}: {len(split[split_name][class_name])} images")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pyimagesearch.build_dataset",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--source",
        default=os.environ.get("MALARIA_SOURCE") or NIH_URL,
        help="folder, cell_images.zip or URL (default: $MALARIA_SOURCE, else the NIH download)",
    )
    parser.add_argument(
        "--output", default="malaria", help="dataset folder to write (default: malaria)"
    )
    parser.add_argument(
        "--seed", type=int, default=42, help="seed of the random draw (default: 42)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing split folders")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = resolve_source(args.source)
    files = list_class_files(root)
    print(f"[INFO] source '{root}': " + ", ".join(f"{len(v)} {k}" for k, v in files.items()))
    split = tutorial_split(files, args.seed)
    write_split(root, Path(args.output), split, args.overwrite)
    print(f"[INFO] dataset written to '{args.output}'")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
