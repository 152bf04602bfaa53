"""Sans-IO Server-Sent Events decoder: bytes in, :class:`SSEEvent` values out.

The decoder follows the WHATWG "event stream" parsing rules
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):

- lines end with LF, CRLF or a lone CR, also when a CRLF is split across two chunks;
- one UTF-8 byte order mark at the very start of the stream is skipped;
- bytes are decoded as UTF-8 with replacement characters, and a multi-byte character split across
  chunks is decoded whole;
- a line starting with ``:`` is a comment (keep-alive pings, ``: OPENROUTER PROCESSING``);
- ``name: value`` lines lose exactly one space after the colon; a line without a colon is a field
  with an empty value; unknown field names are ignored;
- ``data`` lines of one event are joined with ``"\\n"``; a blank line dispatches the event; an
  event without any ``data`` line is not dispatched;
- ``id`` is ignored when it contains NUL, and otherwise persists to every later event until the
  next ``id`` line (as ``EventSource.lastEventId`` does); ``retry`` must be ASCII digits.

Two deliberate departures from the spec, both for real servers:

- :meth:`SSEDecoder.close` dispatches a final event whose blank line never came (the spec discards
  it; some servers end the body right after the last ``data:`` line).
- an event with no ``event:`` line has ``event == ""`` (the spec's browsers report ``"message"``):
  the caller can tell "no name" from ``event: message``.

The decoder does no I/O and never imports trio or an HTTP client: the transport feeds it the body
chunks. It is linear in the input: every byte is scanned a constant number of times, and only the
unterminated tail line is kept between calls. An event (or line) larger than ``max_event_size``
bytes raises :class:`SSEError`, so a broken server cannot make us buffer without bound.

>>> decoder = SSEDecoder()
>>> decoder.feed(b"event: ping\\ndata: {}\\n\\ndata: [DO")
[SSEEvent(data='{}', event='ping', id=None, retry=None)]
>>> decoder.feed(b"NE]\\n\\n")[0].is_done
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

__all__ = ["SSEDecoder", "SSEError", "SSEEvent", "encode_event"]

_BOM = b"\xef\xbb\xbf"
_LF = 10
_CR = 13


class SSEError(ValueError):
    """The byte stream cannot be decoded as Server-Sent Events within the configured limits.

    Raised by :meth:`SSEDecoder.feed` and :meth:`SSEDecoder.close`; the codec states no policy,
    the transport decides what the error means for a run.

    >>> SSEDecoder(max_event_size=4).feed(b"data: too long")
    Traceback (most recent call last):
    ...
    alloy._codec._sse.SSEError: SSE event exceeds max_event_size=4 bytes (a line of 14 bytes)
    """


class SSEEvent(NamedTuple):
    """One dispatched Server-Sent Event (an immutable value).

    - ``data``: the ``data`` lines of the event joined with ``"\\n"`` (``""`` for a lone
      ``data:``).
    - ``event``: the value of the last ``event:`` line of the event, ``""`` when there was none.
    - ``id``: the last event id the stream has set so far (it persists across events, as in
      ``EventSource.lastEventId``), ``None`` when the stream never sent an ``id`` line.
    - ``retry``: the reconnection time in milliseconds from a ``retry:`` line of this event, or
      ``None``.

    A named tuple because one is made per streamed token: the decoder builds one in a quarter of
    the time a frozen attrs instance takes. Equality is by value between events only, as for a
    frozen class (an event never equals a plain tuple).

    >>> event = SSEEvent('{"type": "ping"}', event="ping")
    >>> event.event, event.data, event.is_done
    ('ping', '{"type": "ping"}', False)
    >>> event == SSEEvent('{"type": "ping"}', "ping", None, None), event == tuple(event)
    (True, False)
    """

    data: str
    event: str = ""
    id: str | None = None
    retry: int | None = None

    @property
    def is_done(self) -> bool:
        """True for the OpenAI-style end-of-stream sentinel ``data: [DONE]``.

        The decoder gives the sentinel no special meaning; this is a convenience for callers.

        >>> SSEEvent("[DONE]").is_done, SSEEvent('{"done": true}').is_done
        (True, False)
        """
        return self.data == "[DONE]"

    # Equal to events only, never to a plain tuple (``tuple == event`` asks these first).
    def __eq__(self, other: object) -> bool:
        if type(other) is SSEEvent:
            return tuple.__eq__(self, other)
        return False if isinstance(other, tuple) else NotImplemented

    def __ne__(self, other: object) -> bool:
        if type(other) is SSEEvent:
            return tuple.__ne__(self, other)
        return True if isinstance(other, tuple) else NotImplemented

    def __hash__(self) -> int:  # defining __eq__ would otherwise make events unhashable
        return tuple.__hash__(self)


# The decoder builds events with ``tuple.__new__`` directly, without the Python-level
# ``SSEEvent.__new__`` that handles defaults and keywords (half the cost):
# ``_new(SSEEvent, (data, event, id, retry))``.
_new: Callable[[type[SSEEvent], tuple[str, str, str | None, int | None]], SSEEvent] = tuple.__new__


class SSEDecoder:
    """Incremental decoder: :meth:`feed` body chunks as they arrive, :meth:`close` at the end.

    Events come back in stream order; each call returns the events completed by that call. The
    result does not depend on how the bytes are split into chunks.

    ``max_event_size`` bounds the memory one event may take: when the data of the event being
    read plus its unterminated line exceeds that many bytes (UTF-8), :class:`SSEError` is raised
    and the decoder refuses further input.

    >>> decoder = SSEDecoder()
    >>> decoder.feed(b"data: hel")
    []
    >>> decoder.feed(b"lo\\r\\n\\r\\n")
    [SSEEvent(data='hello', event='', id=None, retry=None)]
    >>> decoder.feed(b"data: no blank line at the end")
    []
    >>> decoder.close()
    [SSEEvent(data='no blank line at the end', event='', id=None, retry=None)]
    """

    __slots__ = (
        "_closed",
        "_data",
        "_data_size",
        "_event",
        "_failed",
        "_head",
        "_idle",
        "_last_id",
        "_last_retry",
        "_max",
        "_partial",
        "_pending_cr",
        "_retry",
        "_started",
    )

    def __init__(self, max_event_size: int = 16 * 1024 * 1024) -> None:
        if max_event_size < 1:
            raise ValueError(f"max_event_size must be positive, got {max_event_size!r}")
        self._max = max_event_size
        # Byte-level state.
        self._started = False  # the BOM check at stream start is done
        self._head = b""  # first bytes of the stream, while they might still be a BOM
        self._partial = bytearray()  # the unterminated last line (never contains CR or LF)
        self._pending_cr = False  # the last chunk ended with CR: skip an LF that starts the next
        # Event-level state (the spec's buffers).
        self._data: list[str] = []
        self._data_size = 0  # UTF-8 size of the spec's data buffer (values plus one LF each)
        self._event = ""
        self._retry: int | None = None
        self._last_id: str | None = None
        self._last_retry: int | None = None
        self._failed = False
        self._closed = False
        # True between events once the stream has started: nothing buffered, no field pending,
        # usable. Only then may ``feed`` take its fast path.
        self._idle = False

    @property
    def max_event_size(self) -> int:
        """The limit in bytes for one event's data plus its unterminated line.

        >>> SSEDecoder(max_event_size=1024).max_event_size
        1024
        """
        return self._max

    @property
    def last_event_id(self) -> str | None:
        """The last valid ``id`` the stream sent, also from events that were not dispatched.

        >>> decoder = SSEDecoder()
        >>> decoder.feed(b"id: 7\\n\\n")
        []
        >>> decoder.last_event_id
        '7'
        """
        return self._last_id

    @property
    def retry(self) -> int | None:
        """The last valid ``retry`` value (milliseconds) the stream sent, or ``None``.

        >>> decoder = SSEDecoder()
        >>> decoder.feed(b"retry: 3000\\n\\n")
        []
        >>> decoder.retry
        3000
        """
        return self._last_retry

    def feed(self, data: bytes | bytearray | memoryview) -> list[SSEEvent]:
        """Decode the next chunk of the body; return the events it completed.

        Raises :class:`SSEError` when an event grows past ``max_event_size`` and
        ``RuntimeError`` after :meth:`close` or after an :class:`SSEError`.

        >>> decoder = SSEDecoder()
        >>> decoder.feed(b"data: caf\\xc3")  # the "e acute" is split across chunks
        []
        >>> decoder.feed(b"\\xa9\\n\\n")[0].data
        'café'
        """
        if type(data) is bytes:
            chunk = data
        elif data and not (self._failed or self._closed):
            chunk = bytes(data)
        else:
            chunk = b""  # nothing to copy: the checks below return [] or raise
        if self._idle and chunk[-2:] == b"\n\n" and _CR not in chunk:
            # The fast path. Servers flush whole events, so between events (nothing buffered,
            # no field pending) a chunk usually is one ``data: ...`` or ``event: ...`` +
            # ``data: ...`` event, or one comment: each of those is recognised with a few string
            # operations instead of the line loop. Any other chunk goes through the line loop,
            # and so does an event that might exceed ``max_event_size``: decoding with
            # replacement turns one byte into at most 3, so ``3 * len(chunk) < max`` is a bound
            # on the data's size in UTF-8 (plus its one LF).
            text = chunk.decode("utf-8", "replace")
            last = len(text) - 2  # where the closing blank line starts
            if text.startswith("data: "):
                if text.find("\n", 6) == last and 3 * len(chunk) < self._max:
                    return [_new(SSEEvent, (text[6:last], "", self._last_id, None))]
            elif text.startswith("event: "):
                end = text.find("\n", 7)
                if (
                    text.startswith("data: ", end + 1)
                    and text.find("\n", end + 7) == last
                    and 3 * len(chunk) < self._max
                ):
                    return [
                        _new(SSEEvent, (text[end + 7 : last], text[7:end], self._last_id, None))
                    ]
            elif text[0] == ":" and text.find("\n") == last:
                return []  # a comment (a keep-alive ping)
            # Whole lines that end with a blank line: the decoder is between events afterwards.
            return self._process(text[:-1])
        if self._failed or self._closed:
            self._check_usable()
        if not chunk:
            return []
        if not self._started:
            chunk = self._skip_bom(chunk)
            if not chunk:
                return []
        if self._pending_cr:
            self._pending_cr = False
            if chunk[0] == _LF:
                chunk = chunk[1:]
                if not chunk:
                    return []
        if _CR in chunk:
            # A CR ends a line at once; if the LF of a CRLF is in the next chunk it is skipped.
            self._pending_cr = chunk[-1] == _CR
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = chunk.rfind(b"\n")
        if end < 0:
            self._idle = False
            self._check_size(len(chunk))
            self._partial += chunk
            return []
        if self._partial:
            self._partial += chunk[:end]
            block = bytes(self._partial)
            self._partial = bytearray(chunk[end + 1 :])
        else:
            # The common case: the chunk holds whole lines (servers flush whole events).
            block = chunk[:end]
            if end + 1 < len(chunk):
                self._partial = bytearray(chunk[end + 1 :])
        events = self._process(block.decode("utf-8", "replace"))
        if self._data_size + len(self._partial) > self._max:
            self._check_size(0)
        # Between events, with nothing buffered: the next chunk may take the fast path.
        self._idle = not (
            self._partial
            or self._pending_cr
            or self._data
            or self._event
            or self._retry is not None
        )
        return events

    def close(self) -> list[SSEEvent]:
        """Signal the end of the body; return the events still pending.

        An unterminated last line is processed as a line, and an event still holding data is
        dispatched although its closing blank line never came (the spec would discard it).
        Calling ``close()`` again returns ``[]``; :meth:`feed` after ``close()`` raises
        ``RuntimeError``.

        >>> decoder = SSEDecoder()
        >>> decoder.feed(b"event: end\\ndata: bye")
        []
        >>> decoder.close()
        [SSEEvent(data='bye', event='end', id=None, retry=None)]
        >>> decoder.close()
        []
        """
        if self._closed:
            return []
        self._check_usable()
        self._closed = True
        self._idle = False
        tail = self._head + bytes(self._partial)
        self._head = b""
        self._partial = bytearray()
        events = self._process(tail.decode("utf-8", "replace")) if tail else []
        if self._data:
            events += self._process("")  # the blank line that never came
        return events

    # -- internals ---------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._failed:
            raise RuntimeError("SSEDecoder cannot be used after an SSEError")
        if self._closed:
            raise RuntimeError("SSEDecoder.feed() called after close()")

    def _check_size(self, incoming: int) -> None:
        line = len(self._partial) + incoming
        if self._data_size + line > self._max:
            if self._data_size:
                self._fail(f"{self._data_size} bytes of data and a line of {line} bytes")
            self._fail(f"a line of {line} bytes")

    def _fail(self, what: str) -> None:
        self._failed = True
        self._idle = False
        raise SSEError(f"SSE event exceeds max_event_size={self._max} bytes ({what})")

    def _skip_bom(self, chunk: bytes) -> bytes:
        head = self._head + chunk
        if len(head) < len(_BOM) and _BOM.startswith(head):
            self._head = head  # could still become a BOM: wait for more bytes
            return b""
        self._head = b""
        self._started = True
        return head[len(_BOM) :] if head.startswith(_BOM) else head

    def _process(self, text: str) -> list[SSEEvent]:
        """Interpret complete lines (``text`` holds one or more lines joined with LF)."""
        events: list[SSEEvent] = []
        data = self._data
        for line in text.split("\n"):
            if not line:
                if data:  # dispatch (inline: this runs once per event)
                    value = data[0] if len(data) == 1 else "\n".join(data)
                    events.append(_new(SSEEvent, (value, self._event, self._last_id, self._retry)))
                    data = self._data = []
                    self._data_size = 0
                self._event = ""
                self._retry = None
                continue
            if line.startswith("data: "):  # the common shape, checked first
                name, value = "data", line[6:]
            else:
                name, colon, value = line.partition(":")
                if colon:
                    if not name:
                        continue  # comment
                    if value[:1] == " ":
                        value = value[1:]
            if name == "data":
                data.append(value)
                self._data_size += (len(value) if value.isascii() else len(value.encode())) + 1
                if self._data_size > self._max:
                    self._fail(f"{self._data_size} bytes of data")
            elif name == "event":
                self._event = value
            elif name == "id":
                if "\0" not in value:
                    self._last_id = value
            elif name == "retry" and value.isascii() and value.isdigit():
                self._retry = self._last_retry = int(value)
        return events


def encode_event(event: SSEEvent) -> bytes:
    """Encode one event as UTF-8 SSE bytes, ending with the blank line that dispatches it.

    Fields are written as ``name: value`` (one space, so leading spaces survive decoding).
    ``event == ""`` writes no ``event`` line and ``id is None`` no ``id`` line, so the decoder's
    persisted id from an earlier event still applies. SSE cannot carry a CR in data: CRLF and CR
    are written as LF. A CR, LF or (for ``id``) NUL in ``event`` or ``id`` raises ``ValueError``.

    >>> encode_event(SSEEvent("line 1\\nline 2", event="delta"))
    b'event: delta\\ndata: line 1\\ndata: line 2\\n\\n'
    >>> SSEDecoder().feed(encode_event(SSEEvent("x", id="1", retry=10)))
    [SSEEvent(data='x', event='', id='1', retry=10)]
    """
    parts: list[str] = []
    if event.event:
        if "\n" in event.event or "\r" in event.event:
            raise ValueError(f"SSE event name cannot contain a line break: {event.event!r}")
        parts.append(f"event: {event.event}\n")
    if event.id is not None:
        if "\n" in event.id or "\r" in event.id or "\0" in event.id:
            raise ValueError(f"SSE id cannot contain CR, LF or NUL: {event.id!r}")
        parts.append(f"id: {event.id}\n")
    if event.retry is not None:
        if event.retry < 0:
            raise ValueError(f"SSE retry must be >= 0, got {event.retry!r}")
        parts.append(f"retry: {event.retry}\n")
    data = event.data.replace("\r\n", "\n").replace("\r", "\n")
    for line in data.split("\n"):
        parts.append(f"data: {line}\n")
    parts.append("\n")
    return "".join(parts).encode()
