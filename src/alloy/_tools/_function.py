"""``@alloy.tool``: a typed Python function becomes a tool, its schema built from its signature."""

from __future__ import annotations

import enum
import functools
import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar, overload

import attrs
import trio

from .._errors import ToolDefinitionError
from ._tool import ToolContext

__all__ = ["FunctionTool", "tool"]

F = TypeVar("F", bound=Callable[..., Any])

_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_SECTION = re.compile(
    r"^\s*(Args|Arguments|Parameters|Params|Returns?|Raises|Yields|Examples?|Notes?)\s*:\s*$"
)
_ARG_LINE = re.compile(r"^\s*\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_SPHINX_PARAM = re.compile(r"^\s*:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")

Convert = Callable[[Any], Any]


@attrs.frozen(kw_only=True)
class FunctionTool:
    """A tool made from a function by ``@alloy.tool``; calling it calls the function.

    >>> @alloy.tool
    ... async def weather(city: str, unit: Literal["c", "f"] = "c") -> str:
    ...     '''Current weather for a city.'''
    >>> weather.name, weather.input_schema["required"]
    ('weather', ['city'])
    """

    function: Callable[..., Any]
    name: str
    description: str
    input_schema: Mapping[str, Any]
    sequential: bool = False
    timeout: float | None = None
    runs_in_thread: bool = False
    _context_parameter: str | None = attrs.field(default=None, alias="context_parameter")
    _converters: Mapping[str, Convert] = attrs.field(factory=dict, alias="converters")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    async def execute(self, arguments: Mapping[str, Any], context: ToolContext) -> str:
        """Call the function with validated ``arguments`` (sync functions run in a thread)."""
        kwargs = {
            key: (self._converters[key](value) if key in self._converters else value)
            for key, value in arguments.items()
        }
        if self._context_parameter is not None:
            kwargs[self._context_parameter] = context
        if self.runs_in_thread:
            call = functools.partial(self.function, **kwargs)
            value = await trio.to_thread.run_sync(call, abandon_on_cancel=True)
        else:
            value = await self.function(**kwargs)
        return _as_text(value)


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


@overload
def tool(function: F, /) -> FunctionTool: ...
@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    sequential: bool = False,
    timeout: float | None = None,
) -> Callable[[F], FunctionTool]: ...
def tool(
    function: F | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    sequential: bool = False,
    timeout: float | None = None,
) -> FunctionTool | Callable[[F], FunctionTool]:
    """Make a tool of a typed function, sync or async.

    The schema comes from the parameters' annotations (str, int, float, bool, Literal, Enum,
    lists, dicts, TypedDict, ``X | None``, ``Annotated[X, "description"]``); the description
    from the docstring, whose ``Args:`` section describes the parameters. A parameter annotated
    ``alloy.ToolContext`` receives the context and is not shown to the model. Sync functions
    run in a worker thread::

        @alloy.tool
        async def weather(city: str, unit: Literal["c", "f"] = "c") -> str:
            '''Current weather for a city.

            Args:
                city: The city, e.g. "Paris".
                unit: Celsius or Fahrenheit.
            '''

        @alloy.tool(sequential=True, timeout=30)
        def commit(message: str, context: alloy.ToolContext) -> str: ...
    """

    def decorate(fn: F) -> FunctionTool:
        return _build(
            fn, name=name, description=description, sequential=sequential, timeout=timeout
        )

    if function is not None:
        return decorate(function)
    return decorate


def _build(
    fn: Callable[..., Any],
    *,
    name: str | None,
    description: str | None,
    sequential: bool,
    timeout: float | None,
) -> FunctionTool:
    label = getattr(fn, "__name__", repr(fn))
    if not callable(fn):
        raise ToolDefinitionError(f"@alloy.tool needs a function, got {fn!r}")
    if name is not None and not name:
        raise ToolDefinitionError(f"{label}: name= must not be empty")
    tool_name = name or label
    if not _NAME.match(tool_name):
        raise ToolDefinitionError(
            f"{label}: tool name {tool_name!r} must be 1-64 letters, digits, '_' or '-'"
        )
    if timeout is not None and not timeout > 0:
        raise ToolDefinitionError(f"{label}: timeout must be positive, got {timeout!r}")
    summary, arg_docs = _parse_docstring(inspect.getdoc(fn) or "")
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:
        raise ToolDefinitionError(f"{label}: cannot resolve annotations: {exc}") from exc
    properties: dict[str, Any] = {}
    required: list[str] = []
    converters: dict[str, Convert] = {}
    context_parameter: str | None = None
    for parameter in inspect.signature(fn).parameters.values():
        where = f"{label}: parameter {parameter.name!r}"
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise ToolDefinitionError(f"{where}: *args and **kwargs cannot be described to a model")
        if parameter.kind is parameter.POSITIONAL_ONLY:
            raise ToolDefinitionError(f"{where}: positional-only parameters are not supported")
        annotation = hints.get(parameter.name, Any)
        if annotation is ToolContext or ToolContext in typing.get_args(annotation):
            context_parameter = parameter.name
            continue
        if parameter.name not in hints:
            raise ToolDefinitionError(f"{where}: needs a type annotation")
        schema, convert = _schema_of(annotation, where)
        if parameter.name in arg_docs and "description" not in schema:
            schema = {**schema, "description": arg_docs[parameter.name]}
        if parameter.default is parameter.empty:
            required.append(parameter.name)
        elif _is_json(parameter.default) and parameter.default is not None:
            schema = {**schema, "default": _jsonable(parameter.default)}
        properties[parameter.name] = schema
        if convert is not None:
            converters[parameter.name] = convert
    input_schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    text = description if description is not None else summary
    if not text:
        raise ToolDefinitionError(
            f"{label}: a tool needs a description: give the function a docstring or pass description="
        )
    return FunctionTool(
        function=fn,
        name=tool_name,
        description=text,
        input_schema=input_schema,
        sequential=sequential,
        timeout=timeout,
        runs_in_thread=not inspect.iscoroutinefunction(inspect.unwrap(fn)),
        context_parameter=context_parameter,
        converters=converters,
    )


def _is_json(value: Any) -> bool:
    try:
        json.dumps(_jsonable(value))
    except (TypeError, ValueError):
        return False
    return True


def _jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value


def _schema_of(annotation: Any, where: str) -> tuple[dict[str, Any], Convert | None]:
    """The JSON schema of a type, and a function turning JSON back into that type (or None)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        schema, convert = _schema_of(args[0], where)
        notes = [a for a in args[1:] if isinstance(a, str)]
        if notes:
            schema = {**schema, "description": " ".join(notes)}
        return schema, convert
    if annotation is Any:
        return {}, None
    if annotation is str:
        return {"type": "string"}, None
    if annotation is bool:
        return {"type": "boolean"}, None
    if annotation is int:
        return {"type": "integer"}, int
    if annotation is float:
        return {"type": "number"}, float
    if annotation is type(None) or annotation is None:
        return {"type": "null"}, None
    if origin is Literal:
        return _enum_schema(list(args)), None
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return _enum_schema([member.value for member in annotation]), annotation
    if origin in (typing.Union, types.UnionType):
        return _union_schema(args, where)
    if origin in (list, Sequence, tuple) or annotation in (list, tuple):
        return _array_schema(annotation, origin, args, where)
    if origin in (dict, Mapping) or annotation is dict:
        value_type = args[1] if len(args) == 2 else Any
        if args and args[0] is not str:
            raise ToolDefinitionError(f"{where}: dict keys must be str in JSON")
        value_schema, convert = _schema_of(value_type, where)
        mapping: dict[str, Any] = {"type": "object", "additionalProperties": value_schema or True}
        if convert is None:
            return mapping, None
        return mapping, lambda value: {key: convert(item) for key, item in value.items()}
    if typing.is_typeddict(annotation):
        return _typeddict_schema(annotation, where)
    raise ToolDefinitionError(f"{where}: cannot build a JSON schema for {annotation!r}")


def _enum_schema(values: list[Any]) -> dict[str, Any]:
    schema: dict[str, Any] = {"enum": values}
    kinds = {type(value) for value in values}
    if kinds == {str}:
        schema = {"type": "string", **schema}
    elif kinds == {int}:
        schema = {"type": "integer", **schema}
    return schema


def _union_schema(args: tuple[Any, ...], where: str) -> tuple[dict[str, Any], Convert | None]:
    members = [arg for arg in args if arg is not type(None)]
    nullable = len(members) < len(args)
    schemas: list[dict[str, Any]] = []
    converters: list[tuple[dict[str, Any], Convert | None]] = []
    for member in members:
        schema, convert = _schema_of(member, where)
        schemas.append(schema)
        converters.append((schema, convert))
    if nullable:
        schemas.append({"type": "null"})
    if len(schemas) == 1:
        return schemas[0], converters[0][1] if converters else None
    if not any(convert for _, convert in converters):
        return {"anyOf": schemas}, None

    from ._validate import schema_errors

    def convert_union(value: Any) -> Any:
        if value is None:
            return None
        for schema, convert in converters:
            if not schema_errors(value, schema):
                return convert(value) if convert else value
        return value

    return {"anyOf": schemas}, convert_union


def _array_schema(
    annotation: Any, origin: Any, args: tuple[Any, ...], where: str
) -> tuple[dict[str, Any], Convert | None]:
    is_tuple = origin is tuple or annotation is tuple
    if is_tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        raise ToolDefinitionError(
            f"{where}: use tuple[X, ...] or list[X]; fixed-size tuples are not supported"
        )
    item_type = args[0] if args else Any
    item_schema, convert = _schema_of(item_type, where)
    schema: dict[str, Any] = (
        {"type": "array", "items": item_schema} if item_schema else {"type": "array"}
    )
    if convert is None:
        return schema, (tuple if is_tuple else None)
    container: Callable[[Any], Any] = tuple if is_tuple else list
    return schema, lambda value: container(convert(item) for item in value)


def _typeddict_schema(annotation: Any, where: str) -> tuple[dict[str, Any], Convert | None]:
    hints = typing.get_type_hints(annotation, include_extras=True)
    properties: dict[str, Any] = {}
    converters: dict[str, Convert] = {}
    for key, hint in hints.items():
        schema, convert = _schema_of(hint, f"{where}.{key}")
        properties[key] = schema
        if convert is not None:
            converters[key] = convert
    schema = {
        "type": "object",
        "properties": properties,
        "required": sorted(annotation.__required_keys__),
        "additionalProperties": False,
    }
    if not converters:
        return schema, None
    return schema, lambda value: {
        key: (converters[key](item) if key in converters else item) for key, item in value.items()
    }


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The summary (text before the first section) and the per-argument descriptions."""
    summary: list[str] = []
    arguments: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    arg_indent: int | None = None
    for line in doc.splitlines():
        sphinx = _SPHINX_PARAM.match(line)
        if sphinx:
            current = sphinx.group(1)
            arguments[current] = sphinx.group(2).strip()
            section = "sphinx"
            continue
        if section == "sphinx" and line.lstrip().startswith(":"):
            current = None  # another field (:returns:, :raises:) ends the parameter
            continue
        heading = _SECTION.match(line)
        if heading:
            section = heading.group(1).lower()
            current = None
            arg_indent = None
            continue
        if section is None:
            summary.append(line)
        elif section.startswith(("arg", "param")):
            indent = len(line) - len(line.lstrip())
            match = _ARG_LINE.match(line)
            if match and (arg_indent is None or indent <= arg_indent):
                arg_indent = indent
                current = match.group(1)
                arguments[current] = match.group(2).strip()
            elif current and line.strip():
                arguments[current] = f"{arguments[current]} {line.strip()}".strip()
        elif section == "sphinx" and current and line.strip():
            arguments[current] = f"{arguments[current]} {line.strip()}".strip()
    return "\n".join(summary).strip(), arguments
