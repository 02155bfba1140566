"""The TensorFlow-free core (pyimagesearch.TENSORFLOW_FREE) imports with TensorFlow,
Keras and scikit-learn unimportable: the rule that lets load_model.py run without them.
Mutation: an `import keras` at the top of core/calibration.py (or moving predict.py's lazy
Keras import to its top) fails it, naming the module."""

import pyimagesearch
from tests.conftest import ROOT, run_script

CHECK = """
import importlib, sys

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf_keras", "sklearn"):
            raise ImportError(f"{name} is blocked")

sys.meta_path.insert(0, Blocked())
import pyimagesearch
failed = []
import pkgutil
names = []
for name in pyimagesearch.TENSORFLOW_FREE:
    names.append(name)
    path = pyimagesearch.__path__[0] + "/" + name.replace(".", "/")
    names += [f"{name}.{m.name}" for m in pkgutil.iter_modules([path])]  # a package's modules
for name in names:
    try:
        importlib.import_module(f"pyimagesearch.{name}")
    except ImportError as error:
        failed.append(f"{name}: {error}")
print("\\n".join(failed) or "all imported")
"""


def test_the_core_imports_without_tensorflow():
    assert "core" in pyimagesearch.TENSORFLOW_FREE
    result = run_script("-c", CHECK, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "all imported"


def test_scripts_written_for_the_flat_layout_still_import():
    """pyimagesearch.train (the layout before core/, training/, ...) is the module
    pyimagesearch.training.train, not a copy: patching one patches the other. Mutation:
    dropping the finder from sys.meta_path, or an old name pointing at the
    wrong room, fails it."""
    import importlib
    import pkgutil

    moved = {
        module.name: package
        for package in ("core", "network", "training", "inference", "serving")
        for module in pkgutil.iter_modules([str(ROOT / "pyimagesearch" / package)])
    }
    assert pyimagesearch.MOVED.items() <= moved.items()  # each old name has a home
    result = run_script("-c", OLD_NAMES, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["same", "same", "free"]
    assert importlib.import_module("pyimagesearch.resnet").ResNet  # the tutorial's own import


OLD_NAMES = """
import sys
import pyimagesearch.core.preprocessing as new
from pyimagesearch.preprocessing import load_image
from pyimagesearch import safety
print("same" if load_image is new.load_image else "copy")
print("same" if safety is sys.modules["pyimagesearch.core.safety"] else "copy")
print("free" if "tensorflow" not in sys.modules else "tensorflow")
"""
