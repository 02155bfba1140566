"""Classifying: the predictor (compiled network or Keras), the montage and Grad-CAM."""
