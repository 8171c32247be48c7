"""VGG-like Conv2/4/6/8 for CIFAR-10 (docs/SPEC.md §3.2), all from one builder (widths: models/registry.py).

Each stage is two 3x3 convs with ELU and a 2x2 max-pool; the head is two dense
layers of 256 (ELU; ReLU in the authors' Conv8 baseline) and a softmax output.
"""
import keras

from models.registry import CONV_HEAD_UNITS


def build_conv(factory, stage_widths, name, width_multiplier=1.0, scale_head=True, head_activation="elu",
               input_shape=(32, 32, 3), num_classes=10):
    """``scale_head=False`` keeps the 256-unit head fixed (the authors' Conv8);
    ``head_activation='relu'`` reproduces their Conv8 *baseline* head (SPEC B21)."""
    inputs = keras.Input(shape=input_shape, name="images")
    x = inputs
    for stage, width in enumerate(stage_widths, start=1):
        filters = int(width * width_multiplier)
        for position in (1, 2):
            x = factory.conv(filters, 3, activation="elu", name=f"stage{stage}_conv{position}")(x)
        x = keras.layers.MaxPooling2D(2, strides=2, padding="same", name=f"stage{stage}_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for index, units in enumerate(CONV_HEAD_UNITS, start=1):
        units = int(units * width_multiplier) if scale_head else units
        x = factory.dense(units, activation=head_activation, name=f"dense_{index}")(x)
    outputs = factory.dense(num_classes, activation="softmax", name="output")(x)
    return keras.Model(inputs, outputs, name=name)
