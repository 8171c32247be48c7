"""What a layer's initial values are drawn from: the (distribution, scaling, factor) spec (no Keras).

One type serves the config (``init.weight`` / ``init.mask``), the layer factory, the init
files and ``init_example.py``; its one text form ``distribution/scaling[/factor]`` is what
``--weight-init`` takes and what an init file's folder is named after. The paper's defaults
(docs/SPEC.md §2, §1.4, §2.7) are written here once.
"""
import math
from dataclasses import asdict, dataclass, field

from masking.fans import DISTRIBUTIONS, SCALINGS

DEFAULT_SEED = 7531                 # run i uses DEFAULT_SEED + i (SPEC §2.7)
DEFAULT_WEIGHTS_DIR = "weights"     # init.weights_dir: the init_example.py pickles; $SUPERMASK_WEIGHTS_DIR replaces it
DEFAULT_THRESHOLD_FRACTION = 0.4    # p in tau = p * max|S_0| (the authors' tanh_th)


def _choice(default, choices, doc):
    # The metadata keys of training.schema.option, so that the config schema validates this type.
    return field(default=default, metadata={"choices": choices, "doc": doc})


@dataclass(frozen=True)
class InitSpec:
    """An initializer family: distribution, scaling and variance factor (masking/initializers.py)."""

    distribution: str = _choice("uniform", DISTRIBUTIONS,
                                "signed_constant | constant | uniform | normal (authors: dist)")
    scaling: str = _choice("xavier", SCALINGS,
                           "he | xavier | elu | elus (+-sqrt(3/fan_in)) | elus_sqrt6 (authors: method)")
    factor: float = field(default=1.0, metadata={"minimum": 0.0, "exclusive_minimum": True,
                                                 "doc": "variance multiplier"})

    def __post_init__(self):
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"unknown distribution {self.distribution!r}; choose one of {', '.join(DISTRIBUTIONS)}")
        if self.scaling not in SCALINGS:
            raise ValueError(f"unknown scaling {self.scaling!r}; choose one of {', '.join(SCALINGS)}")
        if (isinstance(self.factor, bool) or not isinstance(self.factor, (int, float)) or not self.factor > 0
                or not math.isfinite(self.factor)):
            raise ValueError(f"initializer factor must be a finite number > 0, got {self.factor!r}")
        object.__setattr__(self, "factor", float(self.factor))

    @classmethod
    def parse(cls, text):
        """'distribution/scaling[/factor]', e.g. 'signed_constant/elus' or 'uniform/he/0.75'."""
        parts = str(text).split("/")
        if len(parts) not in (2, 3):
            raise ValueError(f"expected distribution/scaling[/factor], got {text!r}")
        try:
            factor = float(parts[2]) if len(parts) == 3 else 1.0
        except ValueError:
            raise ValueError(f"{text!r}: factor {parts[2]!r} is not a number") from None
        return cls(parts[0], parts[1], factor)

    @classmethod
    def of(cls, value, label="initializer"):
        """An InitSpec from an InitSpec or a {distribution, scaling[, factor]} mapping."""
        if isinstance(value, cls):
            return value
        if isinstance(value, dict) and set(value) <= {"distribution", "scaling", "factor"}:
            return cls(**value)
        raise ValueError(f"{label} must be an InitSpec or a dict with distribution/scaling/factor, got {value!r}")

    def __str__(self):
        return f"{self.distribution}/{self.scaling}" + (f"/{self.factor:g}" if self.factor != 1.0 else "")

    def folder_name(self):
        """'<distribution>_<scaling>[_x<factor>]': the init files' folder of this spec."""
        return f"{self.distribution}_{self.scaling}" + (f"_x{self.factor:g}" if self.factor != 1.0 else "")

    def to_dict(self):
        return asdict(self)


SIGNED_WEIGHT_INIT = InitSpec("signed_constant", "elus")   # ELUS +-sqrt(3/fan_in), SPEC B1
SIGNED_SCORE_INIT = InitSpec("uniform", "xavier")          # Glorot-uniform scores
BASELINE_WEIGHT_INIT = InitSpec("uniform", "elu")          # U(+-sqrt(4.5/fan_in)), SPEC §2.6


def default_weight_init(signed):
    """The default W of a signed model, or the default kernels of its baseline: the one rule that the layer
    factory and the config schema both follow."""
    return SIGNED_WEIGHT_INIT if signed else BASELINE_WEIGHT_INIT
