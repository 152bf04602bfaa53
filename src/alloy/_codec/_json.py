"""Conversations as plain JSON data, for users who persist history.

``dump_messages`` turns messages into lists and dicts that ``json.dumps`` accepts;
``load_messages`` turns them back into the same frozen values. The format::

    {"role": "assistant", "content": [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_call", "id": "c1", "name": "read", "arguments": {"path": "README.md"}}
    ]}

Every block is an object tagged by ``"type"``: ``text``, ``thinking``, ``redacted_thinking``,
``tool_call``, ``tool_result``, ``image``, ``server_tool_call``, ``server_tool_result`` and
``unknown``. Every field is written, defaults included, so the output is stable. A block whose
``"type"`` is none of these (written by a newer Alloy, say) loads as ``UnknownBlock`` holding the
whole object, so old code never drops it. Bad data raises ``ConfigError`` naming the place, e.g.
``message 3: content[1]: missing field 'call_id'``.

One cattrs ``Converter`` does the work, built once at import: registering its hooks and
generating the code for the eleven classes takes a few milliseconds.
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeAlias

import cattrs
from cattrs.errors import ClassValidationError, IterableValidationError
from cattrs.strategies import configure_tagged_union

from .._errors import ConfigError
from .._messages import (
    Block,
    Image,
    Message,
    RedactedThinking,
    Role,
    ServerToolCall,
    ServerToolResult,
    Text,
    Thinking,
    ToolCall,
    ToolResult,
    UnknownBlock,
    Usage,
)
from .._tools._validate import json_type

__all__ = ["dump_messages", "dump_usage", "load_messages", "load_usage"]

JSONObject: TypeAlias = dict[str, Any]

_TAGS: dict[type[Any], str] = {
    Text: "text",
    Thinking: "thinking",
    RedactedThinking: "redacted_thinking",
    ToolCall: "tool_call",
    ToolResult: "tool_result",
    Image: "image",
    ServerToolCall: "server_tool_call",
    ServerToolResult: "server_tool_result",
    UnknownBlock: "unknown",
}
_KNOWN_TAGS = frozenset(_TAGS.values())
_ROLES = ("user", "assistant")


class _Invalid(Exception):
    """A value that does not fit; its message says why, without the path (added later)."""


def _kind(value: object) -> str:
    """The JSON name of ``value``'s type, for error messages (an int is a ``number``)."""
    return json_type(value, integers=False)


# -- JSON values (ToolCall.arguments, ServerToolResult.content, UnknownBlock.data) -------------


def _json_value(value: object, where: str = "") -> Any:
    """A deep copy of ``value`` made only of dict, list, str, int, float, bool and None.

    Tuples become lists and mappings dicts, so the result is plain JSON data and shares nothing
    mutable with ``value``. Anything else raises ``_Invalid``.
    """
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, list | tuple):
        return [_json_value(item, f"{where}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, Mapping):
        return _json_object(value, where)
    at = f"at {where}: " if where else ""
    raise _Invalid(f"{at}{type(value).__name__} is not a JSON value")


def _json_object(value: object, where: str = "") -> JSONObject:
    if not isinstance(value, Mapping):
        at = f"at {where}: " if where else ""
        raise _Invalid(f"{at}expected an object, got {_kind(value)}")
    result: JSONObject = {}
    for key, item in value.items():
        if not isinstance(key, str):
            at = f" at {where}" if where else ""
            raise _Invalid(f"key {reprlib.repr(key)}{at} is not a string")
        result[str(key)] = _json_value(item, f"{where}[{key!r}]")
    return result


# -- strict scalar hooks: JSON data is never coerced (no "5" -> 5, no "false" -> True) ---------


def _structure_str(value: object, _: object) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"expected a string, got {_kind(value)}")
    return str(value)


def _structure_bool(value: object, _: object) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"expected a boolean, got {_kind(value)}")
    return value


def _structure_int(value: object, _: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"expected an integer, got {_kind(value)}")
    return int(value)


def _structure_role(value: object, _: object) -> str:
    if not isinstance(value, str) or value not in _ROLES:
        raise _Invalid(f"expected 'user' or 'assistant', got {reprlib.repr(value)}")
    return value


def _structure_object_of(hook: Callable[[Any, Any], Any]) -> Callable[[object, Any], Any]:
    """Wrap a generated attrs hook so a non-object fails clearly, not with a TypeError."""

    def structure(value: object, cl: Any) -> Any:
        if not isinstance(value, Mapping):
            raise _Invalid(f"expected an object, got {_kind(value)}")
        return hook(value, cl)

    return structure


def _is(expected: Any) -> Callable[[Any], bool]:
    """A cattrs predicate matching one type form (generic aliases cannot be registered as such)."""
    return lambda t: bool(t == expected)


def _build_converter() -> cattrs.Converter:
    converter = cattrs.Converter(detailed_validation=True)

    # Leaves first: cattrs looks up the hook of every field when it generates a class's hook.
    converter.register_structure_hook(str, _structure_str)
    converter.register_structure_hook(bool, _structure_bool)
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook_func(_is(Role), _structure_role)
    converter.register_structure_hook_func(_is(Any), lambda v, _: _json_value(v))
    converter.register_structure_hook_func(_is(Mapping[str, Any]), lambda v, _: _json_object(v))
    converter.register_unstructure_hook_func(_is(Any), _json_value)
    converter.register_unstructure_hook_func(_is(Mapping[str, Any]), _json_object)

    for cls in (*_TAGS, Usage):
        generated: Callable[[Any, Any], Any] = converter.gen_structure_attrs_fromdict(cls)
        converter.register_structure_hook(cls, _structure_object_of(generated))

    # The blocks: a union tagged by "type", plus a front that turns unknown tags into
    # UnknownBlock (the strategy's own ``default`` only covers a missing tag).
    configure_tagged_union(Block, converter, tag_generator=_TAGS.__getitem__, tag_name="type")
    tagged_structure = converter.get_structure_hook(Block)
    tagged_unstructure = converter.get_unstructure_hook(Block)

    def structure_block(value: object, _: object) -> Block:
        if not isinstance(value, Mapping):
            raise _Invalid(f"expected an object, got {_kind(value)}")
        if "type" not in value:
            raise _Invalid("missing field 'type'")
        tag = value["type"]
        if not isinstance(tag, str):
            raise _Invalid(f"field 'type': expected a string, got {_kind(tag)}")
        if tag in _KNOWN_TAGS:
            return tagged_structure(value, Block)  # type: ignore[no-any-return]
        # A block type from the future (or from another tool): keep all of it, never drop it.
        return UnknownBlock(data=_json_object(value))

    def unstructure_block(block: Block) -> JSONObject:
        dumped: JSONObject = tagged_unstructure(block)
        return {"type": dumped.pop("type"), **dumped}  # the tag first, for people reading it

    converter.register_structure_hook(Block, structure_block)
    converter.register_unstructure_hook(Block, unstructure_block)

    # Message.content: a JSON array (cattrs alone would iterate a string), kept as a tuple.
    content_type = tuple[Block, ...]
    structure_blocks = converter.get_structure_hook(content_type)

    def structure_content(value: object, _: object) -> tuple[Block, ...]:
        if not isinstance(value, list | tuple):
            raise _Invalid(f"expected an array of blocks, got {_kind(value)}")
        return structure_blocks(value, content_type)  # type: ignore[no-any-return]

    def unstructure_content(content: Iterable[Block]) -> list[JSONObject]:
        blocks: list[JSONObject] = []
        for index, block in enumerate(content):
            if type(block) not in _TAGS:
                raise _Invalid(f"content[{index}]: expected a content block, got {_kind(block)}")
            try:
                blocks.append(unstructure_block(block))
            except _Invalid as exc:
                raise _Invalid(f"content[{index}]: {exc}") from exc
        return blocks

    converter.register_structure_hook_func(_is(content_type), structure_content)
    converter.register_unstructure_hook_func(_is(content_type), unstructure_content)

    generated = converter.gen_structure_attrs_fromdict(Message)
    converter.register_structure_hook(Message, _structure_object_of(generated))
    return converter


_converter = _build_converter()

# -- errors --------------------------------------------------------------------------------------


def _leaf(exc: BaseException) -> str:
    # _Invalid and the attrs validators (``Usage`` counters) say what is wrong in their message.
    return str(exc) or type(exc).__name__


def _problems(exc: BaseException, path: tuple[str, ...]) -> Iterator[str]:
    """Each failure inside a cattrs error tree, as ``"content[1]: missing field 'call_id'"``."""

    def join(message: str, parts: tuple[str, ...] = path) -> str:
        return ": ".join((*parts, message))

    if isinstance(exc, IterableValidationError):
        with_notes, without = exc.group_exceptions()
        for sub, inote in with_notes:
            indexed = (*path[:-1], f"{path[-1]}[{inote.index}]")  # content[1]
            if isinstance(sub, ClassValidationError | IterableValidationError):
                yield from _problems(sub, indexed)
            else:
                yield join(_leaf(sub), indexed)
        for sub in without:
            yield from _problems(sub, path)
    elif isinstance(exc, ClassValidationError):
        with_notes_c, without = exc.group_exceptions()
        for sub, cnote in with_notes_c:
            if isinstance(sub, ClassValidationError | IterableValidationError):
                yield from _problems(sub, (*path, cnote.name))
            elif isinstance(sub, KeyError):
                yield join(f"missing field {cnote.name!r}")
            else:
                yield join(f"field {cnote.name!r}: {_leaf(sub)}")
        for sub in without:
            yield from _problems(sub, path)
    else:
        yield join(_leaf(exc))


def _config_error(where: str, exc: BaseException) -> ConfigError:
    return ConfigError("; ".join(_problems(exc, (where,))))


# -- public API ---------------------------------------------------------------------------------


def dump_messages(messages: Iterable[Message]) -> list[dict[str, Any]]:
    """Turn messages into plain JSON data (dicts, lists, strings, numbers, booleans, None).

    The result is ready for ``json.dumps``; ``load_messages`` turns it back::

        >>> dump_messages([Message.user("hi")])
        [{'role': 'user', 'content': [{'type': 'text', 'text': 'hi'}]}]
        >>> json.dumps(dump_messages(result.messages))

    Raises ``ConfigError`` for something that is not a ``Message`` or a value that JSON cannot
    hold (say a ``datetime`` in ``ToolCall.arguments``).
    """
    if isinstance(messages, str | bytes | Mapping) or not isinstance(messages, Iterable):
        raise ConfigError(f"expected an iterable of messages, got {_kind(messages)}")
    dumped: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        if not isinstance(message, Message):
            raise ConfigError(f"message {index}: expected a Message, got {_kind(message)}")
        try:
            dumped.append(_converter.unstructure(message, Message))
        except _Invalid as exc:
            raise ConfigError(f"message {index}: {exc}") from exc
    return dumped


def load_messages(data: Iterable[Mapping[str, Any]]) -> tuple[Message, ...]:
    """Turn data written by ``dump_messages`` back into messages.

    Blocks of a ``"type"`` Alloy does not know load as ``UnknownBlock`` (the whole object in
    ``data``); anything else that does not fit raises ``ConfigError`` naming the place::

        >>> load_messages([{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
        (Message(role='user', content=(Text(text='hi'),)),)
        >>> history = load_messages(json.loads(path.read_text()))
    """
    if isinstance(data, str | bytes | Mapping) or not isinstance(data, Iterable):
        raise ConfigError(f"expected a list of messages, got {_kind(data)}")
    messages: list[Message] = []
    for index, item in enumerate(data):
        try:
            messages.append(_converter.structure(item, Message))
        except Exception as exc:
            raise _config_error(f"message {index}", exc) from exc
    return tuple(messages)


def dump_usage(usage: Usage) -> dict[str, int]:
    """Turn a ``Usage`` into a plain dict of its five counters, zeros included.

    >>> dump_usage(Usage(input_tokens=10, output_tokens=5))["output_tokens"]
    5
    >>> json.dumps(dump_usage(result.usage))
    """
    if not isinstance(usage, Usage):
        raise ConfigError(f"expected a Usage, got {_kind(usage)}")
    dumped: dict[str, int] = _converter.unstructure(usage, Usage)
    return dumped


def load_usage(data: Mapping[str, Any]) -> Usage:
    """Turn data written by ``dump_usage`` back into a ``Usage``; missing counters are 0.

    >>> load_usage({"input_tokens": 10, "output_tokens": 5}).total_tokens
    15
    >>> load_usage(dump_usage(usage)) == usage
    True
    """
    try:
        return _converter.structure(data, Usage)
    except Exception as exc:
        raise _config_error("usage", exc) from exc
