"""Build malaria/{training,validation,testing}/{Parasitized,Uninfected} from the NIH images.

    python -m pyimagesearch.build_dataset --output malaria
    python -m pyimagesearch.build_dataset --source path/to/cell_images --output malaria

SOURCE is a folder holding Parasitized/ and Uninfected/ (directly or under
cell_images/), a cell_images.zip, or a URL; the default is the NIH download
(cached by Keras under ~/.keras/datasets).
--split patient uses every image and keeps each patient's cells in one split
(file names carry the patient: C33P1thinF_... is patient 1), so the testing
split measures accuracy on patients the model never saw. The environment variable
MALARIA_SOURCE, when set, replaces that default. Files are hard-linked (or
copied), never moved out of SOURCE.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from pyimagesearch import safety
from pyimagesearch.errors import UserError, run_command

NIH_URL = "https://data.lhncbc.nlm.nih.gov/public/Malaria/cell_images.zip"
CLASSES = ("Parasitized", "Uninfected")
SPLITS = ("training", "validation", "testing")
# Written into every dataset folder this tool builds: --overwrite replaces split folders
# only where it finds it, so a folder of the user's own is never emptied.
MARKER = ".pyimagesearch-dataset"
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
            raise UserError(f"cannot download '{source}': {error}") from error
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

    # Devices, FIFOs and undecodable names are skipped: copying /dev/zero never ends.
    return {
        name: sorted(
            Path(f).name
            for f in safety.usable_images(
                sorted(str(f) for f in (root / name).iterdir() if is_image_file(f.name)),
                check_headers=False,
            )
        )
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


PATIENT_PATTERN = re.compile(r"^C(\d+)(?:P(\d+))?", re.IGNORECASE)


def patient_of(file_name: str) -> str | None:
    """'C33P1thinF_...' is patient P1 (infected); 'C238NThinF_...' is healthy slide C238."""
    match = PATIENT_PATTERN.match(file_name)
    if match is None:
        return None
    slide, patient = match.groups()
    return f"P{int(patient)}" if patient else f"C{int(slide)}"


def allocate(counts: dict[str, int], fractions: tuple[float, ...], seed: str) -> list[list[str]]:
    """Share groups (shuffled, seeded) out to the splits, filling each to its fraction of images."""
    groups = sorted(counts)
    random.Random(seed).shuffle(groups)
    total = sum(counts.values())
    targets = [f * total for f in fractions]
    shares: list[list[str]] = [[] for _ in fractions]
    filled = [0] * len(fractions)
    for group in groups:
        # The split furthest below its target takes the next group.
        index = max(range(len(fractions)), key=lambda i: (targets[i] - filled[i]) / targets[i])
        shares[index].append(group)
        filled[index] += counts[group]
    return shares


def patient_split(
    files: dict[str, list[str]], fractions: tuple[float, float, float], seed: int
) -> dict[str, dict[str, list[str]]]:
    """No patient in two splits; infected and healthy people shared out separately so that
    both classes keep their balance. Files without a patient id fall back to a per-image split."""
    by_patient: dict[str, dict[str, list[str]]] = {}
    unknown: dict[str, list[str]] = {name: [] for name in CLASSES}
    for name in CLASSES:
        for file_name in files[name]:
            patient = patient_of(file_name)
            if patient is None:
                unknown[name].append(file_name)
            else:
                by_patient.setdefault(patient, {c: [] for c in CLASSES})[name].append(file_name)

    split: dict[str, dict[str, list[str]]] = {s: {c: [] for c in CLASSES} for s in SPLITS}
    infected = {p: sum(map(len, v.values())) for p, v in by_patient.items() if v["Parasitized"]}
    healthy = {p: sum(map(len, v.values())) for p, v in by_patient.items() if not v["Parasitized"]}
    for stratum, counts in (("infected", infected), ("healthy", healthy)):
        if not counts:
            continue
        for split_name, patients in zip(
            SPLITS, allocate(counts, fractions, f"{seed}-{stratum}"), strict=True
        ):
            for patient in patients:
                for name in CLASSES:
                    split[split_name][name].extend(by_patient[patient][name])

    if any(unknown.values()):
        print(
            f"[WARNING] {sum(map(len, unknown.values()))} files have no patient id in their "
            "name; they are split per image, which can leak a patient across splits",
            file=sys.stderr,
        )
        for name in CLASSES:
            shuffled = sorted(unknown[name])
            random.Random(f"{seed}-{name}").shuffle(shuffled)
            cut1 = round(fractions[0] * len(shuffled))
            cut2 = cut1 + round(fractions[1] * len(shuffled))
            for split_name, part in zip(
                SPLITS, (shuffled[:cut1], shuffled[cut1:cut2], shuffled[cut2:]), strict=True
            ):
                split[split_name][name].extend(part)

    for split_name in SPLITS:
        patients = {patient_of(f) for c in CLASSES for f in split[split_name][c]} - {None}
        sizes = ", ".join(f"{len(split[split_name][c])} {c}" for c in CLASSES)
        print(f"[INFO] {split_name}: {len(patients)} patients, {sizes}")
    return split


def link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def check_output(output: Path, overwrite: bool) -> None:
    """Refuse, before any work, split folders that are in the way and not ours to replace.

    Ours: the folder carries MARKER, and each split holds only class folders of image
    files. Anything else (a folder of the user's own files, say) is named and refused.
    """
    safety.check_output_folder(output, "--output")
    existing = [output / s for s in SPLITS if (output / s).exists() or (output / s).is_symlink()]
    if not existing:
        return
    if not overwrite:
        raise UserError(f"'{existing[0]}' already exists; pass --overwrite to rebuild the splits")
    if not (output / MARKER).is_file():
        raise UserError(
            f"--overwrite: '{output}' was not built by this tool (it has no {MARKER}); "
            f"move its {', '.join(s.name for s in existing)} folder(s) away yourself"
        )
    from pyimagesearch.preprocessing import is_image_file

    for split_folder in existing:
        if split_folder.is_symlink() or not split_folder.is_dir():
            raise UserError(f"--overwrite: '{split_folder}' is not a folder this tool wrote")
        for class_folder in split_folder.iterdir():
            if class_folder.name not in CLASSES or class_folder.is_symlink():
                raise UserError(f"--overwrite: '{class_folder}' is not a folder this tool wrote")
            for entry in class_folder.iterdir():
                if entry.is_symlink() or not entry.is_file() or not is_image_file(entry.name):
                    raise UserError(f"--overwrite: '{entry}' is not a file this tool wrote")


def write_split(root: Path, output: Path, split: dict[str, dict[str, list[str]]]) -> None:
    """Build the splits in a hidden folder inside OUTPUT, then swap them in: a failed run
    leaves the earlier splits as they were. OUTPUT was checked by ``check_output``."""
    output.mkdir(exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".pyimagesearch-building.", dir=output))
    try:
        for split_name in SPLITS:
            for class_name in CLASSES:
                target = staging / split_name / class_name
                target.mkdir(parents=True)
                for file_name in split[split_name][class_name]:
                    link_or_copy(root / class_name / file_name, target / file_name)
                count = len(split[split_name][class_name])
                print(f"[INFO] {split_name}/{class_name}: {count} images")
        (output / MARKER).write_text(
            "Built by python -m pyimagesearch.build_dataset; --overwrite may replace the\n"
            "training/, validation/ and testing/ folders here (nothing else).\n"
        )
        for split_name in SPLITS:
            if (output / split_name).exists():
                os.replace(output / split_name, staging / f"{split_name}.old")
            os.replace(staging / split_name, output / split_name)
    except OSError as error:
        raise UserError(f"cannot write '{output}': {error.strerror or error}") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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
        "--split",
        choices=("tutorial", "patient"),
        default="tutorial",
        help="tutorial: the 500-image demo split (default); patient: every image, "
        "no patient in two splits",
    )
    parser.add_argument(
        "--fractions",
        type=float,
        nargs=3,
        default=(0.8, 0.1, 0.1),
        metavar=("TRAIN", "VAL", "TEST"),
        help="shares of images for --split patient (default: 0.8 0.1 0.1)",
    )
    parser.add_argument(
        "--seed", type=safety.seed, default=42, help="seed of the random draw (default: 42)"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace split folders this tool built earlier (never anything else)",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if any(f <= 0 for f in args.fractions) or abs(sum(args.fractions) - 1) > 1e-6:
        raise UserError(f"--fractions must be positive and add up to 1, got {args.fractions}")
    output = Path(args.output)
    local_source = None if args.source.startswith(("http://", "https://")) else args.source
    safety.check_paths({"--output": output}, {"--source": local_source})
    check_output(output, args.overwrite)
    root = resolve_source(args.source)
    safety.check_paths({"--output": output}, {"--source": root})
    files = list_class_files(root)
    print(f"[INFO] source '{root}': " + ", ".join(f"{len(v)} {k}" for k, v in files.items()))
    if args.split == "patient":
        split = patient_split(files, tuple(args.fractions), args.seed)
    else:
        split = tutorial_split(files, args.seed)
    write_split(root, output, split)
    print(f"[INFO] dataset written to '{args.output}'")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
