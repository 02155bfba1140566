"""Inference: classify image files in batches with the model's own preprocessing.

A predictor maps a batch of resized pixels (``preprocessing.resize``, float32 in
[0, 255]) to class probabilities. Three engines exist:
- the compiled network stored in the model file (``pyimagesearch.core.compiled``), run by
  OpenVINO without TensorFlow: the default wherever it is valid;
- the Keras model on TensorFlow, which scales with ``preprocessing.to_model_input``;
- the Keras model converted to OpenVINO at load time (files without a stored network).
All receive the same arrays; only the arithmetic of the network differs. This module
imports no TensorFlow itself: the Keras engines import it when they are built.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from pyimagesearch.core import report
from pyimagesearch.core.errors import UserError
from pyimagesearch.core.preprocessing import default_recipe, iter_readable_batches, to_model_input

Predictor = Callable[[np.ndarray], np.ndarray]
# Converting a Keras network to OpenVINO at load time costs about 1.5-2 s (trace,
# convert, compile) on a 2-core CPU, and OpenVINO then classifies about 1.6x faster in
# float32 (bench/RESULTS-xeon-2026-11-26.md): it pays back from roughly a thousand
# images, so `auto` leaves smaller jobs of files without a stored network to TensorFlow.
OPENVINO_MIN_IMAGES = 1000


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def choose_runtime(requested: str, images: int) -> str:
    """Resolve ``auto`` for the Keras path: OpenVINO for large jobs on a CPU-only
    machine, else TensorFlow."""
    if requested == "openvino" and not openvino_installed():
        raise UserError(
            "--runtime openvino needs the Python package 'openvino', which is not installed "
            "(pip install -r requirements.txt)"
        )
    if requested != "auto":
        return requested
    if images < OPENVINO_MIN_IMAGES or not openvino_installed():
        return "tensorflow"
    import tensorflow as tf

    # On a GPU, TensorFlow is the fast engine; OpenVINO here targets the CPU.
    return "tensorflow" if tf.config.list_physical_devices("GPU") else "openvino"


def with_precision(model: Any, precision: str) -> Any:
    """The same network and weights computing in another dtype policy (outputs stay float32)."""
    if precision in ("float32", "auto"):
        return model
    import keras

    def clone(layer):
        config = layer.get_config()
        if layer is not model.layers[-1]:
            config["dtype"] = precision
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def tensorflow_predictor(
    model: Any,
    precision: str,
    batches: int,
    temperature: float | None = None,
    recipe: dict | None = None,
) -> Predictor:
    """One traced function for all batch sizes, or a plain call for a single batch.

    ``model.predict_on_batch`` pays about 2x in per-call overhead on a small CPU
    (measured in bench/), so the loader calls a ``tf.function`` of the model itself;
    tracing it costs about 0.3 s more than one eager call, so a single batch (the
    16-image default) runs eagerly.
    """
    import tensorflow as tf

    from pyimagesearch.core.calibration import forward

    network = forward(with_precision(model, precision), temperature)
    recipe = recipe or default_recipe()
    if batches <= 1:
        return lambda pixels: np.asarray(network(to_model_input(pixels, recipe)), dtype="float32")
    spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)

    @tf.function(input_signature=[spec])
    def infer(images):
        return tf.cast(network(images), tf.float32)

    return lambda pixels: infer(to_model_input(pixels, recipe)).numpy()


def make_predictor(
    model: Any,
    precision: str = "float32",
    batches: int = 2,
    runtime: str = "tensorflow",
    temperature: float | None = None,
    recipe: dict | None = None,
) -> Predictor:
    """A callable from a batch of resized pixels to class probabilities, for a Keras model.

    ``mixed_bfloat16`` is faster on CPUs with AMX but changes probabilities by up to
    about 0.02; float32 gives what Keras' predict gives (OpenVINO within 1e-5).
    ``runtime`` is ``tensorflow`` or ``openvino`` (see :func:`choose_runtime`).
    ``temperature`` (``calibration.temperature_of(metadata)``) is applied inside the
    network's graph on either engine; None gives the raw probabilities. ``recipe`` (the
    model's ``preprocessing``) names the pixel scale; None is the tutorial's 1/255.
    """
    if runtime == "openvino":
        from pyimagesearch.core.compiled import CompiledNetwork, build_ir, inference_precision

        ir, chosen = build_ir(model, temperature, recipe), inference_precision(precision)
        return CompiledNetwork(ir, chosen, hint="THROUGHPUT")
    return tensorflow_predictor(model, precision, batches, temperature, recipe)


def iter_predictions(
    predict: Predictor,
    paths: list[str],
    recipe: dict,
    batch_size: int = 64,
    skipped: list[tuple[int, str]] | None = None,
    max_pixels: int | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (indices into ``paths``, class probabilities) batch by batch.

    Decoding runs in threads while the network works on the previous batch; unreadable
    files are left out (their indices never appear), and appended to SKIPPED as
    (index, reason) when a list is given.
    """

    def batches():
        return iter_readable_batches(paths, recipe, batch_size, skipped, max_pixels)

    stream = getattr(predict, "stream", None)
    if stream is not None:
        yield from stream(batches())
        return
    for indices, pixels in batches():
        yield indices, predict(pixels)


@dataclass
class Engine:
    """What classifies: the predictor, the model's checked metadata, how it runs, and the
    Keras model when it was loaded (Grad-CAM needs it; the fast path does not)."""

    predict: Predictor
    metadata: dict
    description: str
    model: Any = None


def load_engine(
    path: str,
    runtime: str = "auto",
    precision: str = "auto",
    images: int = 0,
    batch_size: int | None = None,
    need_keras: bool = False,
    debug: bool = False,
    adoption: Any = None,
) -> Engine:
    """The fastest valid way to run the model file at PATH.

    Its stored OpenVINO network, without TensorFlow, unless ``runtime`` is ``tensorflow``
    or the network is missing or does not match the file (then one [INFO] line says why
    and Keras loads it, safe mode and every check as always). ``batch_size`` fixes the
    compiled batch (bulk work); None keeps it dynamic (the server). ``adoption``
    (``modelfile.Adoption``, from --classes) reads a file saved elsewhere, without our
    metadata, which only Keras can run.
    """
    model = None
    # A file without our metadata has no stored network: straight to Keras, which says
    # what it assumed (read_metadata is a cheap look at one member; errors come later).
    foreign = adoption is not None and _without_metadata(path)
    if runtime != "tensorflow" and openvino_installed() and not foreign:
        from pyimagesearch.core import compiled

        try:
            try:
                network, metadata = compiled.load(path, precision, batch_size)
            except compiled.Stale as why:
                if precision != "int8":
                    raise
                report.info(f"'{path}': {why}; using its float network")
                precision = "auto"
                network, metadata = compiled.load(path, precision, batch_size)
        except compiled.Stale as why:
            report.info(f"'{path}': {why}; loading it with Keras (TensorFlow)")
        else:
            if adoption is not None:
                adoption.check(metadata, path)
            if need_keras:
                model = load_keras(path, debug)[0]
            return Engine(network, metadata, f"OpenVINO, {network.precision}", model)
    model, metadata = load_keras(path, debug, adoption)
    engine = choose_runtime(runtime, images)
    precision = "auto" if precision == "int8" else precision  # int8 exists on the fast path
    from pyimagesearch.core.calibration import temperature_of

    batches = -(-images // (batch_size or 64)) if images else 2
    chosen = "float32" if precision == "auto" and engine == "tensorflow" else precision
    recipe = metadata["preprocessing"]
    predict = make_predictor(model, chosen, batches, engine, temperature_of(metadata), recipe)
    name = "OpenVINO" if engine == "openvino" else "TensorFlow"
    return Engine(predict, metadata, f"{name}, {getattr(predict, 'precision', chosen)}", model)


def _without_metadata(path: str) -> bool:
    """True for a readable model file that carries none of our metadata."""
    from pyimagesearch.core import modelfile

    try:
        modelfile.file_kind(path)
        return modelfile.read_metadata(path) is None
    except (UserError, *modelfile.READ_ERRORS):
        return False  # the loader names the problem


def load_keras(path: str, debug: bool = False, adoption: Any = None) -> tuple[Any, dict]:
    """The Keras model and metadata (``serialization.load_model``), TensorFlow started quietly."""
    from pyimagesearch.core.errors import start_tensorflow

    start_tensorflow(debug)
    from pyimagesearch.training.serialization import load_model

    return load_model(path, adoption=adoption)
