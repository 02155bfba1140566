"""Calibrated confidence: temperature scaling, fitted on the validation split.

Why: a network trained with SGD and cross-entropy is usually over-confident (it prints
"100.0%" for cells it gets wrong), and the project acts on confidence (the 0.90 threshold
of confident errors). Temperature scaling (Guo et al. 2017, "On Calibration of Modern
Neural Networks") divides the logits by one number T fitted on held-out images:

    calibrated = softmax(log(p) / T)        (= softmax(logits / T), since p = softmax(logits))

T > 1 softens over-confident probabilities, T < 1 sharpens under-confident ones. The
ranking of the classes, hence every label and the accuracy, is unchanged. The fitted T
is stored in the saved model's metadata (``metadata["calibration"]``), and
:func:`forward` is the one place where inference, the HTTP server and every export apply
it. A model without a stored temperature gives its raw probabilities, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pyimagesearch.core import report

# Bounds of the fit, and of any temperature a model file may carry: outside them the
# probabilities are squashed to one-hot or to uniform, which no real fit produces.
MIN_TEMPERATURE = 0.05
MAX_TEMPERATURE = 20.0
# Equal-width confidence bins of the expected calibration error (Guo et al. use 15).
ECE_BINS = 15
# Probabilities are clipped here before the log: float32's smallest normal number, so a
# softmax that underflowed to 0 stays (almost) 0 instead of becoming log(0) = -inf.
TINY = float(np.finfo(np.float32).tiny)


def apply_temperature(probabilities: Any, temperature: float) -> Any:
    """softmax(log(p) / T), row by row, as TensorFlow ops (a tensor in, a tensor out).

    Written once in TensorFlow so that the same ops run eagerly, inside the traced
    predictor, and inside every exported graph (ONNX, LiteRT, OpenVINO, SavedModel).
    """
    import tensorflow as tf

    probabilities = tf.convert_to_tensor(probabilities)
    tiny = tf.constant(TINY, probabilities.dtype)
    return tf.nn.softmax(tf.math.log(tf.maximum(probabilities, tiny)) / temperature, axis=-1)


def forward(model: Callable, temperature: float | None = None) -> Callable:
    """images -> class probabilities: MODEL in inference mode, then the temperature.

    Every path that lets probabilities out (load_model.py's predictors on TensorFlow and
    OpenVINO, the HTTP server, the exports) traces or calls this function, so none can
    forget the temperature. With ``temperature=None`` it is exactly the model's output.
    """

    def run(images: Any) -> Any:
        probabilities = model(images, training=False)
        if temperature is None:
            return probabilities
        import tensorflow as tf

        return apply_temperature(tf.cast(probabilities, tf.float32), temperature)

    return run


def temperature_of(metadata: dict) -> float | None:
    """The temperature stored in a model's metadata, or None for an uncalibrated model.

    ``serialization.validate_metadata`` has already checked it is finite and in bounds."""
    calibration = metadata.get("calibration")
    return float(calibration["temperature"]) if calibration else None


def check_temperature(value: object) -> str | None:
    """Why VALUE is not a usable stored temperature, or None when it is."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a number, got {type(value).__name__}"
    # NaN fails both comparisons and infinities one; an integer is compared as it is
    # (float() of a 400-digit one would raise OverflowError).
    if not MIN_TEMPERATURE <= value <= MAX_TEMPERATURE:
        text = repr(value)
        shown = text if len(text) <= 20 else text[:20] + "..."
        return f"must be between {MIN_TEMPERATURE} and {MAX_TEMPERATURE}, got {shown}"
    return None


def _logits(probabilities: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(np.asarray(probabilities, dtype="float64"), TINY))


def negative_log_likelihood(
    probabilities: np.ndarray, labels: np.ndarray, temperature: float
) -> float:
    """Mean -log of the true class's calibrated probability: what the fit minimises."""
    from scipy.special import log_softmax

    log_calibrated = log_softmax(_logits(probabilities) / temperature, axis=1)
    return float(-log_calibrated[np.arange(len(labels)), labels].mean())


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The T in [MIN_TEMPERATURE, MAX_TEMPERATURE] minimising the negative log-likelihood.

    One parameter, so a bounded scalar search suffices (no gradients, no learning rate).
    A set the model gets entirely right has no finite optimum: the likelihood keeps
    rising as T falls, and the fit ends on the lower bound (see :func:`on_bound`).
    """
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels, dtype="int64")
    result = minimize_scalar(
        lambda t: negative_log_likelihood(probabilities, labels, t),
        bounds=(MIN_TEMPERATURE, MAX_TEMPERATURE),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(result.x)


def on_bound(temperature: float) -> bool:
    """True when a fit stopped at a bound, i.e. the data did not determine T."""
    return min(temperature - MIN_TEMPERATURE, MAX_TEMPERATURE - temperature) < 1e-3


# When a validation split determines a temperature (issue 40; the study and its figures:
# docs/accuracy.md, "When to store a temperature"): at least MIN_ERRORS misclassified
# images (with fewer, one or two images shape the likelihood: one error in 40 fitted
# T = 0.54, which raised the held-out patients' NLL by 39%), and a temperature fitted on
# part of the split must make the rest more likely (the cross-fitted NLL gain over
# CROSS_FOLDS folds must be positive). Chosen on drawn validation splits judged on images
# the choice never saw, then judged on held-out patients.
MIN_ERRORS = 5
CROSS_FOLDS = 5


def cross_fitted_gain(
    probabilities: np.ndarray, labels: np.ndarray, folds: int = CROSS_FOLDS
) -> float:
    """Relative NLL gain of a temperature on images its fit never saw: FOLDS folds of the
    split (wrong answers dealt out first, so the errors spread over the folds), T fitted
    on the others. Negative when the temperature makes unseen images less likely."""
    labels = np.asarray(labels, dtype="int64")
    wrong = probabilities.argmax(axis=1) != labels
    order = np.r_[np.flatnonzero(wrong), np.flatnonzero(~wrong)]
    fold_of = np.empty(len(labels), dtype="int64")
    fold_of[order] = np.arange(len(labels)) % folds
    before = after = 0.0
    for k in range(folds):
        held, rest = fold_of == k, fold_of != k
        if not held.any():
            continue
        temperature = fit_temperature(probabilities[rest], labels[rest])
        count = int(held.sum())
        before += negative_log_likelihood(probabilities[held], labels[held], 1.0) * count
        after += negative_log_likelihood(probabilities[held], labels[held], temperature) * count
    return float((before - after) / before) if before > 0 else 0.0


def undetermined(probabilities: np.ndarray, labels: np.ndarray, temperature: float) -> str | None:
    """Why the validation split does not determine TEMPERATURE, or None when it does."""
    errors = int((probabilities.argmax(axis=1) != labels).sum())
    images = f"{len(labels)} validation images ({errors} misclassified)"
    if errors < MIN_ERRORS:
        return f"{images} hold too few errors to fit one on (at least {MIN_ERRORS})"
    if on_bound(temperature):
        return f"the fit on {images} ran to its bound {temperature:.2f}"
    gain = cross_fitted_gain(probabilities, labels)
    if gain <= 0:
        return (
            f"on {images}, a temperature fitted on part of them made the rest less likely "
            f"(cross-fitted likelihood gain {gain:+.1%})"
        )
    return None


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict:
    """Per equal-width confidence bin ((i/bins, (i+1)/bins]): image count, mean confidence
    and accuracy, where confidence is the top class's probability."""
    probabilities = np.asarray(probabilities, dtype="float64")
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, confidence, bins) / counts
        accuracy = np.bincount(index, correct.astype("float64"), bins) / counts
    return {"counts": counts, "confidence": mean_confidence, "accuracy": accuracy}


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
) -> float:
    """ECE: the gap |accuracy - confidence| of each confidence bin, weighted by its share
    of the images. 0 means "80% sure" is right 80% of the time; it is noisy on few images
    (a 100-image test split has about 7 per bin)."""
    table = reliability(probabilities, labels, bins)
    filled = table["counts"] > 0
    gaps = np.abs(table["accuracy"][filled] - table["confidence"][filled])
    return float((table["counts"][filled] * gaps).sum() / table["counts"].sum())


def calibrate(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """:func:`apply_temperature` on a NumPy array, in float64."""
    return np.asarray(apply_temperature(np.asarray(probabilities, dtype="float64"), temperature))


@dataclass
class Calibration:
    """A temperature fitted on validation, and the test split it is judged on."""

    temperature: float
    validation_images: int
    test_labels: np.ndarray
    test_probabilities: np.ndarray  # before calibration

    @property
    def test_ece_before(self) -> float | None:
        """None when there are no test images to judge by."""
        if not len(self.test_labels):
            return None
        return expected_calibration_error(self.test_probabilities, self.test_labels)

    @property
    def test_ece_after(self) -> float | None:
        if not len(self.test_labels):
            return None
        calibrated = calibrate(self.test_probabilities, self.temperature)
        return expected_calibration_error(calibrated, self.test_labels)

    def metadata(self) -> dict:
        """What the saved model stores under "calibration"."""
        return {
            "method": "temperature",
            "temperature": self.temperature,
            "fitted_on": "validation",
            "images": self.validation_images,
            "ece_bins": ECE_BINS,
            "test_ece_before": self.test_ece_before,
            "test_ece_after": self.test_ece_after,
        }


def fit_on_validation(
    validation_probabilities: np.ndarray | None,
    validation_labels: np.ndarray,
    test_probabilities: np.ndarray,
    test_labels: np.ndarray,
) -> Calibration | None:
    """Fit T on the validation split and report the test ECE before and after.

    None, with an [INFO] line, when the validation split cannot determine T
    (:func:`undetermined`): it is empty, has fewer than MIN_ERRORS misclassified images
    (with none, the likelihood asks for ever more confidence), the fit ran to a bound, or
    a T fitted on part of the split makes the rest less likely. The model then stays
    uncalibrated rather than carry a temperature that 40 images happened to give.
    """
    if validation_probabilities is None or len(validation_labels) == 0:
        report.info("calibration: no validation images, so no temperature is stored")
        return None
    temperature = fit_temperature(validation_probabilities, validation_labels)
    why = undetermined(validation_probabilities, np.asarray(validation_labels), temperature)
    if why:
        report.info(
            "calibration: no temperature is stored, the probabilities stay as the network "
            f"gives them: {why}"
        )
        return None
    result = Calibration(
        round(temperature, 4), len(validation_labels), np.asarray(test_labels), test_probabilities
    )
    report.info(
        f"calibration: temperature {result.temperature:.4f} fitted on "
        f"{result.validation_images} validation images"
    )
    if len(result.test_labels):
        report.info(
            f"test expected calibration error ({ECE_BINS} bins): "
            f"{result.test_ece_before:.4f} before, {result.test_ece_after:.4f} after "
            "(accuracy is unchanged)"
        )
    return result
