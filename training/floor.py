"""The model the step-time benchmarks time (bench/step_time.py, bench/op_profile.py): a built, compiled
paper model on random images, signed or plain, under a dtype policy as the run trainer builds it."""
import os


def floor_model(name, signed, images, jit_compile="auto", steps_per_execution=1, metrics=("accuracy",),
                precision="float32"):
    """(compiled model, random images, random labels) of the benchmark: ``build_model(name, signed)`` with
    the signed model's BN layout on both variants, plain SGD, ``images`` N(0, 1) images in memory,
    built and compiled under the dtype policy ``precision`` as the run trainer does."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    from models import build_model, model_family
    from training.runner import precision_policy

    # The floor has the signed model's BN layout (baselines default to real BN everywhere).
    bn_mode = model_family(name).default_bn_mode(signed=True)
    with precision_policy(precision):
        model = build_model(name, signed=signed, **({"bn_mode": bn_mode} if bn_mode else {}))
        jit = {"true": True, "false": False}.get(jit_compile, jit_compile)
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
                      loss=keras.losses.SparseCategoricalCrossentropy(), metrics=list(metrics),
                      jit_compile=jit, steps_per_execution=steps_per_execution)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(images, *model.input_shape[1:])).astype("float32")
    y = rng.integers(0, model.output_shape[-1], size=images).astype("int32")
    return model, x, y
