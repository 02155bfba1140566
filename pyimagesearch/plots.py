"""The training-history plot (loss and accuracy per epoch)."""

from __future__ import annotations

import matplotlib

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
