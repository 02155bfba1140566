"""Data pipeline: find the images of a split and feed them to Keras with tf.data."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from pyimagesearch.core import report
from pyimagesearch.core.errors import UserError
from pyimagesearch.core.preprocessing import (  # noqa: F401 (warn_skipped: data's callers)
    iter_readable_batches,
    to_model_input,
    warn_skipped,
)
from pyimagesearch.core.safety import MAX_PIXELS
from pyimagesearch.core.splitting import (
    ClassFiles,
    check_dataset,
    find_layout,
    hidden,
    scan_classes,
)

SPLITS = ("training", "validation", "testing")


@dataclass
class Split:
    """The files of one split and their integer labels (index into ``class_names``)."""

    name: str
    paths: list[str]
    labels: np.ndarray
    class_names: list[str]


def list_split(split_dir: Path, max_pixels: int = MAX_PIXELS) -> Split:
    """Read ``split_dir/<class>/*`` (nested folders included) with the one scan,
    ``splitting.scan_classes``, the way Keras' ``flow_from_directory`` read a split."""
    return as_split(class_files(split_dir, max_pixels), split_dir.name)


def class_files(root: Path, max_pixels: int = MAX_PIXELS) -> ClassFiles:
    """The scan of ROOT's class folders; a folder of none, or a class of no image, is refused."""
    if not any(d.is_dir() and not hidden(d.name) for d in root.iterdir()):
        raise UserError(f"'{root}' has no class folders (expected one sub-folder per class)")
    files = scan_classes(root, max_pixels)
    counts = np.bincount(files.labels, minlength=len(files.class_names))
    for name, count in zip(files.class_names, counts, strict=True):
        if not count:
            raise UserError(f"class folder '{root / name}' holds no image files")
    return files


def as_split(files: ClassFiles, name: str, index: np.ndarray | None = None) -> Split:
    """FILES (or the INDEX of them) as a Split of full paths."""
    chosen = range(len(files.paths)) if index is None else index
    return Split(
        name, [files.full(i) for i in chosen], files.labels[list(chosen)], files.class_names
    )


def without_files(split: Split, names: set[str]) -> Split:
    """The split less the files whose base name is in ``names``."""
    keep = [i for i, p in enumerate(split.paths) if os.path.basename(p) not in names]
    return Split(split.name, [split.paths[i] for i in keep], split.labels[keep], split.class_names)


def check_classes(split: Split) -> None:
    """Training needs two classes or more, each with images."""
    if len(split.class_names) < 2:
        raise UserError(
            f"'{split.name}' has {len(split.class_names)} class folder "
            f"({', '.join(split.class_names)}); a classifier needs at least two classes"
        )


def scan_dataset(
    dataset_dir: str | Path,
    val_split: float | None = None,
    test_split: float | None = None,
    group_pattern: str | None = None,
    split_seed: int = 42,
    max_pixels: int = MAX_PIXELS,
) -> tuple[dict[str, Split], dict]:
    """The training/validation/testing splits of any accepted layout, and how they were
    found (recorded in the model's provenance).

    A flat folder is split here: seeded, stratified by class, and with every group of
    ``group_pattern`` (the NIH patient rule for the NIH classes) in one split."""
    from pyimagesearch.core.splitting import (
        check_splits_filled,
        default_group_pattern,
        groups_for,
        split_files,
    )

    root = Path(dataset_dir)
    layout = check_dataset(root, val_split, test_split, group_pattern)
    if layout.kind == "split":
        splits = {name: list_split(folder, max_pixels) for name, folder in layout.folders.items()}
        for name, split in splits.items():
            split.name = name
        reference = splits["training"].class_names
        check_classes(splits["training"])
        for split in splits.values():
            if split.class_names != reference:
                raise UserError(
                    f"class folders differ between splits: training has {reference}, "
                    f"{split.name} has {split.class_names}"
                )
        names = {name: folder.name for name, folder in layout.folders.items()}
        return splits, {"layout": "split", "folders": names}

    files = class_files(root, max_pixels)
    everything = as_split(files, root.name)
    check_classes(everything)
    val_split = 0.1 if val_split is None else val_split
    test_split = 0.1 if test_split is None else test_split
    fractions = (1 - val_split - test_split, val_split, test_split)
    pattern = group_pattern or default_group_pattern(everything.class_names)
    parts = split_files(files, fractions, split_seed, pattern)
    splits = {
        name: as_split(files, name, index)
        for name, index in zip(("training", "validation", "testing"), parts, strict=True)
    }
    groups = groups_for(files.paths, pattern)
    check_splits_filled(parts, files.labels, groups, fractions, pattern, f"'{root}'")
    by = f"by group ('{pattern}')" if pattern else "by file"
    report.info(
        f"'{root}' is a flat folder of {len(everything.class_names)} classes: split "
        + "/".join(f"{f:.0%}" for f in fractions)
        + f" {by}, stratified by class (--split-seed {split_seed})"
    )
    description = {
        "layout": "flat",
        "fractions": [round(f, 6) for f in fractions],
        "group_pattern": pattern,
        "split_seed": split_seed,
        # What reproduces the split exactly (load_model.py --split): the scan's files.
        "images": len(files.paths),
        "files_sha256": files.digest(),
        "counts": {name: len(split.paths) for name, split in splits.items()},
    }
    return splits, description


def pool_dataset(dataset_dir: str | Path, max_pixels: int = MAX_PIXELS) -> Split:
    """Every image of a dataset folder as one pool (cross-validation makes its own folds):
    the images of a split folder's training/validation/testing are pooled, saying so."""
    root = Path(dataset_dir)
    layout = find_layout(root)
    if layout.kind == "flat":
        pooled = list_split(root, max_pixels)
    else:
        parts = [list_split(folder, max_pixels) for folder in layout.folders.values()]
        names = parts[0].class_names
        for part in parts[1:]:
            if part.class_names != names:
                raise UserError(
                    f"class folders differ between splits: {parts[0].name} has {names}, "
                    f"{part.name} has {part.class_names}"
                )
        pooled = Split(
            root.name,
            [p for part in parts for p in part.paths],
            np.concatenate([part.labels for part in parts]),
            names,
        )
        report.info(
            f"'{root}' is split into "
            + ", ".join(f"{folder.name}/" for folder in layout.folders.values())
            + f"; pooling their {len(pooled.paths)} images for the folds"
        )
    check_classes(pooled)
    return pooled


def iter_decoded_batches(
    paths: list[str],
    recipe: dict,
    batch_size: int,
    skipped=None,
    max_pixels: int | None = MAX_PIXELS,
):
    """Stream (indices, model inputs) batches, decoding in threads a batch ahead.

    Unreadable files drop out (their indices never appear); each is appended to
    SKIPPED as (index, reason) when a list is given.
    """
    for indices, pixels in iter_readable_batches(paths, recipe, batch_size, skipped, max_pixels):
        yield indices, to_model_input(pixels, recipe)


def available_memory() -> int | None:
    """Bytes the kernel says a new allocation can get (Linux' MemAvailable), else None."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def check_memory(splits: dict[str, Split], recipe: dict) -> None:
    """Refuse, before decoding, splits whose decoded arrays would not fit in memory.

    Every split is held as float32 (side x side x 3 x 4 bytes an image), and training
    keeps one more copy of its split as the variable each epoch gathers from: at
    --image-size 1024 the tutorial's 500 images need about 8 GB. The bound is 80% of
    what is available, so the rest of the run still has room."""
    per_image = recipe["height"] * recipe["width"] * 3 * 4
    images = sum(len(split.paths) for split in splits.values()) + len(splits["training"].paths)
    needed, available = images * per_image, available_memory()
    if available is not None and needed > 0.8 * available:
        raise UserError(
            f"decoding these images at {recipe['height']}x{recipe['width']} needs about "
            f"{needed / 2**30:.1f} GiB ({per_image / 2**20:.1f} MiB an image as float32, "
            f"training's held twice), more than 80% of the {available / 2**30:.1f} GiB "
            "available: use a smaller --image-size"
        )


def load_split(
    split: Split, recipe: dict, batch_size: int = 256, max_pixels: int = MAX_PIXELS
) -> tuple[np.ndarray, np.ndarray]:
    """Decode a whole split once into memory (the tutorial's splits are small).

    Decoding once and augmenting the cached arrays each epoch is what makes an
    epoch cheap: the legacy generator re-read and re-decoded every PNG each epoch.
    """
    progress = keras.utils.Progbar(
        len(split.paths), unit_name="image", verbose=report.keras_verbosity()
    )
    chunks, kept, failed = [], [], []
    for indices, images in iter_decoded_batches(
        split.paths, recipe, batch_size, failed, max_pixels
    ):
        chunks.append(images)
        kept.append(indices)
        progress.add(len(indices))
    kept_indices = np.concatenate(kept) if kept else np.zeros(0, dtype="int64")
    warn_skipped(split.paths, kept_indices, dict(failed))
    if len(kept_indices) == 0:
        raise UserError(f"the {split.name} split has no readable image")
    return np.concatenate(chunks), split.labels[kept_indices]


def make_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int) -> tf.data.Dataset:
    """Batches of (image, label) in order, every image kept: validation and testing."""
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    return _batches(dataset, len(images), batch_size, None, None, training=False)


def make_epochs(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    epochs: Iterable[int],
    augmenter: Callable[[int], Any],
    seed: Callable[[int], int],
) -> tf.data.Dataset | None:
    """Every epoch's training batches, one epoch after another, for a single fit() call.

    Each epoch is shuffled and augmented with its own seed (``seed(epoch)``), exactly as
    a fresh ``augmenter(epoch)`` would augment it, so a resumed run sees exactly what an
    uninterrupted one would. The epochs shuffle image indices and gather the images from
    one variable: chaining datasets built on the arrays themselves held two copies of the
    training set per epoch (measured on 2,000 images: 2.4 GiB for 12 epochs, against
    0.19 GiB this way), and the shuffle buffer now holds indices, not images.
    """
    epochs = list(epochs)
    if not epochs:
        return None
    count = len(images)
    source = tf.Variable(images, trainable=False, name="training_images")
    targets = tf.constant(labels)
    seeds = tf.constant([seed(epoch) for epoch in epochs], tf.int64)
    # One augmenter for all epochs, its random state set at each epoch's start to where
    # augmenter(epoch) would start (Keras' seed generators start at [layer seed, 0], each
    # layer's seed the augmenter's plus its own offset). An augmenter built and traced
    # for every epoch cost 2.5 s of the default command's 12 on a 2-core AMD EPYC.
    augment = augmenter(epochs[0])
    offsets = (
        []
        if augment is None
        else [(v, v.numpy() - [seed(epochs[0]), 0]) for v in augment.variables]
    )

    def gather(indices):
        return tf.gather(source, indices), tf.gather(targets, indices)

    def one_epoch(index):
        epoch_seed = seeds[index]
        start = tf.stack([epoch_seed, tf.constant(0, tf.int64)])
        resets = [state.assign(start + offset) for state, offset in offsets]
        with tf.control_dependencies(resets):  # before this epoch's first augmentation
            epoch_seed = tf.identity(epoch_seed)
        indices = tf.data.Dataset.range(count).shuffle(
            count, seed=epoch_seed, reshuffle_each_iteration=True
        )
        return _batches(indices, count, batch_size, gather, augment, prefetch=False)

    # flat_map makes an epoch's batches once the one before has given its last, so each
    # epoch starts from its own state; the prefetch after it overlaps epochs again.
    epochs_dataset = tf.data.Dataset.range(len(epochs)).flat_map(one_epoch)
    return epochs_dataset.prefetch(tf.data.AUTOTUNE)


def _batches(
    dataset: tf.data.Dataset,
    count: int,
    batch_size: int,
    gather: Callable | None,
    augment,
    training: bool = True,
    prefetch: bool = True,
) -> tf.data.Dataset:
    # Training drops the last partial batch, as the legacy recipe's
    # steps_per_epoch = N // batch_size did: a batch of a few images gives noisy
    # BatchNormalization statistics at learning rate 0.1.
    dataset = dataset.batch(batch_size, drop_remainder=training and count >= batch_size)
    if gather is not None:
        dataset = dataset.map(gather)
    if augment is not None:
        # One call at a time: the augmentation layers draw from a seed generator
        # whose state parallel calls would race on, making seeded runs differ.
        # Augmenting a batch costs far less than the training step it overlaps with.
        dataset = dataset.map(lambda x, y: (augment(x, training=True), y))
    return dataset.prefetch(tf.data.AUTOTUNE) if prefetch else dataset
