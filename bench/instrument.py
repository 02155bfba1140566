"""Child-side timing: run a project script unchanged, with timers around fit and inference.

    python -m bench.instrument save_model.py -d DIR -m MODEL ...
    python -m bench.instrument load_model.py --images DIR --model MODEL --samples 0 ...

The script runs through ``runpy`` as ``__main__``. ``keras.Model.fit`` gets an epoch
timer (summed over calls, should training call fit once per epoch) and
``pyimagesearch.inference.predict.iter_predictions`` a stopwatch. At exit one line
``BENCH_JSON {...}`` is printed for ``bench.measure`` to read.
"""

from __future__ import annotations

import json
import runpy
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

TAG = "BENCH_JSON "


def emit(record: dict[str, Any]) -> None:
    print(TAG + json.dumps(record), flush=True)


def epoch_timer(base: type) -> Any:
    """A callback (subclass of ``base``: Keras 3's or tf_keras') that times the training
    phase of each epoch, i.e. up to the start of validation, and counts its steps."""

    class EpochTimer(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.train_s: list[float] = []
            self.steps: list[int] = []
            self._start: float | None = None

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self._start = time.perf_counter()
            self.steps.append(0)

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self.steps[-1] += 1

        def on_test_begin(self, logs: dict | None = None) -> None:
            self._stop()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self._stop()

        def _stop(self) -> None:
            if self._start is not None:
                self.train_s.append(time.perf_counter() - self._start)
                self._start = None

    return EpochTimer()


def install_hooks(record: dict[str, Any], training: bool = True) -> None:
    import pyimagesearch.inference.predict as predict

    original_iter: Callable[..., Iterator] = predict.iter_predictions

    def timed_iter(*args: Any, **kwargs: Any) -> Iterator:
        start, images = time.perf_counter(), 0
        for indices, probabilities in original_iter(*args, **kwargs):
            images += len(indices)
            yield indices, probabilities
        record["images"] = images
        record["classify_s"] = time.perf_counter() - start

    predict.iter_predictions = timed_iter
    if not training:  # load_model.py's fast path imports no Keras: keep it so
        return
    import keras

    original_fit = keras.Model.fit

    def timed_fit(self: keras.Model, *args: Any, **kwargs: Any) -> Any:
        timer = epoch_timer(keras.callbacks.Callback)
        kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), timer]
        start = time.perf_counter()
        try:
            return original_fit(self, *args, **kwargs)
        finally:  # training may call fit once per epoch: add the calls up
            record["fit_s"] = record.get("fit_s", 0.0) + time.perf_counter() - start
            record.setdefault("epoch_train_s", []).extend(timer.train_s)
            record.setdefault("epoch_steps", []).extend(timer.steps)
            record["fit_calls"] = record.get("fit_calls", 0) + 1
            if args and hasattr(args[0], "element_spec"):  # a tf.data training set
                record["batch_size"] = args[0].element_spec[0].shape[0]

    keras.Model.fit = timed_fit


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit("usage: python -m bench.instrument SCRIPT [ARGS...]")
    record: dict[str, Any] = {}
    install_hooks(record, training=not argv[0].endswith("load_model.py"))
    sys.argv = list(argv)
    try:
        runpy.run_path(argv[0], run_name="__main__")
    finally:
        emit(record)


if __name__ == "__main__":
    main(sys.argv[1:])
