"""Train, save, load and apply a small ResNet malaria classifier on Keras 3.

The modules in TENSORFLOW_FREE import neither TensorFlow nor Keras (nor scikit-learn)
when imported: they are what ``load_model.py`` and ``serve_model.py`` run on with a
model file's compiled network, in a fraction of a second and without TensorFlow
installed. A function of theirs that needs TensorFlow (the Keras fallback) imports it
inside. tests/test_tensorflow_free.py keeps the list true.
"""

import importlib.abc
import importlib.machinery
import sys

__version__ = "1.0.0"

TENSORFLOW_FREE = (
    # every module of the core package: the image gate and the one preprocessing,
    # dataset splits, the model file and its compiled network, metrics, calibration,
    # the recipes and the output channel
    "core",
    # inference and serving on the compiled network
    "inference.predict",
    "inference.montage",
    "serving",
    # the command-line layer
    "options",
    "commands",
)


# --- the flat layout's module names --------------------------------------------------
# Until 2026-12 every module sat directly in pyimagesearch/ (pyimagesearch.train, ...).
# Scripts written against those names keep working: the old name is the same module
# object as its new home (pyimagesearch.training.train), imported only when asked for,
# so the TensorFlow-free modules stay free of it.
MOVED = {
    "safety": "core",
    "preprocessing": "core",
    "splitting": "core",
    "evaluation": "core",
    "calibration": "core",
    "modelfile": "core",
    "compiled": "core",
    "recipes": "core",
    "palette": "core",
    "errors": "core",
    "report": "core",
    "stain": "network",
    "optimizers": "network",
    "augmentation": "network",
    "acceleration": "network",
    "train": "training",
    "data": "training",
    "distribute": "training",
    "plots": "training",
    "serialization": "training",
    "ensemble": "training",
    "predict": "inference",
    "montage": "inference",
    "gradcam": "inference",
    "serve": "serving",
    "connections": "serving",
    "server_process": "serving",
}


class _FlatLayoutNames(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds pyimagesearch.NAME for a moved module and hands back its new home."""

    def __init__(self) -> None:
        self.homes: dict = {}

    def find_spec(self, name: str, path=None, target=None):
        package, _, module = name.rpartition(".")
        if package != __name__ or module not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(name, self)

    def create_module(self, spec):
        module = spec.name.rpartition(".")[2]
        home = importlib.import_module(f"{__name__}.{MOVED[module]}.{module}")
        self.homes[spec.name] = home.__spec__
        return home

    def exec_module(self, module) -> None:
        # importlib stamped the old name's spec on the module: give it its own back
        module.__spec__ = self.homes.pop(module.__spec__.name)


sys.meta_path.append(_FlatLayoutNames())
