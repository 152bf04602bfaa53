"""Check tool arguments against a JSON schema, with errors written for the model to read.

Covers the JSON Schema keywords tool schemas use: type, enum, const, properties, required,
additionalProperties, items, prefixItems, anyOf/oneOf/allOf, minimum/maximum (and their
exclusive forms), minLength/maxLength, minItems/maxItems, pattern. Unknown keywords are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["json_type", "schema_errors"]

_MAX_ERRORS = 5


def schema_errors(value: Any, schema: Mapping[str, Any]) -> list[str]:
    """Every way ``value`` breaks ``schema`` (at most a few), as sentences; ``[]`` when valid.

    >>> schema_errors({"cty": "Paris"}, {"type": "object", "properties": {"city": {"type": "string"}},
    ...                                   "required": ["city"], "additionalProperties": False})
    ["missing required argument 'city'", "unexpected argument 'cty' (expected: city)"]
    """
    errors: list[str] = []
    _check(value, schema, "", errors)
    return errors[:_MAX_ERRORS]


def _where(path: str) -> str:
    return f"argument '{path}'" if path else "the arguments"


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{json_type(value)} {text}"


def json_type(value: object, *, integers: bool = True) -> str:
    """The JSON name of ``value``'s type (the Python type name for anything else).

    An ``int`` is an ``integer``, or a ``number`` when ``integers`` is false (error messages about
    JSON data, which has only numbers, use that).

    >>> json_type(3), json_type(3, integers=False), json_type(True), json_type((1,)), json_type(b"")
    ('integer', 'number', 'boolean', 'array', 'bytes')
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer" if integers else "number"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _is_type(value: Any, name: str) -> bool:
    match name:
        case "string":
            return isinstance(value, str)
        case "integer":
            return (isinstance(value, int) and not isinstance(value, bool)) or (
                isinstance(value, float) and value.is_integer()
            )
        case "number":
            return isinstance(value, int | float) and not isinstance(value, bool)
        case "boolean":
            return isinstance(value, bool)
        case "null":
            return value is None
        case "array":
            return isinstance(value, list | tuple)
        case "object":
            return isinstance(value, Mapping)
    return True


def _check(value: Any, schema: Mapping[str, Any], path: str, errors: list[str]) -> None:
    if len(errors) >= _MAX_ERRORS or not isinstance(schema, Mapping):
        return
    expected = schema.get("type")
    if expected is not None:
        names = [expected] if isinstance(expected, str) else list(expected)
        if not any(_is_type(value, name) for name in names):
            article = "an" if names[0][0] in "aeiou" else "a"
            wanted = " or ".join(names)
            errors.append(f"{_where(path)} must be {article} {wanted}, got {_describe(value)}")
            return
    if "enum" in schema and not any(_same(value, option) for option in schema["enum"]):
        options = ", ".join(repr(option) for option in schema["enum"])
        errors.append(f"{_where(path)} must be one of {options}, got {value!r}")
        return
    if "const" in schema and not _same(value, schema["const"]):
        errors.append(f"{_where(path)} must be {schema['const']!r}, got {value!r}")
        return
    for key in ("anyOf", "oneOf"):
        if key in schema:
            branches = schema[key]
            if not any(not schema_errors(value, branch) for branch in branches):
                # Report the branch closest to the value's type, or all alternatives.
                errors.append(
                    f"{_where(path)} does not match any allowed form, got {_describe(value)}"
                )
                return
    for branch in schema.get("allOf", ()):
        _check(value, branch, path, errors)
    if isinstance(value, Mapping):
        _check_object(value, schema, path, errors)
    elif isinstance(value, list | tuple):
        _check_array(value, schema, path, errors)
    elif isinstance(value, str):
        _check_string(value, schema, path, errors)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        _check_number(value, schema, path, errors)


def _same(a: Any, b: Any) -> bool:
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _check_object(
    value: Mapping[str, Any], schema: Mapping[str, Any], path: str, errors: list[str]
) -> None:
    properties: Mapping[str, Any] = schema.get("properties", {})
    prefix = f"{path}." if path else ""
    for name in schema.get("required", ()):
        if name not in value:
            errors.append(f"missing required argument '{prefix}{name}'")
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in properties:
            _check(item, properties[name], f"{prefix}{name}", errors)
        elif extra is False:
            allowed = ", ".join(properties) or "none"
            errors.append(f"unexpected argument '{prefix}{name}' (expected: {allowed})")
        elif isinstance(extra, Mapping):
            _check(item, extra, f"{prefix}{name}", errors)


def _check_array(
    value: list[Any] | tuple[Any, ...], schema: Mapping[str, Any], path: str, errors: list[str]
) -> None:
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(f"{_where(path)} must have at least {schema['minItems']} items")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(f"{_where(path)} must have at most {schema['maxItems']} items")
    prefix_items = schema.get("prefixItems", ())
    items = schema.get("items")
    for index, item in enumerate(value):
        if index < len(prefix_items):
            _check(item, prefix_items[index], f"{path}[{index}]", errors)
        elif isinstance(items, Mapping):
            _check(item, items, f"{path}[{index}]", errors)


def _check_string(value: str, schema: Mapping[str, Any], path: str, errors: list[str]) -> None:
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(f"{_where(path)} must be at least {schema['minLength']} characters long")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append(f"{_where(path)} must be at most {schema['maxLength']} characters long")
    pattern = schema.get("pattern")
    if isinstance(pattern, str) and re.search(pattern, value) is None:
        errors.append(f"{_where(path)} must match the pattern {pattern!r}")


def _check_number(value: float, schema: Mapping[str, Any], path: str, errors: list[str]) -> None:
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{_where(path)} must be >= {schema['minimum']}, got {value}")
    if "maximum" in schema and value > schema["maximum"]:
        errors.append(f"{_where(path)} must be <= {schema['maximum']}, got {value}")
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        errors.append(f"{_where(path)} must be > {schema['exclusiveMinimum']}, got {value}")
    if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
        errors.append(f"{_where(path)} must be < {schema['exclusiveMaximum']}, got {value}")
