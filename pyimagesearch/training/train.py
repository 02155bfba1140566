"""Training: the tutorial's ResNet, optimizer and schedule, fed by the tf.data pipeline.

Each epoch ends with a checkpoint (weights, optimizer state, schedule position,
epoch counter, history), so Ctrl-C or SIGTERM costs at most the epoch in
progress and ``--resume`` continues where it stopped. Shuffling and augmentation
are seeded per epoch from (seed, epoch), so a resumed run sees exactly the data
an uninterrupted run would have seen.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime
import platform
import random
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import pyimagesearch
from pyimagesearch.core import report, safety
from pyimagesearch.core.calibration import Calibration, fit_on_validation
from pyimagesearch.core.errors import UserError
from pyimagesearch.core.evaluation import (
    Positive,
    choose_positive,
    classification_metrics,
    format_metrics,
    learning_check,
    report_table,
)
from pyimagesearch.core.modelfile import read_metadata
from pyimagesearch.core.preprocessing import DEFAULT_IMAGE_SIZE, default_recipe
from pyimagesearch.core.recipes import (
    FINETUNE_WARMUP_EPOCHS,
    OPTIMIZERS,
    TRAINING_PRECISIONS,
    TrainConfig,
    adam_epochs,
    checkpoint_before,
    checkpoint_settings,
    provenance_settings,
    sgd_warmup_epochs,
)
from pyimagesearch.core.safety import MAX_PIXELS
from pyimagesearch.core.splitting import read_file_list
from pyimagesearch.network.acceleration import (
    FusedBatchNormalization,
    float32_policy,
    trace_faster,
    training_precision,
)
from pyimagesearch.network.augmentation import build_augmenter
from pyimagesearch.network.optimizers import AdamThenSGD, SwitchingSchedule, learning_rate_schedule
from pyimagesearch.network.stain import resolve as resolve_stain
from pyimagesearch.resnet import ResNet
from pyimagesearch.training.continuation import (
    Parent,
    continued_network,
    portable,
    read_parent,
    set_trainable,
)
from pyimagesearch.training.data import (
    Split,
    check_memory,
    load_split,
    make_dataset,
    make_epochs,
    scan_dataset,
    without_files,
)
from pyimagesearch.training.distribute import make_strategy, split_cpu
from pyimagesearch.training.serialization import load_model, save_model


@dataclass
class TrainResult:
    model: keras.Model
    history: dict
    report: str
    metadata: dict = field(default_factory=dict)
    calibration: Calibration | None = None  # the fitted temperature and its test figures


class TrainingInterrupted(Exception):
    """Ctrl-C or SIGTERM stopped training; the last finished epoch is checkpointed."""


def build_model(
    num_classes: int,
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
    batch_norm: type[keras.layers.Layer] = keras.layers.BatchNormalization,
    head: str = "tutorial",
    stain: str = "none",
) -> keras.Model:
    """The tutorial's network: three stages (2, 2, 3) of 32-64-128-256 filters."""
    height, width = image_size
    return ResNet.build(
        width,
        height,
        3,
        num_classes,
        (2, 2, 3),
        (32, 64, 128, 256),
        reg=0.0005,
        batch_norm=batch_norm,
        head=head,
        stain=stain,
    )


def portable_copy(
    model: keras.Model, image_size: tuple[int, int], head: str = "tutorial", stain: str = "none"
) -> keras.Model:
    """The trained weights in a plain float32 Keras model with stock layers: what users load."""
    with float32_policy():
        portable = build_model(model.output_shape[-1], image_size, head=head, stain=stain)
    portable.set_weights(model.get_weights())
    return portable


def compile_model(
    model: keras.Model,
    epochs: int,
    schedule: str = "time-decay",
    steps_per_epoch: int = 1,
    peak: float = 0.1,
    optimizer: str = "sgd",
    warmup_epochs: int | None = None,
) -> None:
    """SGD(peak, momentum 0.9), Adam, or Adam then SGD, each with its learning-rate
    schedule (``optimizers.learning_rate_schedule``) over EPOCHS.

    adam-then-sgd: Adam (its own peak, ``OPTIMIZERS["adam"]``, scheduled over the whole
    run, as ``--optimizer adam``) for ``recipes.adam_epochs``, then SGD with PEAK,
    freshly warmed up (``recipes.sgd_warmup_epochs``) and scheduled to zero over the
    epochs left."""
    if optimizer == "adam-then-sgd":
        switch = adam_epochs(epochs)
        chosen = AdamThenSGD(
            switch * steps_per_epoch,
            SwitchingSchedule(
                switch * steps_per_epoch,
                learning_rate_schedule(schedule, epochs, steps_per_epoch, OPTIMIZERS["adam"]),
                learning_rate_schedule(
                    schedule,
                    max(epochs - switch, 1),
                    steps_per_epoch,
                    peak,
                    warmup_epochs=sgd_warmup_epochs(epochs),
                ),
            ),
        )
    elif optimizer == "adam":
        chosen = keras.optimizers.Adam(
            learning_rate_schedule(schedule, epochs, steps_per_epoch, peak, warmup_epochs)
        )
    else:
        chosen = keras.optimizers.SGD(
            learning_rate_schedule(schedule, epochs, steps_per_epoch, peak, warmup_epochs),
            momentum=0.9,
        )
    model.compile(
        optimizer=chosen,
        loss="sparse_categorical_crossentropy",
        # An object, not the string "accuracy": Keras makes the string's variables while
        # tracing the first training step, and a variable made there has TensorFlow trace
        # the step a second time (3 s of the default command on a 2-core AMD EPYC).
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    # Made now, not by fit(): Keras would create the optimizer's variables while tracing
    # the first training step, one traced initialisation each (221 for adam-then-sgd).
    # The first fit() of the tutorial network took 5.5 s against 5.9 s for adam-then-sgd,
    # 4.4 s against 5.8 s for Adam (2-core Xeon, docs/accuracy.md).
    chosen.build(model.trainable_variables)


class _EpochCheckpoints(keras.callbacks.Callback):
    """Records each finished epoch in ``history`` and hands it to ``save``; ends fit()
    at the next batch boundary once a stop was requested (that epoch is not kept).
    With HISTORY_FILE, rewrites that CSV from ``history`` after each epoch."""

    def __init__(
        self,
        history: dict,
        save: Callable[[int], None] | None,
        history_file: str | None = None,
    ):
        super().__init__()
        self.history = history
        self.save = save
        self.history_file = history_file
        self.requested: int | None = None
        self.finished: int | None = None

    def on_train_batch_end(self, batch, logs=None):
        if self.requested is not None:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.requested is not None:
            return
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self.finished = epoch + 1
        if self.history_file:
            write_history(self.history, self.history_file)
        if self.save is not None:
            self.save(epoch + 1)


class _EpochLogs(keras.callbacks.Callback):
    """First of the callbacks: adds the learning rate to each epoch's logs, and empties
    the logs of an epoch that a stop request cut short, so that no callback after it
    (the best weights, the early stop, TensorBoard) takes that epoch for a finished one."""

    def __init__(self, stopper: _EpochCheckpoints):
        super().__init__()
        self.stopper = stopper

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        if self.stopper.requested is not None:
            logs.clear()
            return
        optimizer = self.model.optimizer
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # mixed precision's
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))


class _EarlyStopping(keras.callbacks.EarlyStopping):
    """Keras' EarlyStopping on the validation loss. It starts afresh at each fit(); a
    resumed run takes its best epoch and count from the checkpoint's history instead."""

    def __init__(self, patience: int, earlier: dict):
        super().__init__(monitor="val_loss", patience=patience)
        self.earlier = earlier

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        losses = self.earlier.get("val_loss", [])
        if losses:
            best = int(np.argmin(losses))
            self.best, self.best_epoch, self.wait = losses[best], best, len(losses) - 1 - best


def write_history(history: dict, path: str) -> None:
    """--history: one CSV row per finished epoch (epoch from 1, learning rate, every
    training and validation metric). Rewritten whole from the run's history, which a
    resumed run takes from its checkpoint, so the file holds exactly the epochs the
    model was trained for; Keras' CSVLogger appends, and after a resume would repeat or
    miss the epoch that the interruption cut (and counts epochs from 0)."""
    keys = sorted(history, key=lambda k: (k != "learning_rate", k.startswith("val_"), k))
    with safety.replacing(path) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", *keys])
        epochs = len(history.get("loss", []))
        for epoch in range(epochs):
            writer.writerow([epoch + 1, *(epoch_value(history[k], epoch, epochs) for k in keys)])


def best_weights_path(checkpoint: str) -> Path:
    """--keep best: the best epoch's weights so far, beside the checkpoint (Keras'
    ModelCheckpoint writes them), so that a resumed run still has them."""
    return Path(f"{checkpoint}.best.weights.h5")


def out_of_patience(config: TrainConfig, history: dict) -> bool:
    """--patience N: the validation loss has not improved for N epochs (EarlyStopping's
    rule, from the history)."""
    losses = history.get("val_loss", [])
    return bool(config.patience and losses) and (
        len(losses) - 1 - int(np.argmin(losses)) >= config.patience
    )


def epoch_value(values: list, epoch: int, epochs: int):
    """VALUES' entry for EPOCH (from 0) of EPOCHS; "" where a metric was not recorded
    then (a checkpoint from before the learning rate was recorded has fewer entries)."""
    offset = epochs - len(values)
    return values[epoch - offset] if epoch >= offset else ""


def kept_epoch(config: TrainConfig, history: dict) -> int:
    """The epoch (from 1) whose weights the run saves: the last, or with --keep best the
    one with the lowest validation loss (the first of equals, as ModelCheckpoint)."""
    losses = history.get("val_loss", [])
    if config.keep == "best" and losses:
        return int(np.argmin(losses)) + 1
    return len(history.get("loss", []))


def balanced_class_weights(labels: np.ndarray, classes: int) -> dict[int, float]:
    """--class-weight balanced: n / (classes * count), scikit-learn's rule, so that
    every class weighs as much in the loss as if the classes were equal in size."""
    counts = np.bincount(labels, minlength=classes)
    return {k: float(len(labels) / (classes * counts[k])) for k in range(classes) if counts[k]}


def class_weights(config: TrainConfig, labels: np.ndarray, classes: int) -> dict | None:
    return balanced_class_weights(labels, classes) if config.class_weight == "balanced" else None


@contextlib.contextmanager
def _catch_stop_signals(stopper: _EpochCheckpoints):
    """First Ctrl-C/SIGTERM asks for a clean stop; a second one stops at once."""
    previous = {}

    def request_stop(signum, frame):
        stopper.requested = signum
        report.info("stop requested; finishing the current batch (press Ctrl-C again to abort)")
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, request_stop)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def epoch_steps(images: int, batch_size: int) -> int:
    """Batches per epoch: make_dataset drops a last partial batch (unless that is all there is)."""
    return images // batch_size if images >= batch_size else 1


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % 2**31


def check_resumable(config: TrainConfig, class_names: list[str]) -> None:
    """Refuse --resume from a checkpoint of another recipe, from its metadata alone:
    before the precision or devices are set up, and before the network loads."""
    path = Path(config.checkpoint)
    if not path.exists():
        raise UserError(f"--resume: no checkpoint at '{path}'")
    metadata = read_metadata(path) or {}
    state = metadata.get("checkpoint")
    if not isinstance(state, dict) or not isinstance(metadata.get("preprocessing"), dict):
        raise UserError(f"--resume: '{path}' is not a training checkpoint")
    expected = checkpoint_settings(config)
    expected["stain"] = resolve_stain(config.stain, class_names)[0]
    saved = {name: state.get(name, checkpoint_before(name)) for name in expected}
    size = metadata["preprocessing"]  # the network's own
    saved["image_size"] = [size["height"], size["width"]]
    if saved != expected or metadata["class_names"] != class_names:
        raise UserError(
            f"--resume: checkpoint was made with {saved} and classes {metadata['class_names']}; "
            f"this run asks for {expected} and {class_names}"
        )
    if config.seed is not None and config.seed != state["seed"]:
        raise UserError(f"--resume: checkpoint used --seed {state['seed']}, not {config.seed}")


def resolve_precision(config: TrainConfig) -> tuple[str, str]:
    """(Keras policy, why) for the run: --precision auto made concrete before anything is
    built. A resumed run keeps the arithmetic its checkpoint was trained in, wherever it
    resumes; a new one gets ``acceleration.training_precision``'s."""
    if config.precision == "auto" and config.resume and Path(config.checkpoint).exists():
        state = (read_metadata(Path(config.checkpoint)) or {}).get("checkpoint")
        if isinstance(state, dict) and state.get("precision") in TRAINING_PRECISIONS[1:]:
            return state["precision"], "auto: the checkpoint's"
    return training_precision(config.precision)


def _restore(config: TrainConfig) -> tuple[keras.Model, dict]:
    """The checkpoint's network, optimizer state included, and its training state."""
    model, metadata = load_model(config.checkpoint, compile=True)
    if config.optimizer == "adam-then-sgd" and not isinstance(model.optimizer, AdamThenSGD):
        raise UserError(
            f"--resume: '{config.checkpoint}' was written by an older version (Adam and SGD "
            "compiled in turn) and cannot be resumed; train again without --resume"
        )
    return model, metadata["checkpoint"]


def select_splits(
    config: TrainConfig, splits: dict[str, Split] | None
) -> tuple[dict[str, Split], dict, int]:
    """The three splits (from the folder, or as handed over), less any --exclude list:
    (splits, how the folder was laid out, images excluded)."""
    layout: dict = {"layout": "given"}
    if splits is None:
        splits, layout = scan_dataset(
            config.dataset,
            config.val_split,
            config.test_split,
            config.group_pattern,
            config.split_seed,
            config.max_pixels,
        )
    excluded = 0
    if config.exclude:
        # Training only: validation and testing keep the labels as given, so the
        # figures are never judged against a list someone edited.
        kept = without_files(splits["training"], read_file_list(config.exclude))
        excluded = len(splits["training"].paths) - len(kept.paths)
        if not kept.paths:
            raise UserError(f"'{config.exclude}' lists every training image; none is left")
        splits = {**splits, "training": kept}
        report.info(f"left {excluded} training images listed in '{config.exclude}' out")
    return splits, layout, excluded


def decode_splits(
    splits: dict[str, Split], recipe: dict, max_pixels: int = MAX_PIXELS
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every split decoded once, through the one preprocessing; a split left with no
    image, or a class left with no training image, is refused in one line."""
    class_names = splits["training"].class_names
    check_memory(splits, recipe)
    arrays = {}
    for name, split in splits.items():
        report.plain(f"Found {len(split.paths)} images belonging to {len(class_names)} classes.")
        arrays[name] = load_split(split, recipe, max_pixels=max_pixels)
    missing = sorted(set(range(len(class_names))) - set(arrays["training"][1].tolist()))
    if missing:
        names = ", ".join(class_names[i] for i in missing)
        raise UserError(f"no training image of class {names} is left to learn it from")
    warn_if_imbalanced(arrays["training"][1], class_names)
    return arrays


# Above this ratio of the largest class to the smallest, plain accuracy rewards a model
# that answers the large class; the summary says so.
IMBALANCE = 5


def warn_if_imbalanced(labels: np.ndarray, class_names: list[str]) -> None:
    """A [WARNING] when the largest training class has more than IMBALANCE times the
    images of the smallest, naming both and what helps."""
    counts = np.bincount(labels, minlength=len(class_names))
    large, small = int(counts.argmax()), int(counts.argmin())
    if counts[large] > IMBALANCE * counts[small]:
        report.warning(
            f"the classes are imbalanced: {counts[large]} training images of "
            f"'{class_names[large]}' against {counts[small]} of '{class_names[small]}' (over "
            f"{IMBALANCE}x); --class-weight balanced weighs them equally, and balanced "
            "accuracy judges the model better than accuracy"
        )


def start_model(
    config: TrainConfig, class_names: list[str], strategy, parent: Parent | None = None
) -> tuple:
    """(model, seed, history): a new network, the checkpoint's for --resume, or the
    saved model's with --init-from (``continued_network``)."""
    with strategy.scope():
        if config.resume:
            model, state = _restore(config)
            report.info(f"resuming from '{config.checkpoint}' after epoch {state['epoch']}")
            seed, history = state["seed"], state["history"]
        else:
            seed = config.seed if config.seed is not None else random.randrange(2**31)
            model, history = None, {}
        # Seeds Python, NumPy and TensorFlow: weight initialisation and every random op.
        keras.utils.set_random_seed(seed)
        if model is None and parent is not None:
            model = continued_network(parent, class_names)
        if model is None:
            model = build_model(
                len(class_names),
                config.image_size,
                FusedBatchNormalization,
                config.head,
                config.stain,
            )
    return model, seed, history


def fit(
    config: TrainConfig,
    model: keras.Model,
    arrays: dict,
    seed: int,
    history: dict,
    save_checkpoint: Callable[[int], None] | None,
) -> None:
    """One model.fit over the epochs not yet done; a stop request ends it at a batch
    boundary."""
    first = len(history.get("loss", []))
    stopper = _EpochCheckpoints(history, save_checkpoint, config.history)
    callbacks: list = [_EpochLogs(stopper)]
    best_file = None
    if config.keep == "best":
        folder = None if config.checkpoint else tempfile.TemporaryDirectory()
        best_file = best_weights_path(config.checkpoint or f"{folder.name}/run")
        if first == 0:
            best_file.unlink(missing_ok=True)  # a stale one from an earlier run
        losses = history.get("val_loss")
        callbacks.append(
            keras.callbacks.ModelCheckpoint(
                str(best_file),
                monitor="val_loss",
                save_best_only=True,
                save_weights_only=True,
                initial_value_threshold=min(losses) if losses else None,
            )
        )
    if config.patience:
        callbacks.append(_EarlyStopping(config.patience, history))
    if config.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(config.tensorboard, write_graph=False))
    callbacks.append(stopper)  # last: the checkpoint is written once the others are done
    # A checkpoint written at the epoch that ran out of patience has nothing left to train.
    last = first if out_of_patience(config, history) else config.epochs
    switch = adam_epochs(config.epochs)
    two_rules = config.optimizer == "adam-then-sgd" and switch < config.epochs
    rules = f" (Adam for {switch}, then SGD)" if two_rules else ""
    report.info(f"training network for {config.epochs} epochs{rules}...")
    # Every epoch gets a fresh, (seed, epoch)-seeded pipeline, so resuming needs no RNG
    # state; they are chained into one dataset for a single fit() call, since each
    # call costs 1-3 s of set-up on a 2-core CPU (about 10% of an epoch here).
    train_ds = make_epochs(
        *arrays["training"],
        config.batch_size,
        range(first, last),
        augmenter=lambda epoch: build_augmenter(epoch_seed(seed, epoch), config.augmentation),
        seed=lambda epoch: epoch_seed(seed, epoch),
    )
    if train_ds is not None:
        with _catch_stop_signals(stopper):
            model.fit(
                train_ds,
                validation_data=make_dataset(*arrays["validation"], config.batch_size),
                initial_epoch=first,
                epochs=config.epochs,
                steps_per_epoch=epoch_steps(len(arrays["training"][1]), config.batch_size),
                verbose=report.keras_verbosity(config.verbose),
                shuffle=False,
                callbacks=callbacks,
                class_weight=class_weights(config, arrays["training"][1], model.output_shape[-1]),
            )
    done = len(history.get("loss", []))
    if stopper.requested is None and done < config.epochs:
        report.info(
            f"stopped after epoch {done} of {config.epochs}: the validation loss has "
            f"not improved for {config.patience} epochs (--patience)"
        )
    if stopper.requested is None and best_file is not None and best_file.exists():
        model.load_weights(str(best_file))  # the best epoch's, statistics included
        report.info(f"keeping epoch {kept_epoch(config, history)} of {done} (--keep best)")
    if stopper.requested is not None:
        done = stopper.finished or first
        raise TrainingInterrupted(
            f"stopped during epoch {done + 1}; "
            + (
                f"'{config.checkpoint}' holds epoch {done} of {config.epochs}"
                if done > 0 and config.checkpoint
                else "no epoch had finished, nothing to resume"
            )
        )


def provenance(config: TrainConfig, arrays: dict, seed: int, history: dict, **extra) -> dict:
    """What the model was made from and how: stored in it, shown by load_model.py. The
    dataset is named by its folder name only: a model file travels, its owner's paths
    should not."""
    return {
        "project_version": pyimagesearch.__version__,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "python_version": platform.python_version(),
        "saved_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "seed": seed,
        "dataset": Path(config.dataset).name,
        "file_counts": {name: len(arrays[name][1]) for name in arrays},
        **provenance_settings(config),
        "history": history,
        **extra,
    }


@dataclass
class Run:
    """One training run between its steps: what each step made for the next."""

    config: TrainConfig
    splits: dict[str, Split]
    layout: dict
    excluded: int
    arrays: dict
    class_names: list[str]
    positive: Positive
    recipe: dict
    model: keras.Model | None = None
    seed: int = 0
    history: dict = field(default_factory=dict)
    strategy: Any = None
    parent: Parent | None = None  # --init-from: the saved model training starts from

    def metadata(self) -> dict:
        """What every saved file of this run carries (class names, recipe, positive class)."""
        metadata = {"class_names": self.class_names, "preprocessing": self.recipe}
        if self.positive.index is not None:
            metadata["positive_class"] = self.class_names[self.positive.index]
        return metadata


def load_splits(config: TrainConfig, splits: dict[str, Split] | None = None) -> Run:
    """Step 1, the article's generators: the three splits, decoded once into memory.

    ``splits`` replaces the folder (cross-validation hands over each fold's files)."""
    splits, layout, excluded = select_splits(config, splits)
    class_names = splits["training"].class_names
    parent = None
    if config.init_from:
        parent = read_parent(config.init_from, config.parent_interpolation, config.parent_scale)
    if parent is not None:  # its input size and preprocessing are the new model's
        recipe = parent.recipe
        config.image_size = (recipe["height"], recipe["width"])
    else:
        recipe = default_recipe(config.image_size)
    arrays = decode_splits(splits, recipe, config.max_pixels)
    counts = np.bincount(arrays["training"][1], minlength=len(class_names)).tolist()
    positive = choose_positive(class_names, config.positive_class, counts)
    run = Run(config, splits, layout, excluded, arrays, class_names, positive, recipe)
    run.parent = parent
    return run


def build_network(run: Run) -> None:
    """Step 2, ``ResNet.build``: on the devices and in the precision asked for (or the
    checkpoint's network, with --resume)."""
    config = run.config
    config.precision, why = resolve_precision(config)
    config.stain, why_stain = resolve_stain(config.stain, run.class_names)
    if run.parent is not None:
        # The parent's float32 layers and its own stain layer and head come with it.
        config.precision, why = "float32", "--init-from: the saved model's"
        config.stain = run.parent.provenance.get("stain") or "none"
        config.head = run.parent.provenance.get("head") or "tutorial"
        why_stain = "--init-from: the saved model's own layers"
    if config.resume:
        check_resumable(config, run.class_names)
    trace_faster()
    if config.cpu_devices > 1:
        split_cpu(config.cpu_devices)
    run.strategy = make_strategy(config.distribute)
    if config.distribute:
        count = run.strategy.num_replicas_in_sync
        report.info(f"{config.distribute} training on {count} devices")
    keras.mixed_precision.set_global_policy(config.precision)
    report.info(f"training precision: {config.precision} ({why})")
    report.info(f"stain normalisation: {config.stain} ({why_stain})")
    # Model, optimizer and checkpoint variables must be made under the strategy.
    run.model, run.seed, run.history = start_model(
        config, run.class_names, run.strategy, run.parent
    )


def compile_network(run: Run) -> None:
    """Step 3, ``model.compile``: the optimizer with the recipe's learning-rate schedule
    (a resumed network keeps the optimizer state it was saved with)."""
    if run.config.resume:
        return
    config = run.config
    if config.bn_statistics == "frozen" and run.parent is None:
        raise UserError("--bn-statistics frozen keeps a saved model's statistics: add --init-from")
    # Sized from the images that decoded, not the files found: a skipped file would
    # otherwise leave the cosine short of zero at the last step.
    steps = epoch_steps(len(run.arrays["training"][1]), config.batch_size)
    epochs, warmup = config.epochs, None
    if run.parent is not None:
        # --freeze-backbone: the first phase trains the last layer only (fit_network
        # compiles the second); a short warm-up, so the new classifier's first large
        # gradients do not undo what the parent learned.
        frozen = min(config.freeze_backbone, config.epochs)
        set_trainable(run.model, config.bn_statistics, only_last=frozen > 0)
        epochs, warmup = frozen or config.epochs, FINETUNE_WARMUP_EPOCHS
    with run.strategy.scope():
        compile_model(
            run.model, epochs, config.schedule, steps, config.learning_rate,
            config.optimizer, warmup,
        )  # fmt: skip


def fit_network(run: Run) -> None:
    """Step 4, ``model.fit``: every epoch not yet done, a checkpoint after each."""
    config = run.config

    def save_checkpoint(epoch: int) -> None:
        state = {"epoch": epoch, **checkpoint_settings(config), "seed": run.seed,
                 "history": run.history}  # fmt: skip
        save_model(run.model, config.checkpoint, {**run.metadata(), "checkpoint": state})

    saver = save_checkpoint if config.checkpoint and config.chief else None
    frozen = min(config.freeze_backbone, config.epochs) if run.parent is not None else 0
    if frozen and not config.resume:
        report.info(f"--freeze-backbone: epochs 1-{frozen} train the last layer only")
        fit(dataclasses.replace(config, epochs=frozen), run.model, run.arrays, run.seed,
            run.history, saver)  # fmt: skip
        if frozen == config.epochs:
            return
        report.info(f"epochs {frozen + 1}-{config.epochs}: every layer trains")
        set_trainable(run.model, config.bn_statistics)
        steps = epoch_steps(len(run.arrays["training"][1]), config.batch_size)
        with run.strategy.scope():
            compile_model(
                run.model, config.epochs - frozen, config.schedule, steps,
                config.learning_rate, config.optimizer, FINETUNE_WARMUP_EPOCHS,
            )  # fmt: skip
    fit(config, run.model, run.arrays, run.seed, run.history, saver)


def recompute_batch_norm(
    model: keras.Model, images: np.ndarray, batch_size: int, seed: int = 0
) -> None:
    """Replace each BatchNormalization layer's moving statistics with their plain mean
    over IMAGES (un-augmented, what inference sees), in shuffled batches.

    The moving averages were gathered on augmented images, under weights that changed
    at every step. With Adam they no longer fit the final weights: a model saved with
    them called almost every cell Parasitized on unseen patients (docs/accuracy.md).
    Keras has no call for this, so: one forward pass in training mode per batch with
    momentum 0, which leaves that batch's statistics in the layers, averaged here. The
    pass is traced once: called eagerly it took 0.25 s a batch, 5.8 s of the default
    command on a 2-core Xeon, against about 1.5 s traced."""
    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not layers or len(images) == 0:
        return
    report.info(f"recomputing BatchNormalization statistics on {len(images)} training images...")
    momentum = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0  # read when traced: each call leaves its batch's statistics
    forward = tf.function(
        lambda batch: model(batch, training=True),
        input_signature=[tf.TensorSpec((None, *images.shape[1:]), tf.float32)],
    )
    order = np.random.default_rng(seed).permutation(len(images))
    # A last batch smaller than half the others is left out: its variance is noisier.
    starts = range(0, max(len(images) - batch_size // 2, 1), batch_size)
    totals = [[np.zeros(layer.moving_mean.shape), np.zeros(layer.moving_variance.shape)]
              for layer in layers]  # fmt: skip
    for start in starts:
        forward(tf.constant(images[order[start : start + batch_size]]))
        for total, layer in zip(totals, layers, strict=True):
            total[0] += layer.moving_mean.numpy()
            total[1] += layer.moving_variance.numpy()
    for layer, value, (mean, variance) in zip(layers, momentum, totals, strict=True):
        layer.moving_mean.assign(mean / len(starts))
        layer.moving_variance.assign(variance / len(starts))
        layer.momentum = value


def evaluate_network(run: Run) -> TrainResult:
    """Step 5, the classification report on the testing split, of exactly the network
    that will be saved; then its temperature, fitted on validation."""
    config, arrays, class_names, positive = run.config, run.arrays, run.class_names, run.positive
    if run.parent is not None:
        model = portable(run.model)
    else:
        model = portable_copy(run.model, config.image_size, config.head, config.stain)
    if config.bn_statistics == "recomputed":
        recompute_batch_norm(model, arrays["training"][0], config.batch_size, run.seed)
    report.info("evaluating network...")
    test_labels, validation_labels = arrays["testing"][1], arrays["validation"][1]
    # One forward pass over testing, then validation: the report's and the temperature's.
    images = make_dataset(*arrays["testing"], config.batch_size)
    if len(validation_labels):
        images = images.concatenate(make_dataset(*arrays["validation"], config.batch_size))
    outputs = model.predict(images, verbose=0)
    probabilities = outputs[: len(test_labels)]
    validation = outputs[len(test_labels) :] if len(validation_labels) else None
    metrics = classification_metrics(test_labels, probabilities, class_names, positive.index)
    summary = report_table(test_labels, probabilities.argmax(axis=1), class_names)
    extra = {k: v for k, v in metrics.items() if k != "accuracy"}
    if positive.reason and positive.index is not None:
        summary += f"\n[INFO] {positive.reason}"
    if extra:
        summary += "\n" + format_metrics(extra, class_names, positive.index) + "\n"
    metadata = run.metadata()
    listed = {"list": Path(config.exclude).name, "images": run.excluded} if config.exclude else None
    epochs = len(run.history.get("loss", []))
    kept = kept_epoch(config, run.history)
    weights = class_weights(config, arrays["training"][1], len(class_names))
    metadata["provenance"] = provenance(
        config, arrays, run.seed, run.history,
        layout=run.layout,
        excluded=listed,
        **({"init_from": run.parent.record(),
            "freeze_backbone": config.freeze_backbone} if run.parent else {}),
        kept_epoch=kept,  # from 1: the epoch whose weights were saved (--keep)
        stopped_epoch=epochs,  # the last epoch trained: below --epochs after an early stop
        class_weights=weights and {class_names[k]: round(w, 6) for k, w in weights.items()},
        final_metrics={  # the kept epoch's
            **{k: epoch_value(v, kept - 1, epochs) for k, v in run.history.items()},
            **{f"test_{k}": v for k, v in metrics.items()},
        },
    )  # fmt: skip
    # Temperature scaling: fitted on validation, judged on test; labels do not change.
    calibration = fit_on_validation(validation, validation_labels, probabilities, test_labels)
    if calibration is not None:
        metadata["calibration"] = calibration.metadata()
    # Has it learnt anything? Judged on validation (on test when there is none).
    judged = (
        (validation_labels, validation, "validation")
        if validation is not None
        else (test_labels, probabilities, "test")
    )
    if len(judged[0]):
        check = learning_check(judged[0], judged[1].argmax(axis=1), class_names, judged[2])
        metadata["provenance"]["learning"] = check  # save_model.py and crossval warn
    return TrainResult(model, run.history, summary, metadata, calibration)


def train(config: TrainConfig, splits: dict[str, Split] | None = None) -> TrainResult:
    """The steps in the article's order, for callers that need no step of their own
    (cross-validation hands over each fold's ``splits``)."""
    run = load_splits(config, splits)
    build_network(run)
    compile_network(run)
    fit_network(run)
    return evaluate_network(run)
