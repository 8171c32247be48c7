"""A small typed-schema engine: nested dataclasses validated from YAML dictionaries.

Every field's type comes from its annotation (int, float, bool, str, Optional[...],
list[...], dict[str, ...], nested dataclass); ``choices``/``minimum``/``maximum`` in the field metadata bound
it. Unknown keys, wrong types, non-finite numbers and out-of-range values raise
``ConfigError`` with the dotted key in the message; offending values are shown
abbreviated, so a hostile value cannot make the message itself huge or slow. Numbers
written as strings (YAML reads ``5e-4`` as a string) are coerced.
"""
import dataclasses
import math
import typing

from masking.messages import shown  # noqa: F401  (the bounded repr of every message, imported from here)


def brief(error, limit=160):
    """'Type: first line of the message', bounded: a library's error can run to pages."""
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


class ConfigError(ValueError):
    """An invalid configuration; the message names the offending key (``key``, when known)."""

    def __init__(self, message, key=None):
        super().__init__(message)
        self.key = key


def option(default, *, choices=None, minimum=None, maximum=None, exclusive_minimum=False, doc="",
           affects_results=True):
    """A dataclass field with validation metadata and a one-line description.

    ``affects_results=False`` marks keys that change speed or bookkeeping only: a results
    folder made under other values of them still counts as made by the same config."""
    metadata = {"choices": choices, "minimum": minimum, "maximum": maximum,
                "exclusive_minimum": exclusive_minimum, "doc": doc, "affects_results": affects_results}
    if isinstance(default, (dict, list)) or dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: _copy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _copy(value):
    return dataclasses.replace(value) if dataclasses.is_dataclass(value) else type(value)(value)


def _number(value, annotation, key):
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{key}: expected a number, got {shown(value)}", key)
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {shown(value)}", key) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}: expected a finite number, got {shown(value)}", key)
    if annotation is int:
        if isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{key}: expected an integer, got {shown(value)}", key)
        return int(value)
    try:
        return float(value)
    except OverflowError:  # an integer with hundreds of digits
        raise ConfigError(f"{key}: expected a finite number, got {shown(value)}", key) from None


def _coerce(value, annotation, key):
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        inner = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if value is None:
            return None
        return _coerce(value, inner[0], key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {shown(value)}", key)
        (inner,) = typing.get_args(annotation)
        return [_coerce(item, inner, f"{key}[{index}]") for index, item in enumerate(value)]
    if origin is dict:   # a mapping of names to values of one type (a study's experiments)
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {shown(value)}", key)
        _, inner = typing.get_args(annotation)
        bad = [name for name in value if not isinstance(name, str) or not name]
        if bad:
            raise ConfigError(f"{key}: names must be non-empty strings, got {shown(bad[0])}", key)
        return {name: _coerce(item, inner, f"{key}.{name}") for name, item in value.items()}
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {shown(value)}", key)
        return from_dict(annotation, value, prefix=f"{key}.")
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {shown(value)}", key)
    if annotation in (int, float):
        return _number(value, annotation, key)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {shown(value)}", key)
        return value
    raise TypeError(f"unsupported annotation {annotation!r} for {key}")


def _check_bounds(value, field, key):
    meta = field.metadata
    if value is None:
        return
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise ConfigError(f"{key}: {shown(value)} is not one of {', '.join(map(str, meta['choices']))}", key)
    minimum, maximum = meta.get("minimum"), meta.get("maximum")
    if minimum is not None and (value < minimum or (meta.get("exclusive_minimum") and value == minimum)):
        relation = ">" if meta.get("exclusive_minimum") else ">="
        raise ConfigError(f"{key}: must be {relation} {minimum}, got {shown(value)}", key)
    if maximum is not None and value > maximum:
        raise ConfigError(f"{key}: must be <= {maximum}, got {shown(value)}", key)


def from_dict(cls, data, prefix=""):
    """Build dataclass ``cls`` from ``data``, validating every key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        where = prefix.rstrip(".") or "config"
        raise ConfigError(f"{where}: expected a mapping, got {shown(data)}", prefix.rstrip(".") or None)
    dependent_defaults = getattr(cls, "dependent_defaults", None)
    if dependent_defaults:
        data = dependent_defaults(data, prefix)
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted((key for key in data if key not in fields), key=str)
    if unknown:
        name = unknown[0] if isinstance(unknown[0], str) else shown(unknown[0])
        raise ConfigError(f"{prefix}{name[:40]}: unknown key (allowed: {', '.join(fields)})", f"{prefix}{name}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in data.items():
        key = f"{prefix}{name}"
        values[name] = _coerce(value, hints[name], key)
        _check_bounds(values[name], fields[name], key)
    instance = cls(**values)
    validate = getattr(instance, "validate", None)
    if validate:
        validate(prefix)
    return instance


def to_dict(instance):
    return dataclasses.asdict(instance)


def without_keys_that_keep_results(cls, data):
    """``data`` (a to_dict-like mapping of ``cls``) less the keys marked ``affects_results=False``."""
    hints = typing.get_type_hints(cls)
    result = dict(data)
    for field in dataclasses.fields(cls):
        if not field.metadata.get("affects_results", True):
            result.pop(field.name, None)
        elif dataclasses.is_dataclass(hints[field.name]) and isinstance(result.get(field.name), dict):
            result[field.name] = without_keys_that_keep_results(hints[field.name], result[field.name])
    return result


def set_dotted(data, dotted_key, value):
    """Apply ``a.b.c=value`` to a nested dict (creating sections as needed)."""
    parts = dotted_key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{dotted_key}: {part} is not a section", dotted_key)
        node = child
    node[parts[-1]] = value


def default_text(value):
    """A default as the key references print it: an empty string as "" (a bare `` shows as two backticks)."""
    return '""' if value == "" else str(value)


def meaning_text(doc, choices):
    """A key's meaning as the key references print it in a table cell: its doc and its choices (unless the
    doc already lists them as a|b), with | escaped."""
    meaning = doc + (f" (one of: {', '.join(map(str, choices))})" if choices and "|" not in doc else "")
    return meaning.replace("|", "\\|")


def describe(cls, prefix="", defaults=None):
    """(dotted key, default, doc, choices, affects_results) for every leaf key: the key reference.

    ``defaults`` is the enclosing field's default instance (``init.weight`` defaults differ from
    the bare ``InitSpec`` defaults)."""
    rows = []
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        annotation = hints[field.name]
        if defaults is not None:
            default = getattr(defaults, field.name)
        else:
            default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        if dataclasses.is_dataclass(annotation):
            rows += describe(annotation, f"{prefix}{field.name}.", default)
            continue
        rows.append((f"{prefix}{field.name}", default, field.metadata.get("doc", ""),
                     field.metadata.get("choices"), field.metadata.get("affects_results", True)))
    return rows
