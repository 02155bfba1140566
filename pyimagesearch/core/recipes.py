"""Named training recipes: each is the command behind a figure in the README.

``tutorial`` is the original article's hyperparameters, unchanged. ``adam-then-sgd``
(the default) trains the tutorial's network for 12 epochs in batches of 16, Adam for
the first three and SGD (peak 0.015, warmed up over three epochs) for the rest, and
recomputes the BatchNormalization statistics after training (``BN_STATISTICS``), in
bfloat16 where the CPU has AMX (``precision`` "auto"); for the malaria cells it takes
each cell's stain cast out first (``stain`` "auto": grey-world for the NIH classes
only). Judged on patients the model never saw it has no failed split in 25 on a Xeon
(bfloat16 0.939-0.958, mean 0.953; float32 0.947-0.961, mean 0.954), where SGD at 0.03
after a one-epoch warm-up and no stain normalisation scored 0.923-0.955 (mean 0.949),
and in batches of 32 it failed a split (0.612) that it passed on an AMD EPYC
(docs/accuracy.md). ``stable``, the default
before it, is SGD alone (the smallest change that removed the tutorial's seed lottery
on its own test split): better on most splits where it learns, but on one split in ten
it never does (0.695). ``adam`` is ``stable`` with Adam and recomputed statistics: no
failed split, never as good. ``full`` is for the whole NIH set split by patient.
``gap96`` is ``full`` at 96 px with the global-average-pooling head (``HEADS``), whose
size does not grow with the input. Any field can be overridden on the command line
(``save_model.py --epochs 30``, ``--head gap``); the recipe's name and every value used
are recorded in the saved model's provenance.

``TrainConfig`` is the one definition of a training run's settings: its fields' defaults
are the default recipe's, and each recipe field's metadata says how the command line
sets it (``options.add_recipe``), whether a checkpoint must match it to be resumed
(``train.check_resumable``) and under which name the provenance records it
(``train.provenance``). A new setting is one field here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from pyimagesearch.core.safety import MAX_PIXELS
from pyimagesearch.network.augmentation import AUGMENTATIONS as AUGMENTATION_CHOICES

RECIPES: dict[str, dict] = {
    "tutorial": {
        "epochs": 25,
        "batch_size": 32,
        "learning_rate": 0.1,
        "schedule": "time-decay",
        "augmentation": "tutorial",
        "image_size": 64,
        "head": "tutorial",
        "stain": "none",
        "optimizer": "sgd",
        "bn_statistics": "moving",
        "precision": "float32",
    },
    "stable": {
        "epochs": 12,
        "batch_size": 32,
        "learning_rate": 0.03,
        "schedule": "cosine",
        "augmentation": "tutorial",
        "image_size": 64,
        "head": "tutorial",
        "stain": "none",
        "optimizer": "sgd",
        "bn_statistics": "moving",
        "precision": "float32",
    },
    "full": {
        "epochs": 12,
        "batch_size": 64,
        "learning_rate": 0.1,
        "schedule": "cosine",
        "augmentation": "any-orientation",
        "image_size": 64,
        "head": "tutorial",
        "stain": "none",
        "optimizer": "sgd",
        "bn_statistics": "moving",
        "precision": "float32",
    },
    "gap96": {
        "epochs": 12,
        "batch_size": 64,
        "learning_rate": 0.1,
        "schedule": "cosine",
        "augmentation": "any-orientation",
        "image_size": 96,
        "head": "gap",
        "stain": "none",
        "optimizer": "sgd",
        "bn_statistics": "moving",
        "precision": "float32",
    },
    "adam": {
        "epochs": 12,
        "batch_size": 32,
        "learning_rate": 0.001,
        "schedule": "cosine",
        "augmentation": "tutorial",
        "image_size": 64,
        "head": "tutorial",
        "stain": "none",
        "optimizer": "adam",
        "bn_statistics": "recomputed",
        "precision": "float32",
    },
    "adam-then-sgd": {
        "epochs": 12,
        # 16, not the tutorial's 32: twice the updates in the same epochs, for the same
        # time. Adam's three epochs then leave the plateau on a split where 32's did not
        # on one CPU and did on another (docs/accuracy.md).
        "batch_size": 16,
        # SGD's peak (Adam's phase peaks at OPTIMIZERS["adam"]): 0.015, half the stable
        # recipe's 0.03, at which SGD threw grey-world networks off after the switch in 3
        # of 48 runs (docs/accuracy.md).
        "learning_rate": 0.015,
        "schedule": "cosine",
        "augmentation": "tutorial",
        "image_size": 64,
        "head": "tutorial",
        # grey-world for the malaria cells (the NIH classes), none for other images.
        "stain": "auto",
        "optimizer": "adam-then-sgd",
        "bn_statistics": "recomputed",
        # bfloat16 where the CPU has AMX (acceleration.training_precision): 1.2x faster
        # steps, and on unseen patients as good as float32 over ten splits there.
        "precision": "auto",
    },
    # Continuing a saved model (save_model.py --init-from, where it is the default): Adam
    # at a tenth of its usual peak after a one-epoch warm-up (``FINETUNE_WARMUP_EPOCHS``),
    # so that a new classifier's first, large gradients do not undo what the parent
    # learned; the BatchNormalization layers frozen, their statistics the parent's
    # (Keras' transfer-learning guide): a few new images are too few to re-estimate them.
    # The network, its input size, head and stain layer are the parent's. Chosen on the
    # new patients' validation images against Adam's usual peak (docs/lifecycle.md).
    "finetune": {
        "epochs": 4,
        "batch_size": 16,
        "learning_rate": 0.0001,
        "schedule": "cosine",
        "augmentation": "tutorial",
        "image_size": 64,
        "head": "tutorial",
        "stain": "none",
        "optimizer": "adam",
        "bn_statistics": "frozen",
        "precision": "float32",
    },
}
DEFAULT_RECIPE = "adam-then-sgd"
# The recipe save_model.py --init-from uses unless --recipe names another.
CONTINUE_RECIPE = "finetune"
# Epochs of warm-up of a run that starts from a saved model (--init-from).
FINETUNE_WARMUP_EPOCHS = 1
SCHEDULES = ("time-decay", "cosine")
# The network's heads (``resnet.ResNet.build``): the article's 8x8 average pooling +
# Flatten, or global average pooling, whose size does not depend on the input's.
HEADS = ("tutorial", "gap")
# Stain normalisation, a layer of the network (``stain.GreyWorld``): none, or each cell's
# colour cast taken out (docs/accuracy.md). A recipe may say "auto" (``stain.resolve``):
# grey-world for the NIH malaria classes, where it was measured, none for other images,
# whose colour may be what tells their classes apart.
STAIN_NORMALIZATIONS = ("none", "grey-world")
STAIN_CHOICES = ("auto", *STAIN_NORMALIZATIONS)
# Optimizers, and the peak learning rate each gets when --optimizer changes it without
# --learning-rate: the peak of the recipe that measured it (SGD's the stable recipe's,
# Adam's its usual 0.001, docs/accuracy.md). adam-then-sgd's rate is its SGD phase's (the
# default recipe's 0.015 after a 3-epoch warm-up); its Adam phase always peaks at Adam's.
OPTIMIZERS = {
    "sgd": RECIPES["stable"]["learning_rate"],
    "adam": RECIPES["adam"]["learning_rate"],
    "adam-then-sgd": RECIPES["adam-then-sgd"]["learning_rate"],
}
# adam-then-sgd: the share of the epochs trained with Adam before SGD takes over (3 of
# 12). Adam leaves the plateau where SGD alone stayed on one split in ten; SGD then
# settles where Adam alone does not (docs/accuracy.md). Two of 12 fell back on it.
ADAM_SHARE = 0.25


def adam_epochs(epochs: int) -> int:
    """Epochs of Adam in an adam-then-sgd run of EPOCHS: a quarter, at least one."""
    return max(1, int(epochs * ADAM_SHARE + 0.5))


def sgd_warmup_epochs(epochs: int) -> int:
    """Epochs of SGD's warm-up in an adam-then-sgd run of EPOCHS: a third of SGD's
    epochs, rounded down (3 of 9; a 2-epoch phase has no room for one).

    After a one-epoch warm-up (19 steps) SGD threw 2 of 15 grey-world splits off in
    bfloat16 and left a third short; three epochs learned all three, and with the
    recipe's lower peak no split of 25 failed (docs/accuracy.md)."""
    return (epochs - adam_epochs(epochs)) // 3


# BatchNormalization's statistics in the saved model: the moving averages kept during
# training (Keras' own), or recomputed after it as the plain mean over the un-augmented
# training images. With Adam, the moving averages lag the weights and the saved model
# calls almost every cell Parasitized on unseen patients (docs/accuracy.md).
# "frozen" (the finetune recipe's) trains none of them: the BatchNormalization layers stay
# in inference mode with the parent's statistics, as Keras' transfer-learning guide does.
BN_STATISTICS = ("moving", "recomputed", "frozen")

# Training arithmetic (Keras mixed-precision policies, or auto: bfloat16 where the CPU
# has AMX, acceleration.training_precision); the saved model is float32.
TRAINING_PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")

# What each recipe is for, in --recipe's help; its values are read from RECIPES.
PURPOSES = {
    "tutorial": "the original article's hyperparameters, unchanged (its result depends on "
    "the seed)",
    "stable": "SGD alone, the default before adam-then-sgd",
    "full": "made for the whole NIH malaria set split by patient",
    "gap96": "full at 96 px with the global-average-pooling head",
    "adam": "stable with Adam and recomputed statistics",
    "adam-then-sgd": f"Adam (peak {OPTIMIZERS['adam']}) for a quarter of the epochs, then "
    "SGD (momentum 0.9) warmed up again over a third of the rest",
    "finetune": "save_model.py's default with --init-from: a one-epoch warm-up, the "
    "BatchNormalization layers frozen with the saved model's statistics (its size, head "
    "and stain layer are the saved model's)",
}


def describe(name: str) -> str:
    """One recipe's values in words, for --help: read from RECIPES, so never stale."""
    r = RECIPES[name]
    return (
        f"{r['epochs']} epochs in batches of {r['batch_size']}, {r['optimizer']} peaking at "
        f"{r['learning_rate']}, {r['schedule']} schedule, {r['augmentation']} augmentation, "
        f"{r['image_size']} px, {r['head']} head, stain {r['stain']}, {r['bn_statistics']} "
        f"BatchNormalization statistics, precision {r['precision']}"
    )


DEFAULT = RECIPES[DEFAULT_RECIPE]
# Which epoch's weights a run saves (--keep), and the classes' weights (--class-weight).
KEEP = ("last", "best")
CLASS_WEIGHTS = ("none", "balanced")


def setting(
    name: str,
    help: str,
    *,
    default: Any = None,
    flags: tuple[str, ...] = (),
    choices: tuple[str, ...] | None = None,
    parse: str | None = None,
    checkpoint: bool = True,
    before: Any = None,
    provenance: str | None = None,
) -> Any:
    """A recipe field of TrainConfig, its default the default recipe's (DEFAULT where the
    recipes leave it out: one value for every recipe unless given). HELP and FLAGS
    (besides --NAME) make its option; CHOICES or PARSE (a validator of
    ``pyimagesearch.options``, by name) check its value; CHECKPOINT: a checkpoint made
    with another value is not resumed (BEFORE: the value a checkpoint written before the
    setting existed had); PROVENANCE: the key it is recorded under (default NAME)."""
    default = DEFAULT.get(name, default)
    metadata = {
        "recipe": True,
        "help": help,
        "flags": (*flags, "--" + name.replace("_", "-")),
        "choices": choices,
        "parse": parse,
        "checkpoint": checkpoint,
        "before": before,
        "provenance": provenance or name,
    }
    if name == "image_size":  # a square side on the command line, (height, width) here
        return field(default=(default, default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """One training run's settings: the recipe's (each a ``setting``), then the run's own.

    The library takes this, never the command line's ``argparse.Namespace``
    (``options.config_from_options`` makes one from it)."""

    dataset: str
    epochs: int = setting("epochs", "training epochs", flags=("-e",), parse="epoch_count")
    batch_size: int = setting(
        "batch_size", "images per training step", flags=("-b",), parse="positive_count"
    )
    learning_rate: float = setting(
        "learning_rate",
        "peak learning rate of the optimizer (an --optimizer other than the recipe's brings "
        "its own: " + ", ".join(f"{k} {v}" for k, v in OPTIMIZERS.items()) + ")",
        parse="positive_number",
    )
    schedule: str = setting(
        "schedule",
        "learning rate: time-decay is the original lr / (1 + decay * iterations); cosine "
        "warms up for one epoch, then falls to zero",
        choices=SCHEDULES,
    )
    augmentation: str = setting(
        "augmentation",
        "none: no augmentation; flip: horizontal flips only; tutorial: the original's "
        "(rotation 20 degrees, zoom, shifts, shear, horizontal flips); any-orientation: any "
        "rotation and both flips; tutorial+colour, any-orientation+colour: the same plus "
        "random hue (up to 36 degrees) and saturation (0.5-1.5x) per image, as stains differ "
        "between slides (training only). Flips are wrong where left and right differ (text, "
        "digits)",
        choices=AUGMENTATION_CHOICES,
    )
    image_size: tuple[int, int] = setting(
        "image_size",
        "side in pixels of the square the images are resized to; it is stored in the model, "
        "so load_model.py follows it. About the images' own size or less",
        parse="image_side",
    )
    head: str = setting(
        "head",
        "the network's head: tutorial, the article's 8x8 average pooling + Flatten (its "
        "Dense layer grows with --image-size), or gap, global average pooling (the same "
        "parameters at any size); stored in the model",
        choices=HEADS,
        before="tutorial",
    )
    stain: str = setting(
        "stain",
        "stain normalisation, a layer of the network: none, or grey-world, each channel "
        "divided by its mean over the cell's pixels (the black background left out), so "
        "every cell averages to grey whatever its slide's stain; stored in the model, so "
        "training and every loader apply it alike. auto: grey-world for the NIH malaria "
        "classes, none for other images, whose colour may tell the classes apart",
        choices=STAIN_CHOICES,
        before="none",
    )
    optimizer: str = setting(
        "optimizer",
        "sgd: SGD with momentum 0.9, as the article; adam: Adam; adam-then-sgd: Adam for a "
        "quarter of the epochs, then SGD (peak --learning-rate, warmed up again, cosine to "
        "zero) for the rest",
        choices=tuple(OPTIMIZERS),
        before="sgd",
    )
    bn_statistics: str = setting(
        "bn_statistics",
        "BatchNormalization statistics the saved model keeps: moving, the averages kept "
        "during training; recomputed, their plain mean over the un-augmented training "
        "images after training (needed with adam); frozen, the layers not trained at all "
        "(the --init-from model's statistics and scales kept)",
        choices=BN_STATISTICS,
        checkpoint=False,  # applied after training: a resumed run may choose either
    )
    precision: str = setting(
        "precision",
        "training arithmetic. auto: mixed_bfloat16 on a CPU with AMX, float32 elsewhere; "
        "mixed_float16 is for GPUs. The saved model is float32 either way, and records the "
        "arithmetic it was trained in",
        choices=TRAINING_PRECISIONS,
        provenance="training_precision",
    )
    keep: str = setting(
        "keep",
        "which epoch's weights are saved: last, or best, the epoch with the lowest "
        "validation loss (Ultralytics' best.pt, Keras' restore_best_weights)",
        default="last",
        choices=KEEP,
        before="last",
    )
    patience: int | None = setting(
        "patience",
        "stop when the validation loss has not improved for N epochs (Keras' EarlyStopping); "
        "none: train every epoch",
        parse="positive_count",
        checkpoint=False,  # a stopping rule only: a resumed run may change it
    )
    class_weight: str = setting(
        "class_weight",
        "none, or balanced: each class's loss weighted by the inverse of its share of the "
        "training images (scikit-learn's 'balanced'), for classes of very different sizes",
        default="none",
        choices=CLASS_WEIGHTS,
        before="none",
    )
    recipe: str | None = DEFAULT_RECIPE  # the recipe the values above came from
    seed: int | None = None
    checkpoint: str | None = None
    resume: bool = False
    distribute: str | None = None
    cpu_devices: int = 1
    exclude: str | None = None  # a list of files (e.g. the audit's issues.csv) left out of training
    val_split: float | None = None  # a flat folder of classes: shares split off for validation
    test_split: float | None = None  # ... and for testing
    group_pattern: str | None = None  # file-name groups kept in one split (None: NIH rule/none)
    split_seed: int = 42  # the flat folder's split, apart from --seed: one test split per folder
    positive_class: str | None = None  # sensitivity/specificity/AUC are about this class
    verbose: int = 1
    max_pixels: int = MAX_PIXELS  # images declaring more are skipped before decoding
    chief: bool = True  # False: a multi-worker worker other than the chief writes no checkpoint
    history: str | None = None  # a CSV file: one row per epoch (epoch, learning rate, metrics)
    tensorboard: str | None = None  # a folder of TensorBoard logs
    init_from: str | None = None  # a saved model to start from (training/continuation.py)
    freeze_backbone: int = 0  # with init_from: epochs that train only the last layer
    parent_interpolation: str | None = None  # init_from a file without metadata: its resize
    parent_scale: str | None = None  # ... and its pixel scale


def recipe_fields() -> list:
    """TrainConfig's recipe fields (``dataclasses.Field``), in order."""
    return [f for f in fields(TrainConfig) if f.metadata.get("recipe")]


def plain(value: Any) -> Any:
    """A setting as JSON keeps it (a tuple becomes a list)."""
    return list(value) if isinstance(value, tuple) else value


def checkpoint_settings(config: TrainConfig) -> dict:
    """The settings a checkpoint records and a resumed run must match."""
    return {
        f.name: plain(getattr(config, f.name)) for f in recipe_fields() if f.metadata["checkpoint"]
    }


def checkpoint_before(name: str) -> Any:
    """The value of setting NAME in a checkpoint written before the setting existed."""
    return next(f.metadata["before"] for f in recipe_fields() if f.name == name)


def provenance_settings(config: TrainConfig) -> dict:
    """Every setting, under its provenance name, and the recipe they came from."""
    recorded = {f.metadata["provenance"]: plain(getattr(config, f.name)) for f in recipe_fields()}
    return {"recipe": config.recipe, **recorded}
