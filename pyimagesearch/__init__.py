"""Train, save, load and apply a small ResNet malaria classifier on Keras 3."""

__version__ = "1.0.0"
