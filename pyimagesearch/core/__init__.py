"""The TensorFlow-free core: the image gate and the one preprocessing, dataset splits, the
model file and its compiled network, metrics and calibration, the recipes, and the one
output channel.
"""
