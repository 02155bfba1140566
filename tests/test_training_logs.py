"""Issue 39, items 4-6: --keep/--patience, --history/--tensorboard and --class-weight, on
what users run: save_model.py in a fresh process, its files read back by other tools."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_script


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_patience_stops_early_keeps_the_best_epoch_and_writes_its_logs(tmp_path: Path):
    """--patience 2 --epochs 40 on an easy set (zero or one, scikit-learn's digits) stops
    early; --history has one row per epoch run; the metadata holds kept_epoch, the epoch
    of the lowest validation loss, and the saved network is that epoch's (its loss on the
    validation images is the one the history gives for it); TensorBoard's own reader
    finds the loss scalars of every epoch. (Mutations: --patience ignored (no
    _EarlyStopping) trains all 40; --keep ignored keeps the last epoch; --history ignored
    writes no file; --tensorboard ignored writes no logs.)"""
    import keras
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from pyimagesearch.core.preprocessing import default_recipe
    from pyimagesearch.example_sets import write_set
    from pyimagesearch.training.data import load_split, scan_dataset
    from pyimagesearch.training.serialization import load_model, read_metadata

    data = tmp_path / "zero-one"
    write_set("zero-one", data)
    model, history, logs = tmp_path / "z.keras", tmp_path / "history.csv", tmp_path / "tb"
    result = run_script(
        "save_model.py", "-d", str(data), "-m", str(model), "-p", str(tmp_path / "p.png"),
        "--image-size", "32", "--augmentation", "none", "--seed", "1",
        # The moving statistics: the saved network is then exactly the kept epoch's.
        "--bn-statistics", "moving",
        "--epochs", "40", "--patience", "2", "--keep", "best",
        "--history", str(history), "--tensorboard", str(logs),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    provenance = read_metadata(model)["provenance"]
    stopped, kept = provenance["stopped_epoch"], provenance["kept_epoch"]
    assert stopped < 40 and f"stopped after epoch {stopped} of 40" in result.stdout
    assert (provenance["keep"], provenance["patience"]) == ("best", 2)

    rows = read_rows(history)
    assert [int(row["epoch"]) for row in rows] == list(range(1, stopped + 1))
    assert {"learning_rate", "loss", "accuracy", "val_loss", "val_accuracy"} <= set(rows[0])
    losses = [float(row["val_loss"]) for row in rows]
    # Stopped by patience 2: the best epoch is two before the last.
    assert kept == int(np.argmin(losses)) + 1 == stopped - 2

    network, metadata = load_model(model)
    splits, _ = scan_dataset(str(data))
    images, labels = load_split(splits["validation"], default_recipe((32, 32)))
    network.compile(loss="sparse_categorical_crossentropy")
    loss = network.evaluate(images, labels, verbose=0)
    assert loss == pytest.approx(losses[kept - 1], abs=1e-4)
    assert abs(loss - losses[-1]) > 1e-4  # the last epoch's network would not give it

    for run in ("train", "validation"):
        events = EventAccumulator(str(logs / run), size_guidance={"tensors": 0})  # keep all
        events.Reload()
        assert len(events.Tensors("epoch_loss")) == stopped, run
    keras.backend.clear_session()


def test_early_stopping_takes_its_count_from_a_resumed_runs_history():
    """Keras' EarlyStopping starts afresh at each fit(); resumed after epoch 3 of a run
    whose best validation loss was epoch 2's, --patience 2 must stop at epoch 4 if it
    does not improve, as the uninterrupted run would; and a checkpoint that had already
    run out of patience trains no more. (Mutations: _EarlyStopping without its
    on_train_begin trains on; out_of_patience returning False fails the last assert.)"""
    from pyimagesearch.core.recipes import TrainConfig
    from pyimagesearch.training import train as steps

    model = steps.build_model(2, (32, 32))
    earlier = {"loss": [1.0, 0.8, 0.7], "val_loss": [1.0, 0.9, 0.95]}
    stop = steps._EarlyStopping(2, earlier)
    stop.set_model(model)
    stop.on_train_begin()
    model.stop_training = False
    stop.on_epoch_end(3, {"val_loss": 0.97})
    assert model.stop_training
    config = TrainConfig("d", patience=2)
    assert not steps.out_of_patience(config, earlier)
    assert steps.out_of_patience(config, {"val_loss": [1.0, 0.9, 0.95, 0.97]})


def test_balanced_class_weights_are_inverse_frequency():
    """scikit-learn's rule n / (classes * count): 18 against 185 weighs the rare class
    about 10x. (Mutation: count / n fails this.)"""
    from sklearn.utils.class_weight import compute_class_weight

    from pyimagesearch.training.train import balanced_class_weights

    labels = np.array([0] * 18 + [1] * 185)
    weights = balanced_class_weights(labels, 2)
    expected = compute_class_weight("balanced", classes=np.array([0, 1]), y=labels)
    assert [weights[0], weights[1]] == pytest.approx(list(expected))


def test_balanced_class_weight_raises_the_rare_classs_recall(malaria_source: Path, tmp_path):
    """On NIH cells where Parasitized has 18 training images against 185 Uninfected (each
    split from patients of its own), the summary warns of the imbalance, and
    --class-weight balanced finds more of the unseen patients' parasitized cells than the
    unweighted run of the same seed; the report gives balanced accuracy and the
    provenance the weights. (Mutations: --class-weight ignored (fit without
    class_weight) gives the unweighted recall; warn_if_imbalanced not called fails the
    warning.)"""
    from pyimagesearch.training.serialization import read_metadata
    from tests.imbalanced import write_imbalanced_split

    data = write_imbalanced_split(malaria_source, tmp_path / "rare")
    recall = {}
    for weight in ("none", "balanced"):
        model = tmp_path / f"{weight}.keras"
        result = run_script(
            "save_model.py", "-d", str(data), "-m", str(model), "-p", str(tmp_path / "p.png"),
            "--seed", "1", "--epochs", "6", "--class-weight", weight,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        assert "the classes are imbalanced: 185 training images of 'Uninfected' against 18" in (
            result.stderr
        )
        assert "balanced_accuracy: " in result.stdout
        provenance = read_metadata(model)["provenance"]
        recall[weight] = provenance["final_metrics"]["test_sensitivity"]  # Parasitized's
        assert provenance["class_weight"] == weight
    assert provenance["class_weights"]["Parasitized"] == pytest.approx(203 / 36)
    assert recall["balanced"] > recall["none"], recall
