"""One model file from several: the mean of the fold models' calibrated probabilities.

``python -m pyimagesearch.crossval ... --ensemble OUT.model`` writes it once every fold
is trained (or at once, when a finished run is given the same command again). Why one
file: the ensemble is then a model like any other for ``load_model.py``,
``serve_model.py``, the exports and the compiled OpenVINO network that
``serialization.save_model`` stores inside it.

Each fold keeps its own temperature (fitted on its own validation patients). It is
applied inside the network, before the average, as ``softmax(logits / T)``: the same as
``calibration.forward``'s ``softmax(log(p) / T)``, since ``log(softmax(z))`` differs
from ``z`` by one constant per row. Only Keras' own layers do it (``Rescaling``,
``Activation``, ``Average``), so the file loads in safe mode with no custom code, and
the ensemble stores no temperature of its own: its output is calibrated already.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import keras
from keras import layers

from pyimagesearch.core import report
from pyimagesearch.core.calibration import temperature_of
from pyimagesearch.core.errors import UserError

# The fold's final softmax (``resnet.ResNet.build``), whose input is the logits.
SOFTMAX = "probabilities"


def calibrated_member(model: keras.Model, temperature: float | None, name: str) -> keras.Model:
    """MODEL with its temperature inside: image in, calibrated probabilities out."""
    logits = model.get_layer(SOFTMAX).input
    if temperature is not None:
        logits = layers.Rescaling(1.0 / temperature, name="temperature")(logits)
    probabilities = layers.Activation("softmax", dtype="float32", name=SOFTMAX)(logits)
    return keras.Model(model.inputs, probabilities, name=name)


def build_ensemble(models: list[keras.Model], temperatures: list[float | None]) -> keras.Model:
    """One network whose output is the mean of the members' calibrated probabilities,
    in float32 whatever policy a training left (``acceleration.float32_policy``)."""
    from pyimagesearch.network.acceleration import float32_policy

    with float32_policy():
        image = keras.Input(shape=models[0].input_shape[1:], name="image")
        members = [
            calibrated_member(model, temperature, f"fold_{number}")(image)
            for number, (model, temperature) in enumerate(zip(models, temperatures, strict=True), 1)
        ]
        outputs = layers.Average(name=SOFTMAX)(members)
        return keras.Model(image, outputs, name="ensemble")


def ensemble_metadata(metadatas: list[dict], paths: list[Path]) -> dict:
    """The members' class names and preprocessing (which must agree), no temperature,
    and a provenance naming each member's fold, temperature and test figures."""
    first = metadatas[0]
    for metadata, path in zip(metadatas[1:], paths[1:], strict=True):
        for key in ("class_names", "preprocessing"):
            if metadata[key] != first[key]:
                raise UserError(f"'{path}' has other {key} than '{paths[0]}'; cannot average them")
    members = []
    for metadata, path in zip(metadatas, paths, strict=True):
        provenance = metadata.get("provenance", {})
        members.append(
            {
                "model": f"{path.parent.name}/{path.name}",
                "seed": provenance.get("seed"),
                "temperature": temperature_of(metadata),
                "test_accuracy": provenance.get("final_metrics", {}).get("test_accuracy"),
            }
        )
    per_member = ("seed", "history", "final_metrics", "file_counts", "crossval", "layout")
    provenance = {k: v for k, v in first.get("provenance", {}).items() if k not in per_member}
    provenance["saved_at"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    provenance["ensemble"] = {"output": "mean of calibrated probabilities", "members": members}
    metadata = {"class_names": first["class_names"], "preprocessing": first["preprocessing"]}
    if "positive_class" in first:
        metadata["positive_class"] = first["positive_class"]
    metadata["provenance"] = provenance
    return metadata


def write_ensemble(paths: list[Path], output: str | Path, extra: dict | None = None) -> dict:
    """Load the fold models at PATHS (safe mode), write their ensemble to OUTPUT through
    ``serialization.save_model`` (metadata and compiled network inside) and return its
    metadata. EXTRA is added to the provenance."""
    from pyimagesearch.training.serialization import load_model, save_model

    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise UserError(f"--ensemble needs every fold's model; missing {', '.join(missing)}")
    loaded = [load_model(path) for path in paths]
    models = [model for model, _ in loaded]
    metadatas = [metadata for _, metadata in loaded]
    metadata = ensemble_metadata(metadatas, paths)
    metadata["provenance"].update(extra or {})
    ensemble = build_ensemble(models, [temperature_of(m) for m in metadatas])
    save_model(ensemble, output, metadata, compiled=True)
    temperatures = ", ".join(
        str(m["temperature"]) for m in metadata["provenance"]["ensemble"]["members"]
    )
    report.info(
        f"ensemble of {len(paths)} fold models (temperatures {temperatures}) written to '{output}'"
    )
    return metadata
