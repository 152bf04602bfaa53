"""The ``bash`` tool: run a shell command, own its whole process group, cap its output.

Not a sandbox. A command runs with the permissions of the Python process: it can read, write and
delete any file that process can, reach the network, and start programs. ``ToolContext``'s
working directory is only where the command starts; ``allowed_roots`` do not apply to it.

What the tool does guarantee:

- The command runs in a new session (its own process group). When it finishes, times out, or
  the caller's cancel scope is cancelled, the whole group gets SIGTERM, then SIGKILL after
  ``kill_grace`` seconds, so background jobs and grandchildren do not outlive the call. (A
  program that deliberately leaves the group, with ``setsid`` for instance, escapes this.)
- stdin is ``/dev/null``; stdout and stderr are read as they come, and only the first and last
  parts, ``max_output_bytes`` in all, are kept.
- With ``env="scrubbed"`` (the default) variables whose names look like credentials (``*KEY*``,
  ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``, ``AWS_*``...) are removed from the environment.
  Scrubbing is a courtesy against accidental leaks (``env``, ``printenv``, a crash dump), not a
  barrier: the command can still read ``~/.aws/credentials``, ``.env`` files and the like.

``restricted=True`` runs ``bash -r`` (restricted bash). It blocks ``cd``, command names that
contain ``/``, redirecting output to files (``>``, ``>>``, ``&>``; ``>&2`` still works),
changing ``PATH``, ``SHELL``, ``ENV`` or ``BASH_ENV``, and ``exec``. It is trivially escaped:
``bash -c 'cd / && ...'``, any interpreter (``python3 -c ...``), ``env``, ``sh``; and absolute
paths as arguments (``cat /etc/passwd``) are not restricted at all. It guards against slips,
not against a model or a prompt injection that wants out.

For real isolation run the agent, or just its commands, in a container or a VM, or as a separate
unprivileged user with only the files it needs.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
from collections.abc import Mapping
from typing import Any, Literal

import attrs
import trio

from .._errors import ConfigError, ToolError, ToolTimeout
from ._tool import ToolContext
from ._write import os_reason

__all__ = ["BashTool", "scrub_environment"]

_SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH", "PRIVATE")
_SECRET_PREFIXES = ("AWS_", "AZURE_", "GCP_", "GOOGLE_APPLICATION")
_CHUNK = 65536
# How long the output pipe may stay open once the command itself has exited: a background job
# (``sleep 30 & echo hi``) keeps it open, and must not keep the call waiting.
_PIPE_GRACE = 0.25
_POLL = 0.05
_BASE_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {"command": {"type": "string"}, "timeout": {"type": "number"}},
    "required": ["command"],
    "additionalProperties": False,
}


def _looks_secret(name: str) -> bool:
    upper = name.upper()
    return any(word in upper for word in _SECRET_WORDS) or upper.startswith(_SECRET_PREFIXES)


def scrub_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without the variables whose names look like credentials.

    A name is dropped when it contains KEY, TOKEN, SECRET, PASSWORD, PASSWD, CREDENTIAL, AUTH or
    PRIVATE, or starts with AWS_, AZURE_, GCP_ or GOOGLE_APPLICATION (case-insensitive).

    >>> scrub_environment({"PATH": "/usr/bin", "OPENAI_API_KEY": "sk-..."})
    {'PATH': '/usr/bin'}
    """
    return {name: value for name, value in environ.items() if not _looks_secret(name)}


class _Output:
    """The first and last bytes of a stream, at most ``cap`` in all, and how many were seen."""

    def __init__(self, cap: int) -> None:
        self.head_cap = cap // 2
        self.tail_cap = cap - self.head_cap
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, chunk: bytes | bytearray) -> None:
        self.total += len(chunk)
        room = self.head_cap - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            excess = len(self.tail) - self.tail_cap
            if excess > 0:
                del self.tail[:excess]

    def render(self) -> str:
        omitted = self.total - len(self.head) - len(self.tail)
        if not omitted:
            return (self.head + self.tail).decode("utf-8", errors="replace")
        head, tail = bytes(self.head), bytes(self.tail)
        # Cut at character boundaries: drop a partial UTF-8 sequence at the end of the head and
        # continuation bytes at the start of the tail (at most 3 bytes either side).
        for back in range(1, min(4, len(head)) + 1):
            byte = head[-back]
            if byte < 0x80:
                break
            if byte >= 0xC0:  # a lead byte: is its sequence complete?
                needed = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
                if back < needed:
                    omitted += back
                    head = head[:-back]
                break
        skip = 0
        while skip < min(3, len(tail)) and 0x80 <= tail[skip] < 0xC0:
            skip += 1
        omitted += skip
        tail = tail[skip:]
        return (
            head.decode("utf-8", errors="replace")
            + f"\n\n[... {omitted} bytes of output omitted ...]\n\n"
            + tail.decode("utf-8", errors="replace")
        )


@attrs.frozen(kw_only=True, slots=False)
class BashTool:
    """Run a shell command with ``bash -c``; the ready instance is ``alloy.tools.Bash``.

    **Not a sandbox**: the command can do anything the Python process can (see the module
    documentation). What it does: the command runs in its own process group, which is killed
    (SIGTERM, then SIGKILL after ``kill_grace`` seconds) when the command ends, times out or is
    cancelled, so no background job or grandchild outlives the call; stdin is ``/dev/null``;
    output (stdout and stderr together) is read as it comes and capped at ``max_output_bytes``,
    keeping its beginning and end; credential-like variables are removed from the environment.

    The result is the output followed by a line ``exit code: N``; a non-zero exit is a normal
    result, not an error. The model may pass ``timeout`` (seconds) up to ``max_timeout``; a
    timeout is an error result that includes the output so far.

    - ``env``: ``"scrubbed"`` (the process environment minus names containing KEY, TOKEN,
      SECRET, PASSWORD, PASSWD, CREDENTIAL, AUTH, PRIVATE or starting with AWS_, AZURE_, GCP_,
      GOOGLE_APPLICATION), ``"inherit"`` (all of it), or a mapping used as the whole
      environment (include ``PATH``).
    - ``restricted``: run ``bash -r``, which blocks ``cd``, commands with ``/`` in their name,
      output redirection to files and changing ``PATH``. Trivially escaped (``bash -c``,
      ``python3 -c``, absolute paths as arguments): a guard against slips, not a security
      boundary. For isolation use a container, a VM or a separate unprivileged user.

    ::

        from alloy.tools import Bash, BashTool

        await Bash.execute({"command": "ls"}, context)          # 'README.md\\nsrc\\nexit code: 0'
        slow = BashTool(default_timeout=120, max_timeout=900, env={"PATH": "/usr/bin:/bin"})
    """

    default_timeout: float = 60.0
    max_timeout: float = 300.0
    max_output_bytes: int = 30_000
    env: Literal["scrubbed", "inherit"] | Mapping[str, str] = "scrubbed"
    restricted: bool = False
    kill_grace: float = 2.0

    name = "bash"
    description = "Run a shell command with bash."  # replaced per instance, see below
    input_schema = _BASE_SCHEMA  # replaced per instance, see below
    sequential = False

    def __attrs_post_init__(self) -> None:
        for field in ("default_timeout", "max_timeout"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigError(f"BashTool: {field} must be a positive number, got {value!r}")
        if not (isinstance(self.kill_grace, int | float) and 0 <= self.kill_grace < math.inf):
            raise ConfigError(
                f"BashTool: kill_grace must be a non-negative number, got {self.kill_grace!r}"
            )
        if isinstance(self.max_output_bytes, bool) or not isinstance(self.max_output_bytes, int):
            raise ConfigError("BashTool: max_output_bytes must be an integer")
        if self.max_output_bytes < 1:
            raise ConfigError(
                f"BashTool: max_output_bytes must be at least 1, got {self.max_output_bytes}"
            )
        if isinstance(self.env, str):
            if self.env not in ("scrubbed", "inherit"):
                raise ConfigError(
                    f"BashTool: env must be 'scrubbed', 'inherit' or a mapping, got {self.env!r}"
                )
        elif not isinstance(self.env, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.env.items()
        ):
            raise ConfigError("BashTool: env must be 'scrubbed', 'inherit' or a str->str mapping")
        default = min(self.default_timeout, self.max_timeout)
        # The tool is frozen, but the text the model sees states this instance's limits.
        object.__setattr__(self, "description", self._describe(default))
        object.__setattr__(self, "input_schema", self._schema(default))

    @property
    def timeout(self) -> float:
        """The executor's hard bound for one call: ``max_timeout`` plus time to kill and reap.

        ``max_timeout + kill_grace + 5`` (307 s by default), or more when ``kill_grace`` is so
        long that the bounded clean-up (at most ``2 * kill_grace + 1`` s) needs it.
        """
        return self.max_timeout + max(self.kill_grace + 5, 2 * self.kill_grace + 3)

    def _describe(self, default: float) -> str:
        shell = "restricted bash (bash -r)" if self.restricted else "bash"
        return (
            f"Run a shell command with {shell} in the working directory and return its output "
            "(stdout and stderr together) followed by a line 'exit code: N'; a non-zero exit code "
            "is reported, not treated as a failure. stdin is empty, so interactive commands "
            f"fail. The command is stopped after `timeout` seconds (default {default:g}, at most "
            f"{self.max_timeout:g}). Background jobs are killed when the command finishes, so "
            "servers and daemons cannot be left running. Output longer than "
            f"{self.max_output_bytes} bytes is shortened in the middle."
        )

    def _schema(self, default: float) -> Mapping[str, Any]:
        return {
            "type": "object",
            "properties": {
                "command": {"type": "string", "description": "The shell command to run."},
                "timeout": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "description": f"Timeout in seconds (default {default:g}, at most "
                    f"{self.max_timeout:g}).",
                },
            },
            "required": ["command"],
            "additionalProperties": False,
        }

    def _timeout_for(self, value: object) -> float:
        if value is None:
            return min(self.default_timeout, self.max_timeout)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ToolError(f"timeout must be a positive number of seconds, got {value!r}")
        return min(float(value), self.max_timeout)

    def _environment(self) -> dict[str, str]:
        if self.env == "scrubbed":
            return scrub_environment(os.environ)
        if self.env == "inherit":
            return dict(os.environ)
        assert not isinstance(self.env, str)
        return dict(self.env)

    async def execute(self, arguments: Mapping[str, Any], context: ToolContext) -> str:
        """Run ``arguments["command"]``; return its output and exit code."""
        command = arguments.get("command")
        if not isinstance(command, str):
            raise ToolError("command must be a string")
        if not command.strip():
            raise ToolError("command must not be empty")
        if "\x00" in command:
            raise ToolError("command must not contain NUL characters")
        timeout = self._timeout_for(arguments.get("timeout"))
        argv = ["bash", "-rc" if self.restricted else "-c", command]
        try:
            process = await trio.lowlevel.open_process(
                argv,
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=context.working_directory,
                env=self._environment(),
            )
        except OSError as exc:
            raise ToolError(
                f"Cannot start bash in {context.working_directory}: {os_reason(exc)}"
            ) from None
        output = _Output(self.max_output_bytes)
        timed_out = False
        try:
            with trio.move_on_after(timeout) as scope:
                await _collect(process, output)
            timed_out = scope.cancelled_caught
        finally:
            # However we leave (done, timed out, cancelled, crashed), the group dies and the
            # process is reaped; shielded so a cancellation cannot skip it, bounded so a process
            # stuck in the kernel cannot hang the caller.
            with trio.move_on_after(self.kill_grace * 2 + 1, shield=True):
                await self._stop(process)
            if process.stdout is not None:
                with trio.CancelScope(shield=True):
                    await process.stdout.aclose()
        text = output.render()
        if timed_out:
            raise ToolTimeout(
                f"Command timed out after {timeout:g}s and was stopped (its whole process group "
                "was killed). It may be waiting for input, running a server, or stuck in a "
                "loop; try a non-interactive command that finishes on its own, or a larger "
                f"timeout (at most {self.max_timeout:g}s).\n"
                + (f"Output so far:\n{text}" if text else "No output so far.")
            )
        code = process.returncode
        assert code is not None
        status = f"exit code: {code}"
        if code < 0:
            with contextlib.suppress(ValueError):
                status += f" (killed by {signal.Signals(-code).name})"
        if not text:
            return status
        return text + ("" if text.endswith("\n") else "\n") + status

    async def _stop(self, process: trio.Process) -> None:
        """SIGTERM the process group, wait up to ``kill_grace``, SIGKILL it, reap the process."""
        group = process.pid  # a new session's leader: its pid is the group id
        try:
            os.killpg(group, signal.SIGTERM)
        except ProcessLookupError:
            pass  # the command and everything it started have already exited
        else:
            with trio.move_on_after(self.kill_grace):
                await process.wait()
                # Nothing signals when the last member of a process group exits: poll.
                while True:
                    if not await trio.to_thread.run_sync(
                        _group_alive, group, abandon_on_cancel=True
                    ):
                        break
                    await trio.sleep(_POLL)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        await process.wait()


async def _collect(process: trio.Process, output: _Output) -> None:
    """Read the output until the command exits (plus a short grace for the pipe to drain)."""
    stdout = process.stdout
    assert stdout is not None
    drained = trio.Event()

    async def pump() -> None:
        while chunk := await stdout.receive_some(_CHUNK):
            output.add(chunk)
        drained.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump)
        await process.wait()
        with trio.move_on_after(_PIPE_GRACE):
            await drained.wait()
        nursery.cancel_scope.cancel()


def _group_alive(group: int) -> bool:
    """Whether a process of ``group`` is still running (zombies awaiting a reaper do not count)."""
    try:
        os.killpg(group, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True  # no procfs: trust killpg
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as file:
                fields = file.read().rpartition(b")")[2].split()
        except OSError:
            continue
        # After the command name: state, ppid, pgrp, ...
        if len(fields) > 2 and int(fields[2]) == group and fields[0] not in (b"Z", b"X"):
            return True
    return False
