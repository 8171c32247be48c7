"""Weight and score initializers of the paper (docs/SPEC.md §2), seeded through NumPy.

Every family is described by a target variance ``gain / n`` (``n`` a fan, see
``VARIANCE_RULES``) times a variance multiplier ``factor``; the distribution then
turns that variance into values:

* ``constant``         every entry  +c,            c = sqrt(var)
* ``signed_constant``  every entry  +c or -c,      P(+) = P(-) = 1/2
* ``uniform``          U(-b, b),                   b = sqrt(3 var)
* ``normal``           N(0, var)

So ``uniform/he`` is He-uniform U(+-sqrt(6/fan_in)), ``uniform/xavier`` is
Glorot-uniform, ``uniform/elu`` is the authors' U(+-sqrt(4.5/fan_in)) and
``signed_constant/elus`` is their ELUS weight +-sqrt(3/fan_in) (SPEC §2.4, B1).
``elus_sqrt6`` is the +-sqrt(6/fan_in) that the authors' old ``init_example.py``
arithmetic produced (SPEC §2.5). The (distribution, scaling, factor) triple is an
``InitSpec`` (``masking/init_spec.py``).

Values are drawn with NumPy so that a seed gives bit-identical arrays on every
Keras backend; the pickles written by ``init_example.py`` rely on that.
"""
import math

import keras
import numpy as np

from masking.fans import target_variance
from masking.init_spec import InitSpec


@keras.saving.register_keras_serializable(package="signed_supermask")
class ScaledInitializer(keras.initializers.Initializer):
    """One of the paper's initializer families (see module docstring) with its own seed."""

    def __init__(self, distribution="uniform", scaling="xavier", factor=1.0, seed=None):
        spec = InitSpec(distribution, scaling, factor)   # validates the three
        self.distribution = spec.distribution
        self.scaling = spec.scaling
        self.factor = spec.factor
        self.seed = seed   # None: drawn from NumPy's global state, which keras.utils.set_random_seed seeds

    @classmethod
    def from_spec(cls, spec, seed=None):
        return cls(spec.distribution, spec.scaling, spec.factor, seed=seed)

    def sample(self, shape):
        """The initial values as a float32 NumPy array."""
        variance = target_variance(shape, self.scaling, self.factor)
        rng = np.random.default_rng(self.seed if self.seed is not None else np.random.randint(2**31 - 1))
        if self.distribution == "constant":
            values = np.full(shape, math.sqrt(variance))
        elif self.distribution == "signed_constant":
            signs = np.where(rng.integers(0, 2, size=shape) == 1, 1.0, -1.0)
            values = signs * math.sqrt(variance)
        elif self.distribution == "uniform":
            bound = math.sqrt(3.0 * variance)
            values = rng.uniform(-bound, bound, size=shape)
        else:
            values = rng.normal(0.0, math.sqrt(variance), size=shape)
        return values.astype(np.float32)

    def __call__(self, shape, dtype=None):
        return keras.ops.convert_to_tensor(self.sample(shape), dtype=dtype or "float32")

    def get_config(self):
        return {"distribution": self.distribution, "scaling": self.scaling,
                "factor": self.factor, "seed": self.seed}
