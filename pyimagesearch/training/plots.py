"""The training-history plot (loss and accuracy per epoch), the confusion matrix and the
calibration reliability diagram."""

from __future__ import annotations

from itertools import pairwise

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def plot_history(history: dict, path: str, title: str = "Training Loss and Accuracy") -> None:
    """Loss (log scale: early validation spikes at learning rate 0.1 dwarf the rest)
    beside accuracy, per epoch."""
    epochs = range(1, len(history["loss"]) + 1)
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(11, 4.5))
    for axis, keys in (
        (loss_axis, (("loss", "train_loss"), ("val_loss", "val_loss"))),
        (accuracy_axis, (("accuracy", "train_acc"), ("val_accuracy", "val_acc"))),
    ):
        for key, label in keys:
            if key in history:
                axis.plot(epochs, history[key], label=label)
        axis.set_xlabel("Epoch #")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.legend(loc="best")
    loss_axis.set_yscale("log")
    loss_axis.set_ylabel("Loss")
    accuracy_axis.set_ylabel("Accuracy")
    accuracy_axis.set_ylim(0, 1)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def plot_confusion_matrix(
    true_labels: list[str], predicted_labels: list[str], class_names: list[str], path: str
) -> None:
    """The confusion matrix as an image (rows: true class, columns: predicted).

    Readable up to 20 classes and beyond: the figure grows with the class count, the
    fonts shrink, the counts are written in the cells up to 20 classes, and the predicted
    class names turn vertical when they would not fit side by side."""
    from sklearn.metrics import ConfusionMatrixDisplay

    count = len(class_names)
    side = max(5.0, 2.5 + 0.45 * count)  # inches: about 0.45 per class, plus the names
    tick_size = 10 if count <= 8 else 8 if count <= 20 else 6
    figure, axis = plt.subplots(figsize=(side, side))
    display = ConfusionMatrixDisplay.from_predictions(
        true_labels,
        predicted_labels,
        labels=class_names,
        cmap="Blues",
        colorbar=False,
        include_values=count <= 20,
        text_kw={"fontsize": 10 if count <= 8 else 7},
        ax=axis,
    )
    axis.set_title("Confusion matrix")
    axis.tick_params(labelsize=tick_size)
    figure.tight_layout()
    if _overlapping(axis.get_xticklabels(), figure):
        for label in axis.get_xticklabels():
            label.set_rotation(90)
            label.set_horizontalalignment("center")
        figure.tight_layout()
    figure.savefig(path)
    plt.close(display.figure_)


def _overlapping(labels: list, figure) -> bool:
    """Whether any two of the drawn LABELS overlap (with a point of space between them)."""
    renderer = figure.canvas.get_renderer()
    boxes = sorted(
        (label.get_window_extent(renderer) for label in labels if label.get_text()),
        key=lambda box: box.x0,
    )
    gap = figure.dpi / 72
    return any(left.x1 + gap > right.x0 for left, right in pairwise(boxes))


def plot_reliability(
    labels: np.ndarray, before: np.ndarray, after: np.ndarray, temperature: float, path: str
) -> None:
    """Reliability diagrams of the same images before and after temperature scaling.

    Each bar is one equal-width confidence bin: its height is the accuracy of the images
    whose top probability falls in it, the red outline is where a calibrated model's bar
    would end (its mean confidence), and the diagonal is perfect calibration. Bins with
    few images are noisy: the count is printed above each bar.
    """
    from pyimagesearch.core.calibration import ECE_BINS, expected_calibration_error, reliability

    edges = np.linspace(0, 1, ECE_BINS + 1)
    width = 1 / ECE_BINS
    figure, axes = plt.subplots(1, 2, figsize=(11, 5), sharey=True)
    for axis, probabilities, title in (
        (axes[0], before, "Before calibration"),
        (axes[1], after, f"After temperature scaling (T = {temperature:.3g})"),
    ):
        table = reliability(probabilities, labels)
        filled = table["counts"] > 0
        left = edges[:-1][filled]
        axis.bar(left, table["accuracy"][filled], width, align="edge", color="tab:blue",
                 edgecolor="white", label="accuracy")  # fmt: skip
        axis.bar(left, table["confidence"][filled], width, align="edge", fill=False,
                 edgecolor="tab:red", label="mean confidence")  # fmt: skip
        for x, height, count in zip(
            left, table["accuracy"][filled], table["counts"][filled], strict=True
        ):
            axis.text(x + width / 2, height + 0.01, str(count), ha="center", fontsize=7)
        axis.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
        ece = expected_calibration_error(probabilities, labels)
        axis.set_title(f"{title}\nECE {ece:.4f} over {len(labels)} images")
        axis.set_xlabel("Confidence (top-class probability)")
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1.05)
        axis.legend(loc="upper left")
    axes[0].set_ylabel("Accuracy")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
