"""What a finished signed run keeps of its trained model: the masks and the few other trained variables.

A signed supermask is its seed plus its mask: W is drawn again from the seed and the initializer,
and inference needs only W * q. ``masks.npz`` holds q (int8, one entry per masked layer, by layer
name); ``extra_state.npz`` holds every variable outside the masked layers (the ResNets' BN gamma/beta
and moving statistics), keyed ``<layer>/<variable>``; a model without such variables writes none.
Both are small (Conv8's masks 5.3 MB, ResNet20's BN state 20 KB), so measured/ ships them and
``export.py`` rebuilds the trained model from them (reporting/runmodel.py).
"""
import keras
import numpy as np

from fileio import write_npz
from masking import MASKED_LAYER_TYPES, iter_layers, masked_layers

MASKS_FILE = "masks.npz"
EXTRA_STATE_FILE = "extra_state.npz"


def other_variables(model):
    """(layer name, variable) of every variable outside the masked layers, in model order."""
    return [(layer.name, variable) for layer in iter_layers(model)
            if not isinstance(layer, MASKED_LAYER_TYPES) and not hasattr(layer, "layers")
            for variable in layer.weights]


def extra_state_key(layer_name, variable):
    return f"{layer_name}/{variable.name}"


def write_signed_state(directory, model):
    """masks.npz and (when the model has variables outside its masked layers) extra_state.npz."""
    write_npz(directory / MASKS_FILE, {layer.name: layer.ternary_mask() for layer in masked_layers(model)})
    extra = {extra_state_key(name, variable): keras.ops.convert_to_numpy(variable)
             for name, variable in other_variables(model)}
    if extra:
        write_npz(directory / EXTRA_STATE_FILE, extra)


def set_mask(layer, mask):
    """Make a masked layer compute ``mask``: scores q with tau 0.5 give it back in every mask mode
    (q > 0.5 binary, |q| > 0.5 signed, q > 0 bernoulli, the nonzero entries for top-k)."""
    layer.scores.assign(np.asarray(mask, dtype=np.float32))
    layer.threshold.assign(0.5)
