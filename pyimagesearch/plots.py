"""The training-history plot (loss and accuracy per epoch), the confusion matrix and the
calibration reliability diagram."""

from __future__ import annotations

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
    """The confusion matrix as an image (rows: true class, columns: predicted)."""
    from sklearn.metrics import ConfusionMatrixDisplay

    display = ConfusionMatrixDisplay.from_predictions(
        true_labels, predicted_labels, labels=class_names, cmap="Blues", colorbar=False
    )
    display.ax_.set_title("Confusion matrix")
    display.figure_.tight_layout()
    display.figure_.savefig(path)
    plt.close(display.figure_)


def plot_reliability(
    labels: np.ndarray, before: np.ndarray, after: np.ndarray, temperature: float, path: str
) -> None:
    """Reliability diagrams of the same images before and after temperature scaling.

    Each bar is one equal-width confidence bin: its height is the accuracy of the images
    whose top probability falls in it, the red outline is where a calibrated model's bar
    would end (its mean confidence), and the diagonal is perfect calibration. Bins with
    few images are noisy: the count is printed above each bar.
    """
    from pyimagesearch.calibration import ECE_BINS, expected_calibration_error, reliability

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
