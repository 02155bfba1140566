"""The network's parts beside the tutorial's ResNet (pyimagesearch/resnet.py): stain
normalisation, the optimizer switch, augmentation layers and the training precision.
They import Keras.
"""
