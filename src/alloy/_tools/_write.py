"""The ``write`` tool, and the atomic-write helper the ``edit`` tool shares."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import trio

from .._errors import ToolError
from ._tool import ToolContext

__all__ = ["WriteTool", "atomic_write", "file_lock", "os_reason"]

# Writers and editors of the same file, even from parallel tool calls or different Trio runs in
# one process, take the same lock, so an edit never reads a file another edit is replacing and a
# change is never lost. The locks are striped by path: a fixed number, no unbounded dict.
_LOCKS = tuple(threading.Lock() for _ in range(64))


def file_lock(path: Path) -> threading.Lock:
    """The lock that serialises writes and edits of ``path`` within this process."""
    return _LOCKS[hash(os.fspath(path)) % len(_LOCKS)]


def os_reason(exc: OSError) -> str:
    """A short, readable reason for an ``OSError`` ("permission denied", "no space left...")."""
    if exc.errno == errno.EACCES or exc.errno == errno.EPERM:
        return "permission denied"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically; blocking, so call it from a worker thread.

    The bytes go to a temporary file in the same directory, which is flushed, fsynced and then
    ``os.replace``-d over ``path``: a reader sees the old content or the new, never a mix, and a
    crash leaves the old file intact. An existing file keeps its permission bits (and, where
    allowed, its owner and group); a new file gets the default mode (0o666 minus the umask).
    An existing file that is not writable is refused with ``PermissionError`` rather than
    silently replaced. Raises ``OSError`` on failure, leaving no temporary file behind.
    """
    try:
        existing: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        existing = None
    if existing is not None:
        if stat.S_ISDIR(existing.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", os.fspath(path))
        if not os.access(path, os.W_OK):
            raise PermissionError(errno.EACCES, "permission denied", os.fspath(path))
    directory = path.parent
    while True:
        temporary = directory / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            # 0o666 lets the umask decide a new file's mode, as a plain open() would.
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue
        break
    try:
        try:
            if existing is not None:
                os.fchmod(fd, stat.S_IMODE(existing.st_mode))
                if (existing.st_uid, existing.st_gid) != (os.geteuid(), os.getegid()):
                    # Not ours to give away? Then the new file keeps our ownership.
                    with contextlib.suppress(OSError):
                        os.fchown(fd, existing.st_uid, existing.st_gid)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    # Make the rename itself durable. Not every file system supports fsync on a directory.
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _make_parents(path: Path) -> None:
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ToolError(
            f"Cannot create directory {parent} for {path}: a file with that name exists"
        ) from None
    except NotADirectoryError:
        raise ToolError(
            f"Cannot create directory {parent} for {path}: part of that path is a file, "
            "not a directory"
        ) from None
    except OSError as exc:
        raise ToolError(f"Cannot create directory {parent} for {path}: {os_reason(exc)}") from None


_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {
        "path": {
            "type": "string",
            "description": "Path of the file to write, relative to the working directory or "
            "absolute.",
        },
        "content": {
            "type": "string",
            "description": "The complete new content of the file.",
        },
    },
    "required": ["path", "content"],
    "additionalProperties": False,
}


@attrs.frozen(kw_only=True)
class WriteTool:
    """Write a whole file, creating parent folders; the ready instance is ``alloy.tools.Write``.

    The file is replaced atomically (a temporary file, fsync, rename), so a reader never sees half
    of it; an overwritten file keeps its permission bits. The content is written as UTF-8, exactly
    as given (no newline translation). Paths go through ``ToolContext.resolve_path``, so nothing
    outside the working directory and ``allowed_roots`` can be written::

        from alloy.tools import Write

        await Write.execute({"path": "notes/todo.txt", "content": "buy milk\\n"}, context)
        # 'Wrote 9 bytes to /project/notes/todo.txt'

    ``timeout`` (seconds), if set, overrides the run's ``tool_timeout`` for this tool.
    """

    timeout: float | None = None

    name = "write"
    description = (
        "Write a file, replacing its whole content, and create missing parent folders. "
        "Use it to create new files or rewrite small ones; to change part of an existing file, "
        "prefer the edit tool."
    )
    input_schema = _SCHEMA
    sequential = False

    async def execute(self, arguments: Mapping[str, Any], context: ToolContext) -> str:
        """Write ``arguments["content"]`` to ``arguments["path"]``; return a one-line summary."""
        raw_path = arguments.get("path")
        content = arguments.get("content")
        if not isinstance(raw_path, str):
            raise ToolError("path must be a string")
        if not isinstance(content, str):
            raise ToolError("content must be a string")
        return await trio.to_thread.run_sync(
            # Not abandoned on cancel: a write must not land after its call was answered.
            _write,
            context,
            raw_path,
            content,
            abandon_on_cancel=False,
        )


def _write(context: ToolContext, raw_path: str, content: str) -> str:
    path = context.resolve_path(raw_path)
    try:
        data = content.encode("utf-8")
    except UnicodeEncodeError:
        raise ToolError(
            "content is not valid Unicode (it contains a lone surrogate); nothing was written"
        ) from None
    if path.is_dir():
        raise ToolError(f"Cannot write {path}: it is a directory")
    _make_parents(path)
    with file_lock(path):
        try:
            atomic_write(path, data)
        except IsADirectoryError:
            raise ToolError(f"Cannot write {path}: it is a directory") from None
        except OSError as exc:
            raise ToolError(f"Cannot write {path}: {os_reason(exc)}") from None
    return f"Wrote {len(data)} bytes to {path}"
