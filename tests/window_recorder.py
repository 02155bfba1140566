"""A matplotlib backend that stands in for a window in tests (MPLBACKEND=module://
tests.window_recorder): show() saves the image the figure displays to $WINDOW_RECORD
(.npy) instead of opening a window, or fails as a broken toolkit would when
$WINDOW_FAIL is set."""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.backend_bases import FigureManagerBase
from matplotlib.backends.backend_agg import FigureCanvasAgg

FigureCanvas = FigureCanvasAgg
FigureManager = FigureManagerBase


def show(*args, **kwargs) -> None:
    if os.environ.get("WINDOW_FAIL"):
        raise RuntimeError("the display went away")
    figure = plt.gcf()
    np.save(os.environ["WINDOW_RECORD"], np.asarray(figure.axes[0].images[0].get_array()))
