"""Benchmark: the Keras 3 project against a tf_keras (Keras 2) re-creation of the tutorial.

    python -m bench --dataset DIR [--epochs 25] [--images DIR] [--limit N] [--smoke]

Every measured program runs in its own child process (see ``bench.measure``):
``save_model.py`` / ``load_model.py`` for the project, ``python -m bench.legacy`` for
the legacy reference.
"""
