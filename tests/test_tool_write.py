"""The built-in ``write`` tool: whole files, written atomically."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from alloy import Tool, ToolContext, ToolError
from alloy.tools import Edit, Write, WriteTool


def context(root: Path) -> ToolContext:
    return ToolContext(working_directory=root)


def require_enforced_permissions(directory: Path) -> None:
    """Skip unless file permissions bind us (they do not for root with CAP_DAC_OVERRIDE)."""
    probe = directory / "probe"
    probe.mkdir()
    probe.chmod(0o555)
    try:
        (probe / "file").touch()
    except PermissionError:
        return
    finally:
        probe.chmod(0o755)
        for child in probe.iterdir():
            child.unlink()
        probe.rmdir()
    pytest.skip("file permissions are not enforced for this user (root)")


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_write_is_a_tool() -> None:
    assert isinstance(Write, Tool)
    assert isinstance(Write, WriteTool)
    assert Write.name == "write"
    assert Write.description
    assert Write.sequential is False
    assert Write.timeout is None
    schema = Write.input_schema
    assert schema["required"] == ["path", "content"]
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == {"path", "content"}


async def test_writes_a_new_file(tmp_path: Path) -> None:
    out = await Write.execute({"path": "new.txt", "content": "hello"}, context(tmp_path))
    assert out == f"Wrote 5 bytes to {tmp_path / 'new.txt'}"
    assert (tmp_path / "new.txt").read_text() == "hello"
    assert leftovers(tmp_path) == []


async def test_counts_bytes_and_keeps_content_exactly(tmp_path: Path) -> None:
    content = "café\r\nline two\n\tno final newline"
    out = await Write.execute({"path": "a.txt", "content": content}, context(tmp_path))
    assert out.startswith(f"Wrote {len(content.encode())} bytes to ")
    assert (tmp_path / "a.txt").read_bytes() == content.encode()


async def test_writes_an_empty_file(tmp_path: Path) -> None:
    out = await Write.execute({"path": "empty.txt", "content": ""}, context(tmp_path))
    assert out.startswith("Wrote 0 bytes to ")
    assert (tmp_path / "empty.txt").read_bytes() == b""


async def test_creates_parent_directories(tmp_path: Path) -> None:
    await Write.execute({"path": "a/b/c/deep.txt", "content": "deep"}, context(tmp_path))
    assert (tmp_path / "a" / "b" / "c" / "deep.txt").read_text() == "deep"


async def test_overwrites_an_existing_file(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a much longer old content\n")
    await Write.execute({"path": "a.txt", "content": "new"}, context(tmp_path))
    assert (tmp_path / "a.txt").read_text() == "new"
    assert leftovers(tmp_path) == []


async def test_overwriting_keeps_the_permission_bits(tmp_path: Path) -> None:
    target = tmp_path / "script.sh"
    target.write_text("#!/bin/sh\n")
    target.chmod(0o751)
    await Write.execute({"path": "script.sh", "content": "#!/bin/sh\necho hi\n"}, context(tmp_path))
    assert stat.S_IMODE(target.stat().st_mode) == 0o751


async def test_a_new_file_gets_the_default_mode(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    await Write.execute({"path": "a.txt", "content": "x"}, context(tmp_path))
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o666 & ~umask


async def test_relative_path_uses_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "wd").mkdir()
    await Write.execute({"path": "out.txt", "content": "x"}, context(tmp_path / "wd"))
    assert (tmp_path / "wd" / "out.txt").read_text() == "x"
    assert not (tmp_path / "out.txt").exists()


async def test_absolute_path_ignores_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "wd").mkdir()
    target = tmp_path / "elsewhere.txt"
    allowed = ToolContext(working_directory=tmp_path / "wd", allowed_roots=(tmp_path,))
    await Write.execute({"path": str(target), "content": "abs"}, allowed)
    assert target.read_text() == "abs"


async def test_writes_through_a_symlink_inside_the_root(tmp_path: Path) -> None:
    (tmp_path / "real.txt").write_text("old")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real.txt")
    out = await Write.execute({"path": "link.txt", "content": "new"}, context(tmp_path))
    assert out.endswith(str(tmp_path / "real.txt"))
    assert (tmp_path / "real.txt").read_text() == "new"
    assert (tmp_path / "link.txt").is_symlink()


# ---- errors ---------------------------------------------------------------------------------


async def test_path_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    with pytest.raises(ToolError, match=r"Cannot write .*sub: it is a directory"):
        await Write.execute({"path": "sub", "content": "x"}, context(tmp_path))


async def test_parent_is_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("I am a file")
    with pytest.raises(ToolError, match="Cannot create directory") as info:
        await Write.execute({"path": "file.txt/child.txt", "content": "x"}, context(tmp_path))
    assert str(tmp_path / "file.txt") in str(info.value)
    with pytest.raises(ToolError, match="Cannot create directory"):
        await Write.execute({"path": "file.txt/a/b.txt", "content": "x"}, context(tmp_path))
    assert (tmp_path / "file.txt").read_text() == "I am a file"


async def test_parent_directory_cannot_be_created(tmp_path: Path) -> None:
    require_enforced_permissions(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(ToolError, match="Cannot create directory .*permission denied"):
            await Write.execute({"path": "locked/sub/a.txt", "content": "x"}, context(tmp_path))
        with pytest.raises(ToolError, match="Cannot write .*permission denied"):
            await Write.execute({"path": "locked/a.txt", "content": "x"}, context(tmp_path))
    finally:
        locked.chmod(0o755)


async def test_a_read_only_file_is_not_replaced(tmp_path: Path) -> None:
    # The atomic rename only needs a writable directory; the tools still respect the file's mode.
    require_enforced_permissions(tmp_path)
    target = tmp_path / "ro.txt"
    target.write_text("keep")
    target.chmod(0o444)
    with pytest.raises(ToolError, match="Cannot write .*ro.txt: permission denied"):
        await Write.execute({"path": "ro.txt", "content": "x"}, context(tmp_path))
    with pytest.raises(ToolError, match="Cannot write .*ro.txt: permission denied"):
        await Edit.execute(
            {"path": "ro.txt", "old_string": "keep", "new_string": "x"}, context(tmp_path)
        )
    assert target.read_text() == "keep"
    assert leftovers(tmp_path) == []


async def test_a_failed_replace_leaves_the_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.txt").write_text("old")

    def broken_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(ToolError, match=r"Cannot write .*a.txt: no space left on device"):
        await Write.execute({"path": "a.txt", "content": "new"}, context(tmp_path))
    assert (tmp_path / "a.txt").read_text() == "old"
    assert leftovers(tmp_path) == []


async def test_lone_surrogates_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="lone surrogate"):
        await Write.execute({"path": "a.txt", "content": "bad \ud800"}, context(tmp_path))
    assert not (tmp_path / "a.txt").exists()


# ---- path safety ----------------------------------------------------------------------------


async def test_refuses_parent_traversal(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    with pytest.raises(ToolError, match="outside the allowed directories"):
        await Write.execute({"path": "../outside.txt", "content": "x"}, context(root))
    assert not (tmp_path / "outside.txt").exists()


async def test_refuses_an_absolute_path_outside(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="outside the allowed directories"):
        await Write.execute({"path": "/etc/alloy-test.txt", "content": "x"}, context(tmp_path))
    assert not Path("/etc/alloy-test.txt").exists()


async def test_refuses_a_symlink_that_points_outside(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("untouched")
    (root / "link.txt").symlink_to(secret)
    (root / "linkdir").symlink_to(tmp_path)
    with pytest.raises(ToolError, match="outside the allowed directories"):
        await Write.execute({"path": "link.txt", "content": "x"}, context(root))
    with pytest.raises(ToolError, match="outside the allowed directories"):
        await Write.execute({"path": "linkdir/new.txt", "content": "x"}, context(root))
    assert secret.read_text() == "untouched"
    assert not (tmp_path / "new.txt").exists()


async def test_refuses_a_sibling_with_the_same_prefix(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (tmp_path / "proj-secrets").mkdir()
    with pytest.raises(ToolError, match="outside the allowed directories"):
        await Write.execute(
            {"path": str(tmp_path / "proj-secrets" / "a.txt"), "content": "x"}, context(root)
        )
    assert list((tmp_path / "proj-secrets").iterdir()) == []
