"""``@alloy.tool``: schemas from signatures, descriptions from docstrings, definition errors,
JSON arguments converted back to Python types, and the argument validator it relies on."""

# No ``from __future__ import annotations`` here: the tools below are defined inside test
# functions and refer to local names, which string annotations could not resolve.

import enum
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, TypedDict, Union

import pytest
from hypothesis import given, strategies as st

import alloy
from alloy._tools._validate import schema_errors
from alloy.testing import ScriptedProvider, text, tool_call


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Point(TypedDict):
    x: int
    y: int


class Filters(TypedDict, total=False):
    color: Color
    tags: list[str]


_SENTINEL = object()


def props(tool: alloy.FunctionTool) -> Mapping[str, Any]:
    return tool.input_schema["properties"]


# -- schema from annotations ----------------------------------------------------------------------


def test_scalar_types() -> None:
    @alloy.tool
    def f(s: str, i: int, x: float, b: bool) -> str:
        """Scalars."""
        return ""

    assert f.input_schema == {
        "type": "object",
        "properties": {
            "s": {"type": "string"},
            "i": {"type": "integer"},
            "x": {"type": "number"},
            "b": {"type": "boolean"},
        },
        "required": ["s", "i", "x", "b"],
        "additionalProperties": False,
    }


def test_literal_and_enum() -> None:
    @alloy.tool
    def f(
        unit: Literal["c", "f"],
        size: Literal[1, 2, 3],
        mixed: Literal["a", 1],
        color: Color,
        level: Level,
    ) -> str:
        """Choices."""
        return ""

    assert props(f) == {
        "unit": {"type": "string", "enum": ["c", "f"]},
        "size": {"type": "integer", "enum": [1, 2, 3]},
        "mixed": {"enum": ["a", 1]},
        "color": {"type": "string", "enum": ["red", "green"]},
        "level": {"type": "integer", "enum": [1, 2]},
    }


def test_containers() -> None:
    @alloy.tool
    def f(
        names: list[str],
        anything: list,  # type: ignore[type-arg]
        numbers: tuple[int, ...],
        seq: Sequence[float],
        counts: dict[str, int],
        loose: dict,  # type: ignore[type-arg]
        colors: list[Color],
    ) -> str:
        """Containers."""
        return ""

    assert props(f) == {
        "names": {"type": "array", "items": {"type": "string"}},
        "anything": {"type": "array"},
        "numbers": {"type": "array", "items": {"type": "integer"}},
        "seq": {"type": "array", "items": {"type": "number"}},
        "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
        "loose": {"type": "object", "additionalProperties": True},
        "colors": {"type": "array", "items": {"type": "string", "enum": ["red", "green"]}},
    }


def test_typed_dict() -> None:
    @alloy.tool
    def f(point: Point, filters: Filters) -> str:
        """Typed dicts."""
        return ""

    assert props(f)["point"] == {
        "type": "object",
        "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
        "required": ["x", "y"],
        "additionalProperties": False,
    }
    assert props(f)["filters"] == {
        "type": "object",
        "properties": {
            "color": {"type": "string", "enum": ["red", "green"]},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": [],
        "additionalProperties": False,
    }


def test_optional_and_union() -> None:
    @alloy.tool
    def f(
        a: int | None,
        b: Optional[str],  # noqa: UP045
        c: Union[int, str],  # noqa: UP007
        d: str | list[str] | None = None,
    ) -> str:
        """Unions."""
        return ""

    assert props(f) == {
        "a": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        "b": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "c": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
        "d": {
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}},
                {"type": "null"},
            ]
        },
    }
    assert f.input_schema["required"] == ["a", "b", "c"]


def test_any_is_unconstrained() -> None:
    @alloy.tool
    def f(value: Any) -> str:
        """Anything."""
        return ""

    assert props(f) == {"value": {}}


def test_annotated_description() -> None:
    @alloy.tool
    def f(
        city: Annotated[str, "The city, e.g. Paris."],
        days: Annotated[int, "How many", "days ahead."] = 1,
    ) -> str:
        """Forecast.

        Args:
            city: Ignored: Annotated wins.
        """
        return ""

    assert props(f)["city"] == {"type": "string", "description": "The city, e.g. Paris."}
    assert props(f)["days"] == {
        "type": "integer",
        "description": "How many days ahead.",
        "default": 1,
    }


def test_defaults() -> None:
    @alloy.tool
    def f(
        city: str,
        unit: Literal["c", "f"] = "c",
        color: Color = Color.GREEN,
        days: int = 3,
        verbose: bool = False,
        tags: tuple[str, ...] = ("a", "b"),
        note: str | None = None,
        marker: str = _SENTINEL,  # type: ignore[assignment]
    ) -> str:
        """Defaults."""
        return ""

    p = props(f)
    assert f.input_schema["required"] == ["city"]
    assert p["unit"]["default"] == "c"
    assert p["color"]["default"] == "green"
    assert p["days"]["default"] == 3
    assert p["verbose"]["default"] is False
    assert p["tags"]["default"] == ["a", "b"]
    assert "default" not in p["note"]
    assert p["marker"] == {"type": "string"}  # not JSON: no default shown


# -- docstrings ---------------------------------------------------------------------------------


def test_docstring_summary_and_google_args() -> None:
    @alloy.tool
    def weather(city: str, unit: str = "c", days: int = 1) -> str:
        """Current weather for a city.

        Uses the public forecast service.

        Args:
            city: The city, e.g. "Paris". Note: it must exist.
                Give the English name.
            unit (str): Celsius
                or Fahrenheit.
            days: How many days.

        Returns:
            text: the forecast.
        """
        return ""

    assert weather.description == "Current weather for a city.\n\nUses the public forecast service."
    p = props(weather)
    assert p["city"]["description"] == (
        'The city, e.g. "Paris". Note: it must exist. Give the English name.'
    )
    assert p["unit"]["description"] == "Celsius or Fahrenheit."
    assert p["days"]["description"] == "How many days."


def test_sphinx_params() -> None:
    @alloy.tool
    def copy(source: str, target: str, overwrite: bool = False) -> str:
        """Copy a file.

        :param source: The file to copy.
        :param str target: Where to put it,
            relative to the working directory.
        :type target: str
        :param overwrite: Replace an existing file.
        :returns: a confirmation
            naming both files.
        """
        return ""

    assert copy.description == "Copy a file."
    p = props(copy)
    assert p["source"]["description"] == "The file to copy."
    assert p["target"]["description"] == "Where to put it, relative to the working directory."
    # The continuation of :returns: belongs to the return value, not to the last parameter.
    assert p["overwrite"]["description"] == "Replace an existing file."


def test_undocumented_parameters_have_no_description() -> None:
    @alloy.tool
    def f(a: int, b: int) -> int:
        """Add.

        Args:
            a: First.
        """
        return a + b

    assert props(f)["a"]["description"] == "First."
    assert "description" not in props(f)["b"]


def test_explicit_description_replaces_the_docstring() -> None:
    @alloy.tool(description="Say hello.")
    def hello(name: str) -> str:
        return f"hello {name}"

    assert hello.description == "Say hello."


# -- ToolContext and options ----------------------------------------------------------------------


def test_tool_context_is_injected_and_hidden() -> None:
    @alloy.tool
    async def whoami(name: str, context: alloy.ToolContext) -> str:
        """Say who.

        Args:
            name: A name.
            context: Not for the model.
        """
        return name

    @alloy.tool
    async def maybe(ctx: alloy.ToolContext | None = None) -> str:
        """Maybe a context."""
        return ""

    assert list(props(whoami)) == ["name"]
    assert whoami.input_schema["required"] == ["name"]
    assert props(maybe) == {}
    assert maybe.input_schema["required"] == []


def test_decorator_options() -> None:
    @alloy.tool(name="git-commit", description="Commit staged changes.", sequential=True, timeout=5)
    def commit(message: str) -> str:
        return message

    assert isinstance(commit, alloy.FunctionTool)
    assert commit.name == "git-commit"
    assert commit.description == "Commit staged changes."
    assert commit.sequential is True
    assert commit.timeout == 5
    assert commit.runs_in_thread is True
    assert alloy.ToolSpec.of(commit) == alloy.ToolSpec(
        "git-commit", "Commit staged changes.", commit.input_schema
    )


def test_defaults_of_a_plain_decoration() -> None:
    @alloy.tool
    async def ping() -> str:
        """Ping."""
        return "pong"

    assert (ping.name, ping.sequential, ping.timeout, ping.runs_in_thread) == (
        "ping",
        False,
        None,
        False,
    )
    assert ping.input_schema == {
        "type": "object",
        "properties": {},
        "required": [],
        "additionalProperties": False,
    }


async def test_decorated_function_is_still_callable() -> None:
    @alloy.tool
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    @alloy.tool
    async def shout(text: str) -> str:
        """Shout."""
        return text.upper()

    assert add(2, 3) == 5
    assert add(a=2, b=3) == 5
    assert await shout("hi") == "HI"
    assert isinstance(add, alloy.Tool)


# -- definition errors -----------------------------------------------------------------------------


def test_no_docstring() -> None:
    with pytest.raises(alloy.ToolDefinitionError, match="needs a description"):

        @alloy.tool
        def f(a: int) -> int:
            return a


def test_definition_error_is_a_type_error() -> None:
    def f(x: object) -> str:
        """Object."""
        return ""

    with pytest.raises(TypeError, match=r"f: parameter 'x': cannot build a JSON schema for"):
        alloy.tool(f)


@pytest.mark.parametrize(
    "annotation", [object, set[int], complex, bytes, tuple[int, str], dict[int, str]]
)
def test_unsupported_annotations(annotation: Any) -> None:
    def f(x: Any) -> str:
        """Unsupported."""
        return ""

    f.__annotations__["x"] = annotation
    with pytest.raises(alloy.ToolDefinitionError, match="parameter 'x'"):
        alloy.tool(f)


def test_var_args_and_kwargs() -> None:
    def many(*items: str) -> str:
        """Many."""
        return ""

    def named(**options: str) -> str:
        """Named."""
        return ""

    with pytest.raises(alloy.ToolDefinitionError, match=r"\*args and \*\*kwargs"):
        alloy.tool(many)
    with pytest.raises(alloy.ToolDefinitionError, match=r"\*args and \*\*kwargs"):
        alloy.tool(named)


def test_positional_only() -> None:
    def f(a: int, /) -> int:
        """Positional."""
        return a

    with pytest.raises(alloy.ToolDefinitionError, match="positional-only"):
        alloy.tool(f)


@pytest.mark.parametrize("name", ["my tool", "a" * 65, "naïve", "dots.not.allowed", "x/y"])
def test_bad_names(name: str) -> None:
    def f() -> str:
        """Fine."""
        return ""

    with pytest.raises(alloy.ToolDefinitionError, match="tool name"):
        alloy.tool(name=name)(f)


def test_bad_name_from_a_lambda() -> None:
    with pytest.raises(alloy.ToolDefinitionError, match="'<lambda>'"):
        alloy.tool(lambda: "x")


def test_missing_annotation() -> None:
    def f(a, b: int) -> int:  # type: ignore[no-untyped-def]
        """Add."""
        return int(a) + b

    with pytest.raises(alloy.ToolDefinitionError, match="parameter 'a': needs a type annotation"):
        alloy.tool(f)


@pytest.mark.parametrize("timeout", [0, -1])
def test_bad_timeout(timeout: float) -> None:
    with pytest.raises(alloy.ToolDefinitionError, match="timeout must be positive"):

        @alloy.tool(timeout=timeout)
        def f() -> str:
            """F."""
            return ""


def test_unresolvable_annotation() -> None:
    def f(x: "NoSuchType") -> str:  # type: ignore[name-defined]  # noqa: F821
        """F."""
        return ""

    with pytest.raises(alloy.ToolDefinitionError, match="cannot resolve annotations"):
        alloy.tool(f)


# -- arguments converted back to Python types ------------------------------------------------------


async def test_arguments_are_converted_to_python_types_in_a_run() -> None:
    seen: dict[str, Any] = {}

    @alloy.tool
    async def convert(
        color: Color,
        level: Level,
        numbers: tuple[int, ...],
        colors: list[Color],
        by_name: dict[str, Color],
        ratio: float,
        count: int,
        filters: Filters,
        maybe: Color | None = None,
        choice: Color | int = 0,
    ) -> str:
        """Record the arguments."""
        seen.update(locals())
        return "ok"

    arguments = {
        "color": "red",
        "level": 2,
        "numbers": [1, 2, 3],
        "colors": ["green", "red"],
        "by_name": {"a": "green"},
        "ratio": 2,
        "count": 3.0,
        "filters": {"color": "green", "tags": ["x"]},
        "maybe": "green",
        "choice": "red",
    }
    provider = ScriptedProvider([tool_call("convert", arguments), text("done")])
    result = await alloy.run("go", provider=provider, tools=[convert])
    assert result.messages[2].tool_results[0].content == "ok"
    assert seen["color"] is Color.RED
    assert seen["level"] is Level.HIGH
    assert seen["numbers"] == (1, 2, 3)
    assert seen["colors"] == [Color.GREEN, Color.RED]
    assert seen["by_name"] == {"a": Color.GREEN}
    assert seen["ratio"] == 2.0 and isinstance(seen["ratio"], float)
    assert seen["count"] == 3 and isinstance(seen["count"], int)
    assert seen["filters"] == {"color": Color.GREEN, "tags": ["x"]}
    assert seen["maybe"] is Color.GREEN
    assert seen["choice"] is Color.RED


async def test_optional_none_and_defaults_in_a_run() -> None:
    seen: dict[str, Any] = {}

    @alloy.tool
    async def f(
        maybe: Color | None, unit: Literal["c", "f"] = "c", color: Color = Color.RED
    ) -> str:
        """Record."""
        seen.update(maybe=maybe, unit=unit, color=color)
        return "ok"

    provider = ScriptedProvider([tool_call("f", {"maybe": None}), text("done")])
    await alloy.run("go", provider=provider, tools=[f])
    assert seen == {"maybe": None, "unit": "c", "color": Color.RED}


async def test_invalid_enum_value_is_an_error_result_not_a_crash() -> None:
    ran: list[Color] = []

    @alloy.tool
    async def paint(color: Color) -> str:
        """Paint."""
        ran.append(color)
        return "painted"

    provider = ScriptedProvider([tool_call("paint", {"color": "blue"}), text("done")])
    result = await alloy.run("go", provider=provider, tools=[paint])
    answer = result.messages[2].tool_results[0]
    assert answer.is_error
    assert "argument 'color' must be one of 'red', 'green', got 'blue'" in answer.content
    assert ran == []


async def test_sync_tool_with_context_runs_in_a_run(tmp_path: Path) -> None:
    @alloy.tool
    def where(name: str, context: alloy.ToolContext) -> str:
        """Where."""
        return f"{name} in {context.working_directory.name}"

    provider = ScriptedProvider([tool_call("where", {"name": "x"}), text("done")])
    result = await alloy.run("go", provider=provider, tools=[where], working_directory=tmp_path)
    assert result.messages[2].tool_results[0].content == f"x in {tmp_path.name}"


# -- schema_errors: a property ---------------------------------------------------------------------

_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "string": st.text(max_size=5),
    "integer": st.integers(),
    "number": st.integers() | st.floats(allow_nan=False, allow_infinity=False),
    "boolean": st.booleans(),
    "array": st.lists(st.text(max_size=3), max_size=3),
    "enum": st.sampled_from(["a", "b", 3]),
}
_WRONG: dict[str, Any] = {
    "string": 1,
    "integer": "1",
    "number": "1.5",
    "boolean": 0,
    "array": "[]",
    "enum": "c",
}


def _property_schema(kind: str) -> dict[str, Any]:
    if kind == "array":
        return {"type": "array", "items": {"type": "string"}}
    if kind == "enum":
        return {"enum": ["a", "b", 3]}
    return {"type": kind}


@st.composite
def schemas_and_values(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    kinds = draw(
        st.dictionaries(
            st.text("abcdefgh", min_size=1, max_size=4),
            st.sampled_from(sorted(_VALUES)),
            min_size=1,
            max_size=5,
        )
    )
    required = draw(st.lists(st.sampled_from(sorted(kinds)), unique=True))
    schema = {
        "type": "object",
        "properties": {name: _property_schema(kind) for name, kind in kinds.items()},
        "required": required,
        "additionalProperties": False,
    }
    value = {
        name: draw(_VALUES[kind])
        for name, kind in kinds.items()
        if name in required or draw(st.booleans())
    }
    return schema, value, kinds


@given(schemas_and_values())
def test_valid_values_have_no_errors(case: tuple[dict[str, Any], dict[str, Any], Any]) -> None:
    schema, value, _ = case
    assert schema_errors(value, schema) == []


@given(schemas_and_values(), st.data())
def test_broken_values_have_errors(
    case: tuple[dict[str, Any], dict[str, Any], dict[str, str]], data: st.DataObject
) -> None:
    schema, value, kinds = case
    ways = ["extra"]
    if schema["required"]:
        ways.append("drop")
    if value:
        ways.append("wrong")
    way = data.draw(st.sampled_from(ways))
    broken = dict(value)
    if way == "drop":
        name = data.draw(st.sampled_from(schema["required"]))
        del broken[name]
        expected = f"missing required argument '{name}'"
    elif way == "wrong":
        name = data.draw(st.sampled_from(sorted(value)))
        broken[name] = _WRONG[kinds[name]]
        expected = f"argument '{name}' must be"
    else:
        broken["zz_unknown"] = 1
        expected = "unexpected argument 'zz_unknown'"
    errors = schema_errors(broken, schema)
    assert errors
    assert any(expected in error for error in errors)
    # The valid original still passes: the validator does not keep state.
    assert schema_errors(value, schema) == []
