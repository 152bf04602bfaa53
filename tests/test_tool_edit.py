"""The built-in ``edit`` tool: exact search-and-replace."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import trio

from alloy import Tool, ToolContext, ToolError
from alloy.tools import Edit, EditTool


def context(root: Path) -> ToolContext:
    return ToolContext(working_directory=root)


def test_edit_is_a_tool() -> None:
    assert isinstance(Edit, Tool)
    assert isinstance(Edit, EditTool)
    assert Edit.name == "edit"
    assert Edit.description
    assert Edit.sequential is False
    schema = Edit.input_schema
    assert schema["required"] == ["path", "old_string", "new_string"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["replace_all"]["type"] == "boolean"
    assert schema["properties"]["replace_all"]["default"] is False


async def test_replaces_a_unique_string(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("Hello World\nGoodbye World\n")
    out = await Edit.execute(
        {"path": "a.txt", "old_string": "Hello", "new_string": "Hi"}, context(tmp_path)
    )
    assert out == f"Replaced 1 occurrence in {tmp_path / 'a.txt'}"
    assert (tmp_path / "a.txt").read_text() == "Hi World\nGoodbye World\n"


async def test_an_ambiguous_match_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("World\nWorld\nWorld\n")
    with pytest.raises(ToolError, match="old_string appears 3 times in .*replace_all"):
        await Edit.execute(
            {"path": "a.txt", "old_string": "World", "new_string": "Earth"}, context(tmp_path)
        )
    assert (tmp_path / "a.txt").read_text() == "World\nWorld\nWorld\n"


async def test_replace_all(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("foo bar\nfoo baz\n")
    out = await Edit.execute(
        {"path": "a.txt", "old_string": "foo", "new_string": "qux", "replace_all": True},
        context(tmp_path),
    )
    assert out == f"Replaced 2 occurrences in {tmp_path / 'a.txt'}"
    assert (tmp_path / "a.txt").read_text() == "qux bar\nqux baz\n"


async def test_replace_all_with_a_single_match(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one two\n")
    out = await Edit.execute(
        {"path": "a.txt", "old_string": "two", "new_string": "2", "replace_all": True},
        context(tmp_path),
    )
    assert out.startswith("Replaced 1 occurrence in ")
    assert (tmp_path / "a.txt").read_text() == "one 2\n"


async def test_multi_line_replacement_and_deletion(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("def f():\n    return 1\n\n\ndef g():\n    pass\n")
    await Edit.execute(
        {"path": "a.py", "old_string": "    return 1\n", "new_string": "    x = 1\n    return x\n"},
        context(tmp_path),
    )
    await Edit.execute(
        {"path": "a.py", "old_string": "\n\ndef g():\n    pass\n", "new_string": ""},
        context(tmp_path),
    )
    assert (tmp_path / "a.py").read_text() == "def f():\n    x = 1\n    return x\n"


async def test_no_match(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("Hello\n")
    with pytest.raises(ToolError, match="old_string not found in .*a.txt"):
        await Edit.execute(
            {"path": "a.txt", "old_string": "Bonjour", "new_string": "Hi"}, context(tmp_path)
        )


async def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="File not found") as info:
        await Edit.execute(
            {"path": "nope.txt", "old_string": "a", "new_string": "b"}, context(tmp_path)
        )
    assert str(tmp_path / "nope.txt") in str(info.value)
    assert not (tmp_path / "nope.txt").exists()


async def test_directory(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    with pytest.raises(ToolError, match="is a directory"):
        await Edit.execute({"path": "sub", "old_string": "a", "new_string": "b"}, context(tmp_path))


async def test_a_no_op_edit_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("same\n")
    with pytest.raises(ToolError, match="identical"):
        await Edit.execute(
            {"path": "a.txt", "old_string": "same", "new_string": "same"}, context(tmp_path)
        )


async def test_an_empty_old_string_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("abc\n")
    for replace_all in (False, True):
        with pytest.raises(ToolError, match="old_string must not be empty.*write tool"):
            await Edit.execute(
                {"path": "a.txt", "old_string": "", "new_string": "x", "replace_all": replace_all},
                context(tmp_path),
            )
    assert (tmp_path / "a.txt").read_text() == "abc\n"


async def test_refuses_binary_and_non_utf8_files(tmp_path: Path) -> None:
    (tmp_path / "blob").write_bytes(b"abc\x00def")
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(ToolError, match="binary"):
        await Edit.execute(
            {"path": "blob", "old_string": "abc", "new_string": "x"}, context(tmp_path)
        )
    with pytest.raises(ToolError, match="not valid UTF-8"):
        await Edit.execute(
            {"path": "latin1.txt", "old_string": "caf", "new_string": "x"}, context(tmp_path)
        )


async def test_relative_path_uses_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "wd_edit.txt").write_text("before\n")
    await Edit.execute(
        {"path": "wd_edit.txt", "old_string": "before", "new_string": "after"}, context(tmp_path)
    )
    assert (tmp_path / "wd_edit.txt").read_text() == "after\n"


# ---- line endings, BOM, permissions ----------------------------------------------------------


async def test_crlf_file_matched_with_lf_and_kept_crlf(tmp_path: Path) -> None:
    (tmp_path / "win.txt").write_bytes(b"one\r\ntwo\r\nthree\r\n")
    out = await Edit.execute(
        {"path": "win.txt", "old_string": "one\ntwo\n", "new_string": "1\n2\n2.5\n"},
        context(tmp_path),
    )
    assert out.startswith("Replaced 1 occurrence in ")
    assert (tmp_path / "win.txt").read_bytes() == b"1\r\n2\r\n2.5\r\nthree\r\n"


async def test_crlf_file_matched_exactly(tmp_path: Path) -> None:
    (tmp_path / "win.txt").write_bytes(b"one\r\ntwo\r\n")
    await Edit.execute(
        {"path": "win.txt", "old_string": "one\r\ntwo", "new_string": "uno\r\ndos"},
        context(tmp_path),
    )
    assert (tmp_path / "win.txt").read_bytes() == b"uno\r\ndos\r\n"


async def test_new_lines_in_a_crlf_file_get_crlf(tmp_path: Path) -> None:
    (tmp_path / "win.txt").write_bytes(b"one\r\ntwo\r\n")
    await Edit.execute(
        {"path": "win.txt", "old_string": "one", "new_string": "zero\none"}, context(tmp_path)
    )
    assert (tmp_path / "win.txt").read_bytes() == b"zero\r\none\r\ntwo\r\n"


async def test_lf_file_keeps_lf(tmp_path: Path) -> None:
    (tmp_path / "unix.txt").write_bytes(b"one\ntwo\n")
    await Edit.execute(
        {"path": "unix.txt", "old_string": "one\n", "new_string": "1\n1.5\n"}, context(tmp_path)
    )
    assert (tmp_path / "unix.txt").read_bytes() == b"1\n1.5\ntwo\n"


async def test_crlf_old_string_in_an_lf_file(tmp_path: Path) -> None:
    (tmp_path / "unix.txt").write_bytes(b"one\ntwo\n")
    await Edit.execute(
        {"path": "unix.txt", "old_string": "one\r\ntwo", "new_string": "uno\r\ndos"},
        context(tmp_path),
    )
    assert (tmp_path / "unix.txt").read_bytes() == b"uno\ndos\n"


async def test_a_line_ending_only_change_in_a_crlf_file_is_a_no_op(tmp_path: Path) -> None:
    (tmp_path / "win.txt").write_bytes(b"one\r\ntwo\r\n")
    with pytest.raises(ToolError, match="change nothing"):
        await Edit.execute(
            {"path": "win.txt", "old_string": "one\ntwo", "new_string": "one\r\ntwo"},
            context(tmp_path),
        )


async def test_keeps_a_byte_order_mark(tmp_path: Path) -> None:
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbfname = old\n")
    await Edit.execute(
        {"path": "bom.txt", "old_string": "name = old", "new_string": "name = new"},
        context(tmp_path),
    )
    assert (tmp_path / "bom.txt").read_bytes() == b"\xef\xbb\xbfname = new\n"


async def test_keeps_the_permission_bits(tmp_path: Path) -> None:
    target = tmp_path / "run.sh"
    target.write_text("echo old\n")
    target.chmod(0o700)
    await Edit.execute(
        {"path": "run.sh", "old_string": "old", "new_string": "new"}, context(tmp_path)
    )
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    assert target.read_text() == "echo new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["run.sh"]


async def test_parallel_edits_of_one_file_are_all_applied(tmp_path: Path) -> None:
    target = tmp_path / "many.txt"
    target.write_text("".join(f"item {i} = old\n" for i in range(30)))

    async def edit(i: int) -> None:
        await Edit.execute(
            {"path": "many.txt", "old_string": f"item {i} = old", "new_string": f"item {i} = new"},
            context(tmp_path),
        )

    async with trio.open_nursery() as nursery:
        for i in range(30):
            nursery.start_soon(edit, i)
    assert target.read_text() == "".join(f"item {i} = new\n" for i in range(30))


# ---- path safety ----------------------------------------------------------------------------


async def test_refuses_paths_outside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (tmp_path / "proj-secrets").mkdir()
    secret = tmp_path / "proj-secrets" / "key.txt"
    secret.write_text("token\n")
    (root / "link.txt").symlink_to(secret)
    for path in ("../proj-secrets/key.txt", str(secret), "link.txt", "/etc/passwd"):
        with pytest.raises(ToolError, match="outside the allowed directories"):
            await Edit.execute(
                {"path": path, "old_string": "token", "new_string": "stolen"}, context(root)
            )
    assert secret.read_text() == "token\n"
