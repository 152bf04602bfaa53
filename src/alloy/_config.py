"""Checking a run's options once, up front, into a ``RunConfig``."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

import attrs

from ._compaction import Compaction, Compactor
from ._errors import ConfigError
from ._messages import Block, Message
from ._middleware import Hooks
from ._models import DEFAULT_CONTEXT_WINDOW, ModelInfo, check_overrides, context_window
from ._provider import Provider
from ._tools._function import FunctionTool, tool as make_tool
from ._tools._tool import Tool, ToolSpec

__all__ = ["RunConfig", "RunOptions", "build_config", "check_provider", "prompt_message"]


class RunOptions(TypedDict, total=False):
    """The keyword options ``alloy.run``, ``alloy.stream`` and ``alloy.run_sync`` accept.

    >>> options: alloy.RunOptions = {"provider": provider, "max_turns": 5}
    >>> await alloy.run("hi", **options)
    """

    provider: Provider
    tools: Iterable[Tool | Callable[..., Any]]
    system_prompt: str | None
    messages: Iterable[Message]
    max_turns: int
    middleware: Sequence[object]
    working_directory: str | os.PathLike[str]
    allowed_roots: Iterable[str | os.PathLike[str]]
    context: Any
    tool_timeout: float | None
    provider_options: Mapping[str, Any] | None
    max_tokens: int | None
    model_overrides: Mapping[str, int | ModelInfo] | None
    compaction: bool | Compactor


@attrs.frozen(kw_only=True)
class RunConfig:
    """A run's validated options."""

    provider: Provider
    messages: tuple[Message, ...]
    tools: Mapping[str, Tool]
    tool_specs: tuple[ToolSpec, ...]
    system_prompt: str | None
    max_turns: int
    middleware: tuple[object, ...]
    hooks: Hooks = attrs.field(factory=lambda: Hooks(()), eq=False, repr=False)
    """The middleware's hooks, looked up once."""
    working_directory: Path
    allowed_roots: tuple[Path, ...]
    context: Any
    tool_timeout: float | None
    provider_options: Mapping[str, Any]
    session_hooks: bool = True
    """Whether the run fires ``session_start``/``session_end`` (an Agent fires them itself)."""
    max_tokens: int = DEFAULT_CONTEXT_WINDOW
    """The context budget: given, or the provider model's context window."""
    max_tokens_explicit: bool = False
    """Whether ``max_tokens`` was given (else it follows the model, see ``with_provider``)."""
    model_overrides: tuple[ModelInfo, ...] = ()
    compaction: Compactor | None = None
    """The run's compactor, or None when compaction is off."""

    def with_provider(self, provider: Provider) -> RunConfig:
        """This config for another provider; a derived ``max_tokens`` follows its model."""
        if self.max_tokens_explicit:
            return attrs.evolve(self, provider=provider)
        window = context_window(getattr(provider, "model", None), self.model_overrides)
        return attrs.evolve(self, provider=provider, max_tokens=window)


def build_config(
    prompt: str | Message | Sequence[Block] | None = None,
    *,
    provider: Provider,
    tools: Iterable[Tool | Callable[..., Any]] = (),
    system_prompt: str | None = None,
    messages: Iterable[Message] = (),
    max_turns: int = 25,
    middleware: Sequence[object] = (),
    working_directory: str | os.PathLike[str] = ".",
    allowed_roots: Iterable[str | os.PathLike[str]] = (),
    context: Any = None,
    tool_timeout: float | None = 120.0,
    provider_options: Mapping[str, Any] | None = None,
    max_tokens: int | None = None,
    model_overrides: Mapping[str, int | ModelInfo] | None = None,
    compaction: bool | Compactor = True,
    require_prompt: bool = True,
) -> RunConfig:
    """Validate a run's options; a bad value raises ``ConfigError`` naming it.

    ``require_prompt=False`` accepts an empty conversation (an Agent's, before its first
    message)."""
    check_provider(provider)
    history = _messages(messages)
    if prompt is not None:
        history += (prompt_message(prompt),)
    if not history and require_prompt:
        raise ConfigError("nothing to send: give a prompt or messages=")
    tool_map = _tools(tools)
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise ConfigError(f"system_prompt must be a string or None, got {system_prompt!r}")
    if isinstance(max_turns, bool) or not isinstance(max_turns, int) or max_turns < 1:
        raise ConfigError(f"max_turns must be a positive integer, got {max_turns!r}")
    if tool_timeout is not None and (
        isinstance(tool_timeout, bool)
        or not isinstance(tool_timeout, int | float)
        or not tool_timeout > 0
        or math.isnan(tool_timeout)
    ):
        raise ConfigError(
            f"tool_timeout must be a positive number of seconds or None, got {tool_timeout!r}"
        )
    if isinstance(middleware, str | bytes) or not isinstance(middleware, Iterable):
        raise ConfigError(f"middleware must be a list of middleware objects, got {middleware!r}")
    hooks = Hooks(middleware)  # a hook that is not callable fails here, with the other options
    directory = _directory(working_directory, "working_directory")
    roots = tuple(_directory(root, "allowed_roots entry") for root in allowed_roots)
    if provider_options is not None and not isinstance(provider_options, Mapping):
        raise ConfigError(f"provider_options must be a mapping, got {provider_options!r}")
    overrides = check_overrides(model_overrides)
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise ConfigError(
            f"max_tokens (the context budget) must be a positive integer or None, got {max_tokens!r}"
        )
    budget = (
        max_tokens
        if max_tokens is not None
        else context_window(getattr(provider, "model", None), overrides)
    )
    return RunConfig(
        provider=provider,
        messages=history,
        tools=tool_map,
        tool_specs=tuple(ToolSpec.of(t) for t in tool_map.values()),
        system_prompt=system_prompt,
        max_turns=max_turns,
        middleware=tuple(middleware),
        hooks=hooks,
        working_directory=directory,
        allowed_roots=roots,
        context=context,
        tool_timeout=None if tool_timeout is None else float(tool_timeout),
        provider_options=dict(provider_options or {}),
        max_tokens=budget,
        max_tokens_explicit=max_tokens is not None,
        model_overrides=overrides,
        compaction=_compactor(compaction),
    )


_DEFAULT_COMPACTION = Compaction()  # frozen and stateless: one instance serves every run


def _compactor(compaction: bool | Compactor) -> Compactor | None:
    if compaction is True:
        return _DEFAULT_COMPACTION
    if compaction is False:
        return None
    if not callable(getattr(compaction, "compact", None)):
        raise ConfigError(
            "compaction must be True, False or an object with an async compact(context) "
            f"method (an alloy.Compaction), got {compaction!r}"
        )
    return compaction


def check_provider(provider: object) -> Provider:
    """``provider`` if it can serve as one; a ``ConfigError`` otherwise."""
    if not callable(getattr(provider, "complete", None)):
        raise ConfigError(f"provider must have an async complete(request) method, got {provider!r}")
    return provider  # type: ignore[return-value]


def prompt_message(prompt: str | Message | Sequence[Block]) -> Message:
    """The message a prompt stands for (a string or blocks become a user message)."""
    if isinstance(prompt, Message):
        return prompt
    if isinstance(prompt, str):
        return Message.user(prompt)
    try:
        return Message.user(prompt)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"prompt must be a string, a Message or blocks, got {prompt!r}") from exc


def _messages(messages: Iterable[Message]) -> tuple[Message, ...]:
    if isinstance(messages, str | bytes | Message):
        raise ConfigError("messages must be a list of alloy.Message (pass a string as the prompt)")
    history = tuple(messages)
    for index, message in enumerate(history):
        if not isinstance(message, Message):
            raise ConfigError(f"messages[{index}] must be an alloy.Message, got {message!r}")
    return history


def _tools(tools: Iterable[Tool | Callable[..., Any]]) -> dict[str, Tool]:
    found: dict[str, Tool] = {}
    for index, item in enumerate(tools):
        if isinstance(item, type):
            raise ConfigError(
                f"tools[{index}]: got the class {item.__name__}; pass an instance, e.g. {item.__name__}()"
            )
        candidate: Tool
        if isinstance(item, FunctionTool) or _looks_like_tool(item):
            candidate = item  # type: ignore[assignment]
        elif callable(item):
            candidate = make_tool(item)
        else:
            raise ConfigError(f"tools[{index}]: {item!r} is not a tool")
        if candidate.name in found:
            raise ConfigError(f"two tools are named {candidate.name!r}; tool names must be unique")
        found[candidate.name] = candidate
    return found


def _looks_like_tool(item: object) -> bool:
    return (
        isinstance(getattr(item, "name", None), str)
        and isinstance(getattr(item, "description", None), str)
        and isinstance(getattr(item, "input_schema", None), Mapping)
        and callable(getattr(item, "execute", None))
    )


_cwd: tuple[str, Path] = ("", Path())


def _directory(path: str | os.PathLike[str], what: str) -> Path:
    global _cwd
    if path == ".":
        current = os.getcwd()
        if _cwd[0] != current:  # a Path is built only when the directory changed
            _cwd = (current, Path(current))
        return _cwd[1]
    try:
        resolved = Path(path).expanduser().resolve()
    except (TypeError, OSError) as exc:
        raise ConfigError(f"{what} {path!r} is not a usable path: {exc}") from exc
    if not resolved.is_dir():
        raise ConfigError(f"{what} {str(path)!r} is not an existing directory")
    return resolved
