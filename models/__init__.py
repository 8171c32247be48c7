"""Model families of the paper; ``build_model(name, signed=True, **options)`` is the entry point.

Names are imported lazily (PEP 562), as in ``masking``: ``models.registry``, the table of
families that config validation and reports read, imports without Keras; the builders load
Keras when first used.
"""
import importlib

_EXPORTS = {
    "models.registry": ("BN_MODES", "MODEL_FAMILIES", "MODEL_NAMES", "ModelFamily", "model_family"),
    "models.build": ("InitialValues", "build_experiment_model", "build_model", "load_initial_files",
                     "resolve_initial_values"),
    "models.layer_factory": ("LayerFactory",),
    "masking.init_spec": ("BASELINE_WEIGHT_INIT", "InitSpec", "SIGNED_SCORE_INIT", "SIGNED_WEIGHT_INIT"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    return getattr(importlib.import_module(_MODULE_OF[name]), name)
