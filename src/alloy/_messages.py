"""The conversation as values: messages, their content blocks, and token usage.

Everything here is a frozen, slotted attrs class holding tuples, so a conversation can be shared
between tasks, stored and compared without copying.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeAlias

import attrs

__all__ = [
    "Block",
    "Image",
    "Message",
    "RedactedThinking",
    "Role",
    "ServerToolCall",
    "ServerToolResult",
    "Text",
    "Thinking",
    "ToolCall",
    "ToolResult",
    "UnknownBlock",
    "Usage",
]

Role: TypeAlias = Literal["user", "assistant"]


@attrs.frozen
class Text:
    """Plain text.

    >>> Text("hello").text
    'hello'
    """

    text: str


@attrs.frozen
class Thinking:
    """The model's visible reasoning, with the provider's signature kept verbatim.

    A signed block must be sent back unchanged; Alloy never edits it. ``provider`` names the
    wire format that signed it (``"anthropic"``, ``"openai"``...): a signature is only sent
    back there. ``id`` is the provider's own id for the block, when it has one (the Responses
    API's reasoning items).

    >>> Thinking("Let me check the file first.", signature="EqQBCkgIARABGAIiQ...",
    ...          provider="anthropic")
    """

    text: str
    signature: str | None = None
    provider: str | None = None
    id: str | None = None


@attrs.frozen
class RedactedThinking:
    """Reasoning the provider returned encrypted; ``data`` is opaque and re-sent as is.

    >>> RedactedThinking(data="EmwKAhgBEgy3va3pzix/LafPsn4a...", provider="anthropic")
    """

    data: str
    provider: str | None = None


@attrs.frozen
class ToolCall:
    """The model asks to run the tool ``name`` with JSON ``arguments``.

    >>> ToolCall(id="call_1", name="read", arguments={"path": "README.md"})
    """

    id: str
    name: str
    arguments: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class ToolResult:
    """The answer to the tool call ``call_id``; ``is_error`` tells the model the call failed.

    >>> ToolResult(call_id="call_1", content="file not found: README.md", is_error=True)
    """

    call_id: str
    content: str
    is_error: bool = False


@attrs.frozen
class Image:
    """An image, base64-encoded.

    >>> Image(media_type="image/png", data=base64.b64encode(png_bytes).decode())
    """

    media_type: str
    data: str


@attrs.frozen
class ServerToolCall:
    """A tool the provider runs itself (code execution, web search).

    Carried in the history and sent back; Alloy never executes it.

    >>> ServerToolCall(id="srvtoolu_1", name="code_execution", arguments={"code": "1+1"})
    """

    id: str
    name: str
    arguments: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class ServerToolResult:
    """The provider's own result for a ``ServerToolCall``; ``content`` is its JSON, verbatim.

    ``kind`` is the provider's block type, for example ``"code_execution_tool_result"``.

    >>> ServerToolResult(call_id="srvtoolu_1", kind="code_execution_tool_result", content={...})
    """

    call_id: str
    kind: str
    content: Any = None


@attrs.frozen
class UnknownBlock:
    """A block type Alloy does not know, kept as its raw JSON and re-sent, never dropped.

    ``provider`` names the wire format it came from, so it is only re-sent there.

    >>> UnknownBlock(data={"type": "container_upload", "file_id": "f_1"}, provider="anthropic")
    """

    data: Mapping[str, Any]
    provider: str | None = None

    @property
    def type(self) -> str:
        """The block's own ``type`` field, or ``""``."""
        value = self.data.get("type", "")
        return value if isinstance(value, str) else ""


Block: TypeAlias = (
    Text
    | Thinking
    | RedactedThinking
    | ToolCall
    | ToolResult
    | Image
    | ServerToolCall
    | ServerToolResult
    | UnknownBlock
)


_BLOCK_TYPES = (
    Text,
    Thinking,
    RedactedThinking,
    ToolCall,
    ToolResult,
    Image,
    ServerToolCall,
    ServerToolResult,
    UnknownBlock,
)


def _to_blocks(content: str | Iterable[Block]) -> tuple[Block, ...]:
    if isinstance(content, str):
        return (Text(content),)
    if isinstance(content, bytes | bytearray):
        raise TypeError(f"message content must be a string or blocks, got {content!r:.60}")
    blocks = tuple(content)
    for block in blocks:
        if not isinstance(block, _BLOCK_TYPES):
            raise TypeError(f"message content must be a string or blocks, got {block!r:.60}")
    return blocks


@attrs.frozen
class Message:
    """One turn of the conversation: a role and its content blocks.

    A string becomes one ``Text`` block::

        >>> Message.user("What is in README.md?")
        Message(role='user', content=(Text(text='What is in README.md?'),))
        >>> Message("assistant", [Text("Let me look."), ToolCall("c1", "read", {"path": "README.md"})])
    """

    role: Role = attrs.field(validator=attrs.validators.in_(("user", "assistant")))
    content: tuple[Block, ...] = attrs.field(converter=_to_blocks)
    _tokens: int | None = attrs.field(default=None, init=False, eq=False, repr=False)
    """The compaction's estimate of this message, remembered (the message never changes)."""

    @classmethod
    def user(cls, content: str | Iterable[Block]) -> Message:
        """A user message. ``Message.user("hi")``."""
        return cls("user", content)

    @classmethod
    def assistant(cls, content: str | Iterable[Block]) -> Message:
        """An assistant message. ``Message.assistant("hello")``."""
        return cls("assistant", content)

    @property
    def text(self) -> str:
        """The message's ``Text`` blocks joined with ``""`` (``""`` when it has none)."""
        parts = [block.text for block in self.content if type(block) is Text]
        return parts[0] if len(parts) == 1 else "".join(parts)

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The client tool calls in this message (server tool calls are not included)."""
        return tuple(block for block in self.content if type(block) is ToolCall)

    @property
    def tool_results(self) -> tuple[ToolResult, ...]:
        """The tool results in this message."""
        return tuple(block for block in self.content if type(block) is ToolResult)


def _non_negative(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 0:
        raise ValueError(f"Usage.{attribute.name} must not be negative, got {value}")


@attrs.frozen
class Usage:
    """Tokens spent. Add two to sum them.

    ``input_tokens`` counts every input token, cached ones included; ``cache_read_tokens`` and
    ``cache_write_tokens`` say how many of them were read from or written to the provider's
    prompt cache; ``reasoning_tokens`` is the part of ``output_tokens`` spent reasoning.

    >>> Usage(input_tokens=10, output_tokens=5) + Usage(input_tokens=3)
    Usage(input_tokens=13, output_tokens=5, cache_read_tokens=0, cache_write_tokens=0, reasoning_tokens=0)
    """

    input_tokens: int = attrs.field(default=0, validator=_non_negative)
    output_tokens: int = attrs.field(default=0, validator=_non_negative)
    cache_read_tokens: int = attrs.field(default=0, validator=_non_negative)
    cache_write_tokens: int = attrs.field(default=0, validator=_non_negative)
    reasoning_tokens: int = attrs.field(default=0, validator=_non_negative)

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
        )

    @property
    def total_tokens(self) -> int:
        """``input_tokens + output_tokens``."""
        return self.input_tokens + self.output_tokens
