"""Alloy: a minimal, Trio-native agent loop.

Send messages to any LLM, run its tool calls in parallel, loop until it is done::

    import alloy
    from alloy.tools import Read
    from alloy.testing import ScriptedProvider, text, tool_call

    provider = ScriptedProvider([tool_call("read", {"path": "pyproject.toml"}), text("0.1.0")])
    result = alloy.run_sync("Which version is this?", provider=provider, tools=[Read])
    print(result.text)
"""

from ._codec._json import (
    dump_messages as dump_messages,
)
from ._codec._json import (
    dump_usage as dump_usage,
)
from ._codec._json import (
    load_messages as load_messages,
)
from ._codec._json import (
    load_usage as load_usage,
)
from ._config import RunOptions as RunOptions
from ._errors import (
    AlloyError as AlloyError,
)
from ._errors import (
    ConfigError as ConfigError,
)
from ._errors import (
    MiddlewareError as MiddlewareError,
)
from ._errors import (
    ProviderError as ProviderError,
)
from ._errors import (
    ScriptExhausted as ScriptExhausted,
)
from ._errors import (
    ToolDefinitionError as ToolDefinitionError,
)
from ._errors import (
    ToolError as ToolError,
)
from ._events import (
    Delta as Delta,
)
from ._events import (
    Event as Event,
)
from ._events import (
    RunCompleted as RunCompleted,
)
from ._events import (
    TextDelta as TextDelta,
)
from ._events import (
    ThinkingDelta as ThinkingDelta,
)
from ._events import (
    ToolCallDelta as ToolCallDelta,
)
from ._events import (
    ToolCallStarted as ToolCallStarted,
)
from ._events import (
    ToolFinished as ToolFinished,
)
from ._events import (
    ToolStarted as ToolStarted,
)
from ._events import (
    TurnCompleted as TurnCompleted,
)
from ._messages import (
    Block as ContentBlock,
)
from ._messages import (
    Image as Image,
)
from ._messages import (
    Message as Message,
)
from ._messages import (
    RedactedThinking as RedactedThinking,
)
from ._messages import (
    ServerToolCall as ServerToolCall,
)
from ._messages import (
    ServerToolResult as ServerToolResult,
)
from ._messages import (
    Text as Text,
)
from ._messages import (
    Thinking as Thinking,
)
from ._messages import (
    ToolCall as ToolCall,
)
from ._messages import (
    ToolResult as ToolResult,
)
from ._messages import (
    UnknownBlock as UnknownBlock,
)
from ._messages import (
    Usage as Usage,
)
from ._middleware import (
    Block as Block,
)
from ._middleware import (
    Halt as Halt,
)
from ._middleware import (
    Middleware as Middleware,
)
from ._middleware import (
    ReplaceArguments as ReplaceArguments,
)
from ._middleware import (
    RunContext as RunContext,
)
from ._provider import (
    Completion as Completion,
)
from ._provider import (
    DeltaSink as DeltaSink,
)
from ._provider import (
    Provider as Provider,
)
from ._provider import (
    Request as Request,
)
from ._provider import (
    StopReason as StopReason,
)
from ._provider import (
    StreamingProvider as StreamingProvider,
)
from ._result import (
    Result as Result,
)
from ._result import (
    Status as Status,
)
from ._result import (
    ToolCallRecord as ToolCallRecord,
)
from ._run import Run as Run
from ._run import run as run
from ._run import run_sync as run_sync
from ._run import stream as stream
from ._tools._function import FunctionTool as FunctionTool
from ._tools._function import tool as tool
from ._tools._tool import Tool as Tool
from ._tools._tool import ToolContext as ToolContext
from ._tools._tool import ToolSpec as ToolSpec

__version__ = "0.1.0"

__all__ = [
    "AlloyError",
    "AuthenticationError",
    "Block",
    "Completion",
    "ConfigError",
    "ContentBlock",
    "ContextLengthExceeded",
    "Delta",
    "DeltaSink",
    "Event",
    "FunctionTool",
    "Halt",
    "Image",
    "InvalidRequestError",
    "Message",
    "Middleware",
    "MiddlewareError",
    "NotFoundError",
    "OverloadedError",
    "PermissionDeniedError",
    "ProtocolError",
    "Provider",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeout",
    "RateLimitError",
    "RedactedThinking",
    "ReplaceArguments",
    "Request",
    "Result",
    "Run",
    "RunCompleted",
    "RunContext",
    "RunOptions",
    "ScriptExhausted",
    "ServerError",
    "ServerToolCall",
    "ServerToolResult",
    "Status",
    "StopReason",
    "StreamingProvider",
    "Text",
    "TextDelta",
    "Thinking",
    "ThinkingDelta",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolCallRecord",
    "ToolCallStarted",
    "ToolContext",
    "ToolDefinitionError",
    "ToolError",
    "ToolFinished",
    "ToolResult",
    "ToolSpec",
    "ToolStarted",
    "TurnCompleted",
    "UnknownBlock",
    "Usage",
    "dump_messages",
    "dump_usage",
    "load_messages",
    "load_usage",
    "run",
    "run_sync",
    "stream",
    "tool",
]
