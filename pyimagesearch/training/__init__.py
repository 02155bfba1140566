"""Training: the tf.data pipeline, the fit loop and its settings, saving the model file,
the plots, distribution and fold ensembles.
"""
