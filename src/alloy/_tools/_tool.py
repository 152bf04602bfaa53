"""What a tool is, and what it is given when it runs."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import attrs

from .._errors import ToolError
from .._messages import ToolCall

__all__ = ["Tool", "ToolContext", "ToolSpec"]


@runtime_checkable
class Tool(Protocol):
    """Anything with a name, a description, a JSON schema and an async ``execute``.

    ``execute`` returns the text the model sees. Raising ``alloy.ToolError`` (or any exception)
    gives the model an error result instead. Two optional attributes: ``sequential = True``
    makes the tool run alone, after the other calls of its turn; ``timeout`` (seconds)
    overrides the run's ``tool_timeout`` for this tool::

        class Shout:
            name = "shout"
            description = "Upper-case a text."
            input_schema = {"type": "object", "properties": {"text": {"type": "string"}},
                            "required": ["text"], "additionalProperties": False}

            async def execute(self, arguments, context):
                return arguments["text"].upper()
    """

    @property
    def name(self) -> str:
        """The name the model calls the tool by (letters, digits, ``_``, ``-``)."""
        ...

    @property
    def description(self) -> str:
        """What the tool does, for the model."""
        ...

    @property
    def input_schema(self) -> Mapping[str, Any]:
        """The JSON schema of the arguments."""
        ...

    async def execute(self, arguments: Mapping[str, Any], context: ToolContext) -> str: ...


@attrs.frozen
class ToolSpec:
    """What a provider is told about a tool: its name, description and JSON schema.

    >>> ToolSpec(name="read", description="Read a file.", input_schema={"type": "object"})
    """

    name: str
    description: str
    input_schema: Mapping[str, Any]
    _tokens: int | None = attrs.field(default=None, init=False, eq=False, repr=False)
    """The compaction's estimate of this definition, remembered."""

    @classmethod
    def of(cls, tool: Tool) -> ToolSpec:
        """The spec of a tool: the same object for the same tool, run after run, so what is
        derived from it (its wire form, its token estimate) is computed once."""
        hit = _SPECS.get(id(tool))
        if hit is not None and hit[0] is tool:
            spec = hit[1]
            if (
                spec.input_schema is tool.input_schema
                and spec.name == tool.name
                and spec.description == tool.description
            ):
                return spec
        spec = cls(tool.name, tool.description, tool.input_schema)
        if len(_SPECS) >= _MAX_SPECS:
            _SPECS.clear()
        _SPECS[id(tool)] = (tool, spec)
        return spec


_SPECS: dict[int, tuple[object, ToolSpec]] = {}
"""ToolSpec.of's memo, by tool identity (the tool is kept, so its id is not reused)."""
_MAX_SPECS = 1024


@attrs.frozen(kw_only=True)
class ToolContext:
    """What a running tool is given besides its arguments.

    ``working_directory`` and ``allowed_roots`` bound the files a tool may touch (see
    ``resolve_path``); ``context`` is the value passed to ``alloy.run(context=...)``; ``call``
    is the tool call being executed, ``turn`` its turn number::

        async def execute(self, arguments, context):
            path = context.resolve_path(arguments["path"])   # refuses paths outside the roots
            user = context.context["user_id"]
    """

    working_directory: Path
    allowed_roots: tuple[Path, ...] = ()
    context: Any = None
    call: ToolCall | None = None
    turn: int = 0

    def resolve_path(self, path: str | os.PathLike[str]) -> Path:
        """Resolve ``path`` against the working directory, symlinks included.

        The result must lie inside the working directory or one of ``allowed_roots`` (compared
        by whole path components, so ``/proj`` does not admit ``/proj-secrets``); otherwise a
        ``ToolError`` says so.
        """
        raw = os.fspath(path)
        if not raw:
            raise ToolError("path must not be empty")
        if "\x00" in raw:
            raise ToolError("path must not contain NUL characters")
        candidate = Path(raw).expanduser()
        if not candidate.is_absolute():
            candidate = self.working_directory / candidate
        resolved = candidate.resolve()
        roots = (self.working_directory, *self.allowed_roots)
        for root in roots:
            if resolved.is_relative_to(root.resolve()):
                return resolved
        allowed = ", ".join(str(root.resolve()) for root in roots)
        raise ToolError(
            f"path {raw!r} resolves to {resolved}, which is outside the allowed directories ({allowed})"
        )
