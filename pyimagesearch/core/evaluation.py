"""Judging predictions against known classes: the report, clinical figures, doubtful labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pyimagesearch.core import report
from pyimagesearch.core.errors import UserError
from pyimagesearch.core.splitting import NIH_POSITIVE

# The figures below are scikit-learn's (recall_score, roc_auc_score, confusion_matrix,
# classification_report), written in NumPy: importing sklearn.metrics takes 3.7-4.3 s on
# a 2-core CPU, twice what load_model.py's whole fast path may take for 16 images.
# tests/test_evaluation.py checks each against scikit-learn on random and tied inputs.


def recall(truth: np.ndarray, said: np.ndarray) -> float:
    """Of the cases that are TRUTH (booleans), the share also SAID; 0 when there are none."""
    total = int(truth.sum())
    return float((truth & said).sum() / total) if total else 0.0


def roc_auc(is_positive: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic, ties counted half (average ranks)."""
    order = np.argsort(scores, kind="mergesort")
    ordered = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    starts = np.r_[0, np.nonzero(np.diff(ordered))[0] + 1]
    ends = np.r_[starts[1:], len(scores)]
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2  # 1-based average rank of the tie
    positives = int(is_positive.sum())
    negatives = len(scores) - positives
    return float(
        (ranks[is_positive].sum() - positives * (positives + 1) / 2) / (positives * negatives)
    )


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """Counts of (true class, predicted class), rows true."""
    pairs = np.asarray(labels, dtype=np.int64) * classes + np.asarray(predicted, dtype=np.int64)
    return np.bincount(pairs, minlength=classes * classes).reshape(classes, classes)


# A wrong answer at this confidence or above is as likely to be a wrong label: in the
# NIH set, such cells "Parasitized" often show no parasite at all (see the README).
CONFIDENT = 0.9
# Below this many images a count of confident errors says nothing about the model or
# the labels (16 images, or a model that never learned, would give noise).
MIN_IMAGES_FOR_CONFIDENT_ERRORS = 100


# The malaria example's disease class: the positive class when a model has it.
DEFAULT_POSITIVE = NIH_POSITIVE


@dataclass(frozen=True)
class Positive:
    """The class that sensitivity, specificity and the AUC are about, and why it is that one."""

    index: int | None
    reason: str  # "" when given or obvious; else a note worth one [INFO] line


def choose_positive(
    class_names: list[str], requested: str | None = None, counts: Sequence[int] | None = None
) -> Positive:
    """--positive-class when given, else Parasitized when present, else for two classes
    the rarer one when COUNTS (images per class) tell (the class one looks for, "defect"
    rather than "ok"), else the second in index order; said so. A multi-class set has
    none (macro AUC only)."""
    if requested is not None:
        if requested not in class_names:
            raise UserError(
                f"--positive-class '{requested}' is not one of the classes {class_names}"
            )
        return Positive(class_names.index(requested), "")
    if DEFAULT_POSITIVE in class_names:
        return Positive(class_names.index(DEFAULT_POSITIVE), "")
    if len(class_names) == 2:
        if counts is not None and counts[0] != counts[1]:
            rarer = int(np.argmin(counts))
            return Positive(
                rarer,
                f"positive class '{class_names[rarer]}', the rarer of the two "
                f"({counts[rarer]} of {sum(counts)} images; choose another with "
                "--positive-class)",
            )
        return Positive(
            1,
            f"positive class '{class_names[1]}', the second in index order (choose another "
            "with --positive-class)",
        )
    return Positive(None, "")


def balanced_accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    """The mean of the recalls of the classes in LABELS (scikit-learn's
    balanced_accuracy_score): a model that always answers the largest class scores
    1 / classes, whatever its accuracy."""
    return float(np.mean([np.mean(predicted[labels == c] == c) for c in np.unique(labels)]))


def classification_metrics(
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: list[str],
    positive: int | None = None,
) -> dict[str, float]:
    """Accuracy and balanced accuracy; with a POSITIVE class its sensitivity (found),
    specificity (the others cleared) and ROC AUC; with more than two classes the macro
    one-vs-rest ROC AUC.

    One definition for training, load_model.py and cross-validation. An AUC needs both
    sides present in LABELS, and is left out otherwise."""
    predicted = probabilities.argmax(axis=1)
    metrics = {"accuracy": float((predicted == labels).mean())} if len(labels) else {}
    if len(labels):
        metrics["balanced_accuracy"] = balanced_accuracy(labels, predicted)
    if positive is not None:
        is_positive = labels == positive
        said_positive = predicted == positive
        metrics["sensitivity"] = recall(is_positive, said_positive)
        metrics["specificity"] = recall(~is_positive, ~said_positive)
        if 0 < is_positive.sum() < len(labels):
            metrics["auc"] = roc_auc(is_positive, probabilities[:, positive])
    present = np.unique(labels)
    if len(class_names) > 2 and len(present) == len(class_names):
        # One class against the rest, each by its own column, then the plain mean.
        metrics["auc_macro_ovr"] = float(
            np.mean([roc_auc(labels == k, probabilities[:, k]) for k in range(len(class_names))])
        )
    return metrics


def clinical_metrics(
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: list[str],
    positive: int | None = None,
) -> dict[str, float]:
    """The figures beyond accuracy (see classification_metrics): what a report adds below
    sklearn's table. POSITIVE defaults to ``choose_positive``'s choice."""
    if positive is None:
        positive = choose_positive(class_names).index
    metrics = classification_metrics(labels, probabilities, class_names, positive)
    metrics.pop("accuracy", None)
    return metrics


def format_metrics(metrics: dict[str, float], class_names: list[str] | None = None,
                   positive: int | None = None) -> str:  # fmt: skip
    """One line: the positive class's figures (named when it is not the malaria one)."""
    text = "  ".join(f"{name}: {value:.4f}" for name, value in metrics.items())
    if positive is not None and class_names and class_names[positive] != DEFAULT_POSITIVE:
        text = f"positive class '{class_names[positive]}': {text}"
    return text


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


def plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def report_table(labels: np.ndarray, predicted: np.ndarray, class_names: list[str]) -> str:
    """scikit-learn's classification report (its layout, 4 digits, 0 where a class was never
    predicted) over every class, in the model's order."""
    matrix = confusion_matrix(labels, predicted, len(class_names)).astype(np.float64)
    hits, support, said = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)
    precision = np.divide(hits, said, out=np.zeros_like(hits), where=said > 0)
    recalled = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    both = precision + recalled
    f1 = np.divide(2 * precision * recalled, both, out=np.zeros_like(hits), where=both > 0)
    total = support.sum()
    width = max(len("weighted avg"), *(len(name) for name in class_names))
    row = "{:>{w}s} " + " {:>9.4f}" * 3 + " {:>9}\n"
    text = "{:>{w}s} ".format("", w=width) + "".join(
        f" {h:>9}" for h in ("precision", "recall", "f1-score", "support")
    )
    text += "\n\n"
    for k, name in enumerate(class_names):
        text += row.format(name, precision[k], recalled[k], f1[k], int(support[k]), w=width)
    text += "\n"
    accuracy = hits.sum() / total if total else 0.0
    text += ("{:>{w}s} " + " {:>9}" * 2 + " {:>9.4f} {:>9}\n").format(
        "accuracy", "", "", accuracy, int(total), w=width
    )
    weights = support / total if total else np.zeros_like(support)
    for name, average in (("macro avg", np.mean), ("weighted avg", None)):
        figures = [
            float(average(v)) if average else float((v * weights).sum())
            for v in (precision, recalled, f1)
        ]
        text += row.format(name, *figures, int(total), w=width)
    return text


def confusion_text(labels: np.ndarray, predicted: np.ndarray, class_names: list[str]) -> str:
    """The confusion matrix with its class names as row and column headers."""
    matrix = confusion_matrix(labels, predicted, len(class_names))
    names = [name if len(name) <= 14 else name[:13] + "~" for name in class_names]
    corner = "true \\ predicted"
    first = max(len(corner), *(len(n) for n in names))
    width = max(*(len(n) for n in names), len(str(matrix.max(initial=0))))
    lines = [f"  {corner:>{first}}  " + "  ".join(f"{n:>{width}}" for n in names)]
    for name, row in zip(names, matrix, strict=True):
        lines.append(f"  {name:>{first}}  " + "  ".join(f"{count:>{width}}" for count in row))
    return "\n".join(lines)


def print_report(
    paths: list[str],
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: list[str],
    listed: int = 10,
    positive: Positive | None = None,
) -> None:
    """Classification report, confusion matrix, the positive class's figures and the most
    doubtful labels."""
    positive = positive or choose_positive(class_names)
    predicted = probabilities.argmax(axis=1)
    report.info(f"{int((predicted == labels).sum())}/{len(labels)} correct where the folder "
          "names the class")  # fmt: skip
    report.plain(report_table(labels, predicted, class_names))
    report.info("confusion matrix (rows: true class, columns: predicted class)")
    report.plain(confusion_text(labels, predicted, class_names))
    metrics = clinical_metrics(labels, probabilities, class_names, positive.index)
    if positive.reason and positive.index is not None:
        report.info(f"{positive.reason}")
    if metrics:
        report.info(f"{format_metrics(metrics, class_names, positive.index)}")
    if len(labels) < MIN_IMAGES_FOR_CONFIDENT_ERRORS:
        return
    doubtful = confident_errors(labels, probabilities)
    report.info(
        f"{plural(len(doubtful), 'error')} "
        + ("was" if len(doubtful) == 1 else "were")
        + f" made with confidence >= {CONFIDENT:.2f} (an overconfident model or a wrong label)"
        + ("; most confident first:" if len(doubtful) else "")
    )
    for index in doubtful[:listed]:
        report.plain(
            f"  {probabilities[index].max():.3f} {class_names[predicted[index]]}, folder says "
            f"{class_names[labels[index]]}: {paths[index]}"
        )
    if len(doubtful) > listed:
        report.plain(f"  ... and {len(doubtful) - listed} more (all are in --csv)")


# "Has not learnt" (issue 40): on the imbalanced set with a 95% majority, a model that
# answered the majority class for every image was saved as if it had learnt. Two signs,
# each enough: its balanced accuracy (the mean of the per-class recalls, whose chance
# level is 1/classes whatever the imbalance) is within NOT_LEARNT_MARGIN of chance; or
# one class takes at least NEARLY_EVERY of the answers while it holds at most
# MAJORITY_AT_MOST of the images. The margin of 0.10 is wide enough that the 40-image
# validation split of a model stuck on a plateau (0.50-0.55) is caught, and narrow enough
# that the default command's models (0.90 and more on unseen patients) never are.
NOT_LEARNT_MARGIN = 0.10
NEARLY_EVERY = 0.95
MAJORITY_AT_MOST = 0.90


def learning_check(
    labels: np.ndarray, predicted: np.ndarray, class_names: list[str], split: str = "validation"
) -> dict:
    """The figures the "has not learnt" verdict rests on, as stored in the provenance."""
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    present = np.unique(labels)
    balanced = balanced_accuracy(labels, predicted)
    counts = np.bincount(predicted, minlength=len(class_names))
    top = int(counts.argmax())
    share, true_share = counts[top] / len(predicted), float(np.mean(labels == top))
    chance = 1 / len(present)
    learnt = not (
        balanced <= chance + NOT_LEARNT_MARGIN
        or (share >= NEARLY_EVERY and true_share <= MAJORITY_AT_MOST)
    )
    return {
        "split": split,
        "images": len(labels),
        "balanced_accuracy": round(balanced, 4),
        "chance": round(chance, 4),
        "commonest_answer": class_names[top],
        "commonest_share": round(float(share), 4),
        "commonest_true_share": round(true_share, 4),
        "learnt": learnt,
    }


def not_learnt_warning(check: object) -> str | None:
    """The warning for a model that has not learnt, from its stored figures; None for a
    model that has, or a file without (or with malformed) figures. The text is built here
    from numbers, never taken from the file."""
    if not isinstance(check, dict) or check.get("learnt") is not False:
        return None
    try:
        images, split = int(check["images"]), str(check["split"])
        balanced, chance = float(check["balanced_accuracy"]), float(check["chance"])
        answer, share = str(check["commonest_answer"]), float(check["commonest_share"])
        true_share = float(check["commonest_true_share"])
    except (KeyError, TypeError, ValueError):
        return None
    return (
        f"this model has not learnt: on its {images} {split[:20]} images its balanced "
        f"accuracy is {balanced:.3f} where guessing scores {chance:.3f}, and it answers "
        f"'{answer[:60]}' for {share:.0%} of them, where {true_share:.0%} are; its answers "
        "are little better than guessing. Check the labels, train longer (--epochs) or try "
        "another --augmentation or --recipe"
    )
