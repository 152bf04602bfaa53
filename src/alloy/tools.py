"""The built-in tools: read, write and edit files, run shell commands.

``Read``, ``Write``, ``Edit`` and ``Bash`` are ready to use; the classes ``ReadTool``,
``WriteTool``, ``EditTool`` and ``BashTool`` make configured ones. File paths are resolved by
``ToolContext.resolve_path``: nothing outside the run's working directory and ``allowed_roots``
can be read or written (symlinks included). ``Bash`` is **not** sandboxed: a command can do
whatever the Python process can; read ``BashTool``'s documentation before giving it to a model::

    import alloy
    from alloy.tools import Bash, BashTool, Edit, Read, Write

    result = await alloy.run(
        "Fix the failing test in tests/test_parser.py",
        provider=provider,
        tools=[Read, Write, Edit, BashTool(max_timeout=600)],
        working_directory="/home/me/project",
    )
"""

from __future__ import annotations

from ._tools._bash import BashTool
from ._tools._edit import EditTool
from ._tools._read import ReadTool
from ._tools._write import WriteTool

__all__ = ["Bash", "BashTool", "Edit", "EditTool", "Read", "ReadTool", "Write", "WriteTool"]

Read = ReadTool()
"""Read a text file as numbered lines, a page at a time (``ReadTool()``)."""

Write = WriteTool()
"""Write a whole file atomically, creating parent folders (``WriteTool()``)."""

Edit = EditTool()
"""Replace exact text in a file (``EditTool()``)."""

Bash = BashTool()
"""Run a shell command with bash: 60 s default timeout, 300 s at most, scrubbed environment,
output capped at 30,000 bytes; not a sandbox (``BashTool()``)."""
