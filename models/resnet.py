"""ResNet20/56/110 of the authors' code (docs/SPEC.md §3.3), all from one builder.

The design is not He et al.'s CIFAR ResNet: the stem is conv3x3 -> BN -> ELU -> max-pool
3x3/1; every stage (stage 1 too) starts with a projection "C" block whose first conv is a
*strided 1x1* conv and whose shortcut is a 1x1 conv; the other blocks are plain 3x3-3x3
identity "I" blocks. Only with this design do the masked-parameter counts of SPEC §4.2
come out (ResNet20: 248,624).

Batch normalization (``bn_mode``, SPEC §3.4, B4, B11). The authors' ``BatchNormExt``
drops ``center``/``scale`` and forwards only ``trainable``. A Keras BN layer with
``trainable=False`` always runs in inference mode with its initial moving statistics
(0, 1) and never updates them, so such a "frozen" BN computes y = x / sqrt(1 + 1e-3):
an identity up to a factor 0.9995 (setting ``model.trainable = True`` would unfreeze it:
Keras propagates the flag to every layer). The modes reproduce each variant exactly:

- ``none``: no BN layers at all (what "frozen" amounts to, without the 0.9995 factor).
- ``frozen``: every BN exists with ``trainable=False`` (submitted ResNet56/110_Mask).
- ``stem_only``: real stem BN, frozen block BNs (submitted ResNet20_Mask).
- ``full``: every BN real (all baselines; the ``instance_1`` "BN2" configs).

A real BN uses the Keras defaults (momentum 0.99, epsilon 1e-3, trainable gamma/beta).
The functional model passes ``training`` to every layer, so real BNs use batch statistics
in training and moving statistics at inference, unlike the authors' masked ResNets (B11).

Two variants of the authors' signed ResNet110, both off by default: ``extra_head`` adds
ELU + a masked Dense(num_classes -> num_classes) after the final dense (``instance_2``,
SPEC B19); ``projection_every=9`` makes the 10th block of every stage another C-block
with the stage's stride, as in every stored version of ``ResNet110_Mask`` (its baseline
``ResNet110`` and ResNet20/56 have one C-block per stage).
"""
import keras

from models.registry import BN_MODES, RESNET_STAGE_WIDTHS, default_bn_mode

# (stem BN, block BNs) per mode; None = no layer, False = frozen, True = real.
_BN_LAYOUT = {"none": (None, None), "frozen": (False, False), "stem_only": (True, False), "full": (True, True)}
STAGE_STRIDES = (1, 2, 2)


def blocks_per_stage(depth):
    """(depth - 2) / 6 blocks of two convs per stage; rejects depths that are not 6n+2."""
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"ResNet depth must be 6n+2 with n >= 1 (20, 56, 110, ...), got {depth!r}")
    return (depth - 2) // 6


def _batch_norm(real, name):
    """A BN layer, or an identity when ``real`` is None (bn_mode 'none')."""
    if real is None:
        return lambda x: x
    return keras.layers.BatchNormalization(trainable=real, name=name)


def _elu(name):
    return keras.layers.Activation("elu", name=name)


def projection_block(x, factory, filters, strides, real_bn, name):
    """C-block: ELU(BN(conv3x3(ELU(BN(conv1x1/s(x))))) + BN(conv1x1/s(x))).

    The main path is created first so that each conv's seed index (creation order) equals
    its position in ``masking.masked_layers`` (the model's topological order).
    """
    main = factory.conv(filters, 1, strides=strides, name=f"{name}_conv1")(x)
    main = _elu(f"{name}_elu1")(_batch_norm(real_bn, f"{name}_bn1")(main))
    main = factory.conv(filters, 3, name=f"{name}_conv2")(main)
    main = _batch_norm(real_bn, f"{name}_bn2")(main)
    shortcut = factory.conv(filters, 1, strides=strides, name=f"{name}_shortcut_conv")(x)
    shortcut = _batch_norm(real_bn, f"{name}_shortcut_bn")(shortcut)
    return _elu(f"{name}_out")(keras.layers.Add(name=f"{name}_add")([main, shortcut]))


def identity_block(x, factory, filters, real_bn, name):
    """I-block: ELU(BN(conv3x3(ELU(BN(conv3x3(x))))) + x)."""
    main = factory.conv(filters, 3, name=f"{name}_conv1")(x)
    main = _elu(f"{name}_elu1")(_batch_norm(real_bn, f"{name}_bn1")(main))
    main = factory.conv(filters, 3, name=f"{name}_conv2")(main)
    main = _batch_norm(real_bn, f"{name}_bn2")(main)
    return _elu(f"{name}_out")(keras.layers.Add(name=f"{name}_add")([main, x]))


def build_resnet(factory, depth, name, width_multiplier=1.0, num_classes=10, input_shape=(32, 32, 3),
                 bn_mode=None, extra_head=False, projection_every=None, stage_widths=RESNET_STAGE_WIDTHS):
    """``bn_mode=None`` picks :func:`default_bn_mode`; ``projection_every=k`` starts a new
    C-block every k blocks of a stage (default: only the first block)."""
    blocks = blocks_per_stage(depth)
    bn_mode = default_bn_mode(depth, factory.signed) if bn_mode is None else bn_mode
    if bn_mode not in BN_MODES:
        raise ValueError(f"bn_mode must be one of {', '.join(BN_MODES)}, got {bn_mode!r}")
    projection_every = blocks if projection_every is None else projection_every
    if not isinstance(projection_every, int) or projection_every < 1:
        raise ValueError(f"projection_every must be a positive int, got {projection_every!r}")
    stem_bn, block_bn = _BN_LAYOUT[bn_mode]

    inputs = keras.Input(shape=input_shape, name="images")
    x = factory.conv(int(stage_widths[0] * width_multiplier), 3, name="stem_conv")(inputs)
    x = _elu("stem_elu")(_batch_norm(stem_bn, "stem_bn")(x))
    x = keras.layers.MaxPooling2D(3, strides=1, padding="same", name="stem_pool")(x)
    for stage, (width, strides) in enumerate(zip(stage_widths, STAGE_STRIDES), start=1):
        filters = int(width * width_multiplier)
        for block in range(blocks):
            block_name = f"stage{stage}_block{block + 1}"
            if block % projection_every == 0:
                x = projection_block(x, factory, filters, strides, block_bn, block_name)
            else:
                x = identity_block(x, factory, filters, block_bn, block_name)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if extra_head:
        x = factory.dense(num_classes, activation="elu", name="fc")(x)
    outputs = factory.dense(num_classes, activation="softmax", name="output")(x)
    return keras.Model(inputs, outputs, name=name)
