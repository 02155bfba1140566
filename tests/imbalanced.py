"""A split of the NIH cells where Parasitized is rare: 18 training images against 185,
each split's patients its own (used by test_class_weight and docs/accuracy.md)."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

from pyimagesearch.core.splitting import default_group_pattern, groups_for

CLASSES = ("Parasitized", "Uninfected")
# (Parasitized, Uninfected) images per split: the 18 against 185 for training.
COUNTS = {"training": (18, 185), "validation": (20, 20), "testing": (60, 60)}


def write_imbalanced_split(source: Path, root: Path, seed: int = 0) -> Path:
    """training/validation/testing/<class>/ under ROOT, copied from SOURCE's class
    folders, each split drawn from patients of its own (seeded)."""
    files = {c: sorted(os.listdir(source / c)) for c in CLASSES}
    pattern = default_group_pattern(list(CLASSES))
    patients = sorted(set(groups_for([f for c in CLASSES for f in files[c]], pattern)))
    random.Random(seed).shuffle(patients)
    share = {"training": patients[: len(patients) // 2],
             "validation": patients[len(patients) // 2 : 3 * len(patients) // 4],
             "testing": patients[3 * len(patients) // 4 :]}  # fmt: skip
    for split, wanted in COUNTS.items():
        mine = set(share[split])
        for name, count in zip(CLASSES, wanted, strict=True):
            chosen = [f for f, g in zip(files[name], groups_for(files[name], pattern), strict=True)
                      if g in mine]  # fmt: skip
            random.Random(seed).shuffle(chosen)
            folder = root / split / name
            folder.mkdir(parents=True)
            for file in chosen[:count]:
                shutil.copy(source / name / file, folder / file)
    return root
