"""Split a folder of image classes into OUTPUT/{training,validation,testing}/<class>/.

    python -m pyimagesearch.build_dataset --output malaria
    python -m pyimagesearch.build_dataset --source path/to/cell_images --output malaria
    python -m pyimagesearch.build_dataset --source photos --output split --fractions 0.8 0.1 0.1

SOURCE is a folder of one sub-folder of images per class, a zip of one, or a URL. A zip
is extracted inside OUTPUT, into a hidden folder this command makes and removes (nothing
beside the zip is written), once its directory shows it fits the disk and is no zip
bomb. The
default is the worked example, the NIH malaria download (cached by Keras under
~/.keras/datasets; $MALARIA_SOURCE, when set, replaces it), whose Parasitized/ and
Uninfected/ may also sit under cell_images/.

The NIH classes get the tutorial's 500-image split by default; --split patient uses
every image and keeps each patient's cells in one split (file names carry the patient:
C33P1thinF_... is patient P1), so the testing split measures accuracy on patients the
model never saw. Any other classes are split by --fractions (seeded, stratified by
class), keeping every group of --group-pattern in one split.

Files are copied, never moved: a copy can be edited or deleted without touching the
original. --link hard-links them instead (no extra space, but editing a linked image in
place edits the original too).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import stat
import sys
import tempfile
import zipfile
from pathlib import Path

from pyimagesearch import options
from pyimagesearch.core import report, safety
from pyimagesearch.core.errors import UserError, run_command
from pyimagesearch.core.splitting import (
    NIH_CLASSES,
    NIH_GROUP_PATTERN,
    SPLIT_FOLDERS,
    allocate,
    compile_pattern,
    group_of,
)

NIH_URL = "https://data.lhncbc.nlm.nih.gov/public/Malaria/cell_images.zip"
CLASSES = NIH_CLASSES
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


def find_class_root(folder: Path, nih_only: bool = True) -> Path:
    """The folder that directly holds the class folders: Parasitized/ and Uninfected/
    (also under the NIH zip's cell_images/), or, unless NIH_ONLY, any two or more."""
    for candidate in (folder, folder / "cell_images", folder / "cell_images" / "cell_images"):
        if all((candidate / name).is_dir() for name in CLASSES):
            return candidate
    if nih_only:
        raise UserError(f"'{folder}' holds no Parasitized/ and Uninfected/ folders")
    classes = class_folders(folder)
    taken = sorted(set(classes) & {n for names in SPLIT_FOLDERS.values() for n in names})
    if taken:
        raise UserError(
            f"'{folder}' is split already ({', '.join(t + '/' for t in taken)}); save_model.py "
            "takes it as it "
            "is, or give the folder of class sub-folders"
        )
    if len(classes) < 2:
        raise UserError(
            f"'{folder}' holds {len(classes)} class folder(s); give a folder of two or more "
            "class sub-folders of images"
        )
    return folder


def class_folders(folder: Path) -> list[str]:
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


# Bounds on a --source zip, checked against its directory before anything is extracted
# (a zip bomb is refused in one line). The NIH download holds 27,560 PNGs, which barely
# compress (ratio about 1); a photo zip is much the same.
MAX_ZIP_MEMBERS = 500_000
MAX_ZIP_RATIO = 100  # uncompressed / compressed, for the archive or any member ...
ZIP_RATIO_FLOOR = 64 << 20  # ... once it unpacks to more than this (tiny files may compress well)
DISK_MARGIN = 0.9  # of the free space on --output's file system that extraction may take
# Extracted inside --output, removed when the command ends.
EXTRACTING = ".pyimagesearch-extracting."


def check_source(source: str) -> None:
    """Refuse, in one line, a local source that is not a folder or a regular file: a FIFO
    or a device would hang or never end, a symbolic link loop has no target."""
    try:
        mode = os.stat(source).st_mode
    except FileNotFoundError:
        raise UserError(f"source '{source}' does not exist") from None
    except OSError as error:  # ELOOP, EACCES, ENAMETOOLONG, ...
        raise UserError(f"cannot read source '{source}': {error.strerror or error}") from None
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        kind = (
            "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        )
        raise UserError(f"source '{source}' is {kind}; give a folder of class folders or a zip")


def zip_images(archive: zipfile.ZipFile, path: Path, free: int) -> list[zipfile.ZipInfo]:
    """The image members of ARCHIVE, once its directory shows nothing that would flood
    the disk: at most MAX_ZIP_MEMBERS members, at most MAX_ZIP_RATIO compression, and
    all of it within DISK_MARGIN of FREE bytes. Declared sizes bind: Python's zipfile
    stops a member at its declared size (and fails its CRC)."""
    members = archive.infolist()
    if len(members) > MAX_ZIP_MEMBERS:
        raise UserError(
            f"source '{path}' holds {len(members):,} members, more than the bound of "
            f"{MAX_ZIP_MEMBERS:,}; refusing to extract it"
        )
    images = [
        info
        for info in members
        if not info.is_dir()
        and safety.is_image_file(info.filename)
        and not info.filename.startswith("__MACOSX/")  # macOS' resource forks, not images
    ]
    total = sum(info.file_size for info in images)
    packed = sum(info.compress_size for info in images)
    for info in images:
        if info.file_size > ZIP_RATIO_FLOOR and info.file_size > MAX_ZIP_RATIO * max(
            info.compress_size, 1
        ):
            raise UserError(
                f"source '{path}': member '{info.filename}' unpacks {info.compress_size:,} "
                f"bytes to {info.file_size:,} (more than {MAX_ZIP_RATIO}x); refusing a zip bomb"
            )
    if total > ZIP_RATIO_FLOOR and total > MAX_ZIP_RATIO * max(packed, 1):
        raise UserError(
            f"source '{path}' unpacks {packed:,} bytes to {total:,} (more than "
            f"{MAX_ZIP_RATIO}x); refusing a zip bomb"
        )
    if total > DISK_MARGIN * free:
        raise UserError(f"source '{path}' unpacks to {total:,} bytes; the disk has {free:,} free")
    return images


def extract_source(path: Path, output: Path) -> Path:
    """Extract the zip PATH's images into a new hidden folder inside OUTPUT (made here;
    the caller removes it). Nothing beside the zip is read, written or deleted."""
    folder = None
    try:
        with zipfile.ZipFile(path) as archive:
            free = shutil.disk_usage(output if output.is_dir() else output.resolve().parent).free
            images = zip_images(archive, path, free)
            output.mkdir(exist_ok=True)
            folder = Path(tempfile.mkdtemp(prefix=EXTRACTING, dir=output))
            report.info(f"extracting {len(images)} images from '{path}'...")
            for info in images:
                archive.extract(info, folder)  # zipfile drops '..' and leading '/'
    except BaseException as error:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        if isinstance(error, zipfile.BadZipFile | zipfile.LargeZipFile | NotImplementedError):
            raise UserError(f"cannot read source '{path}': {error}") from None
        if isinstance(error, OSError):
            raise UserError(f"cannot extract '{path}': {error.strerror or error}") from None
        raise
    return folder


def resolve_source(source: str, output: Path) -> tuple[Path, Path | None]:
    """Turn a folder, a zip or a URL into a local folder of class sub-folders, and the
    folder extracted for it inside OUTPUT (None for a folder), which the caller removes."""
    if source.startswith(("http://", "https://")):
        import keras  # only to download: a local source needs no TensorFlow

        report.info(f"downloading '{source}' (cached after the first time)...")
        try:
            archive = keras.utils.get_file(origin=source, extract=False)
        except Exception as error:
            raise UserError(f"cannot download '{source}': {error}") from error
        source = archive
    check_source(source)
    path = Path(source)
    if path.is_dir():
        return find_class_root(path, nih_only=False), None
    if not zipfile.is_zipfile(path):
        raise UserError(f"source '{source}' is neither a folder nor a zip archive")
    extracted = extract_source(path, output)
    try:
        return find_class_root(extracted, nih_only=False), extracted
    except BaseException:
        shutil.rmtree(extracted, ignore_errors=True)
        raise


def list_class_files(root: Path) -> dict[str, list[str]]:
    """Each class's images (the NIH classes only, where the source has them), as paths
    inside the class folder: the one scan save_model.py reads a flat folder with
    (``splitting.scan_classes``: nested folders, hidden files, the image gate)."""
    from pyimagesearch.core.splitting import scan_classes

    names = list(CLASSES) if all((root / c).is_dir() for c in CLASSES) else class_folders(root)
    scanned = scan_classes(root, class_names=names)
    files: dict[str, list[str]] = {name: [] for name in names}
    for path, label in zip(scanned.paths, scanned.labels, strict=True):
        files[names[label]].append(path.split("/", 1)[1])
    empty = [name for name, found in files.items() if not found]
    if empty:
        raise UserError(f"class folder '{root / empty[0]}' holds no image files")
    return files


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


def patient_of(file_name: str) -> str | None:
    """'C33P1thinF_...' is patient P1 (infected); 'C238NThinF_...' is healthy slide C238."""
    return group_of(file_name, compile_pattern(NIH_GROUP_PATTERN)) or None


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
        report.warning(
            f"{sum(map(len, unknown.values()))} files have no patient id in their "
            "name; they are split per image, which can leak a patient across splits"
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
        report.info(f"{split_name}: {len(patients)} patients, {sizes}")
    return split


def fraction_split(
    files: dict[str, list[str]],
    fractions: tuple[float, float, float],
    seed: int,
    pattern: str | None,
) -> dict[str, dict[str, list[str]]]:
    """Any classes: split by FRACTIONS, stratified by class, every group of PATTERN (read
    from the file name) in one split; without a pattern each file is its own group."""
    import numpy as np

    from pyimagesearch.core.splitting import (
        ClassFiles,
        check_splits_filled,
        default_group_pattern,
        groups_for,
        split_files,
    )

    names = list(files)
    entries = [(name, f) for name in names for f in files[name]]
    labels = np.asarray([names.index(name) for name, _ in entries], dtype="int32")
    # save_model.py's split of the same folder: the same scan, groups and draw.
    scanned = ClassFiles(Path("."), names, [f"{name}/{f}" for name, f in entries], labels)
    pattern = pattern or default_group_pattern(names)
    parts = split_files(scanned, fractions, seed, pattern)
    groups = groups_for(scanned.paths, pattern)
    check_splits_filled(parts, labels, groups, fractions, pattern, "the source")
    split: dict[str, dict[str, list[str]]] = {s: {c: [] for c in names} for s in SPLITS}
    for split_name, index in zip(SPLITS, parts, strict=True):
        for i in index:
            name, file_name = entries[i]
            split[split_name][name].append(file_name)
        counts = ", ".join(f"{len(split[split_name][c])} {c}" for c in names)
        report.info(f"{split_name}: {counts}")
    return split


def copy_files(pairs: list[tuple[Path, Path]], how: str) -> None:
    """Copy, hard-link ("link") or move ("move": the run's own extraction) each pair."""
    for source, target in pairs:
        if how == "move":
            os.replace(source, target)
        elif how == "link":
            os.link(source, target)
        else:
            shutil.copy2(source, target)


def can_link(source: Path, folder: Path) -> bool:
    """Whether files of SOURCE's file system can be hard-linked into FOLDER."""
    probe = folder / ".pyimagesearch-link-probe"
    try:
        os.link(source, probe)
    except OSError:
        return False
    probe.unlink()
    return True


def split_entry(relative: str) -> bool:
    """Whether RELATIVE (inside a split folder, as ``safety.foreign_entry`` gives it) is
    one this tool writes: a class folder, and image files directly in one."""
    depth = relative.rstrip("/").count("/")
    if relative.endswith("/"):
        return depth == 0
    return depth == 1 and safety.is_image_file(relative)


def write_split(
    root: Path,
    output: Path,
    split: dict[str, dict[str, list[str]]],
    link: bool = False,
    move: bool = False,
) -> None:
    """Build the splits in a hidden folder inside OUTPUT, then swap them in: a failed run
    leaves the earlier splits as they were. OUTPUT was checked by ``check_output``.
    LINK hard-links the images (copying, with a warning, across file systems); MOVE
    moves them (ROOT is the run's own extraction of a zip)."""
    output.mkdir(exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".pyimagesearch-building.", dir=output))
    total = sum(len(files) for classes in split.values() for files in classes.values())
    first = next(
        (root / c / f[0] for classes in split.values() for c, f in classes.items() if f), None
    )
    how = "move" if move else "link" if link else "copy"
    if how == "link" and first is not None and not can_link(first, staging):
        report.warning(
            f"--link: '{root}' and '{output}' are on different file systems, where hard "
            "links cannot be made; copying the images instead"
        )
        how = "copy"
    if how == "move":
        report.info(f"moving {total} images out of the extracted zip")
    else:
        report.info(
            f"{'hard-linking' if how == 'link' else 'copying'} {total} images "
            + (
                "(--link: no extra space; an image edited in place changes the original too)"
                if how == "link"
                else "(copies: editing one never touches the original; --link saves the space)"
            )
        )
    try:
        for split_name in SPLITS:
            for class_name, file_names in split[split_name].items():
                target = staging / split_name / class_name
                target.mkdir(parents=True)
                # A nested image (class/more/x.png) lands flat: class/more__x.png.
                copy_files(
                    [(root / class_name / f, target / f.replace("/", "__")) for f in file_names],
                    how,
                )
                report.info(f"{split_name}/{class_name}: {len(file_names)} images")
        safety.write_text(
            output / MARKER,
            "Built by python -m pyimagesearch.build_dataset; --overwrite may replace the\n"
            "training/, validation/ and testing/ folders here (nothing else).\n",
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
    parser = options.command_parser(__doc__, "pyimagesearch.build_dataset")
    parser.add_argument(
        "--source",
        default=os.environ.get("MALARIA_SOURCE") or NIH_URL,
        help="folder of class sub-folders, a zip of one, or a URL (default: $MALARIA_SOURCE, "
        "else the NIH malaria download)",
    )
    parser.add_argument(
        "--output", default="malaria", help="dataset folder to write (default: malaria)"
    )
    parser.add_argument(
        "--split",
        choices=("tutorial", "patient", "fractions"),
        help="tutorial: the malaria example's 500-image demo split (default for the NIH "
        "classes); patient: every NIH image, no patient in two splits; fractions: every "
        "image by --fractions (default for any other classes)",
    )
    parser.add_argument(
        "--fractions",
        type=float,
        nargs=3,
        default=(0.8, 0.1, 0.1),
        metavar=("TRAIN", "VAL", "TEST"),
        help="shares of images for --split patient or fractions (default: 0.8 0.1 0.1)",
    )
    parser.add_argument(
        "--group-pattern",
        metavar="REGEX",
        help="--split fractions: keep every group in one split, the group being the first "
        "capture group of REGEX in the file name (default: none, each file alone)",
    )
    options.add_seed(parser, 42, "seed of the random draw")
    parser.add_argument(
        "--link",
        action="store_true",
        help="hard-link the images instead of copying them (no extra space; an image "
        "edited in place then changes the original too)",
    )
    options.add_overwrite(parser, "split folders this tool built earlier")
    options.add_debug(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # NaN passes every comparison (nan <= 0 and abs(nan - 1) > 1e-6 are both False).
    if not all(math.isfinite(f) and f > 0 for f in args.fractions) or not math.isclose(
        sum(args.fractions), 1, abs_tol=1e-6
    ):
        raise UserError(f"--fractions must be positive and add up to 1, got {args.fractions}")
    output = Path(args.output)
    local_source = None if args.source.startswith(("http://", "https://")) else args.source
    if local_source is not None:
        check_source(local_source)
    safety.check_paths({"--output": output}, {"--source": local_source})
    safety.check_own_folder(output, "--output", MARKER, split_entry, args.overwrite, SPLITS)
    created, extracted = not output.exists(), None
    try:
        root, extracted = resolve_source(args.source, output)
        build(args, output, root, moved=extracted is not None)
    finally:
        if extracted is not None:
            shutil.rmtree(extracted, ignore_errors=True)
        if created and output.is_dir() and not any(output.iterdir()):
            output.rmdir()  # a refused source leaves no empty --output behind
    report.info(f"dataset written to '{args.output}'")
    return 0


def build(args: argparse.Namespace, output: Path, root: Path, moved: bool) -> None:
    """Split ROOT's classes into OUTPUT; MOVED: ROOT is this run's own extraction."""
    if not moved:
        safety.check_paths({"--output": output}, {"--source": root})
    files = list_class_files(root)
    report.info(f"source '{root}': " + ", ".join(f"{len(v)} {k}" for k, v in files.items()))
    nih = tuple(files) == CLASSES
    method = args.split or ("tutorial" if nih else "fractions")
    if method in ("tutorial", "patient") and not nih:
        raise UserError(
            f"--split {method} is for the NIH classes {'/'.join(CLASSES)}; this source has "
            f"{', '.join(files)}: use --split fractions"
        )
    if method == "patient":
        split = patient_split(files, tuple(args.fractions), args.seed)
    elif method == "fractions":
        split = fraction_split(files, tuple(args.fractions), args.seed, args.group_pattern)
    else:
        split = tutorial_split(files, args.seed)
    write_split(root, output, split, link=args.link, move=moved)


if __name__ == "__main__":
    sys.exit(run_command(main))
