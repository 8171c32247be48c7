"""FCN for MNIST: 784 -> 300 -> 100 -> 10, ELU hidden, softmax output (docs/SPEC.md §3.1)."""
import keras

from models.registry import MODEL_FAMILIES


def build_fcn(factory, width_multiplier=1.0, input_shape=(784,), num_classes=10,
              hidden_units=MODEL_FAMILIES["FCN"].widths):
    """The paper's FCN (SPEC §3.1): ELU dense layers of ``hidden_units`` and a softmax output, from
    ``factory``'s layers (signed or plain); images with more than one axis are flattened first."""
    inputs = keras.Input(shape=input_shape, name="pixels")
    hidden = keras.layers.Flatten(name="flatten")(inputs) if len(input_shape) > 1 else inputs
    for index, units in enumerate(hidden_units, start=1):
        hidden = factory.dense(int(units * width_multiplier), activation="elu", name=f"dense_{index}")(hidden)
    outputs = factory.dense(num_classes, activation="softmax", name="output")(hidden)
    return keras.Model(inputs, outputs, name="FCN")
