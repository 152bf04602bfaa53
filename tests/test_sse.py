"""Tests for the sans-IO SSE decoder (``alloy._codec._sse``).

Sections: the ported Alloy 0.7.4 ``sse_test.exs`` cases, one test per WHATWG parsing rule, the
size limit, ``encode_event``, Hypothesis properties (split invariance, round trip, a differential
test against a tiny whole-stream reference decoder) and every recorded real stream.
"""

from __future__ import annotations

import ast
import doctest
import itertools
import json
import random
import re
import tracemalloc
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import alloy._codec._sse as sse_module
from alloy._codec._sse import SSEDecoder, SSEError, SSEEvent, encode_event

# -- helpers ---------------------------------------------------------------------------------


def decode_all(data: bytes, *, max_event_size: int | None = None) -> list[SSEEvent]:
    """Feed everything at once, then close."""
    decoder = SSEDecoder() if max_event_size is None else SSEDecoder(max_event_size)
    return decoder.feed(data) + decoder.close()


def decode_chunks(chunks: Iterable[bytes]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events + decoder.close()


def split_at(data: bytes, points: Iterable[int]) -> list[bytes]:
    cuts = [0, *sorted(p for p in points if 0 <= p <= len(data)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(cuts)]


def fixed_chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def datas(events: Sequence[SSEEvent]) -> list[str]:
    return [e.data for e in events]


_LINE_END = re.compile(r"\r\n|\r|\n")


def reference_decode(raw: bytes) -> list[SSEEvent]:
    """A deliberately naive, whole-stream decoder written straight from the WHATWG algorithm,
    with our two documented choices (``event`` defaults to ``""``; ``close`` dispatches a final
    event without its blank line)."""
    text = raw.decode("utf-8", "replace")
    text = text.removeprefix("\ufeff")
    events: list[SSEEvent] = []
    data: list[str] = []
    name = ""
    last_id: str | None = None
    retry: int | None = None
    for line in _LINE_END.split(text):
        if line == "":
            if data:
                events.append(SSEEvent("\n".join(data), name, last_id, retry))
            data, name, retry = [], "", None
            continue
        if line.startswith(":"):
            continue
        if ":" in line:
            field, value = line.split(":", 1)
            if value.startswith(" "):
                value = value[1:]
        else:
            field, value = line, ""
        if field == "data":
            data.append(value)
        elif field == "event":
            name = value
        elif field == "id" and "\0" not in value:
            last_id = value
        elif field == "retry" and re.fullmatch(r"[0-9]+", value):
            retry = int(value)
    if data:
        events.append(SSEEvent("\n".join(data), name, last_id, retry))
    return events


# -- ported from alloy 0.7.4 test/alloy/provider/sse_test.exs -------------------------------


def test_returns_one_event_from_a_complete_single_event() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b'event: message_start\ndata: {"type":"message_start"}\n\n')
    assert events == [SSEEvent('{"type":"message_start"}', event="message_start")]
    assert decoder.close() == []  # nothing left in the buffer


def test_buffers_partial_data_and_returns_no_events() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'event: content_block_delta\ndata: {"partial') == []
    # The whole chunk stayed buffered: completing it later yields the full event.
    assert decoder.feed(b'": true}\n\n') == [
        SSEEvent('{"partial": true}', event="content_block_delta")
    ]


def test_completes_a_buffered_event_across_two_calls() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'event: delta\ndata: {"x":') == []
    assert decoder.feed(b"1}\n\n") == [SSEEvent('{"x":1}', event="delta")]


def test_returns_multiple_events_from_one_chunk() -> None:
    events = SSEDecoder().feed(b"event: a\ndata: 1\n\nevent: b\ndata: 2\n\n")
    assert events == [SSEEvent("1", event="a"), SSEEvent("2", event="b")]


def test_handles_data_only_events_without_event_field() -> None:
    (event,) = SSEDecoder().feed(b'data: {"choices":[]}\n\n')
    assert event.event == ""  # the 0.7.4 parser said nil; we say "" (the spec's empty buffer)
    assert event.data == '{"choices":[]}'


def test_handles_done_sentinel_as_raw_data() -> None:
    (event,) = SSEDecoder().feed(b"data: [DONE]\n\n")
    assert event.data == "[DONE]"
    assert event.is_done


def test_handles_empty_chunk() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"") == []
    assert decoder.close() == []


def test_handles_chunk_ending_exactly_on_boundary() -> None:
    decoder = SSEDecoder()
    assert len(decoder.feed(b"event: x\ndata: 1\n\n")) == 1
    assert decoder.close() == []


def test_preserves_remaining_buffer_after_complete_events() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: 1\n\nevent: next\ndata: par") == [SSEEvent("1")]
    assert decoder.feed(b"tial\n\n") == [SSEEvent("partial", event="next")]


def test_normalizes_crlf_line_endings() -> None:
    events = SSEDecoder().feed(b"event: a\r\ndata: 1\r\n\r\ndata: 2\r\n\r\n")
    assert events == [SSEEvent("1", event="a"), SSEEvent("2")]


def test_concatenates_multiple_data_lines_within_one_event() -> None:
    (event,) = SSEDecoder().feed(b"data: line1\ndata: line2\ndata: line3\n\n")
    assert event.data == "line1\nline2\nline3"


def test_ignores_comment_lines() -> None:
    events = SSEDecoder().feed(b": keep-alive\n\ndata: 1\n: inside\n\n")
    assert events == [SSEEvent("1")]


def test_handles_data_field_without_space_after_colon_ollama() -> None:
    (event,) = SSEDecoder().feed(b'data:{"model":"llama"}\n\n')
    assert event.data == '{"model":"llama"}'


def test_processes_chunks_into_an_accumulator() -> None:
    # req_stream_handler/2: a per-chunk handler reduces events into an accumulator.
    acc: list[SSEEvent] = []
    decoder = SSEDecoder()
    acc += decoder.feed(b"data: 1\n\n")
    assert datas(acc) == ["1"]


def test_accumulates_across_multiple_chunks() -> None:
    acc: list[SSEEvent] = []
    decoder = SSEDecoder()
    for chunk in (b"data: 1\n\ndata: ", b"2\n\n"):
        acc += decoder.feed(chunk)
    assert datas(acc) == ["1", "2"]


# -- line endings ----------------------------------------------------------------------------


@pytest.mark.parametrize("nl", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_every_line_ending(nl: bytes) -> None:
    raw = nl.join([b"event: e", b"data: a", b"data: b", b"", b"data: c", b"", b""])
    assert decode_all(raw) == [SSEEvent("a\nb", event="e"), SSEEvent("c")]


def test_mixed_line_endings() -> None:
    assert decode_all(b"data: a\rdata: b\r\ndata: c\n\r\n") == [SSEEvent("a\nb\nc")]


def test_cr_at_chunk_end_and_lf_at_next_start_is_one_line_end() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\ndata: b\r") == []  # one CRLF: no blank line, no dispatch
    assert decoder.feed(b"\n\r") == [SSEEvent("a\nb")]
    assert decoder.feed(b"\n") == []  # the LF of the last CRLF, not another blank line
    assert decoder.close() == []


def test_cr_then_empty_chunk_then_lf() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"\r\n") == [SSEEvent("a")]


def test_cr_dispatches_without_waiting_for_next_chunk() -> None:
    # A lone CR ends a line at once: the blank line is seen before the next byte arrives.
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r\r") == [SSEEvent("a")]


def test_cr_cr_lf_is_two_line_ends() -> None:
    assert decode_all(b"data: a\r\r\ndata: b\n\n") == [SSEEvent("a"), SSEEvent("b")]


def test_lf_cr_is_two_line_ends() -> None:
    assert decode_all(b"data: a\n\rdata: b\n\n") == [SSEEvent("a"), SSEEvent("b")]


# -- BOM -------------------------------------------------------------------------------------


def test_bom_at_stream_start_is_skipped() -> None:
    assert decode_all(b"\xef\xbb\xbfdata: a\n\n") == [SSEEvent("a")]


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_bom_split_across_chunks(cut: int) -> None:
    raw = b"\xef\xbb\xbfdata: a\n\n"
    assert decode_chunks([raw[:cut], raw[cut:]]) == [SSEEvent("a")]
    assert decode_chunks(fixed_chunks(raw, 1)) == [SSEEvent("a")]


def test_only_one_bom_is_skipped() -> None:
    # A second BOM makes the first line's field name "\ufeffdata": an unknown field.
    assert decode_all(b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\ndata: b\n\n") == [SSEEvent("b")]


def test_bom_later_in_stream_is_not_skipped() -> None:
    assert decode_all(b"data: a\n\n\xef\xbb\xbfdata: b\n\ndata: c\n\n") == [
        SSEEvent("a"),
        SSEEvent("c"),
    ]


def test_bom_prefix_alone_at_close() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"\xef\xbb") == []
    assert decoder.close() == []  # a truncated BOM is one replacement char on a data-less line


def test_bom_prefix_that_is_not_a_bom() -> None:
    assert decode_chunks([b"\xef", b"data: a\n\n"]) == []  # "\ufffddata" is an unknown field
    assert decode_chunks([b"d", b"ata: a\n\n"]) == [SSEEvent("a")]


# -- fields ----------------------------------------------------------------------------------


def test_comment_lines_ignored_including_openrouter_processing() -> None:
    raw = b": OPENROUTER PROCESSING\n\n:\n: ping\ndata: x\n:comment\n\n"
    assert decode_all(raw) == [SSEEvent("x")]


def test_field_without_colon_has_empty_value() -> None:
    assert decode_all(b"data\n\n") == [SSEEvent("")]
    assert decode_all(b"data\ndata\n\n") == [SSEEvent("\n")]
    assert decode_all(b"event: e\nevent\ndata: x\n\n") == [SSEEvent("x", event="")]


def test_exactly_one_leading_space_is_stripped() -> None:
    assert decode_all(b"data:x\n\n") == [SSEEvent("x")]
    assert decode_all(b"data: x\n\n") == [SSEEvent("x")]
    assert decode_all(b"data:  x \n\n") == [SSEEvent(" x ")]
    assert decode_all(b"data:\tx\n\n") == [SSEEvent("\tx")]


def test_event_value_strips_exactly_one_space() -> None:
    # Alloy 0.7.4 weakness 23: it trimmed all leading spaces.
    assert decode_all(b"event:   spaced\ndata: x\n\n") == [SSEEvent("x", event="  spaced")]
    assert decode_all(b"event:tight\ndata: x\n\n") == [SSEEvent("x", event="tight")]


def test_colon_inside_value_is_kept() -> None:
    assert decode_all(b'data: {"a": "b:c"}\n\n') == [SSEEvent('{"a": "b:c"}')]


def test_empty_data_lines() -> None:
    assert decode_all(b"data:\n\n") == [SSEEvent("")]
    assert decode_all(b"data:\ndata:\n\n") == [SSEEvent("\n")]
    assert decode_all(b"data: a\ndata:\n\n") == [SSEEvent("a\n")]


def test_event_without_data_is_not_dispatched_and_does_not_leak() -> None:
    raw = b"event: lonely\nid: 1\nretry: 5\n\ndata: x\n\n"
    assert decode_all(raw) == [SSEEvent("x", event="", id="1", retry=None)]


def test_last_event_line_wins() -> None:
    assert decode_all(b"event: a\nevent: b\ndata: x\n\n") == [SSEEvent("x", event="b")]


def test_event_name_resets_after_dispatch() -> None:
    assert decode_all(b"event: a\ndata: 1\n\ndata: 2\n\n") == [
        SSEEvent("1", event="a"),
        SSEEvent("2"),
    ]


def test_id_persists_until_changed_and_empty_id_resets() -> None:
    raw = b"id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\nid: 2\ndata: d\n\n"
    assert [e.id for e in decode_all(raw)] == ["1", "1", "", "2"]


def test_id_set_in_undispatched_block_applies_to_later_events() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"id: 9\n\n") == []
    assert decoder.last_event_id == "9"
    assert decoder.feed(b"data: x\n\n") == [SSEEvent("x", id="9")]


def test_id_with_nul_is_ignored() -> None:
    raw = b"id: ok\ndata: a\n\nid: b\x00d\ndata: b\n\n"
    assert [e.id for e in decode_all(raw)] == ["ok", "ok"]


def test_no_id_means_none() -> None:
    assert decode_all(b"data: a\n\n")[0].id is None


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"retry: 1000", 1000),
        (b"retry:0", 0),
        (b"retry: 007", 7),
        (b"retry: 12a", None),
        (b"retry: -1", None),
        (b"retry: 1.5", None),
        (b"retry:", None),
        (b"retry:  10", None),  # two spaces: the value is " 10"
        (b"retry: 10 ", None),
        ("retry: \u0661\u0662".encode(), None),  # Arabic-Indic digits are not ASCII digits
        ("retry: \u00b2".encode(), None),  # superscript two: str.isdigit() says True
    ],
)
def test_retry_must_be_ascii_digits(line: bytes, expected: int | None) -> None:
    decoder = SSEDecoder()
    (event,) = decoder.feed(line + b"\ndata: x\n\n")
    assert event.retry == expected
    assert decoder.retry == expected


def test_retry_is_per_event_but_decoder_keeps_the_last() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"retry: 5\ndata: a\n\ndata: b\n\nretry: 7\n\n")
    assert [e.retry for e in events] == [5, None]
    assert decoder.retry == 7


def test_unknown_fields_ignored() -> None:
    raw = b"foo: bar\nDATA: shout\nData: x\n data: indented\nevent : spaced\ndata: y\n\n"
    assert decode_all(raw) == [SSEEvent("y")]


# -- UTF-8 -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["é", "€", "😀", "日本語", "a\u2028b"])
def test_multibyte_character_split_at_every_position(text: str) -> None:
    raw = f"data: {text}\n\n".encode()
    for cut in range(len(raw) + 1):
        assert decode_chunks([raw[:cut], raw[cut:]]) == [SSEEvent(text)], cut
    assert decode_chunks(fixed_chunks(raw, 1)) == [SSEEvent(text)]


def test_unicode_line_separators_are_not_line_ends() -> None:
    # str.splitlines() would split on these; the SSE grammar does not.
    text = "a\u2028b\u2029c\x0bd\x0ce\x1cf\x85g"
    assert decode_all(f"data: {text}\n\n".encode()) == [SSEEvent(text)]


def test_invalid_utf8_is_replaced() -> None:
    assert decode_all(b"data: a\xffb\xe2\x82\n\n") == [SSEEvent("a\ufffdb\ufffd")]


def test_nul_in_data_is_kept() -> None:
    assert decode_all(b"data: a\x00b\n\n") == [SSEEvent("a\x00b")]


def test_accepts_bytearray_and_memoryview() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(bytearray(b"data: a\n")) == []
    assert decoder.feed(memoryview(b"\n")) == [SSEEvent("a")]


# -- close() ---------------------------------------------------------------------------------


def test_close_dispatches_final_event_without_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\nevent: last\ndata: b\n") == [SSEEvent("a")]
    assert decoder.close() == [SSEEvent("b", event="last")]


def test_close_processes_unterminated_last_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\ndata: b") == []
    assert decoder.close() == [SSEEvent("a\nb")]


def test_close_after_cr_terminated_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.close() == [SSEEvent("a")]


def test_close_without_data_emits_nothing() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"event: x\nid: 1\n: comment")
    assert decoder.close() == []


def test_close_is_idempotent_and_feed_after_close_raises() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: a")
    assert decoder.close() == [SSEEvent("a")]
    assert decoder.close() == []
    with pytest.raises(RuntimeError, match="after close"):
        decoder.feed(b"data: b\n\n")


# -- max_event_size ----------------------------------------------------------------------------


def test_oversized_event_raises() -> None:
    decoder = SSEDecoder(max_event_size=100)
    with pytest.raises(SSEError, match="max_event_size=100") as info:
        decoder.feed(b"data: " + b"x" * 60 + b"\ndata: " + b"y" * 60 + b"\n")
    assert isinstance(info.value, ValueError)


def test_oversized_event_across_many_chunks_raises() -> None:
    decoder = SSEDecoder(max_event_size=1000)
    with pytest.raises(SSEError, match="max_event_size=1000"):
        for _ in range(1000):
            decoder.feed(b"data: 0123456789\n")


def test_endless_line_without_newline_raises() -> None:
    decoder = SSEDecoder(max_event_size=1024)
    with pytest.raises(SSEError, match=r"max_event_size=1024 bytes \(a line of"):
        for _ in range(1000):
            decoder.feed(b"x" * 100)


def test_endless_line_in_one_chunk_raises() -> None:
    with pytest.raises(SSEError, match="max_event_size=10"):
        SSEDecoder(max_event_size=10).feed(b"data: 0123456789")


def test_buffered_data_plus_unterminated_line_counts() -> None:
    decoder = SSEDecoder(max_event_size=20)
    assert decoder.feed(b"data: 0123456789\n") == []  # 11 bytes of data buffer
    with pytest.raises(SSEError, match="11 bytes of data"):
        decoder.feed(b"data: 0123")  # plus a 10-byte line


def test_event_exactly_at_limit_is_fine() -> None:
    # The data buffer is "value\n": 10 bytes for a 9-byte value.
    decoder = SSEDecoder(max_event_size=10)
    assert decoder.feed(b"data:123456789\n\n") == [SSEEvent("123456789")]
    with pytest.raises(SSEError):
        SSEDecoder(max_event_size=10).feed(b"data:1234567890\n\n")


def test_limit_is_in_utf8_bytes() -> None:
    value = "é" * 6  # 6 characters, 12 bytes
    with pytest.raises(SSEError):
        SSEDecoder(max_event_size=12).feed(f"data:{value}\n\n".encode())
    assert decode_all(f"data:{value}\n\n".encode(), max_event_size=13) == [SSEEvent(value)]


def test_limit_is_per_event_not_per_stream() -> None:
    decoder = SSEDecoder(max_event_size=64)
    events = decoder.feed(b"data: 0123456789012345678901234567890123456789\n\n" * 1000)
    assert len(events) == 1000


def test_comments_do_not_count_toward_the_limit() -> None:
    decoder = SSEDecoder(max_event_size=64)
    events = decoder.feed(b": ping ping ping ping ping\n" * 1000 + b"data: x\n\n")
    assert events == [SSEEvent("x")]


def test_decoder_refuses_input_after_error() -> None:
    decoder = SSEDecoder(max_event_size=4)
    with pytest.raises(SSEError):
        decoder.feed(b"data: 12345")
    with pytest.raises(RuntimeError):
        decoder.feed(b"\n\n")
    with pytest.raises(RuntimeError):
        decoder.close()


@pytest.mark.parametrize("bad", [0, -1])
def test_max_event_size_must_be_positive(bad: int) -> None:
    with pytest.raises(ValueError, match="max_event_size"):
        SSEDecoder(max_event_size=bad)


def test_default_max_event_size() -> None:
    assert SSEDecoder().max_event_size == 16 * 1024 * 1024


# -- performance: linear, not quadratic -------------------------------------------------------


class _CountingBuffer(bytearray):
    """A bytearray that counts the bytes appended to it and the bytes read out of it whole
    (copied, searched, split, decoded, sliced)."""

    appended = 0
    read = 0

    def __iadd__(self, other: Any) -> Any:
        _CountingBuffer.appended += len(other)
        return super().__iadd__(other)

    def extend(self, other: Any) -> None:
        _CountingBuffer.appended += len(other)
        super().extend(other)

    def __bytes__(self) -> bytes:
        _CountingBuffer.read += len(self)
        return memoryview(self).tobytes()

    def __getitem__(self, key: Any) -> Any:
        item = super().__getitem__(key)
        _CountingBuffer.read += len(item) if isinstance(key, slice) else 1
        return item


def _reads_whole(name: str) -> Any:
    method = getattr(bytearray, name)

    def counted(self: bytearray, *args: Any, **kwargs: Any) -> Any:
        _CountingBuffer.read += len(self)
        return method(self, *args, **kwargs)

    return counted


for _name in (
    "__add__", "__contains__", "__iter__", "__mul__", "copy", "count", "decode", "find",
    "hex", "index", "partition", "replace", "rfind", "rindex", "rpartition", "rsplit",
    "split", "splitlines", "strip", "rstrip", "lstrip", "translate",
):  # fmt: skip
    setattr(_CountingBuffer, _name, _reads_whole(_name))


def test_long_line_in_tiny_chunks_is_linear(monkeypatch: pytest.MonkeyPatch) -> None:
    # No clock: a 1 MiB line in 64-byte chunks, and two deterministic measures of the work.
    # 1. Copies: tracemalloc's peak during each feed, above the memory in use before it, summed
    #    over the feeds. Appending a chunk costs a constant; re-copying the unterminated line
    #    (bytes + bytes, b"".join, bytes(buffer), decoding it) on every feed costs its length,
    #    about size**2 / 128 bytes in all.
    # 2. Scans: the module's bytearray is replaced by one that counts the bytes read out of it,
    #    so searching the whole buffer for a line end on every feed shows up even without a copy.
    # The wall-clock scaling is measured in benchmarks/bench_codecs.py.
    size, step = 1024 * 1024, 64
    chunks = fixed_chunks(b"x" * size, step)
    monkeypatch.setattr(sse_module, "bytearray", _CountingBuffer, raising=False)
    monkeypatch.setattr(_CountingBuffer, "appended", 0)
    monkeypatch.setattr(_CountingBuffer, "read", 0)
    decoder = SSEDecoder()
    assert decoder.feed(b"data: ") == []
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        copied = 0
        for chunk in chunks:
            before, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            assert decoder.feed(chunk) == []
            _, peak = tracemalloc.get_traced_memory()
            copied += peak - before
    finally:
        if not tracing:
            tracemalloc.stop()
    (event,) = decoder.feed(b"\n\n")
    assert event.data == "x" * size
    assert copied <= 2 * size + 1024 * len(chunks), copied / size
    # The line was collected by appends into the counted buffer and read out whole about once.
    # (If the decoder stops keeping its line in a bytearray, adapt this part of the test.)
    assert _CountingBuffer.appended >= size
    assert _CountingBuffer.read <= 3 * size, _CountingBuffer.read / size


def test_many_events_in_one_chunk() -> None:
    raw = b"".join(b'data: {"i": %d}\n\n' % i for i in range(50_000))
    events = SSEDecoder().feed(raw)
    assert len(events) == 50_000
    assert events[-1].data == '{"i": 49999}'


# -- the fast path: one whole event per chunk ----------------------------------------------------
# ``feed`` recognises the usual chunk shapes (one ``data:`` event, ``event:`` + ``data:``, one
# comment) between events without its line loop. Every chunk below follows a first event, so the
# decoder is between events when it comes; the result must be the reference decoder's.

_PER_EVENT_CHUNKS = [
    b"data: x\n\n",
    b"data: \n\n",
    b"data:\n\n",
    b"data:x\n\n",
    b"data:  two spaces\n\n",
    b"event: e\ndata: x\n\n",
    b"event: \ndata: x\n\n",
    b"event:e\ndata: x\n\n",
    b"event: e\ndata:x\n\n",
    b"event: e\ndata: \n\n",
    b"event: a\nevent: b\ndata: c\n\n",
    b"event: e\n\n",
    b"event: e\ndata: x\nid: 3\n\n",
    b"id: 7\ndata: x\n\n",
    b"retry: 10\ndata: x\n\n",
    b"data: a\ndata: b\n\n",
    b"data: x\n\ndata: y\n\n",
    b"data: x\r\n\r\n",
    b"data: x\n\r\n",
    b": ping\n\n",
    b":\n\n",
    b": a\n: b\n\n",
    b": ping\ndata: x\n\n",
    b"\n\n",
    b"data: caf\xc3\xa9 \xe2\x82\xac\n\n",
    b"data: \xff\xfe broken\n\n",
    b"event: \xc3\n\ndata: x\n\n",
    b"data: nul \x00 and \xef\xbb\xbf bom\n\n",
    b"data: [DONE]\n\n",
    b"dat\n\n",
    b"data\n\n",
]


@pytest.mark.parametrize("chunk", _PER_EVENT_CHUNKS)
def test_whole_event_chunks_decode_as_the_reference(chunk: bytes) -> None:
    first = b"id: 1\nevent: start\ndata: {}\n\n"
    decoder = SSEDecoder()
    events = decoder.feed(first) + decoder.feed(chunk) + decoder.feed(chunk) + decoder.close()
    assert events == reference_decode(first + chunk + chunk)


def test_event_after_a_pending_field_is_not_taken_for_a_whole_one() -> None:
    # A field line without its event's blank line leaves the decoder inside an event: the next
    # chunk, although it looks whole, belongs to that event.
    for pending in (b"event: named\n", b"retry: 5\n", b"data: first\n", b"data: par"):
        decoder = SSEDecoder()
        events = decoder.feed(b"data: a\n\n") + decoder.feed(pending)
        events += decoder.feed(b"data: b\n\n") + decoder.close()
        assert events == reference_decode(b"data: a\n\n" + pending + b"data: b\n\n"), pending


def test_whole_event_after_a_cr_split_across_chunks() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"data: a\r") + decoder.feed(b"\n\r\n") + decoder.feed(b"\ndata: b\n\n")
    assert events == [SSEEvent("a"), SSEEvent("b")]


@pytest.mark.parametrize(
    ("limit", "payload", "fits"),
    [
        (10, b"x" * 9, True),  # 9 bytes + LF = the limit
        (10, b"x" * 10, False),
        (10, ("\u00e9" * 4 + "x").encode(), True),  # 9 bytes of UTF-8
        (10, ("\u00e9" * 5).encode(), False),
        # Each invalid byte becomes U+FFFD, 3 bytes of UTF-8: the data can outgrow its chunk.
        (100, b"\xff" * 33, True),
        (100, b"\xff" * 34, False),
    ],
)
def test_whole_event_chunks_keep_the_size_limit(limit: int, payload: bytes, fits: bool) -> None:
    for head in (b"", b"event: e\n"):
        decoder = SSEDecoder(max_event_size=limit)
        assert decoder.feed(b"data: a\n\n") == [SSEEvent("a")]
        chunk = head + b"data: " + payload + b"\n\n"
        if fits:
            (event,) = decoder.feed(chunk)
            assert event.data == payload.decode("utf-8", "replace")
        else:
            with pytest.raises(
                SSEError, match=rf"max_event_size={limit} bytes \(\d+ bytes of data"
            ):
                decoder.feed(chunk)
            with pytest.raises(RuntimeError):
                decoder.feed(b"data: a\n\n")


def test_whole_event_chunk_after_close_raises() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\n") == [SSEEvent("a")]
    assert decoder.close() == []
    with pytest.raises(RuntimeError, match="after close"):
        decoder.feed(b"data: b\n\n")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(stream=st.lists(st.sampled_from(_PER_EVENT_CHUNKS), max_size=12))
def test_property_whole_event_chunks_in_any_order(stream: list[bytes]) -> None:
    raw = b"".join(stream)
    assert decode_chunks(stream) == reference_decode(raw)
    assert decode_chunks([raw]) == reference_decode(raw)


def _per_event(raw: bytes) -> list[bytes]:
    """``raw`` cut after every blank line, as servers flush their events."""
    pieces = raw.split(b"\n\n")
    return [piece + b"\n\n" for piece in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])


# -- SSEEvent and encode_event -----------------------------------------------------------------


def test_is_done() -> None:
    assert SSEEvent("[DONE]").is_done
    assert not SSEEvent("[DONE] ").is_done
    assert not SSEEvent('"[DONE]"').is_done


def test_event_is_frozen() -> None:
    event = SSEEvent("x")
    with pytest.raises(AttributeError):
        event.data = "y"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        event.other = 1  # type: ignore[attr-defined]


def test_event_value_semantics() -> None:
    # Keyword and positional construction, equality and hashing by value between events only
    # (never with a plain tuple, in either order), the repr the doctests show.
    event = SSEEvent("x", event="e", id="1", retry=5)
    same = SSEEvent("x", "e", "1", 5)
    plain = ("x", "e", "1", 5)
    assert event == same and hash(event) == hash(same) and {event, same} == {event}
    assert (event != same) is False
    assert event != SSEEvent("x", "e", "1", None)
    assert [event == plain, plain == event] == [False, False]
    assert [event != plain, plain != event] == [True, True]
    assert repr(SSEEvent("x")) == "SSEEvent(data='x', event='', id=None, retry=None)"
    assert (event.data, event.event, event.id, event.retry) == plain


def test_encode_event_writes_all_fields() -> None:
    raw = encode_event(SSEEvent("a\nb", event="e", id="7", retry=100))
    assert raw == b"event: e\nid: 7\nretry: 100\ndata: a\ndata: b\n\n"


def test_encode_event_keeps_leading_spaces() -> None:
    event = SSEEvent("  two spaces", event=" one")
    assert decode_all(encode_event(event)) == [event]


def test_encode_event_normalizes_cr_in_data() -> None:
    assert decode_all(encode_event(SSEEvent("a\r\nb\rc"))) == [SSEEvent("a\nb\nc")]


@pytest.mark.parametrize(
    "event",
    [
        SSEEvent("x", event="a\nb"),
        SSEEvent("x", event="a\rb"),
        SSEEvent("x", id="a\nb"),
        SSEEvent("x", id="a\x00b"),
        SSEEvent("x", retry=-1),
    ],
)
def test_encode_event_rejects_unencodable_fields(event: SSEEvent) -> None:
    with pytest.raises(ValueError):
        encode_event(event)


# -- module hygiene --------------------------------------------------------------------------


def test_module_imports_only_stdlib_and_attrs() -> None:
    tree = ast.parse(Path(sse_module.__file__).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    # Sans-IO: the standard library's typing helpers (and attrs) only; no trio, no HTTP client.
    assert imported <= {"__future__", "attrs", "collections", "typing"}, imported


def test_docstring_examples() -> None:
    result = doctest.testmod(sse_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 10
    assert result.failed == 0


def test_public_names_have_docstrings_with_examples() -> None:
    for name in sse_module.__all__:
        doc = getattr(sse_module, name).__doc__
        assert doc and ">>>" in doc, name


# -- Hypothesis: generated streams -----------------------------------------------------------

_line_text = st.text(
    alphabet=st.characters(exclude_characters="\r\n", exclude_categories=("Cs",)),
    max_size=12,
)
_tricky_text = st.one_of(
    _line_text,
    st.sampled_from(["", " ", "  x", ":", "[DONE]", "é€😀", "\x00", '{"a": 1}', "\ufeff"]),
)
_line_ends = st.sampled_from(["\n", "\r\n", "\r"])

_item = st.one_of(
    st.tuples(st.just("data"), _tricky_text),
    st.tuples(st.just("event"), _tricky_text),
    st.tuples(st.just("id"), _tricky_text),
    st.tuples(st.just("retry"), st.integers(0, 10**6).map(str) | st.sampled_from(["x", "-1", ""])),
    st.tuples(st.just(":"), _tricky_text),
    st.tuples(st.sampled_from(["foo", "Data", "ev"]), _tricky_text),
)


@st.composite
def sse_streams(draw: st.DrawFn) -> tuple[bytes, list[SSEEvent]]:
    """A random stream and the events a correct decoder must produce, from a model that knows
    the structure (so it does not re-implement line splitting)."""
    blocks = draw(st.lists(st.lists(_item, max_size=6), max_size=6))
    out: list[str] = []
    expected: list[SSEEvent] = []
    last_id: str | None = None
    prev_end = ""

    def emit(line: str) -> None:
        nonlocal prev_end
        end = draw(_line_ends)
        if line == "" and prev_end == "\r" and end == "\n":
            end = "\r"  # "\r" + "\n" would be one CRLF, not two line ends
        out.append(line + end)
        prev_end = end

    for index, block in enumerate(blocks):
        data: list[str] = []
        name = ""
        retry: int | None = None
        for field, value in block:
            if field == ":":
                emit(":" + value)
                continue
            if value == "" and draw(st.booleans()):
                emit(field)  # no colon at all
            elif value[:1] != " " and draw(st.booleans()):
                emit(f"{field}:{value}")
            else:
                emit(f"{field}: {value}")
            if field == "data":
                data.append(value)
            elif field == "event":
                name = value
            elif field == "id" and "\0" not in value:
                last_id = value
            elif field == "retry" and value.isdigit():
                retry = int(value)
        if data:
            expected.append(SSEEvent("\n".join(data), name, last_id, retry))
        last = index == len(blocks) - 1
        if not (last and draw(st.booleans())):
            emit("")  # the blank line (the last one may be missing: close() dispatches)
        if last and out and draw(st.booleans()):
            out[-1] = out[-1].rstrip("\r\n")  # no final line end at all
    prefix = "\ufeff" if draw(st.booleans()) else ""
    return (prefix + "".join(out)).encode(), expected


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(stream=sse_streams(), data=st.data())
def test_property_any_split_gives_the_same_events(
    stream: tuple[bytes, list[SSEEvent]], data: st.DataObject
) -> None:
    raw, expected = stream
    whole = decode_all(raw)
    assert whole == expected
    points = data.draw(st.lists(st.integers(0, len(raw)), max_size=12))
    assert decode_chunks(split_at(raw, points)) == expected
    assert decode_chunks(fixed_chunks(raw, 1)) == expected
    assert decode_chunks(_per_event(raw)) == expected


_events = st.builds(
    SSEEvent,
    data=st.text(alphabet=st.characters(exclude_characters="\r", exclude_categories=("Cs",))),
    event=_line_text,
    id=st.none() | _line_text.filter(lambda s: "\0" not in s),
    retry=st.none() | st.integers(0, 2**40),
)


@given(events=st.lists(_events, max_size=8), data=st.data())
def test_property_encode_decode_round_trip(events: list[SSEEvent], data: st.DataObject) -> None:
    raw = b"".join(encode_event(e) for e in events)
    expected: list[SSEEvent] = []
    last_id: str | None = None
    for e in events:  # an id persists to later events that do not set one
        last_id = e.id if e.id is not None else last_id
        expected.append(SSEEvent(e.data, e.event, last_id, e.retry))
    points = data.draw(st.lists(st.integers(0, len(raw)), max_size=10))
    assert decode_chunks(split_at(raw, points)) == expected


_fragments = st.sampled_from(
    [
        b"data",
        b"event",
        b"id",
        b"retry",
        b":",
        b": ",
        b" ",
        b"\n",
        b"\r",
        b"\r\n",
        b"\n\n",
        b"x",
        b"12",
        b"\x00",
        b"\xc3\xa9",
        b"\xc3",
        b"\xf0\x9f\x98\x80",
        b"\xef\xbb\xbf",
        b"\xff",
    ]
)


@settings(max_examples=400)
@given(parts=st.lists(_fragments, max_size=40), data=st.data())
def test_property_matches_reference_decoder_on_arbitrary_bytes(
    parts: list[bytes], data: st.DataObject
) -> None:
    raw = b"".join(parts)
    expected = reference_decode(raw)
    assert decode_all(raw) == expected
    points = data.draw(st.lists(st.integers(0, len(raw)), max_size=12))
    assert decode_chunks(split_at(raw, points)) == expected


# -- recorded real traffic ---------------------------------------------------------------------

RECORDED = Path(__file__).resolve().parents[2] / "shared" / "wire" / "recorded"


def _recorded_streams() -> list[Any]:
    if not RECORDED.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{RECORDED} is missing"))]
    params = []
    for path in sorted(RECORDED.glob("*/*.json")):
        if json.loads(path.read_text()).get("stream"):
            params.append(pytest.param(path, id=f"{path.parent.name}/{path.stem}"))
    if not params:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no streams in {RECORDED}"))]
    return params


@pytest.mark.parametrize("path", _recorded_streams())
def test_recorded_stream_decodes(path: Path) -> None:
    record = json.loads(path.read_text())
    response = record["response"]
    raw = response["body"].encode()
    events = decode_all(raw)
    assert events == reference_decode(raw)

    # Split invariance at a few chunk sizes, seeded by the file name for reproducibility.
    assert decode_chunks(_per_event(raw)) == events  # one chunk per event, as servers flush
    rng = random.Random(path.name)
    for size in (rng.randint(1, 8), rng.randint(9, 300), rng.randint(300, 8000)):
        assert decode_chunks(fixed_chunks(raw, size)) == events, size
    points = [rng.randint(0, len(raw)) for _ in range(50)]
    assert decode_chunks(split_at(raw, points)) == events

    if response["status"] != 200 or "event-stream" not in response["content_type"]:
        return  # an HTTP error body (JSON) is not SSE: it must decode without error, that's all
    payloads = [e for e in events if e.data]
    assert payloads, "a 200 event stream with no data events"
    for event in payloads:
        if event.is_done:
            continue
        body = json.loads(event.data)  # every real payload is one JSON document
        named = event.event and isinstance(body, dict) and "type" in body
        if named and record["api"] != "openai-chat":
            # Anthropic and Responses name each event after the payload's type.
            assert event.event == body["type"]
    if "data: [DONE]" in response["body"]:
        assert events[-1].is_done  # nothing follows the sentinel
        assert sum(e.is_done for e in events) == 1
