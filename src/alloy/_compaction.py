"""Context compaction: keep a long run inside the model's context window.

Before each model call the run estimates the whole request (system prompt, tool definitions,
every message) and, when it no longer fits the budget, asks its compactor to shrink the
conversation. The built-in ``Compaction`` does it in stages and stops as soon as the estimate is
under the limit:

1. **Clear** the bodies of old tool results (all but the most recent few), leaving a marker
   that names the tool and the size; then drop the reasoning of older assistant messages
   (signed blocks are dropped whole, never edited).
2. **Summarise** the older part of the conversation with the run's own provider into one
   synthetic user message (a structured checkpoint); the first message and a recent window,
   chosen by tokens and never starting inside a tool round, stay verbatim. A later compaction
   updates the same synthetic message.
3. **Truncate**, deterministically, when the summary call fails, runs out of time, or is turned
   off: drop the oldest whole rounds, then shorten the largest remaining tool results.

The budget arithmetic and the estimate are documented in ``docs/compaction.md``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs
import trio

from ._errors import AlloyError, ConfigError, ContextLengthExceeded, MiddlewareError
from ._events import Compacted
from ._messages import (
    Block,
    Image,
    Message,
    RedactedThinking,
    ServerToolCall,
    ServerToolResult,
    Text,
    Thinking,
    ToolCall,
    ToolResult,
    UnknownBlock,
    Usage,
)
from ._provider import Provider, Request
from ._tools._tool import ToolSpec

if TYPE_CHECKING:
    from ._config import RunConfig
    from ._emit import Emitter
    from ._middleware import Hooks, RunContext

__all__ = [
    "BYTES_PER_TOKEN",
    "IMAGE_TOKENS",
    "SUMMARY_PROMPT",
    "SUMMARY_SYSTEM_PROMPT",
    "SUMMARY_TAG",
    "Compaction",
    "CompactionContext",
    "CompactionResult",
    "CompactionStep",
    "Compactor",
    "TokenCounter",
    "block_tokens",
    "is_summary",
    "message_tokens",
    "overflow_numbers",
    "request_tokens",
    "text_tokens",
    "tool_tokens",
]

# -- the estimate --------------------------------------------------------------------------------

BYTES_PER_TOKEN = 3
"""Text is estimated at one token per 3 bytes of UTF-8.

Real tokenizers give about 4 bytes per token on English prose, 3-3.5 on code and JSON, and about
one token per character (3 UTF-8 bytes) on Chinese or Japanese; counting characters (the usual
``len(text) / 4``) undercounts those scripts three- to four-fold. Counting bytes / 3 errs on the
safe side everywhere: it overcounts English by about a third, which the correction from the
provider's reported usage then takes back (see ``TokenCounter``)."""

IMAGE_TOKENS = 1_600
"""An image, whatever its size: Anthropic bills ``width * height / 750`` tokens and scales
images down to about 1.15 megapixels (at most about 1,600 tokens); OpenAI's high-detail images
cost 85 + 170 per 512-pixel tile (1,105 for a 768x2048 image). Its base64 data is not text."""

MESSAGE_TOKENS = 4
"""The framing of one message (role, separators)."""

BLOCK_TOKENS = 3
"""The framing of one tool call or tool result (type, id fields)."""

TOOL_TOKENS = 8
"""The framing of one tool definition."""

REQUEST_TOKENS = 8
"""The framing of a whole request."""


def text_tokens(text: str) -> int:
    """The estimated tokens of ``text``: its UTF-8 bytes / 3, rounded up.

    >>> text_tokens("hello"), text_tokens("日本語")
    (2, 3)
    """
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    return -(-size // BYTES_PER_TOKEN)


def _json_default(value: object) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    return repr(value)


def _json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=_json_default)
    except (TypeError, ValueError):
        return repr(value)


def block_tokens(block: Block) -> int:
    """The estimated tokens of one content block (see ``docs/compaction.md``)."""
    match block:
        case Text(text=text):
            return text_tokens(text)
        case ToolResult(call_id=call_id, content=content):
            return BLOCK_TOKENS + text_tokens(call_id) + text_tokens(content)
        case (
            ToolCall(id=id, name=name, arguments=arguments)
            | ServerToolCall(id=id, name=name, arguments=arguments)
        ):
            return (
                BLOCK_TOKENS + text_tokens(id) + text_tokens(name) + text_tokens(_json(arguments))
            )
        case Thinking(text=text):
            return text_tokens(text)
        case RedactedThinking(data=data):
            return text_tokens(data)
        case Image():
            return IMAGE_TOKENS
        case ServerToolResult(call_id=call_id, kind=kind, content=content):
            return (
                BLOCK_TOKENS
                + text_tokens(call_id)
                + text_tokens(kind)
                + text_tokens(_json(content))
            )
        case UnknownBlock(data=data):
            return BLOCK_TOKENS + text_tokens(_json(data))
    return text_tokens(repr(block))


def message_tokens(message: Message) -> int:
    """The estimated tokens of one message: its blocks plus ``MESSAGE_TOKENS``."""
    return MESSAGE_TOKENS + sum(block_tokens(block) for block in message.content)


def tool_tokens(tool: ToolSpec) -> int:
    """The estimated tokens of one tool definition: name, description and JSON schema."""
    tokens = tool._tokens
    if tokens is None:
        tokens = (
            TOOL_TOKENS
            + text_tokens(tool.name)
            + text_tokens(tool.description)
            + text_tokens(_json(tool.input_schema))
        )
        object.__setattr__(tool, "_tokens", tokens)  # a memo on a frozen value
    return tokens


def request_tokens(
    messages: Iterable[Message], system_prompt: str | None = None, tools: Iterable[ToolSpec] = ()
) -> int:
    """The raw (uncorrected) estimate of a whole request.

    >>> request_tokens([alloy.Message.user("hi")], system_prompt="Be brief.")
    """
    total = REQUEST_TOKENS + (text_tokens(system_prompt) if system_prompt else 0)
    total += sum(tool_tokens(tool) for tool in tools)
    return total + sum(message_tokens(message) for message in messages)


class TokenCounter:
    """Estimates requests, corrected by what the provider reported for earlier ones.

    ``raw`` is the heuristic estimate; ``estimate`` multiplies it by ``ratio``, the provider's
    reported input tokens divided by the raw estimate of the last request that reported them.
    A report is only believed when the request was big enough to measure (``MIN_SAMPLE`` raw
    tokens) and the ratio is plausible (between ``MIN_RATIO`` and ``MAX_RATIO``); anything else
    (a test double reporting 10 tokens, a proxy that counts only uncached tokens) is ignored.
    Per-message estimates are remembered on the messages themselves: messages are immutable.

    >>> counter = TokenCounter()
    >>> counter.observe(raw=3_000, reported=2_400)   # the model's tokenizer is 20% leaner
    True
    >>> counter.estimate([alloy.Message.user("x" * 3_000)])
    """

    MIN_SAMPLE = 256
    MIN_RATIO = 0.5
    MAX_RATIO = 3.0

    __slots__ = ("_fixed", "ratio")

    def __init__(self, ratio: float = 1.0) -> None:
        self.ratio = ratio
        self._fixed: tuple[str | None, tuple[ToolSpec, ...], int] | None = None

    def message(self, message: Message) -> int:
        """The raw estimate of one message."""
        tokens = message._tokens
        if tokens is None:
            tokens = message_tokens(message)
            object.__setattr__(message, "_tokens", tokens)  # a memo on a frozen value
        return tokens

    def fixed(self, system_prompt: str | None, tools: Sequence[ToolSpec]) -> int:
        """The raw estimate of a request's fixed part: framing, system prompt, tools."""
        tools = tools if isinstance(tools, tuple) else tuple(tools)
        cached = self._fixed
        if (
            cached is not None
            and cached[0] == system_prompt
            and (cached[1] is tools or cached[1] == tools)
        ):
            return cached[2]
        tokens = request_tokens((), system_prompt, tools)
        self._fixed = (system_prompt, tools, tokens)
        return tokens

    def raw(
        self,
        messages: Sequence[Message],
        system_prompt: str | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> int:
        """The raw estimate of a request."""
        return self.fixed(system_prompt, tools) + sum(self.message(m) for m in messages)

    def scale(self, raw: int) -> int:
        """A raw estimate, corrected."""
        return math.ceil(raw * self.ratio)

    def estimate(
        self,
        messages: Sequence[Message],
        system_prompt: str | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> int:
        """The corrected estimate of a request."""
        return self.scale(self.raw(messages, system_prompt, tools))

    def observe(self, raw: int, reported: int) -> bool:
        """Learn from the provider's count of a request whose raw estimate was ``raw``.

        Returns whether the report was believed."""
        if raw < self.MIN_SAMPLE or reported <= 0:
            return False
        ratio = reported / raw
        if not self.MIN_RATIO <= ratio <= self.MAX_RATIO:
            return False
        self.ratio = ratio
        return True


# -- what a compactor gets and returns -----------------------------------------------------------


@attrs.frozen(kw_only=True)
class CompactionContext:
    """What a compactor is given before a model call.

    ``max_tokens`` is the run's context budget; ``force`` is true when the provider has just
    refused the conversation as too long (the compactor should shrink it even if the estimate
    says it fits). ``estimate(messages)`` is the corrected estimate of the whole request with
    those messages (the current ones by default). ``provider`` is the run's provider, for a
    compactor that summarises.

    A custom compactor that keeps the first message and the last ten::

        class KeepRecent:
            async def compact(self, context: alloy.CompactionContext) -> alloy.CompactionResult:
                if not context.force and context.estimate() <= context.max_tokens:
                    return alloy.CompactionResult(messages=context.messages)
                recent = list(context.messages[-10:])
                while recent and recent[0].tool_results:  # never keep a result without its call
                    recent.pop(0)
                return alloy.CompactionResult(messages=(context.messages[0], *recent))
    """

    messages: tuple[Message, ...]
    system_prompt: str | None
    tools: tuple[ToolSpec, ...]
    max_tokens: int
    counter: TokenCounter
    provider: Provider
    provider_options: Mapping[str, Any] = attrs.field(factory=dict)
    force: bool = False
    turn: int = 0

    def estimate(self, messages: Sequence[Message] | None = None) -> int:
        """The corrected token estimate of the request with ``messages`` (default: the current)."""
        chosen = self.messages if messages is None else messages
        return self.counter.estimate(chosen, self.system_prompt, self.tools)


def _message_tuple(messages: Iterable[Message]) -> tuple[Message, ...]:
    return tuple(messages)


@attrs.frozen(kw_only=True)
class CompactionResult:
    """A compactor's answer: the new conversation, what it cost and what was done.

    ``usage`` (model calls the compactor made) is added to the run's usage; ``limit`` is the
    estimate the compactor aimed under (reported in ``Compacted``); the counts and ``fallback``
    are reported as they are.

    >>> alloy.CompactionResult(messages=kept, dropped_messages=len(dropped))
    """

    messages: tuple[Message, ...] = attrs.field(converter=_message_tuple)
    limit: int = 0
    usage: Usage = Usage()
    cleared_tool_results: int = 0
    dropped_thinking: int = 0
    summarized_messages: int = 0
    dropped_messages: int = 0
    truncated_tool_results: int = 0
    fallback: str | None = None


@runtime_checkable
class Compactor(Protocol):
    """Anything with an async ``compact``: pass it as ``compaction=`` to replace the built-in.

    It is called before every model call; return ``None`` to leave the conversation as it is::

        class KeepTheLastTen:
            async def compact(self, context: alloy.CompactionContext):
                if not context.force and context.estimate() <= context.max_tokens * 0.9:
                    return None
                first, *rest = context.messages
                recent = rest[-10:]
                while recent and recent[0].tool_results:  # never start inside a tool round
                    recent = recent[1:]
                return alloy.CompactionResult(messages=(first, *recent))

    The messages it returns must stay valid: every tool result right after its call.
    """

    async def compact(self, context: CompactionContext) -> CompactionResult | None: ...


# -- the built-in compactor ----------------------------------------------------------------------

SUMMARY_TAG = "[Summary of the earlier conversation]"
"""How the synthetic summary message begins; a later compaction finds and updates it."""

_SUMMARY_INTRO = (
    "The earlier part of this conversation was compacted to fit the context window. This "
    "checkpoint replaces it; the messages after it are verbatim."
)
_NOTE = re.compile(
    r"\n\n\[(\d+) more messages? (?:was|were) dropped without a summary to fit the context "
    r"window\.\]\Z"
)

SUMMARY_SYSTEM_PROMPT = """\
You write context checkpoints for an AI agent whose conversation grew too long for its context \
window. You are given the older part of the conversation, and the previous checkpoint if there \
is one. Write a checkpoint that lets the agent continue the task without the original messages. \
Record facts, not impressions: keep file paths, commands, identifiers, numbers, error messages \
and decisions verbatim where they matter. Do not continue the conversation, answer the user or \
call tools: output only the checkpoint."""

SUMMARY_PROMPT = """\
{previous}{task}<conversation>
{conversation}
</conversation>

Write the updated checkpoint in Markdown with exactly these sections (write "None" under an \
empty one):

## Goal
## Constraints & Preferences
## Progress
### Done
### In Progress
### Blocked
## Key Decisions
## Evidence & References
## Next Steps
## Critical Context

Keep it under {words} words."""

MAX_SUMMARY_CALLS = 4
"""The summary of a transcript too long for one call takes several, each updating the last;
messages are clipped so that it takes about this many at most."""

_CLEARED = "[tool result cleared to save context: "
_TRUNCATED = re.compile(r"\n\[tool result truncated: kept ([\d,]+) of ([\d,]+) characters\]\n")


def _non_negative_int(name: str, value: object, *, positive: bool = False) -> None:
    low = 1 if positive else 0
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        kind = "positive" if positive else "non-negative"
        raise ConfigError(f"Compaction {name} must be a {kind} integer, got {value!r}")


def is_summary(message: Message) -> bool:
    """Whether ``message`` is the synthetic summary a compaction inserted."""
    return (
        message.role == "user"
        and len(message.content) == 1
        and type(message.content[0]) is Text
        and message.content[0].text.startswith(SUMMARY_TAG)
    )


def _summary_parts(message: Message | None) -> tuple[str | None, int]:
    """The summary text of a synthetic message (None if it has none) and its dropped count."""
    if message is None:
        return None, 0
    text = message.text
    body = text.split("\n\n", 1)[1] if "\n\n" in text else ""
    dropped = 0
    note = _NOTE.search(body)
    if note is not None:
        dropped = int(note.group(1))
        body = body[: note.start()]
    summary = None if body.strip() in ("", "(no summary)") else body.strip()
    return summary, dropped


def _summary_message(summary: str | None, dropped: int) -> Message:
    text = f"{SUMMARY_TAG} {_SUMMARY_INTRO}\n\n{summary if summary else '(no summary)'}"
    if dropped:
        noun = "message was" if dropped == 1 else "messages were"
        text += f"\n\n[{dropped} more {noun} dropped without a summary to fit the context window.]"
    return Message.user(text)


def _clip(text: str, tokens: int) -> str:
    """``text`` cut to about ``tokens`` tokens, keeping its head and tail."""
    if text_tokens(text) <= tokens:
        return text
    data = text.encode("utf-8", "surrogatepass")
    room = max(tokens * BYTES_PER_TOKEN - 48, 2)
    head = data[: room * 2 // 3].decode("utf-8", "ignore")
    tail = data[len(data) - room // 3 :].decode("utf-8", "ignore")
    omitted = len(text) - len(head) - len(tail)
    return f"{head}[... {omitted:,} characters omitted ...]{tail}"


def _is_boundary(messages: Sequence[Message], index: int) -> bool:
    """Whether a window may start at ``index``: a message with no tool results."""
    return not any(type(block) is ToolResult for block in messages[index].content)


def _call_names(messages: Iterable[Message]) -> dict[str, str]:
    return {
        block.id: block.name
        for message in messages
        for block in message.content
        if type(block) is ToolCall
    }


class _Sizer:
    """The raw estimate of a message list under edit, kept by arithmetic."""

    def __init__(self, context: CompactionContext, messages: Sequence[Message]) -> None:
        self.counter = context.counter
        self.fixed = context.counter.fixed(context.system_prompt, context.tools)
        self.messages = list(messages)
        self.raw = self.fixed + sum(self.counter.message(m) for m in self.messages)

    @property
    def estimate(self) -> int:
        return self.counter.scale(self.raw)

    def replace(self, index: int, message: Message) -> None:
        self.raw += self.counter.message(message) - self.counter.message(self.messages[index])
        self.messages[index] = message

    def reset(self, messages: Sequence[Message]) -> None:
        self.messages = list(messages)
        self.raw = self.fixed + sum(self.counter.message(m) for m in self.messages)


class _SummaryFailed(Exception):
    def __init__(self, reason: str, usage: Usage) -> None:
        super().__init__(reason)
        self.reason = reason
        self.usage = usage


def _validate_prompt(instance: Compaction, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str):
        raise ConfigError(f"Compaction {attribute.name} must be a string, got {value!r}")
    if attribute.name == "summary_prompt" and "{conversation}" not in value:
        raise ConfigError("Compaction summary_prompt must contain {conversation}")


@attrs.frozen(kw_only=True)
class Compaction:
    """The built-in compactor; pass ``compaction=alloy.Compaction(...)`` to tune it.

    - ``reserve``: tokens kept free for the reply; the conversation is compacted when its
      estimate exceeds ``max_tokens - reserve`` (default: ``max_tokens // 8``, at most 32,768;
      never more than half of ``max_tokens``).
    - ``keep_recent_tokens``: the size of the verbatim recent window kept by a summary (default:
      30% of the limit).
    - ``keep_recent_tool_results``: how many of the latest tool results keep their bodies when
      old ones are cleared (3).
    - ``summarize``: summarise with the run's provider (True) or only truncate (False).
    - ``summary_tokens``: the longest summary kept (default: 1/8 of the limit, at most 8,000).
    - ``summary_timeout``: seconds the summary calls may take (120; ``None``: no bound of its
      own). The summary never takes more than half the time left before the caller's deadline,
      so truncation can still run when it is slow.
    - ``min_tool_result_chars``: a tool result in the recent window is never shortened below
      this (2,000).
    - ``summary_system_prompt``, ``summary_prompt``: the summary call's prompts; the latter
      may use ``{previous}``, ``{task}``, ``{conversation}`` (required) and ``{words}``.

    >>> alloy.run(..., max_tokens=100_000, compaction=alloy.Compaction(reserve=8_000))
    """

    reserve: int | None = None
    keep_recent_tokens: int | None = None
    keep_recent_tool_results: int = 3
    summarize: bool = True
    summary_tokens: int | None = None
    summary_timeout: float | None = 120.0
    min_tool_result_chars: int = 2_000
    summary_system_prompt: str = attrs.field(
        default=SUMMARY_SYSTEM_PROMPT, validator=_validate_prompt
    )
    summary_prompt: str = attrs.field(default=SUMMARY_PROMPT, validator=_validate_prompt)

    def __attrs_post_init__(self) -> None:
        for name in ("reserve", "keep_recent_tokens", "summary_tokens"):
            value = getattr(self, name)
            if value is not None:
                _non_negative_int(name, value, positive=True)
        _non_negative_int("keep_recent_tool_results", self.keep_recent_tool_results)
        _non_negative_int("min_tool_result_chars", self.min_tool_result_chars)
        if not isinstance(self.summarize, bool):
            raise ConfigError(f"Compaction summarize must be True or False, got {self.summarize!r}")
        timeout = self.summary_timeout
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not timeout > 0
            or math.isnan(timeout)
        ):
            raise ConfigError(
                f"Compaction summary_timeout must be positive seconds or None, got {timeout!r}"
            )

    # -- the budget --

    def reserve_for(self, max_tokens: int) -> int:
        """The reserve for a budget of ``max_tokens``."""
        reserve = self.reserve if self.reserve is not None else min(max_tokens // 8, 32_768)
        return min(reserve, max_tokens // 2)

    def limit_for(self, max_tokens: int) -> int:
        """What the request's estimate must stay under: ``max_tokens - reserve``."""
        return max(max_tokens - self.reserve_for(max_tokens), 1)

    def recent_for(self, limit: int) -> int:
        """The recent window a summary keeps verbatim, in tokens."""
        if self.keep_recent_tokens is not None:
            return min(self.keep_recent_tokens, limit)
        return max(limit * 3 // 10, 1)

    def summary_for(self, limit: int) -> int:
        """The longest summary kept, in tokens."""
        if self.summary_tokens is not None:
            return min(self.summary_tokens, limit)
        return max(min(limit // 8, 8_000), 16)

    # -- the pipeline --

    async def compact(self, context: CompactionContext) -> CompactionResult | None:
        """Compact ``context.messages`` if the request is over the limit (see the module doc)."""
        limit = self.limit_for(context.max_tokens)
        sizer = _Sizer(context, context.messages)
        before = sizer.estimate
        if context.force:
            limit = min(limit, max(before * 3 // 4, 1))
        elif before <= limit:
            return None
        cleared = self._clear_tool_results(sizer)
        thinking = self._drop_thinking(sizer) if sizer.estimate > limit else 0
        usage = Usage()
        summarized = dropped = truncated = 0
        fallback: str | None = None
        if sizer.estimate > limit:
            if self.summarize:
                try:
                    summarized, usage = await self._summarize(context, sizer, limit)
                except _SummaryFailed as failure:
                    fallback, usage = failure.reason, failure.usage
            else:
                fallback = "summaries are turned off"
        if sizer.estimate > limit:
            dropped, truncated = self._truncate(sizer, limit)
        messages = tuple(sizer.messages)
        unchanged = len(messages) == len(context.messages) and all(
            a is b for a, b in zip(messages, context.messages, strict=True)
        )
        if unchanged and usage == Usage():
            return None
        return CompactionResult(
            messages=messages,
            limit=limit,
            usage=usage,
            cleared_tool_results=cleared,
            dropped_thinking=thinking,
            summarized_messages=summarized,
            dropped_messages=dropped,
            truncated_tool_results=truncated,
            fallback=fallback,
        )

    # stage 1

    def _clear_tool_results(self, sizer: _Sizer) -> int:
        messages = sizer.messages
        names = _call_names(messages)
        where = [
            (index, position)
            for index, message in enumerate(messages)
            if index > 0
            for position, block in enumerate(message.content)
            if type(block) is ToolResult
        ]
        keep = self.keep_recent_tool_results
        old = where[: len(where) - keep] if keep else where
        cleared = 0
        by_message: dict[int, list[int]] = {}
        for index, position in old:
            by_message.setdefault(index, []).append(position)
        for index, positions in by_message.items():
            content = list(messages[index].content)
            changed = False
            for position in positions:
                result = content[position]
                assert isinstance(result, ToolResult)
                if result.content.startswith(_CLEARED):
                    continue
                name = names.get(result.call_id, "a tool")
                marker = f"{_CLEARED}{name} returned {len(result.content):,} characters]"
                if len(marker) >= len(result.content):
                    continue
                content[position] = ToolResult(
                    call_id=result.call_id, content=marker, is_error=result.is_error
                )
                changed = True
                cleared += 1
            if changed:
                sizer.replace(index, Message(messages[index].role, content))
        return cleared

    def _drop_thinking(self, sizer: _Sizer) -> int:
        messages = sizer.messages
        last = max((i for i, m in enumerate(messages) if m.role == "assistant"), default=-1)
        dropped = 0
        for index in range(1, last):
            message = messages[index]
            if message.role != "assistant":
                continue
            kept = [b for b in message.content if type(b) not in (Thinking, RedactedThinking)]
            if len(kept) == len(message.content) or not kept:
                continue
            dropped += len(message.content) - len(kept)
            sizer.replace(index, Message("assistant", kept))
        return dropped

    # stage 2

    async def _summarize(
        self, context: CompactionContext, sizer: _Sizer, limit: int
    ) -> tuple[int, Usage]:
        messages = sizer.messages
        start = 2 if len(messages) > 1 and is_summary(messages[1]) else 1
        previous, _ = _summary_parts(messages[1] if start == 2 else None)
        body = messages[start:]
        boundaries = [k for k in range(len(body)) if _is_boundary(body, k)]
        if not boundaries or boundaries[-1] == 0:
            raise _SummaryFailed("nothing old enough to summarise", Usage())
        window = self.recent_for(limit)
        counter = context.counter
        sizes = [counter.scale(counter.message(m)) for m in body]
        suffix = [0] * (len(body) + 1)
        for k in range(len(body) - 1, -1, -1):
            suffix[k] = suffix[k + 1] + sizes[k]
        candidates = [k for k in boundaries if k > 0]
        fitting = [k for k in candidates if suffix[k] <= window]
        cut = fitting[0] if fitting else candidates[-1]
        # Stage 1 edits in place, so the same slice of the original messages is the older part
        # with its tool results as they were: the summary sees what was cleared just now.
        older = context.messages[start : start + cut]
        summary, usage = await self._summary_of(context, messages[0], previous, older, limit)
        sizer.reset([messages[0], _summary_message(summary, 0), *body[cut:]])
        return len(older), usage

    async def _summary_of(
        self,
        context: CompactionContext,
        first: Message,
        previous: str | None,
        older: Sequence[Message],
        limit: int,
    ) -> tuple[str, Usage]:
        counter = context.counter
        allowance = self.summary_for(limit)
        task = _clip(_render(first, {}), max(limit // 10, 16))
        words = max(allowance // 2, 30)

        def prompt(previous_text: str | None, conversation: str) -> str:
            return (
                self.summary_prompt.replace(
                    "{previous}",
                    f"<previous-checkpoint>\n{previous_text}\n</previous-checkpoint>\n\n"
                    if previous_text
                    else "",
                )
                .replace("{task}", f"<task>\n{task}\n</task>\n\n")
                .replace("{words}", str(words))
                .replace("{conversation}", conversation)
            )

        # Room for the conversation in one summary request, in raw tokens.
        base = counter.raw([Message.user(prompt(None, ""))], self.summary_system_prompt)
        previous_room = max(allowance, text_tokens(previous) if previous else 0) + 16
        room = math.floor(limit / counter.ratio) - base - previous_room
        if room < 64:
            raise _SummaryFailed("the budget leaves no room for a summary call", Usage())
        # Each message is clipped so the whole transcript takes at most MAX_SUMMARY_CALLS calls.
        names = _call_names(older)
        cap = min(max(MAX_SUMMARY_CALLS * room // max(len(older), 1), 24), 1_500, room)
        items = [_clip(_render(m, names), cap) for m in older]
        chunks: list[list[str]] = [[]]
        used = 0
        for item in items:
            size = text_tokens(item) + 1
            if chunks[-1] and used + size > room:
                chunks.append([])
                used = 0
            chunks[-1].append(item)
            used += size

        usage = Usage()
        summary = previous
        deadline = trio.current_effective_deadline()
        now = trio.current_time()
        bound = math.inf if self.summary_timeout is None else now + self.summary_timeout
        if deadline != math.inf:
            bound = min(bound, now + (deadline - now) / 2)
        with trio.move_on_at(bound) as scope:
            try:
                for chunk in chunks:
                    request = Request(
                        messages=(Message.user(prompt(summary, "\n\n".join(chunk))),),
                        system_prompt=self.summary_system_prompt,
                        options=context.provider_options,
                    )
                    completion = await context.provider.complete(request)
                    usage = usage + completion.usage
                    text = completion.message.text.strip()
                    if not text:
                        raise _SummaryFailed("the summary call returned no text", usage)
                    summary = _clip(text, allowance)
            except _SummaryFailed:
                raise
            except Exception as exc:
                reason = f"the summary call failed: {type(exc).__name__}: {exc}"
                raise _SummaryFailed(reason, usage) from exc
        if scope.cancelled_caught:
            raise _SummaryFailed("the summary call ran out of time", usage)
        assert summary is not None
        return summary, usage

    # stage 3

    def _truncate(self, sizer: _Sizer, limit: int) -> tuple[int, int]:
        messages = sizer.messages
        if len(messages) < 2:
            return 0, 0
        has_summary = is_summary(messages[1])
        start = 2 if has_summary else 1
        summary, dropped_before = _summary_parts(messages[1] if has_summary else None)
        rest = messages[start:]
        counter = sizer.counter
        rest_raw = [counter.message(m) for m in rest]
        # Drop whole rounds, oldest first, until it fits or only the last round is left. The
        # note that says so is counted at its largest (its count only grows).
        note_raw = counter.message(_summary_message(summary, dropped_before + len(rest)))
        base = sizer.fixed + counter.message(messages[0]) + note_raw
        remaining = sum(rest_raw)
        drop = 0
        for cut in range(1, len(rest)):
            remaining -= rest_raw[cut - 1]
            if not _is_boundary(rest, cut):
                continue
            drop = cut
            if counter.scale(base + remaining) <= limit:
                break
        if drop:
            sizer.reset(
                [messages[0], _summary_message(summary, dropped_before + drop), *rest[drop:]]
            )
        truncated = self._shorten_tool_results(sizer, limit)
        if sizer.estimate > limit and is_summary(sizer.messages[1]):
            # Last resort: the summary itself goes; the note that something is missing stays.
            kept, dropped = _summary_parts(sizer.messages[1])
            if kept is not None:
                sizer.replace(1, _summary_message(None, dropped))
        return drop, truncated

    def _shorten_tool_results(self, sizer: _Sizer, limit: int) -> int:
        shortened: set[tuple[int, int]] = set()
        done: set[tuple[int, int]] = set()
        floor = self.min_tool_result_chars
        while sizer.estimate > limit:
            best: tuple[int, int, int] | None = None
            for index in range(1, len(sizer.messages)):
                for position, block in enumerate(sizer.messages[index].content):
                    if type(block) is not ToolResult or (index, position) in done:
                        continue
                    assert isinstance(block, ToolResult)
                    size = len(block.content)
                    if size > floor + _SHORTEST and (best is None or size > best[0]):
                        best = (size, index, position)
            if best is None:
                break
            size, index, position = best
            message = sizer.messages[index]
            result = message.content[position]
            assert isinstance(result, ToolResult)
            excess_raw = sizer.raw - math.floor(limit / sizer.counter.ratio)
            keep = max(floor, size - excess_raw * BYTES_PER_TOKEN - _SHORTEST)
            new = _shorten(result.content, keep)
            if len(new) >= size:
                done.add((index, position))
                continue
            content = list(message.content)
            content[position] = ToolResult(
                call_id=result.call_id, content=new, is_error=result.is_error
            )
            sizer.replace(index, Message(message.role, content))
            shortened.add((index, position))
        return len(shortened)


_SHORTEST = 100
"""A tool result is only shortened when it is this much longer than the floor (the marker)."""


def _shorten(content: str, keep: int) -> str:
    """``content`` cut to ``keep`` characters (head and tail) with a marker saying so."""
    total = len(content)
    found = _TRUNCATED.search(content)
    if found is not None:  # shortened before: count from the original size
        total = int(found.group(2).replace(",", ""))
    if keep >= len(content):
        return content
    head = content[: keep * 2 // 3]
    tail = content[len(content) - (keep - len(head)) :] if keep - len(head) > 0 else ""
    head = _TRUNCATED.sub("\n", head)
    tail = _TRUNCATED.sub("\n", tail)
    return f"{head}\n[tool result truncated: kept {len(head) + len(tail):,} of {total:,} characters]\n{tail}"


def _render(message: Message, names: Mapping[str, str]) -> str:
    """A message as plain text for the summary call (reasoning left out)."""
    lines: list[str] = []
    for block in message.content:
        kind = type(block)
        if kind is Text:
            assert isinstance(block, Text)
            lines.append(_clip(block.text, 1_500))
        elif kind is ToolCall:
            assert isinstance(block, ToolCall)
            lines.append(f"[called {block.name} {_clip(_json(block.arguments), 300)}]")
        elif kind is ToolResult:
            assert isinstance(block, ToolResult)
            if block.content.startswith(_CLEARED):
                lines.append(block.content)
            else:
                name = names.get(block.call_id, "a tool")
                verdict = "failed" if block.is_error else "returned"
                lines.append(f"[{name} {verdict}: {_clip(block.content, 700)}]")
        elif kind is Image:
            lines.append("[an image]")
        elif kind is ServerToolCall:
            assert isinstance(block, ServerToolCall)
            lines.append(f"[the provider ran {block.name} {_clip(_json(block.arguments), 200)}]")
        elif kind is ServerToolResult:
            assert isinstance(block, ServerToolResult)
            lines.append(f"[{block.kind}: {_clip(_json(block.content), 300)}]")
        elif kind is UnknownBlock:
            assert isinstance(block, UnknownBlock)
            lines.append(f"[a {block.type or 'provider'} block]")
    return f"{message.role.upper()}: " + "\n".join(lines)


# -- the run's side ------------------------------------------------------------------------------

_ANTHROPIC_OVERFLOW = re.compile(r"([\d,]+)\s+tokens\s*>\s*([\d,]+)")
_SUM_OVERFLOW = re.compile(r"([\d,]+)\s*\+\s*([\d,]+)\s*>\s*([\d,]+)")
_MAXIMUM = re.compile(
    r"(?:maximum context length is|limit of|context window of|maximum of)\s+([\d,]+)", re.I
)
_ACTUAL = re.compile(r"(?:resulted in|requested|you requested|prompt has)\s+([\d,]+)", re.I)


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def overflow_numbers(message: str) -> tuple[int | None, int | None]:
    """The prompt's tokens and the input limit a context-length error states, when it does.

    >>> overflow_numbers("prompt is too long: 210012 tokens > 200000 maximum")
    (210012, 200000)
    >>> overflow_numbers("This model's maximum context length is 128000 tokens. However, your "
    ...                  "messages resulted in 130015 tokens.")
    (130015, 128000)
    """
    # Anthropic: "input length and `max_tokens` exceed context limit: 198000 + 4096 > 200000".
    found = _SUM_OVERFLOW.search(message)
    if found is not None:
        prompt, reply, window = (_number(g) for g in found.groups())
        return prompt, max(window - reply, 1)
    found = _ANTHROPIC_OVERFLOW.search(message)
    if found is not None:
        return _number(found.group(1)), _number(found.group(2))
    maximum = _MAXIMUM.search(message)
    actual = _ACTUAL.search(message)
    return (
        _number(actual.group(1)) if actual else None,
        _number(maximum.group(1)) if maximum else None,
    )


def _label(compactor: object) -> str:
    return type(compactor).__name__


class CompactionStep:
    """The run's compaction: its budget, its counter and its compactor, called by the loop."""

    __slots__ = ("_checked", "_sent", "compactor", "config", "counter", "max_tokens")

    def __init__(self, config: RunConfig, compactor: Compactor) -> None:
        self.config = config
        self.compactor = compactor
        self.max_tokens = config.max_tokens
        self.counter = TokenCounter()
        self._sent = 0
        self._checked: int | None = None  # the raw estimate before_turn just computed

    @classmethod
    def of(cls, config: RunConfig) -> CompactionStep | None:
        """The step for a run, or None when compaction is off."""
        compactor = config.compaction
        return None if compactor is None else cls(config, compactor)

    def _context(self, run: RunContext, force: bool) -> CompactionContext:
        return CompactionContext(
            messages=tuple(run.messages),
            system_prompt=run.system_prompt,
            tools=self.config.tool_specs,
            max_tokens=self.max_tokens,
            counter=self.counter,
            provider=self.config.provider,
            provider_options=self.config.provider_options,
            force=force,
            turn=run.turn,
        )

    async def before_turn(
        self, run: RunContext, hooks: Hooks, emitter: Emitter | None, *, force: bool = False
    ) -> bool:
        """Compact ``run.messages`` if needed; report it. Returns whether the messages changed."""
        if not force and type(self.compactor) is Compaction:
            # The common case, answered without building a context: the built-in compactor
            # leaves a request under its limit alone (exactly its own first check).
            raw = self.counter.raw(run.messages, run.system_prompt, self.config.tool_specs)
            if self.counter.scale(raw) <= self.compactor.limit_for(self.max_tokens):
                self._checked = raw
                return False
        self._checked = None
        context = self._context(run, force)
        before = context.estimate()
        try:
            result = await self.compactor.compact(context)
        except AlloyError:
            raise
        except Exception as exc:
            label = _label(self.compactor)
            raise MiddlewareError(
                f"{label}.compact raised {type(exc).__name__}: {exc}", hook="compaction"
            ) from exc
        if result is None:
            return False
        if not isinstance(result, CompactionResult) or not all(
            isinstance(m, Message) for m in result.messages
        ):
            raise MiddlewareError(
                f"{_label(self.compactor)}.compact returned {result!r}; it must return None or "
                "an alloy.CompactionResult of messages",
                hook="compaction",
            )
        old = context.messages
        changed = len(result.messages) != len(old) or any(
            a is not b and a != b for a, b in zip(result.messages, old, strict=False)
        )
        run.usage = run.usage + result.usage
        if changed:
            run.messages = list(result.messages)
        after = context.estimate(result.messages)
        fields: dict[str, Any] = {
            "before": before,
            "after": after,
            "limit": result.limit or self.max_tokens,
            "max_tokens": self.max_tokens,
            "forced": force,
            "cleared_tool_results": result.cleared_tool_results,
            "dropped_thinking": result.dropped_thinking,
            "summarized_messages": result.summarized_messages,
            "dropped_messages": result.dropped_messages,
            "truncated_tool_results": result.truncated_tool_results,
            "fallback": result.fallback,
            "usage": result.usage,
        }
        if emitter is not None:
            emitter.begin_turn(run.turn + 1)
            await emitter.emit(Compacted, **fields)
        if hooks.has("after_compaction"):
            await hooks.run("after_compaction", run, Compacted(turn=run.turn + 1, **fields))
        return changed

    def sending(self, run: RunContext, *, unchanged: bool = False) -> None:
        """The request about to be sent: remember its raw estimate. ``unchanged``: nothing
        touched the messages since ``before_turn`` (no ``before_completion`` hook ran)."""
        if unchanged and self._checked is not None:
            self._sent = self._checked
        else:
            self._sent = self.counter.raw(run.messages, run.system_prompt, self.config.tool_specs)
        self._checked = None

    def observe(self, usage: Usage) -> None:
        """The provider's count for the request just sent: correct the estimate."""
        self.counter.observe(self._sent, usage.input_tokens)

    async def overflowed(
        self,
        run: RunContext,
        hooks: Hooks,
        emitter: Emitter | None,
        error: ContextLengthExceeded,
    ) -> bool:
        """The provider refused the request as too long: learn what it said, compact harder.

        Returns whether the messages changed (the turn is then retried once)."""
        actual, maximum = overflow_numbers(f"{error} {error.body or ''}")
        if actual is not None:
            self.counter.observe(self._sent, actual)
        if maximum is not None and maximum < self.max_tokens:
            self.max_tokens = maximum
        return await self.before_turn(run, hooks, emitter, force=True)
