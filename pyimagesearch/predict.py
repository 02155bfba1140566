"""Inference: classify image files in batches with the model's own preprocessing.

Two engines run the network: TensorFlow (the Keras model itself) and, on a CPU, the
same weights compiled by OpenVINO. Both receive the arrays that
``preprocessing.load_image`` made; only the arithmetic of the network differs.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator

import keras
import numpy as np
import tensorflow as tf

from pyimagesearch.calibration import forward
from pyimagesearch.data import iter_decoded_batches
from pyimagesearch.errors import UserError

Predictor = Callable[[tf.Tensor], np.ndarray]
Batches = Iterable[tuple[np.ndarray, tf.Tensor]]
RUNTIMES = ("auto", "openvino", "tensorflow")
# Converting the network to OpenVINO costs about 1.5-2 s (trace, convert, compile) on a
# 2-core CPU, and OpenVINO then classifies about 1.6x faster in float32
# (bench/RESULTS-xeon-2026-11-26.md): it pays back from roughly a thousand images, so
# `auto` leaves smaller jobs to TensorFlow.
OPENVINO_MIN_IMAGES = 1000


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def import_openvino():
    """Import OpenVINO with its usage statistics off.

    ``import openvino`` reports usage to Intel unless the user has opted out; when its
    ``openvino_telemetry`` package cannot be imported it falls back to a no-op, so
    that package is hidden from this process (only from this process, only if nothing
    imported it already). A medical tool should not send anything anywhere unasked.
    """
    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)
    import openvino

    return openvino


def choose_runtime(requested: str, images: int) -> str:
    """Resolve ``auto``: OpenVINO for large jobs on a CPU-only machine, else TensorFlow."""
    if requested == "openvino" and not openvino_installed():
        raise UserError(
            "--runtime openvino needs the Python package 'openvino', which is not installed "
            "(pip install -r requirements.txt)"
        )
    if requested != "auto":
        return requested
    if images < OPENVINO_MIN_IMAGES or not openvino_installed():
        return "tensorflow"
    # On a GPU, TensorFlow is the fast engine; OpenVINO here targets the CPU.
    return "tensorflow" if tf.config.list_physical_devices("GPU") else "openvino"


def with_precision(model: keras.Model, precision: str) -> keras.Model:
    """The same network and weights computing in another dtype policy (outputs stay float32)."""
    if precision == "float32":
        return model

    def clone(layer):
        config = layer.get_config()
        if layer is not model.layers[-1]:
            config["dtype"] = precision
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def tensorflow_predictor(
    model: keras.Model, precision: str, batches: int, temperature: float | None = None
) -> Predictor:
    """One traced function for all batch sizes, or a plain call for a single batch.

    ``model.predict_on_batch`` pays about 2x in per-call overhead on a small CPU
    (measured in bench/), so the loader calls a ``tf.function`` of the model itself;
    tracing it costs about 0.3 s more than one eager call, so a single batch (the
    16-image default) runs eagerly.
    """
    network = forward(with_precision(model, precision), temperature)
    if batches <= 1:
        return lambda images: np.asarray(network(images), dtype="float32")
    spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)

    @tf.function(input_signature=[spec])
    def infer(images):
        return tf.cast(network(images), tf.float32)

    return lambda images: infer(images).numpy()


class OpenVINOPredictor:
    """The network compiled by OpenVINO for this CPU, with batches kept in flight.

    Why: on a 2-core CPU TensorFlow runs this ResNet at about 300 images/s, and
    OpenVINO at about 1.6x that in float32 and 4x in bfloat16 on CPUs with AMX,
    because its convolutions are tuned for small batches and images (measured,
    bench/RESULTS-xeon-2026-11-26.md). ``stream`` keeps one batch per OpenVINO stream running while
    tf.data decodes the next, so both cores stay busy.
    """

    def __init__(
        self, model: keras.Model, precision: str, temperature: float | None = None
    ) -> None:
        core = import_openvino().Core()
        capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        # float32 is asked for explicitly: on CPUs with AMX OpenVINO would pick bfloat16.
        self.precision = (
            "bf16" if precision == "mixed_bfloat16" and "BF16" in capabilities else "f32"
        )
        config = {"INFERENCE_PRECISION_HINT": self.precision, "PERFORMANCE_HINT": "THROUGHPUT"}
        # The network goes over as a SavedModel that the runtime reads itself (what
        # ``ov.convert_model`` does too, without its conversion telemetry).
        module = tf.Module()
        module.weights = model.variables
        module.infer = tf.function(
            forward(model, temperature),
            input_signature=[tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)],
        )
        with tempfile.TemporaryDirectory(prefix="pyimagesearch-openvino-") as folder:
            tf.saved_model.save(module, folder, signatures=module.infer)
            self.compiled = core.compile_model(core.read_model(folder), "CPU", config)
        count = max(1, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self.requests = [self.compiled.create_infer_request() for _ in range(count)]

    def __call__(self, images: tf.Tensor) -> np.ndarray:
        return np.array(self.requests[0].infer([np.asarray(images)])[0], dtype="float32")

    def stream(self, batches: Batches) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (indices, probabilities) in the order of ``batches``."""
        pending: deque = deque()
        for number, (indices, images) in enumerate(batches):
            if len(pending) == len(self.requests):
                yield self._collect(*pending.popleft())
            request = self.requests[number % len(self.requests)]
            request.start_async([np.asarray(images)])  # copies the batch in
            pending.append((indices, request))
        while pending:
            yield self._collect(*pending.popleft())

    @staticmethod
    def _collect(indices: np.ndarray, request) -> tuple[np.ndarray, np.ndarray]:
        request.wait()
        return indices, np.array(request.get_output_tensor(0).data, dtype="float32")


def make_predictor(
    model: keras.Model,
    precision: str = "float32",
    batches: int = 2,
    runtime: str = "tensorflow",
    temperature: float | None = None,
) -> Predictor:
    """A callable from a batch of model inputs to class probabilities.

    ``mixed_bfloat16`` is faster on CPUs with AMX but changes probabilities by up to
    about 0.02; float32 gives what Keras' predict gives (OpenVINO within 1e-4).
    ``runtime`` is ``tensorflow`` or ``openvino`` (see :func:`choose_runtime`).
    ``temperature`` (``calibration.temperature_of(metadata)``) is applied inside the
    network's graph on either engine; None gives the raw probabilities.
    """
    if runtime == "openvino":
        return OpenVINOPredictor(model, precision, temperature)
    return tensorflow_predictor(model, precision, batches, temperature)


def iter_predictions(
    predict: Predictor, paths: list[str], recipe: dict, batch_size: int = 64
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (indices into ``paths``, class probabilities) batch by batch.

    Decoding runs in parallel in tf.data while the model works on the previous
    batch; unreadable files are left out (their indices never appear).
    """
    batches = iter_decoded_batches(paths, recipe, batch_size)
    stream = getattr(predict, "stream", None)
    if stream is not None:
        yield from stream(batches)
        return
    for indices, images in batches:
        yield indices, predict(images)
