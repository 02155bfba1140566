"""The fast path: the saved network compiled by OpenVINO, run without TensorFlow.

``save_model.py`` writes, inside the ``.keras`` zip beside Keras' own members, the
network as an OpenVINO IR (``openvino/model.xml`` + ``model.bin``) whose input is the
resized pixels in [0, 255] at the model's own size, with the 1/255 scaling and the
stored temperature inside, and a manifest holding the SHA-256 of every member it was
built from. ``load_model.py`` and ``serve_model.py`` then classify with OpenVINO,
OpenCV, Pillow and NumPy only: no TensorFlow or Keras import (4 s and about 1 GB).

An IR is used only when the manifest's hashes match the file's weights, config and
metadata and the IR's shapes match the metadata; otherwise the caller falls back to
Keras and says why in one line. Why inside the file rather than a cache built on first
load: the model file stays the one thing to copy, a read-only or fresh machine (a
server's container) is fast from its first start, and nothing is written next to a
user's files at load time. Keras ignores members it does not know.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import zipfile
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pyimagesearch.core import modelfile, report, safety
from pyimagesearch.core.preprocessing import default_recipe, scale_factor

IR_XML = "openvino/model.xml"
IR_BIN = "openvino/model.bin"
# The int8 network (python -m pyimagesearch.quantize), when the file carries one.
INT8_XML = "openvino/int8.xml"
INT8_BIN = "openvino/int8.bin"
MANIFEST = "openvino/manifest.json"
MANIFEST_FORMAT = 1
# The members an IR is built from: a change to any of them makes it stale.
SOURCES = ("config.json", "model.weights.h5", modelfile.METADATA_NAME)
MAX_MANIFEST_BYTES = 1 << 20
# Bounds on the stored network, from the zip's directory, checked before a byte of it is
# read. model.bin holds the network's parameters (4 bytes each, as model.weights.h5 does,
# which also holds the optimizer's slots when there are any), so its bound follows the
# weights member's size with a generous margin; model.xml describes the layers (105 KB
# for the tutorial's 82), bounded outright. PYIMAGESEARCH_MAX_NETWORK_BYTES caps both.
NETWORK_MARGIN = 1.25
NETWORK_SLACK = 1 << 20
MAX_XML_BYTES = 16 << 20
MAX_NETWORK_BYTES = safety._env_int("PYIMAGESEARCH_MAX_NETWORK_BYTES", 1 << 30)
# Names of the precisions (--precision), as OpenVINO's inference precision hints (int8
# runs a quantized network; its remaining float operations compute in float32).
PRECISIONS = {"float32": "f32", "mixed_bfloat16": "bf16", "int8": "f32"}


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


def cpu_has_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AMX or AVX512-BF16), as OpenVINO's
    CPU plugin reports it: read, never assumed from the CPU's name."""
    core = import_openvino().Core()
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def inference_precision(requested: str) -> str:
    """OpenVINO's precision hint for --precision: ``auto`` is bfloat16 where the CPU has
    it natively (about 2.6x float32 on AMX) and float32 elsewhere."""
    if requested == "auto":
        return "bf16" if cpu_has_bfloat16() else "f32"
    if requested == "mixed_bfloat16" and not cpu_has_bfloat16():
        report.info("this CPU has no native bfloat16; computing in float32")
        return "f32"
    return PRECISIONS[requested]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256(archive: zipfile.ZipFile, name: str) -> str:
    digest = hashlib.sha256()
    with archive.open(name) as member:
        for chunk in iter(lambda: member.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_ir(model: Any, temperature: float | None, recipe: dict | None = None) -> Any:
    """The Keras network as an OpenVINO model: pixels [0, 255] in, probabilities out.

    Needs TensorFlow (save time only). The graph is MODEL in inference mode after the
    recipe's scaling (``preprocessing.scale_factor``; None: the tutorial's 1/255), then
    ``calibration.forward``'s temperature, so the IR answers exactly
    what load_model.py's Keras path answers for the same resized pixels.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    from pyimagesearch.core.calibration import forward

    core = import_openvino().Core()
    network = forward(model, temperature)
    spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32, name="pixels")
    factor = scale_factor(recipe or default_recipe())
    infer = tf.function(lambda pixels: network(pixels * factor), input_signature=[spec])
    # The network goes over as a frozen GraphDef (weights as constants) that the runtime
    # reads itself (what ``ov.convert_model`` does too, without its conversion
    # telemetry). Not a SavedModel: OpenVINO 2026.4's reader of one fails to find its
    # variables ("VarHandleOp ... Cannot find requested variable") in a network of 224 of
    # them (one tutorial ResNet has 119), as a crossval ensemble of two folds or a deeper
    # ResNet; a frozen graph has none to find.
    frozen = convert_variables_to_constants_v2(infer.get_concrete_function())
    with tempfile.TemporaryDirectory(prefix="pyimagesearch-openvino-") as folder:
        graph = Path(folder) / "model.pb"
        graph.write_bytes(frozen.graph.as_graph_def().SerializeToString())
        return core.read_model(str(graph))


def write_ir(
    path: str | Path, model: Any, temperature: float | None, recipe: dict | None = None
) -> None:
    """Append the compiled network and its manifest to the .keras zip at PATH, whose
    Keras members and metadata are final."""
    ov = import_openvino()
    ir = build_ir(model, temperature, recipe)
    with tempfile.TemporaryDirectory(prefix="pyimagesearch-openvino-") as folder:
        xml = Path(folder) / "model.xml"
        ov.save_model(ir, str(xml), compress_to_fp16=False)
        xml_bytes, bin_bytes = xml.read_bytes(), xml.with_suffix(".bin").read_bytes()
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(IR_XML, xml_bytes, zipfile.ZIP_DEFLATED)
        archive.writestr(IR_BIN, bin_bytes, zipfile.ZIP_STORED)  # floats hardly deflate
        hashes = {name: _sha256(archive, name) for name in (*SOURCES, IR_XML, IR_BIN)}
        manifest = {"format": MANIFEST_FORMAT, "openvino": ov.get_version(), "sha256": hashes}
        archive.writestr(MANIFEST, json.dumps(manifest, indent=2))


class Stale(Exception):
    """The file carries no usable compiled network; the message says why."""


def read_manifest(archive: zipfile.ZipFile) -> dict:
    """The manifest, or Stale when there is none or it is not one."""
    if MANIFEST not in archive.namelist():
        raise Stale("it was saved without a compiled network")
    with archive.open(MANIFEST) as member:
        document = member.read(MAX_MANIFEST_BYTES + 1)
    try:
        manifest = json.loads(document) if len(document) <= MAX_MANIFEST_BYTES else None
    except ValueError:
        manifest = None
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != MANIFEST_FORMAT
        or not isinstance(manifest.get("sha256"), dict)
    ):
        raise Stale("its compiled network's manifest is unreadable")
    return manifest


def network_bound(archive: zipfile.ZipFile, name: str) -> int:
    """The most bytes the member NAME of a stored network may declare (see NETWORK_MARGIN)."""
    if name.endswith(".xml"):
        return min(MAX_XML_BYTES, MAX_NETWORK_BYTES)
    try:
        weights = archive.getinfo("model.weights.h5").file_size
    except KeyError:
        weights = 0
    return min(int(NETWORK_MARGIN * weights) + NETWORK_SLACK, MAX_NETWORK_BYTES)


def check_network_sizes(archive: zipfile.ZipFile, names: Iterable[str]) -> None:
    """Raise Stale for a network member bigger than any honest one (a 3 GB model.bin of
    zeros is 6 MB deflated): its declared size binds, as zipfile stops reading there."""
    present = set(archive.namelist())
    for name in names:
        if name in present and name.startswith("openvino/") and name != MANIFEST:
            size, bound = archive.getinfo(name).file_size, network_bound(archive, name)
            if size > bound:
                raise Stale(
                    f"its compiled network's {name} declares {size:,} bytes, more than the "
                    f"{bound:,} its weights allow (altered)"
                )


def read_ir(path: str | Path, metadata: dict, int8: bool = False) -> tuple[str, np.ndarray]:
    """The IR's XML text and weights from PATH (the int8 one with INT8), after checking
    them against the file.

    Raises Stale when the IR is missing or does not belong to these weights, config
    and metadata (a model re-saved by Keras, edited, or put together by hand).
    """
    if modelfile.file_kind(path) != "keras":
        raise Stale("a legacy HDF5 file carries no compiled network")
    with zipfile.ZipFile(path) as archive:
        modelfile.check_archive(archive, path)
        names = set(archive.namelist())
        hashes = read_manifest(archive)["sha256"]
        xml_name, bin_name = (INT8_XML, INT8_BIN) if int8 else (IR_XML, IR_BIN)
        if int8 and INT8_XML not in hashes:
            raise Stale("it carries no int8 network (python -m pyimagesearch.quantize adds one)")
        members = (*SOURCES, IR_XML, IR_BIN, *((INT8_XML, INT8_BIN) if int8 else ()))
        check_network_sizes(archive, members)
        for name in members:
            if name not in names or hashes.get(name) != _sha256(archive, name):
                raise Stale(f"its compiled network does not match its {name} (stale or altered)")
        xml = archive.read(xml_name).decode("utf-8")
        weights = np.frombuffer(archive.read(bin_name), dtype=np.uint8)
    return xml, weights


class CompiledNetwork:
    """The IR compiled for this CPU: resized pixels in, class probabilities out.

    ``batch_size`` fixes the batch dimension (bulk work: a static shape lets OpenVINO
    pick its kernels once, and the last batch is padded); None keeps it dynamic (the
    server's micro-batches vary from 1 to its maximum). ``stream`` keeps one batch per
    infer request in flight while the caller's threads decode the next ones.
    """

    def __init__(
        self, ir: Any, precision: str = "f32", batch_size: int | None = None, hint: str = ""
    ) -> None:
        core = import_openvino().Core()
        if batch_size is not None:
            height, width, channels = (d.get_length() for d in ir.input(0).partial_shape[1:])
            ir.reshape([batch_size, height, width, channels])
        self.batch_size, self.precision = batch_size, precision
        # Bulk work keeps several batches in flight (THROUGHPUT: one stream per core);
        # the server runs one micro-batch at a time, which LATENCY spreads over all cores
        # (under THROUGHPUT one stream sat idle and its p99 was 300-860 ms, docs/serve.md).
        hint = hint or ("THROUGHPUT" if batch_size else "LATENCY")
        config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": hint}
        self.compiled = core.compile_model(ir, "CPU", config)
        count = max(1, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self.requests = [self.compiled.create_infer_request() for _ in range(count)]

    def _padded(self, pixels: np.ndarray) -> np.ndarray:
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        if self.batch_size is None or len(pixels) == self.batch_size:
            return pixels
        padding = np.zeros((self.batch_size - len(pixels), *pixels.shape[1:]), np.float32)
        return np.concatenate([pixels, padding])

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        rows = []
        step = self.batch_size or len(pixels) or 1
        for start in range(0, len(pixels), step):
            chunk = pixels[start : start + step]
            result = self.requests[0].infer([self._padded(chunk)])[0]
            rows.append(np.array(result[: len(chunk)], dtype=np.float32))
        return np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)

    def stream(
        self, batches: Iterable[tuple[np.ndarray, np.ndarray]]
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (indices, probabilities) in the order of ``batches`` (each at most
        ``batch_size`` images)."""
        pending: deque = deque()
        for number, (indices, pixels) in enumerate(batches):
            if len(pending) == len(self.requests):
                yield self._collect(*pending.popleft())
            request = self.requests[number % len(self.requests)]
            request.start_async([self._padded(pixels)])  # copies the batch in
            pending.append((indices, request))
        while pending:
            yield self._collect(*pending.popleft())

    @staticmethod
    def _collect(indices: np.ndarray, request) -> tuple[np.ndarray, np.ndarray]:
        request.wait()
        probabilities = request.get_output_tensor(0).data[: len(indices)]
        return indices, np.array(probabilities, dtype=np.float32)


def load(
    path: str | Path, precision: str = "auto", batch_size: int | None = None
) -> tuple[CompiledNetwork, dict]:
    """The file's compiled network and its checked metadata, without TensorFlow.

    Raises Stale (fall back to Keras) when the IR is missing or does not match, and
    UserError for a file that no path may load (the metadata checks of safe loading).
    """
    metadata = modelfile.read_metadata(path)
    if metadata is None:
        raise modelfile.no_metadata(path)
    modelfile.validate_metadata(metadata, path)
    xml, weights = read_ir(path, metadata, int8=precision == "int8")
    ov = import_openvino()
    try:
        ir = ov.Core().read_model(xml, ov.Tensor(weights))
    except Exception as error:  # OpenVINO raises RuntimeError subclasses for bad IR
        raise Stale(f"its compiled network cannot be read ({type(error).__name__})") from None
    recipe = metadata["preprocessing"]
    expected_in = [recipe["height"], recipe["width"], 3]
    shape_in = ir.input(0).partial_shape
    shape_out = ir.output(0).partial_shape
    if (
        len(ir.inputs) != 1
        or len(ir.outputs) != 1
        or shape_in.rank.get_length() != 4
        or [d.get_length() if d.is_static else None for d in shape_in[1:]] != expected_in
        or shape_out.rank.get_length() != 2
        or not shape_out[1].is_static
        or shape_out[1].get_length() != len(metadata["class_names"])
    ):
        raise Stale("its compiled network's shapes do not match its metadata")
    network = CompiledNetwork(ir, inference_precision(precision), batch_size)
    if precision == "int8":
        network.precision = "int8"
    return network, metadata
