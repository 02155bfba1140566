"""Splitting images into training/validation/testing (or folds) by group, for any classes.

A *group* is what must never be split across training and testing: in the NIH malaria
set, a patient (the cells of one slide look alike, so a model judged on a patient it
trained on is judged too kindly). ``--group-pattern REGEX`` says how to read the group
from a file name: the first capture group that took part in the match (a pattern needs
one). A file the pattern does not match is its own group. Patterns run on the `regex`
engine under a time bound per name (MATCH_TIMEOUT_S).

The NIH classes get the patient rule by default: ``C33P1thinF_...`` is patient ``P1``
(infected; their uninfected cells carry the same number), ``C238NThinF_...`` is the
healthy slide ``C238``. Other classes are split per file unless a pattern is given.
"""

from __future__ import annotations

import csv
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import regex

from pyimagesearch.core import report, safety
from pyimagesearch.core.errors import UserError
from pyimagesearch.core.safety import MAX_PIXELS, is_image_file, usable_images

# Folder names of each split, in the order they are looked for: the tutorial's, then the
# ImageFolder / Ultralytics ones.
SPLIT_FOLDERS = {
    "training": ("training", "train"),
    "validation": ("validation", "val", "valid"),
    "testing": ("testing", "test"),
}
LAYOUTS = (
    "training/validation/testing/<class>/, train/val/test/<class>/ (or valid/), or a flat "
    "folder of <class>/ sub-folders (split by --val-split and --test-split)"
)


def list_images(folder: Path, max_pixels: int = MAX_PIXELS) -> list[str]:
    """Every image file under ``folder`` (recursively), in a stable sorted order.

    Devices, FIFOs, odd names and images too big to decode are skipped with a warning
    (``safety.usable_images``): the decoder would hang or run out of memory on them.
    """
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found.extend(os.path.join(root, name) for name in sorted(files) if is_image_file(name))
    return usable_images(found, max_pixels=max_pixels)


def hidden(name: str) -> bool:
    """Names every reader passes over without a word: dot files, macOS' .DS_Store and its
    AppleDouble "._photo.jpg" resource forks (metadata, never images)."""
    return name.startswith(".")


@dataclass
class ClassFiles:
    """One scan of a folder of class folders: the images every reader keeps, as paths
    relative to ROOT (the class folder first, POSIX separators), in a stable order."""

    root: Path
    class_names: list[str]
    paths: list[str]
    labels: np.ndarray

    def full(self, index: int) -> str:
        return os.path.join(self.root, *self.paths[index].split("/"))

    def digest(self) -> str:
        """SHA-256 of the labelled names: what a recorded split is checked against."""
        import hashlib

        pairs = zip(self.paths, self.labels, strict=True)
        text = "".join(f"{self.class_names[label]}\t{path}\n" for path, label in pairs)
        return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def scan_classes(
    root: Path, max_pixels: int = MAX_PIXELS, class_names: Sequence[str] | None = None
) -> ClassFiles:
    """The one scan of a class-folder tree, shared by save_model.py, crossval and
    build_dataset --source: each class folder searched recursively (a nested image counts
    for the class of its top folder), hidden names passed over silently, and every file
    through the image gate and a full decode (``preprocessing.decode_rgb``: the header,
    the format, the pixel bound, truncation); the refused are named in one warning. On the
    same folder every reader keeps the same files, so the same seed gives the same split.
    """
    from concurrent.futures import ThreadPoolExecutor

    from pyimagesearch.core.preprocessing import (
        UnreadableImage,
        decode_rgb,
        decode_workers,
        warn_skipped,
    )

    names = (
        list(class_names)
        if class_names is not None
        else sorted(d.name for d in root.iterdir() if d.is_dir() and not hidden(d.name))
    )
    candidates: list[tuple[str, int]] = []
    for label, name in enumerate(names):
        for folder, dirs, files in os.walk(root / name):
            dirs[:] = sorted(d for d in dirs if not hidden(d))
            relative = Path(folder).relative_to(root).as_posix()
            candidates.extend(
                (f"{relative}/{f}", label) for f in sorted(files)
                if not hidden(f) and is_image_file(f)
            )  # fmt: skip
    full = [os.path.join(root, *p.split("/")) for p, _ in candidates]
    usable = set(usable_images(full, max_pixels=max_pixels))

    def refused(index: int) -> str | None:
        if full[index] not in usable:
            return "usable_images"
        try:
            decode_rgb(full[index], max_pixels)
        except UnreadableImage as error:
            return error.reason
        except OSError as error:
            return error.strerror or str(error)
        return None

    with ThreadPoolExecutor(decode_workers()) as pool:
        reasons = list(pool.map(refused, range(len(candidates))))
    warn_skipped(  # the one skipped-file warning; usable_images named its own
        full,
        [i for i, why in enumerate(reasons) if why in (None, "usable_images")],
        {i: why for i, why in enumerate(reasons) if why},
    )
    kept = [c for c, why in zip(candidates, reasons, strict=True) if why is None]
    return ClassFiles(
        root, names, [p for p, _ in kept], np.asarray([label for _, label in kept], dtype="int32")
    )


def split_files(
    files: ClassFiles, fractions: Sequence[float], seed: int, pattern: str | None
) -> list[np.ndarray]:
    """Indices of FILES in each split: seeded, stratified by class, no group in two splits
    (without a pattern each file, by its relative path, is its own group)."""
    shares = [round(f, 9) for f in fractions]  # 1 - 0.2 - 0.1 is 0.7000000000000001
    return split_by_fractions(files.labels, groups_for(files.paths, pattern), shares, seed)


@dataclass
class Layout:
    """How a dataset folder is laid out: ``split`` folders, or ``flat`` class folders."""

    kind: str
    folders: dict[str, Path]  # split name -> folder (split); the root itself (flat)


def find_layout(root: Path) -> Layout:
    """Tell the accepted layouts apart; anything else is one line naming them."""
    if not root.is_dir():
        raise UserError(f"dataset folder '{root}' does not exist or is not a folder")
    children = {d.name: d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")}
    found = {
        split: next((children[n] for n in names if n in children), None)
        for split, names in SPLIT_FOLDERS.items()
    }
    present = [folder.name for folder in found.values() if folder is not None]
    if present and len(present) < len(found):
        missing = [names[0] + "/" for split, names in SPLIT_FOLDERS.items() if not found[split]]
        raise UserError(
            f"dataset folder '{root}' has {', '.join(f + '/' for f in present)} but no "
            f"{' or '.join(missing)}; expected {LAYOUTS}"
        )
    if present:
        return Layout("split", {split: folder for split, folder in found.items() if folder})
    if not children:
        raise UserError(f"dataset folder '{root}' has no sub-folders; expected {LAYOUTS}")
    return Layout("flat", {"all": root})


def check_dataset(
    root: str | Path, val_split: float | None, test_split: float | None, pattern: str | None
) -> Layout:
    """What save_model.py checks before TensorFlow starts: a layout it accepts, split
    options only for a flat folder, a group pattern that compiles."""
    layout = find_layout(Path(root))
    if layout.kind == "split" and (val_split is not None or test_split is not None):
        raise UserError(
            f"--val-split and --test-split split a flat folder of classes; '{root}' is "
            f"already split into {', '.join(f.name for f in layout.folders.values())}"
        )
    if pattern is not None:
        if layout.kind == "split":
            raise UserError(
                f"--group-pattern splits a flat folder of classes; '{root}' is already split"
            )
        compile_pattern(pattern)
    return layout


# The one place that knows the malaria example's classes (and its disease class).
NIH_CLASSES = ("Parasitized", "Uninfected")
NIH_POSITIVE = NIH_CLASSES[0]
NIH_GROUP_PATTERN = r"(?i)^C\d+(P\d+)|^(C\d+)"


def is_nih(class_names: Sequence[str]) -> bool:
    """True for the malaria example's classes, where patients, cells and diagnosis apply."""
    return tuple(class_names) == NIH_CLASSES


def default_group_pattern(class_names: Sequence[str]) -> str | None:
    return NIH_GROUP_PATTERN if is_nih(class_names) else None


# The longest a --group-pattern may search one file name. Patterns run on the `regex`
# engine, which can stop a search (Python's re cannot): a nested repetition such as
# '^(a+)+$' backtracks exponentially, and gave no answer in 60 s over 3,000 names.
# Real patterns take microseconds per name; the bound leaves room for a busy machine.
MATCH_TIMEOUT_S = 0.25


def compile_pattern(pattern: str, flag: str = "--group-pattern") -> regex.Pattern:
    """PATTERN compiled (Python's re syntax), with the capture group that names a group."""
    try:
        compiled = regex.compile(pattern)
    except (regex.error, ValueError) as error:
        raise UserError(f"{flag} '{pattern}' is not a regular expression: {error}") from None
    if compiled.groups == 0:
        raise UserError(
            f"{flag} '{pattern}' has no capture group: put the part of the file name that "
            r"names the group in parentheses, e.g. '^(p\d+)_'"
        )
    return compiled


def group_of(file_name: str, pattern: regex.Pattern) -> str | None:
    """The group a file name belongs to: None when the pattern does not match it, "" when
    it matches with every capture group empty."""
    try:
        match = pattern.search(file_name, timeout=MATCH_TIMEOUT_S)
    except TimeoutError:
        raise UserError(
            f"--group-pattern '{pattern.pattern}' took more than {MATCH_TIMEOUT_S} s on the "
            f"file name '{file_name}' (a nested repetition such as '(a+)+' backtracks "
            "without end); give a simpler pattern"
        ) from None
    if match is None:
        return None
    found = next((g for g in match.groups() if g), "")
    return found.upper() if found and pattern.flags & regex.IGNORECASE else found


def groups_for(paths: Sequence[str], pattern: str | None, word: str = "group") -> list[str]:
    """Each file's group; without a pattern every file is its own group. Files the pattern
    does not match (or matches with an empty group) become their own group, with one
    warning that says how many."""
    if pattern is None:
        return [f"file:{p}" for p in paths]
    compiled = compile_pattern(pattern)
    groups = [group_of(os.path.basename(p), compiled) for p in paths]
    unmatched = sum(g is None for g in groups)
    empty = sum(g == "" for g in groups)
    if unmatched == len(paths):
        raise UserError(f"--group-pattern '{pattern}' matches none of the {len(paths)} file names")
    if unmatched + empty == len(paths):
        raise UserError(
            f"--group-pattern '{pattern}' matches {len(paths) - unmatched} of the "
            f"{len(paths)} file names, but its capture group is empty in every one; it must "
            "capture the part of the name that names the group"
        )
    if unmatched or empty:
        report.warning(
            f"{unmatched + empty} of {len(paths)} file names have no {word} (the pattern "
            f"'{pattern}' does not match them, or captures nothing); each is its own "
            f"{word}, so a {word} may be spread over splits"
        )
    return [g or f"file:{p}" for g, p in zip(groups, paths, strict=True)]


def check_splits_filled(
    parts: Sequence[np.ndarray],
    labels: np.ndarray,
    groups: Sequence[str],
    fractions: Sequence[float],
    pattern: str | None,
    where: str,
) -> None:
    """Refuse, saying why, a split that got no image although its fraction asked for some."""
    names = ("training", "validation", "testing")
    for name, index, fraction in zip(names, parts, fractions, strict=True):
        if fraction <= 0 or len(index):
            continue
        if pattern is not None:
            count = len(set(groups))
            raise UserError(
                f"{where}: --group-pattern '{pattern}' puts the {len(groups)} files in "
                f"{count} group(s), and none went to the {name} split ({fraction:.0%}): a "
                "group never spans two splits, so it takes more groups than splits; give a "
                "pattern that captures a smaller part of the name, or none"
            )
        sizes = np.bincount(labels)
        sizes = sizes[sizes > 0]
        if sizes.max() * fraction < 1:
            raise UserError(
                f"{where}: the {name} split ({fraction:.0%}) got no image: the {len(labels)} "
                f"images are in {len(sizes)} classes of {sizes.min()}-{sizes.max()} image(s) "
                "each, and each class is split on its own (stratified), so a class needs "
                f"about {int(np.ceil(1 / fraction))} images to give that split one"
            )
        raise UserError(
            f"{where} has too few images (or groups) for a {name} split of {fraction:.0%}"
        )


def allocate(counts: dict[str, int], fractions: Sequence[float], seed: str) -> list[list[str]]:
    """Share groups (shuffled, seeded) out to the splits, filling each to its fraction of images."""
    groups = sorted(counts)
    random.Random(seed).shuffle(groups)
    total = sum(counts.values())
    targets = [f * total for f in fractions]
    shares: list[list[str]] = [[] for _ in fractions]
    filled = [0] * len(fractions)
    for group in groups:
        # The split furthest below its target takes the next group.
        index = max(
            range(len(fractions)),
            key=lambda i: (targets[i] - filled[i]) / targets[i] if targets[i] else -1,
        )
        shares[index].append(group)
        filled[index] += counts[group]
    return shares


def split_by_fractions(
    labels: np.ndarray, groups: Sequence[str], fractions: Sequence[float], seed: int
) -> list[np.ndarray]:
    """Indices of each split: no group in two splits, and every kind of group (the set of
    classes its files hold: one class for a plain file, "infected" or "healthy" for a
    patient) shared out separately, so each split keeps the class balance."""
    members: dict[str, list[int]] = {}
    for index, group in enumerate(groups):
        members.setdefault(group, []).append(index)
    strata: dict[tuple, dict[str, int]] = {}
    for group, indices in members.items():
        kind = tuple(sorted({int(labels[i]) for i in indices}))
        strata.setdefault(kind, {})[group] = len(indices)
    chosen: list[list[int]] = [[] for _ in fractions]
    for kind, counts in sorted(strata.items()):
        for split, share in enumerate(allocate(counts, fractions, f"{seed}-{kind}")):
            for group in share:
                chosen[split].extend(members[group])
    return [np.asarray(sorted(c), dtype="int64") for c in chosen]


# An --exclude list of 12,000 names is about 0.5 MB.
MAX_LIST_BYTES = 64 << 20


def read_file_list(path: str | Path) -> set[str]:
    """File names to leave out: the audit's issues.csv (its ``file`` or ``path`` column)
    or a plain list, one name per line.

    Names, not paths, are matched, so one list serves every copy of the data set (the
    tutorial split, a patient split, the cross-validation's folders).
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"cannot read the list of files to exclude '{path}': no such file")
    # A device or FIFO named here would fill memory or hang: regular files of a sane size.
    if not safety.is_regular_file(path):
        raise UserError(f"the list of files to exclude '{path}' is not a regular file")
    if path.stat().st_size > MAX_LIST_BYTES:
        raise UserError(
            f"the list of files to exclude '{path}' is {path.stat().st_size:,} bytes, more "
            f"than {MAX_LIST_BYTES:,}; it is not a list of file names"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read the list of files to exclude '{path}': {error}") from None
    rows = list(csv.reader(text.splitlines()))
    header = [cell.strip().lower() for cell in rows[0]] if rows else []
    column = next((header.index(c) for c in ("file", "path") if c in header), None)
    if column is None:
        names = [row[0] for row in rows if row and row[0].strip()]
    else:
        names = [row[column] for row in rows[1:] if len(row) > column and row[column].strip()]
    if not names:
        raise UserError(f"'{path}' lists no files to exclude")
    return {os.path.basename(name.strip()) for name in names}
