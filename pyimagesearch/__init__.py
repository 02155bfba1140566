"""Train, save, load and apply a small ResNet malaria classifier on Keras 3.

The modules in TENSORFLOW_FREE import neither TensorFlow nor Keras (nor scikit-learn)
when imported: they are what ``load_model.py`` and ``serve_model.py`` run on with a
model file's compiled network, in a fraction of a second and without TensorFlow
installed. A function of theirs that needs TensorFlow (the Keras fallback) imports it
inside. tests/test_tensorflow_free.py keeps the list true.
"""

__version__ = "1.0.0"

TENSORFLOW_FREE = (
    # image gate and the one preprocessing; dataset layouts and splits
    "safety",
    "preprocessing",
    "splitting",
    # the model file, its compiled network, the metrics and the calibration maths
    "modelfile",
    "compiled",
    "evaluation",
    "calibration",
    "recipes",
    # inference and serving
    "predict",
    "montage",
    "palette",
    "serve",
    "connections",
    # the command-line layer
    "options",
    "errors",
    "report",
    "commands",
)
