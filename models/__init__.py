"""Model families of the paper; ``build_model(name, signed=True, **options)`` is the entry point.

Names are imported lazily (PEP 562), as in ``masking``: ``models.registry``, the table of
families that config validation and reports read, imports without Keras; the builders load
Keras when first used.
"""
from masking.lazy import lazy_exports

_EXPORTS = {
    "models.registry": ("BN_MODES", "MODEL_FAMILIES", "MODEL_NAMES", "ModelFamily", "model_family"),
    "models.build": ("build_experiment_model", "build_model", "load_initial_files"),
    "models.initial_values": ("InitialValues", "check_init_files", "resolve_initial_values"),
    "models.layer_factory": ("LayerFactory",),
    "masking.init_spec": ("BASELINE_WEIGHT_INIT", "InitSpec", "SIGNED_SCORE_INIT", "SIGNED_WEIGHT_INIT"),
}
__getattr__, __all__ = lazy_exports("models", _EXPORTS)
