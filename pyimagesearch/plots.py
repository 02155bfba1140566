"""The training-history plot (loss and accuracy per epoch)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402


def plot_history(history: dict, path: str, title: str = "Training Loss and Accuracy") -> None:
    epochs = range(1, len(history["loss"]) + 1)
    figure, axis = plt.subplots(figsize=(8, 5))
    for key, label in (
        ("loss", "train_loss"),
        ("val_loss", "val_loss"),
        ("accuracy", "train_acc"),
        ("val_accuracy", "val_acc"),
    ):
        if key in history:
            axis.plot(epochs, history[key], label=label)
    axis.set_title(title)
    axis.set_xlabel("Epoch #")
    axis.set_ylabel("Loss/Accuracy")
    axis.legend(loc="lower left")
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
