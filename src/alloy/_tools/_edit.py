"""The ``edit`` tool: exact search-and-replace in a text file."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import trio

from .._errors import ToolError
from ._tool import ToolContext
from ._write import atomic_write, file_lock, os_reason

__all__ = ["EditTool"]

_BOM = "\ufeff"

_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {
        "path": {
            "type": "string",
            "description": "Path of the file to edit, relative to the working directory or "
            "absolute.",
        },
        "old_string": {
            "type": "string",
            "description": "The exact text to replace, including whitespace and indentation. "
            "It must occur exactly once unless replace_all is true.",
        },
        "new_string": {
            "type": "string",
            "description": "The text to put in its place (must differ from old_string).",
        },
        "replace_all": {
            "type": "boolean",
            "default": False,
            "description": "Replace every occurrence instead of requiring exactly one. "
            "Default false.",
        },
    },
    "required": ["path", "old_string", "new_string"],
    "additionalProperties": False,
}


@attrs.frozen(kw_only=True)
class EditTool:
    """Replace exact text in a file; the ready instance is ``alloy.tools.Edit``.

    ``old_string`` must occur exactly once (or set ``replace_all``); an empty ``old_string``, a
    no-op edit, no match and an ambiguous match are errors the model sees. Files with CRLF line
    endings are matched even when the model writes LF, and keep CRLF; a UTF-8 byte-order mark is
    kept. The file is rewritten atomically and keeps its permission bits; edits of one file from
    parallel tool calls are serialised, so none is lost. Paths go through
    ``ToolContext.resolve_path``::

        from alloy.tools import Edit

        await Edit.execute(
            {"path": "app.py", "old_string": "DEBUG = True", "new_string": "DEBUG = False"},
            context,
        )
        # 'Replaced 1 occurrence in /project/app.py'

    ``timeout`` (seconds), if set, overrides the run's ``tool_timeout`` for this tool.
    """

    timeout: float | None = None

    name = "edit"
    description = (
        "Replace exact text in a file. old_string must match the file exactly (whitespace and "
        "indentation included) and occur exactly once, unless replace_all is true; include "
        "enough surrounding lines to make it unique. Read the file first. To create a file or "
        "rewrite it entirely, use the write tool."
    )
    input_schema = _SCHEMA
    sequential = False

    async def execute(self, arguments: Mapping[str, Any], context: ToolContext) -> str:
        """Apply the replacement; return how many occurrences were replaced."""
        raw_path = arguments.get("path")
        old = arguments.get("old_string")
        new = arguments.get("new_string")
        replace_all = arguments.get("replace_all", False)
        if not isinstance(raw_path, str):
            raise ToolError("path must be a string")
        if not isinstance(old, str) or not isinstance(new, str):
            raise ToolError("old_string and new_string must be strings")
        if not isinstance(replace_all, bool):
            raise ToolError("replace_all must be true or false")
        if not old:
            raise ToolError(
                "old_string must not be empty; to create a file or replace its whole content, "
                "use the write tool"
            )
        if old == new:
            raise ToolError(
                "old_string and new_string are identical; the edit would change nothing"
            )
        return await trio.to_thread.run_sync(
            # Not abandoned on cancel: an edit must not land after its call was answered.
            _edit,
            context,
            raw_path,
            old,
            new,
            replace_all,
            abandon_on_cancel=False,
        )


def _edit(context: ToolContext, raw_path: str, old: str, new: str, replace_all: bool) -> str:
    path = context.resolve_path(raw_path)
    with file_lock(path):
        bom, text = _load(path)
        crlf = text.count("\r\n") * 2 > text.count("\n")  # most line endings are CRLF
        count = text.count(old)
        if count == 0:
            # The model often writes LF for a CRLF file (and, rarely, the other way round).
            alternative = _to_crlf(old) if crlf else old.replace("\r\n", "\n")
            if alternative != old:
                count = text.count(alternative)
                old = alternative
                if not crlf:
                    new = new.replace("\r\n", "\n")
        if crlf:
            new = _to_crlf(new)
        if count == 0:
            raise ToolError(
                f"old_string not found in {path}; it must match the file exactly, whitespace "
                "and indentation included (read the file to see its current content)"
            )
        if old == new:
            raise ToolError(
                f"old_string and new_string differ only in line endings, which edit keeps as "
                f"CRLF in {path}; the edit would change nothing"
            )
        if count > 1 and not replace_all:
            raise ToolError(
                f"old_string appears {count} times in {path}; add more surrounding context to "
                "make it unique, or set replace_all to true to replace every occurrence"
            )
        text = text.replace(old, new) if replace_all else text.replace(old, new, 1)
        try:
            atomic_write(path, ((_BOM if bom else "") + text).encode("utf-8"))
        except OSError as exc:
            raise ToolError(f"Cannot write {path}: {os_reason(exc)}") from None
    return f"Replaced {count} occurrence{'' if count == 1 else 's'} in {path}"


def _load(path: Path) -> tuple[bool, str]:
    """Whether the file starts with a UTF-8 BOM, and its text without it."""
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise ToolError(f"{path} is a directory, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise ToolError(f"{path} is not a regular file")
        data = path.read_bytes()
    except FileNotFoundError:
        raise ToolError(
            f"File not found: {path} (to create a new file, use the write tool)"
        ) from None
    except OSError as exc:
        raise ToolError(f"Cannot read {path}: {os_reason(exc)}") from None
    if b"\x00" in data[:8192]:
        raise ToolError(f"{path} is a binary file; edit only changes UTF-8 text files")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ToolError(
            f"{path} is not valid UTF-8 text; edit only changes UTF-8 text files"
        ) from None
    if text.startswith(_BOM):
        return True, text[1:]
    return False, text


def _to_crlf(text: str) -> str:
    """``text`` with every line ending as CRLF (existing CRLFs stay as they are)."""
    return text.replace("\r\n", "\n").replace("\n", "\r\n")
