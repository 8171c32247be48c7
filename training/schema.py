"""A small typed-schema engine: nested dataclasses validated from YAML dictionaries.

Every field's type comes from its annotation (int, float, bool, str, Optional[...],
nested dataclass); ``choices``/``minimum``/``maximum`` in the field metadata bound
it. Unknown keys, wrong types and out-of-range values raise ``ConfigError`` with
the dotted key in the message. Numbers written as strings (YAML reads ``5e-4`` as
a string) are coerced.
"""
import dataclasses
import typing


class ConfigError(ValueError):
    """An invalid configuration; the message names the offending key."""


def option(default, *, choices=None, minimum=None, maximum=None, exclusive_minimum=False, doc=""):
    """A dataclass field with validation metadata and a one-line description."""
    metadata = {"choices": choices, "minimum": minimum, "maximum": maximum,
                "exclusive_minimum": exclusive_minimum, "doc": doc}
    if isinstance(default, (dict, list)) or dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: _copy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _copy(value):
    return dataclasses.replace(value) if dataclasses.is_dataclass(value) else type(value)(value)


def _coerce(value, annotation, key):
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        inner = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if value is None:
            return None
        return _coerce(value, inner[0], key)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return from_dict(annotation, value, prefix=f"{key}.")
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if annotation in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if annotation is int:
            if float(value) != int(value):
                raise ConfigError(f"{key}: expected an integer, got {value!r}")
            return int(value)
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {annotation!r} for {key}")


def _check_bounds(value, field, key):
    meta = field.metadata
    if value is None:
        return
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, meta['choices']))}")
    minimum, maximum = meta.get("minimum"), meta.get("maximum")
    if minimum is not None and (value < minimum or (meta.get("exclusive_minimum") and value == minimum)):
        relation = ">" if meta.get("exclusive_minimum") else ">="
        raise ConfigError(f"{key}: must be {relation} {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{key}: must be <= {maximum}, got {value}")


def from_dict(cls, data, prefix=""):
    """Build dataclass ``cls`` from ``data``, validating every key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key (allowed: {', '.join(fields)})")
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


def set_dotted(data, dotted_key, value):
    """Apply ``a.b.c=value`` to a nested dict (creating sections as needed)."""
    parts = dotted_key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{dotted_key}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def describe(cls, prefix=""):
    """(dotted key, default, doc) for every leaf key: the generated key reference."""
    rows = []
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        annotation = hints[field.name]
        if dataclasses.is_dataclass(annotation):
            rows += describe(annotation, f"{prefix}{field.name}.")
            continue
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        rows.append((f"{prefix}{field.name}", default, field.metadata.get("doc", ""),
                     field.metadata.get("choices")))
    return rows
