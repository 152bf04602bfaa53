"""The ``read`` tool: a text file, one page of numbered lines at a time."""

from __future__ import annotations

import codecs
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import attrs
import trio

from .._errors import ToolError
from ._tool import ToolContext
from ._write import os_reason

__all__ = ["ReadTool"]

DEFAULT_LIMIT = 2000
MAX_LINE_CHARS = 2000
_SNIFF_BYTES = 8192
# A line of this many bytes holds more than MAX_LINE_CHARS characters (UTF-8 uses at most 4
# bytes a character), so reading this much of a line is always enough to show its first
# MAX_LINE_CHARS characters, and a line is never read into memory whole.
_LINE_READ_BYTES = 4 * MAX_LINE_CHARS + 4
_COUNT_BLOCK = 1 << 20
_BOM = "\ufeff"

_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {
        "path": {
            "type": "string",
            "description": "Path of the file to read, relative to the working directory or "
            "absolute.",
        },
        "offset": {
            "type": "integer",
            "minimum": 1,
            "description": "Number of the first line to show (1-based). Default 1.",
        },
        "limit": {
            "type": "integer",
            "minimum": 1,
            "description": f"Maximum number of lines to show. Default {DEFAULT_LIMIT}.",
        },
    },
    "required": ["path"],
    "additionalProperties": False,
}


@attrs.frozen(kw_only=True)
class ReadTool:
    """Read a text file as numbered lines; the ready instance is ``alloy.tools.Read``.

    Each line is shown as ``f"{number:>6}\\t{line}"``. At most ``limit`` lines (default 2000) are
    shown from line ``offset`` (default 1); when more follow, a last line says how many there
    are and which ``offset`` continues. The file is streamed, never loaded whole, and lines over
    2000 characters are cut. Binary files (a NUL byte, or no valid UTF-8, in the first 8 KiB) are
    refused; a stray invalid byte later on shows as U+FFFD. Paths go through
    ``ToolContext.resolve_path``::

        from alloy.tools import Read

        text = await Read.execute({"path": "src/app.py", "offset": 101, "limit": 50}, context)
        # '   101\\timport sys\\n   102\\t...'

    ``timeout`` (seconds), if set, overrides the run's ``tool_timeout`` for this tool.
    """

    timeout: float | None = None

    name = "read"
    description = (
        "Read a text file. Returns its lines numbered from 1 (number, tab, line), at most "
        f"{DEFAULT_LIMIT} lines per call starting at `offset`; a footer tells how to continue "
        f"when more lines follow. Lines longer than {MAX_LINE_CHARS} characters are cut. "
        "Binary files are refused."
    )
    input_schema = _SCHEMA
    sequential = False

    async def execute(self, arguments: Mapping[str, Any], context: ToolContext) -> str:
        """Return one page of ``arguments["path"]`` as numbered lines."""
        raw_path = arguments.get("path")
        if not isinstance(raw_path, str):
            raise ToolError("path must be a string")
        offset = _positive_int(arguments, "offset", 1)
        limit = _positive_int(arguments, "limit", DEFAULT_LIMIT)
        return await trio.to_thread.run_sync(
            _read, context, raw_path, offset, limit, abandon_on_cancel=True
        )


def _positive_int(arguments: Mapping[str, Any], key: str, default: int) -> int:
    value = arguments.get(key)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ToolError(f"{key} must be an integer of at least 1, got {value!r}")
    return value


def _read(context: ToolContext, raw_path: str, offset: int, limit: int) -> str:
    path = context.resolve_path(raw_path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ToolError(f"File not found: {path}") from None
    except OSError as exc:
        raise ToolError(f"Cannot read {path}: {os_reason(exc)}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ToolError(f"{path} is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        # FIFOs, sockets and devices may block forever or never end.
        raise ToolError(f"{path} is not a regular file")
    try:
        with open(path, "rb") as file:
            return _page(file, path, offset, limit)
    except OSError as exc:
        raise ToolError(f"Cannot read {path}: {os_reason(exc)}") from None


def _page(file: BinaryIO, path: Path, offset: int, limit: int) -> str:
    head = file.read(_SNIFF_BYTES)
    if not head:
        return f"[{path} is empty]"
    if b"\x00" in head:
        raise ToolError(f"{path} is a binary file; read only shows text files")
    try:
        # Not final: the sniffed block may end in the middle of a character.
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        raise ToolError(
            f"{path} is a binary file (not UTF-8 text); read only shows text files"
        ) from None
    file.seek(0)

    number = 0
    while number < offset - 1:
        if not _skip_line(file):
            raise ToolError(
                f"offset {offset} is past the end of {path}, which has {number} line"
                f"{'' if number == 1 else 's'}"
            )
        number += 1

    shown: list[str] = []
    while len(shown) < limit:
        line = _read_line(file)
        if line is None:
            break
        number += 1
        if number == 1 and line.startswith(_BOM):
            line = line[1:]
        shown.append(f"{number:>6}\t{line}")
    if not shown:
        raise ToolError(
            f"offset {offset} is past the end of {path}, which has {number} line"
            f"{'' if number == 1 else 's'}"
        )

    remaining = _count_lines(file)
    text = "\n".join(shown)
    if remaining:
        total = number + remaining
        text += (
            f"\n\n[Showing lines {offset}-{number} of {total}. "
            f"Use offset={number + 1} to continue.]"
        )
    return text


def _read_line(file: BinaryIO) -> str | None:
    """The next line without its line ending, cut to MAX_LINE_CHARS; None at the end of file."""
    chunk = file.readline(_LINE_READ_BYTES)
    if not chunk:
        return None
    if chunk.endswith(b"\n"):
        chunk = chunk[:-2] if chunk.endswith(b"\r\n") else chunk[:-1]
    elif len(chunk) == _LINE_READ_BYTES:
        _skip_line(file)  # the rest of an over-long line
    line = chunk.decode("utf-8", errors="replace")
    if len(line) > MAX_LINE_CHARS:
        line = line[:MAX_LINE_CHARS] + f" [... line cut at {MAX_LINE_CHARS} characters]"
    return line


def _skip_line(file: BinaryIO) -> bool:
    """Move past the next line; False if there was none."""
    chunk = file.readline(_COUNT_BLOCK)
    if not chunk:
        return False
    while not chunk.endswith(b"\n"):
        chunk = file.readline(_COUNT_BLOCK)
        if not chunk:
            break
    return True


def _count_lines(file: BinaryIO) -> int:
    """How many lines are left, counted in large blocks; a last line needs no newline."""
    count = 0
    last = b"\n"
    while block := file.read(_COUNT_BLOCK):
        count += block.count(b"\n")
        last = block[-1:]
    return count + (last != b"\n")
