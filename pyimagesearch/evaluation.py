"""Judging predictions against known classes: the report, clinical figures, doubtful labels."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import classification_report, confusion_matrix, recall_score, roc_auc_score

# A wrong answer at this confidence or above is as likely to be a wrong label: in the
# NIH set, such cells "Parasitized" often show no parasite at all (see the README).
CONFIDENT = 0.9
# Below this many images a count of confident errors says nothing about the model or
# the labels (16 images, or a model that never learned, would give noise).
MIN_IMAGES_FOR_CONFIDENT_ERRORS = 100


def clinical_metrics(
    labels: np.ndarray, probabilities: np.ndarray, class_names: list[str]
) -> dict[str, float]:
    """Sensitivity (Parasitized found), specificity (Uninfected cleared) and ROC AUC."""
    if len(class_names) != 2 or "Parasitized" not in class_names:
        return {}
    positive = class_names.index("Parasitized")
    is_positive = labels == positive
    said_positive = probabilities.argmax(axis=1) == positive
    metrics = {
        "sensitivity": float(recall_score(is_positive, said_positive, zero_division=0)),
        "specificity": float(recall_score(~is_positive, ~said_positive, zero_division=0)),
    }
    if 0 < is_positive.sum() < len(labels):
        metrics["auc"] = float(roc_auc_score(is_positive, probabilities[:, positive]))
    return metrics


def format_metrics(metrics: dict[str, float]) -> str:
    return "  ".join(f"{name}: {value:.4f}" for name, value in metrics.items())


def confident_errors(
    labels: np.ndarray, probabilities: np.ndarray, threshold: float = CONFIDENT
) -> np.ndarray:
    """Indices of wrong predictions at or above THRESHOLD, most confident first.

    These are the first images to show a human: the model or the label is wrong.
    """
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    wrong = np.nonzero((predicted != labels) & (confidence >= threshold))[0]
    return wrong[np.argsort(-confidence[wrong], kind="stable")]


def print_report(
    paths: list[str],
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: list[str],
    listed: int = 10,
) -> None:
    """Classification report, confusion matrix, clinical figures and the most doubtful labels."""
    predicted = probabilities.argmax(axis=1)
    print(f"[INFO] {int((predicted == labels).sum())}/{len(labels)} correct where the folder "
          "names the class")  # fmt: skip
    indices = list(range(len(class_names)))
    print(
        classification_report(
            labels, predicted, labels=indices, target_names=class_names, digits=4, zero_division=0
        )
    )
    matrix = confusion_matrix(labels, predicted, labels=indices)
    print("[INFO] confusion matrix (rows: true, columns: predicted)")
    width = max(len(name) for name in class_names)
    for name, row in zip(class_names, matrix, strict=True):
        print(f"  {name:>{width}}  " + "  ".join(f"{count:>{width}}" for count in row))
    metrics = clinical_metrics(labels, probabilities, class_names)
    if metrics:
        print(f"[INFO] {format_metrics(metrics)}")
    if len(labels) < MIN_IMAGES_FOR_CONFIDENT_ERRORS:
        return
    doubtful = confident_errors(labels, probabilities)
    print(
        f"[INFO] {len(doubtful)} errors were made with confidence >= {CONFIDENT:.2f} "
        "(an overconfident model or a wrong label)"
        + ("; most confident first:" if len(doubtful) else "")
    )
    for index in doubtful[:listed]:
        print(
            f"  {probabilities[index].max():.3f} {class_names[predicted[index]]}, folder says "
            f"{class_names[labels[index]]}: {paths[index]}"
        )
    if len(doubtful) > listed:
        print(f"  ... and {len(doubtful) - listed} more (all are in --csv)")
