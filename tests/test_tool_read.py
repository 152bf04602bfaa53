"""The built-in ``read`` tool: numbered pages of a text file, streamed."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from alloy import Tool, ToolContext, ToolError
from alloy._tools._read import _read
from alloy.tools import Read, ReadTool


def context(root: Path) -> ToolContext:
    return ToolContext(working_directory=root)


def numbered(first: int, lines: list[str]) -> str:
    return "\n".join(f"{n:>6}\t{line}" for n, line in enumerate(lines, first))


# ---- the Tool protocol ----------------------------------------------------------------------


def test_read_is_a_tool() -> None:
    assert isinstance(Read, Tool)
    assert isinstance(Read, ReadTool)
    assert Read.name == "read"
    assert Read.description
    assert Read.sequential is False
    assert Read.timeout is None
    schema = Read.input_schema
    assert schema["type"] == "object"
    assert schema["required"] == ["path"]
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == {"path", "offset", "limit"}
    assert schema["properties"]["offset"]["minimum"] == 1
    assert ReadTool(timeout=5).timeout == 5


# ---- numbered lines, offset, limit ----------------------------------------------------------


async def test_reads_a_file_with_line_numbers(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("line one\nline two\nline three\n")
    out = await Read.execute({"path": "a.txt"}, context(tmp_path))
    assert out == "     1\tline one\n     2\tline two\n     3\tline three"


async def test_line_numbers_are_right_aligned(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("".join(f"line {i}\n" for i in range(1, 11)))
    out = await Read.execute({"path": "a.txt"}, context(tmp_path))
    assert "     1\tline 1" in out.splitlines()
    assert "    10\tline 10" in out.splitlines()


async def test_offset(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("".join(f"line {i}\n" for i in range(1, 11)))
    out = await Read.execute({"path": "a.txt", "offset": 5}, context(tmp_path))
    assert out == numbered(5, [f"line {i}" for i in range(5, 11)])


async def test_limit_with_a_continuation_footer(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("".join(f"line {i}\n" for i in range(1, 11)))
    out = await Read.execute({"path": "a.txt", "limit": 3}, context(tmp_path))
    assert out == (
        numbered(1, ["line 1", "line 2", "line 3"])
        + "\n\n[Showing lines 1-3 of 10. Use offset=4 to continue.]"
    )


async def test_offset_and_limit_together(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("".join(f"line {i}\n" for i in range(1, 11)))
    out = await Read.execute({"path": "a.txt", "offset": 3, "limit": 2}, context(tmp_path))
    assert out.startswith(numbered(3, ["line 3", "line 4"]) + "\n\n")
    assert out.endswith("[Showing lines 3-4 of 10. Use offset=5 to continue.]")


async def test_no_footer_when_the_page_reaches_the_end(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("".join(f"line {i}\n" for i in range(1, 11)))
    out = await Read.execute({"path": "a.txt", "offset": 8, "limit": 3}, context(tmp_path))
    assert out == numbered(8, ["line 8", "line 9", "line 10"])


async def test_default_limit_is_2000_lines_with_a_footer(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_text("".join(f"line {i}\n" for i in range(1, 5001)))
    out = await Read.execute({"path": "big.txt"}, context(tmp_path))
    lines = out.split("\n")
    assert lines[0] == "     1\tline 1"
    assert lines[1999] == "  2000\tline 2000"
    assert lines[2000:] == ["", "[Showing lines 1-2000 of 5000. Use offset=2001 to continue.]"]


async def test_pages_the_end_of_a_10000_line_file(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_text("".join(f"line {i}\n" for i in range(1, 10_001)))
    out = await Read.execute({"path": "big.txt", "offset": 9998, "limit": 3}, context(tmp_path))
    assert out == "  9998\tline 9998\n  9999\tline 9999\n 10000\tline 10000"
    assert "line 9997" not in out


async def test_file_without_a_trailing_newline(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("alpha\nbeta\ngamma")
    out = await Read.execute({"path": "a.txt"}, context(tmp_path))
    assert out == numbered(1, ["alpha", "beta", "gamma"])
    paged = await Read.execute({"path": "a.txt", "limit": 2}, context(tmp_path))
    assert paged.endswith("[Showing lines 1-2 of 3. Use offset=3 to continue.]")


async def test_strips_crlf_but_keeps_a_lone_carriage_return(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"one\r\ntwo\r\nthree\rstill three\n")
    out = await Read.execute({"path": "a.txt"}, context(tmp_path))
    assert out == numbered(1, ["one", "two", "three\rstill three"])


async def test_keeps_blank_lines_and_whitespace(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("  indented\n\n\tTab \n")
    out = await Read.execute({"path": "a.txt"}, context(tmp_path))
    assert out == numbered(1, ["  indented", "", "\tTab "])


async def test_strips_a_utf8_byte_order_mark(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"\xef\xbb\xbfhello\n")
    assert await Read.execute({"path": "a.txt"}, context(tmp_path)) == "     1\thello"


async def test_cuts_long_lines(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x" * 5000 + "\n" + "é" * 3000 + "\n" + "y" * 200_000 + "\nend")
    out = await Read.execute({"path": "a.txt"}, context(tmp_path))
    first, second, third, fourth = out.split("\n")
    assert first.startswith("     1\t" + "x" * 2000 + " [")
    assert "x" * 2001 not in first
    assert "cut at 2000 characters" in first
    assert second.startswith("     2\t" + "é" * 2000 + " [")
    assert "é" * 2001 not in second
    assert third.startswith("     3\t" + "y" * 2000 + " [")
    assert fourth == "     4\tend"


async def test_a_line_of_exactly_2000_characters_is_not_cut(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("z" * 2000 + "\n")
    assert await Read.execute({"path": "a.txt"}, context(tmp_path)) == "     1\t" + "z" * 2000


async def test_offset_past_the_end(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one\ntwo\nthree\n")
    with pytest.raises(ToolError, match=r"offset 10 is past the end of .*a\.txt.* 3 lines"):
        await Read.execute({"path": "a.txt", "offset": 10}, context(tmp_path))
    with pytest.raises(ToolError, match="past the end"):
        await Read.execute({"path": "a.txt", "offset": 4}, context(tmp_path))


async def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("")
    out = await Read.execute({"path": "empty.txt"}, context(tmp_path))
    assert "is empty" in out
    assert str(tmp_path / "empty.txt") in out


async def test_rejects_bad_offset_and_limit(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one\n")
    with pytest.raises(ToolError, match="offset must be an integer of at least 1"):
        await Read.execute({"path": "a.txt", "offset": 0}, context(tmp_path))
    with pytest.raises(ToolError, match="limit must be an integer of at least 1"):
        await Read.execute({"path": "a.txt", "limit": -3}, context(tmp_path))


# ---- errors ---------------------------------------------------------------------------------


async def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="File not found") as info:
        await Read.execute({"path": "nope.txt"}, context(tmp_path))
    assert str(tmp_path / "nope.txt") in str(info.value)


async def test_directory(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    with pytest.raises(ToolError, match="is a directory") as info:
        await Read.execute({"path": "sub"}, context(tmp_path))
    assert str(tmp_path / "sub") in str(info.value)


async def test_refuses_a_fifo(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ToolError, match="not a regular file"):
        await Read.execute({"path": "pipe"}, context(tmp_path))


async def test_refuses_a_file_with_a_nul_byte(tmp_path: Path) -> None:
    (tmp_path / "blob.bin").write_bytes(b"PK\x03\x04\x00\x00binary stuff\n")
    with pytest.raises(ToolError, match="is a binary file"):
        await Read.execute({"path": "blob.bin"}, context(tmp_path))


async def test_refuses_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "latin1.txt").write_bytes("café\n".encode("latin-1"))
    with pytest.raises(ToolError, match="is a binary file"):
        await Read.execute({"path": "latin1.txt"}, context(tmp_path))


async def test_a_multibyte_character_across_the_sniffed_block_is_fine(tmp_path: Path) -> None:
    data = "a" * 8191 + "é\n"  # "é" starts on the last sniffed byte
    (tmp_path / "a.txt").write_text(data)
    out = await Read.execute({"path": "a.txt"}, context(tmp_path))
    assert out == "     1\t" + ("a" * 8191 + "é")[:2000] + " [... line cut at 2000 characters]"


async def test_invalid_utf8_after_the_first_block_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"ok\n" * 4000 + b"bad \xff byte\n")
    out = await Read.execute({"path": "a.txt", "offset": 4001}, context(tmp_path))
    assert out == "  4001\tbad \ufffd byte"


# ---- paths ----------------------------------------------------------------------------------


async def test_relative_path_uses_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "wd.txt").write_text("here\n")
    out = await Read.execute({"path": "sub/wd.txt"}, context(tmp_path))
    assert out == "     1\there"


async def test_absolute_path_ignores_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "abs.txt").write_text("absolute\n")
    path = str(tmp_path / "abs.txt")
    assert await Read.execute({"path": path}, context(tmp_path)) == "     1\tabsolute"
    # Outside the working directory: refused, unless it lies in an allowed root.
    with pytest.raises(ToolError, match="outside"):
        await Read.execute({"path": path}, context(tmp_path / "sub"))
    allowed = ToolContext(working_directory=tmp_path / "sub", allowed_roots=(tmp_path,))
    assert await Read.execute({"path": path}, allowed) == "     1\tabsolute"


async def test_refuses_parent_traversal(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (tmp_path / "outside.txt").write_text("secret\n")
    with pytest.raises(ToolError, match="outside the allowed directories"):
        await Read.execute({"path": "../outside.txt"}, context(root))


async def test_refuses_an_absolute_path_outside(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="outside the allowed directories"):
        await Read.execute({"path": "/etc/passwd"}, context(tmp_path))


async def test_refuses_a_symlink_that_points_outside(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (tmp_path / "secret.txt").write_text("secret\n")
    (root / "link.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(ToolError, match="outside the allowed directories"):
        await Read.execute({"path": "link.txt"}, context(root))


async def test_follows_a_symlink_that_stays_inside(tmp_path: Path) -> None:
    (tmp_path / "real.txt").write_text("real\n")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real.txt")
    assert await Read.execute({"path": "link.txt"}, context(tmp_path)) == "     1\treal"


async def test_refuses_a_sibling_with_the_same_prefix(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (tmp_path / "proj-secrets").mkdir()
    (tmp_path / "proj-secrets" / "key.txt").write_text("secret\n")
    for path in ("../proj-secrets/key.txt", str(tmp_path / "proj-secrets" / "key.txt")):
        with pytest.raises(ToolError, match="outside the allowed directories"):
            await Read.execute({"path": path}, context(root))


# ---- a property: any page is the right slice of the file -------------------------------------

_line = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\n\r\x00\ufeff"), max_size=30
)


@settings(max_examples=150, deadline=None)
@given(
    lines=st.lists(_line, min_size=1, max_size=40),
    trailing_newline=st.booleans(),
    offset=st.integers(1, 45),
    limit=st.integers(1, 45),
)
def test_any_page_is_the_right_slice(
    lines: list[str], trailing_newline: bool, offset: int, limit: int
) -> None:
    text = "\n".join(lines) + ("\n" if trailing_newline else "")
    if text == "":
        return
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()  # a final newline ends the last line; it does not start another
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        (root / "f.txt").write_bytes(text.encode("utf-8"))
        total = len(lines)
        if offset > total:
            with pytest.raises(ToolError, match="past the end"):
                _read(context(root), "f.txt", offset, limit)
            return
        out = _read(context(root), "f.txt", offset, limit)
    shown = lines[offset - 1 : offset - 1 + limit]
    expected = numbered(offset, shown)
    last = offset + len(shown) - 1
    if last < total:
        expected += (
            f"\n\n[Showing lines {offset}-{last} of {total}. Use offset={last + 1} to continue.]"
        )
    assert out == expected
