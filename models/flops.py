"""Multiply-adds counted on a built Keras model: the conv and dense layers, masked or plain (element-wise
work such as masks, ELU, BN and pooling left out). bench/flops.py and bench/gpu.py set times against them."""
import keras

from masking import SignedSupermaskConv2D, SignedSupermaskDense, iter_layers


def forward_macs(model):
    """Multiply-adds of one image's forward pass through every conv and dense layer of ``model``."""
    total = 0
    for layer in iter_layers(model):
        if isinstance(layer, (SignedSupermaskConv2D, keras.layers.Conv2D)):
            _, height, width, filters = layer.output.shape
            kernel_height, kernel_width = layer.kernel_size
            total += height * width * kernel_height * kernel_width * layer.input.shape[-1] * filters
        elif isinstance(layer, (SignedSupermaskDense, keras.layers.Dense)):
            total += layer.input.shape[-1] * layer.units
    return int(total)
