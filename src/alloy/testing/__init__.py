"""Testing your agents without a model: scripted providers and assertions.

::

    from alloy.testing import ScriptedProvider, text, tool_call, assert_tool_called

    async def test_reads_the_version():
        provider = ScriptedProvider([tool_call("read", {"path": "pyproject.toml"}),
                                     text("The version is 0.1.0")])
        result = await alloy.run("Which version?", provider=provider, tools=[Read])
        assert result.text == "The version is 0.1.0"
        assert_tool_called(result, "read", path="pyproject.toml")
        assert provider.requests[1].messages[-1].tool_results[0].is_error is False
"""

from ._assertions import (
    assert_tool_called as assert_tool_called,
    refute_tool_called as refute_tool_called,
    tool_calls as tool_calls,
)
from ._scripted import (
    Fail as Fail,
    FunctionProvider as FunctionProvider,
    Reply as Reply,
    ScriptedProvider as ScriptedProvider,
    call as call,
    delay as delay,
    error as error,
    reply as reply,
    text as text,
    tool_call as tool_call,
)
from ._wire_server import (
    RecordedRequest as RecordedRequest,
    WireServer as WireServer,
    cut as cut,
    http_error as http_error,
    raw as raw,
    stall as stall,
    stream_error as stream_error,
)

__all__ = [
    "Fail",
    "RecordedRequest",
    "WireServer",
    "cut",
    "http_error",
    "raw",
    "stall",
    "stream_error",
    "FunctionProvider",
    "Reply",
    "ScriptedProvider",
    "assert_tool_called",
    "call",
    "delay",
    "error",
    "refute_tool_called",
    "reply",
    "text",
    "tool_call",
    "tool_calls",
]
