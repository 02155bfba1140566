"""The TensorFlow-free core (pyimagesearch.TENSORFLOW_FREE) imports with TensorFlow,
Keras and scikit-learn unimportable: the rule that lets load_model.py run without them.
Mutation: an `import keras` at the top of calibration.py (or moving predict.py's lazy
Keras import to its top) fails it, naming the module."""

import pyimagesearch
from tests.conftest import run_script

CHECK = """
import importlib, sys

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf_keras", "sklearn"):
            raise ImportError(f"{name} is blocked")

sys.meta_path.insert(0, Blocked())
import pyimagesearch
failed = []
for name in pyimagesearch.TENSORFLOW_FREE:
    try:
        importlib.import_module(f"pyimagesearch.{name}")
    except ImportError as error:
        failed.append(f"{name}: {error}")
print("\\n".join(failed) or "all imported")
"""


def test_the_core_imports_without_tensorflow():
    assert len(pyimagesearch.TENSORFLOW_FREE) >= 15
    result = run_script("-c", CHECK, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "all imported"
