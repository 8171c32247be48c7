"""Values shown in error messages, bounded: a hostile file or config value cannot make a message huge or slow.

Here rather than in the config schema because the init-file reader needs it too, and ``masking``
installs on its own (pyproject.toml), without the repository's other packages.
"""
import reprlib


class _ShortRepr(reprlib.Repr):
    def repr_ndarray(self, array, level):
        """NumPy's own repr prints the items of an object array in full."""
        return f"<{array.dtype} array of shape {array.shape}>"


_SHORT = _ShortRepr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 2, 60, 60, 40
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 4


def shown(value, limit=80):
    """repr() bounded in time and length (reprlib stops at depth 2 and 4 items), for error messages."""
    text = _SHORT.repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
