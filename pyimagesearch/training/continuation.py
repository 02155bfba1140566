"""Training that starts from a saved model (``save_model.py --init-from MODEL``).

Keras' own answer to "keep training a saved model" is ``load_model`` then ``fit``; the
parts this project adds are the ones a model file must get right:
- the same classes (same order) keep every weight: the model simply trains on;
- other classes keep everything up to the last layer with weights (the backbone), and
  a new classifier (a copy of that layer's configuration, sized for the new classes)
  takes its place, followed by the same weightless layers (the softmax);
- a Keras file saved elsewhere, without our metadata, is a backbone: its classes are
  unknown, its preprocessing is --interpolation/--scale's (``modelfile.Adoption``);
- the new model's provenance names its parent: the file's SHA-256, its classes and a
  summary of its own provenance, which names its parent in turn
  (``modelfile.lineage``, load_model.py's "continued from ...").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras

from pyimagesearch.core import report
from pyimagesearch.core.errors import UserError
from pyimagesearch.core.modelfile import Adoption, file_sha256, read_metadata, saved_with
from pyimagesearch.training.serialization import load_model

# What a parent's provenance passes on to its child (its history and paths stay home).
SUMMARY_KEYS = ("recipe", "dataset", "epochs", "seed", "saved_at", "stain", "head",
                "adopted_from", "init_from")  # fmt: skip


@dataclass
class Parent:
    """The saved model a run starts from."""

    path: str
    model: keras.Model
    class_names: list[str] | None  # None: a file without our metadata (a backbone)
    recipe: dict
    provenance: dict
    sha256: str
    saved_with: str | None = None
    new_classifier: bool = False  # set by continued_network

    def summary(self) -> str:
        """The parent in a few words: how it was made and what it scored."""
        p = self.provenance
        if not p:
            return "trained elsewhere, no provenance"
        accuracy = (p.get("final_metrics") or {}).get("test_accuracy")
        words = [
            f"{p['recipe']} recipe" if p.get("recipe") else None,
            f"{p['epochs']} epochs" if p.get("epochs") else None,
            f"on '{p['dataset']}'" if p.get("dataset") else None,
            f"test accuracy {accuracy:.4f}" if isinstance(accuracy, float) else None,
        ]
        return ", ".join(w for w in words if w) or "no provenance"

    def record(self) -> dict:
        """The parent as the child's provenance names it."""
        own = {k: self.provenance[k] for k in SUMMARY_KEYS if k in self.provenance}
        accuracy = (self.provenance.get("final_metrics") or {}).get("test_accuracy")
        if accuracy is not None:
            own["test_accuracy"] = accuracy
        return {
            "file": Path(self.path).name,
            "sha256": self.sha256,
            "class_names": self.class_names,
            "saved_with": self.saved_with,
            "summary": self.summary(),
            "new_classifier": self.new_classifier,
            "provenance": own,
        }


def read_parent(path: str, interpolation: str | None, scale: str | None) -> Parent:
    """The saved model at PATH (safe mode, every check of loading) with what it records."""
    sha256 = file_sha256(path)
    metadata = read_metadata(path)
    if metadata is None:
        model, metadata = load_model(path, adoption=Adoption(None, interpolation, scale))
        return Parent(path, model, None, metadata["preprocessing"], {}, sha256, saved_with(path))
    if interpolation or scale:
        raise UserError(
            f"--init-from '{path}' records its own preprocessing; --interpolation and --scale "
            "are for a file without it"
        )
    model, metadata = load_model(path)
    provenance = metadata.get("provenance") or {}
    return Parent(path, model, metadata["class_names"], metadata["preprocessing"], provenance,
                  sha256)  # fmt: skip


def classifier_layer(model: keras.Model) -> keras.layers.Layer:
    """The last layer with weights: the classifier a new one replaces."""
    weighted = [layer for layer in model.layers if layer.weights]
    if not weighted or not isinstance(weighted[-1], keras.layers.Dense):
        name = type(weighted[-1]).__name__ if weighted else "none"
        raise UserError(
            f"--init-from: the model's last layer with weights is {name}, not Dense; only a "
            "classifier ending in a Dense layer can be given new classes"
        )
    return weighted[-1]


def with_new_classifier(model: keras.Model, classes: int) -> keras.Model:
    """MODEL up to its last Dense layer, then a new one of CLASSES units (same
    configuration otherwise: activation, regularizer) and the weightless layers that
    followed it; a softmax at the end if the old output was not one."""
    last = classifier_layer(model)
    config = {**last.get_config(), "units": classes, "name": "classifier"}
    x = type(last).from_config(config)(last.input)
    after = model.layers[model.layers.index(last) + 1 :]
    for layer in after:  # weightless (the softmax), so reusing the layer shares nothing
        x = layer(x)
    final = after[-1] if after else last
    activation = getattr(final, "activation", None)
    if getattr(activation, "__name__", None) != "softmax":
        x = keras.layers.Activation("softmax", name="probabilities", dtype="float32")(x)
    return keras.Model(model.inputs, x, name=model.name)


def continued_network(parent: Parent, class_names: list[str]) -> keras.Model:
    """The network a run starts from: the parent's as it is for the same classes, else
    its backbone with a new classifier. One [INFO] line says which."""
    model = parent.model
    parent.new_classifier = parent.class_names != class_names
    if not parent.new_classifier:
        report.info(f"--init-from '{parent.path}': the same classes; every weight is kept")
        return model
    was = (
        ", ".join(parent.class_names) if parent.class_names else f"{model.output_shape[-1]} outputs"
    )
    report.info(
        f"--init-from '{parent.path}': classes {', '.join(class_names)} where it has {was}; "
        f"its layers up to '{classifier_layer(model).name}' are kept, a new classifier "
        "replaces that one"
    )
    return with_new_classifier(model, len(class_names))


def set_trainable(model: keras.Model, bn_statistics: str, only_last: bool = False) -> None:
    """Which layers train: only the last with weights (--freeze-backbone's epochs), or
    all, the BatchNormalization layers left out when the recipe freezes them (Keras
    runs a non-trainable BatchNormalization in inference mode: its statistics stay)."""
    last = classifier_layer(model)
    for layer in model.layers:
        if only_last:
            layer.trainable = layer is last
        else:
            frozen = bn_statistics == "frozen" and isinstance(
                layer, keras.layers.BatchNormalization
            )
            layer.trainable = not frozen


def portable(model: keras.Model) -> keras.Model:
    """The trained network as users load it: every layer trainable again (a later
    ``fit`` in plain Keras should not find layers frozen), without the optimizer."""
    for layer in model.layers:
        layer.trainable = True
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy
