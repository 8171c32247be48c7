"""Lazy package exports (PEP 562): a package names what it offers, and each name's module is
imported on first use, so that the NumPy-only modules load without Keras."""
import importlib


def lazy_exports(package, exports):
    """(``__getattr__``, ``__all__``) for ``package`` from {module: (names...)}."""
    module_of = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name):
        if name not in module_of:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module_of[name]), name)

    return __getattr__, sorted(module_of)
