"""The HTTP server and its page (TensorFlow-free on a model file's compiled network)."""
