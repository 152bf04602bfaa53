"""Alloy: a minimal, Trio-native agent loop.

Send messages to any LLM, run its tool calls in parallel, loop until it is done::

    import alloy
    from alloy.tools import Read
    from alloy.testing import ScriptedProvider, text, tool_call

    provider = ScriptedProvider([tool_call("read", {"path": "pyproject.toml"}), text("0.1.0")])
    result = alloy.run_sync("Which version is this?", provider=provider, tools=[Read])
    print(result.text)
"""

from typing import TYPE_CHECKING, Any

from ._agent import (
    Agent,
    AgentBusy,
    AgentCrashed,
    AgentError,
    AgentHealth,
    AgentOptions,
    AgentRequest,
    AgentResponse,
    AgentStopped,
    NoPubSub,
    QueueFull,
    Session,
    SessionHalted,
)
from ._compaction import (
    Compaction,
    CompactionContext,
    CompactionResult,
    Compactor,
    TokenCounter,
)
from ._config import RunOptions
from ._errors import (
    AlloyError,
    AuthenticationError,
    ConfigError,
    ContextLengthExceeded,
    InvalidRequestError,
    MiddlewareError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProtocolError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    RateLimitError,
    ScriptExhausted,
    ServerError,
    ToolDefinitionError,
    ToolError,
    ToolTimeout,
)
from ._events import (
    Compacted,
    Delta,
    Event,
    RunCompleted,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallStarted,
    ToolFinished,
    ToolStarted,
    TurnCompleted,
)
from ._messages import (
    Block as ContentBlock,
    Image,
    Message,
    RedactedThinking,
    ServerToolCall,
    ServerToolResult,
    Text,
    Thinking,
    ToolCall,
    ToolResult,
    UnknownBlock,
    Usage,
)
from ._middleware import Block, Halt, Middleware, ReplaceArguments, RunContext
from ._models import ModelInfo, context_window
from ._provider import (
    Completion,
    DeltaSink,
    Provider,
    Request,
    StopReason,
    StreamingProvider,
)
from ._pubsub import Broker, Overflow, PubSub, Receiver, Subscription, SubscriptionOverflow
from ._result import Result, Status, ToolCallRecord
from ._run import Run, run, run_sync, stream
from ._supervisor import (
    ChildSpec,
    Restart,
    RestartIntensityExceeded,
    Strategy,
    Supervisor,
    open_supervisor,
)
from ._tools._function import FunctionTool, tool
from ._tools._tool import Tool, ToolContext, ToolSpec

if TYPE_CHECKING:
    from ._codec._json import dump_messages, dump_usage, load_messages, load_usage

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentBusy",
    "AgentCrashed",
    "AgentError",
    "AgentHealth",
    "AgentOptions",
    "AgentRequest",
    "AgentResponse",
    "AgentStopped",
    "AlloyError",
    "AuthenticationError",
    "Block",
    "Broker",
    "ChildSpec",
    "Compacted",
    "Compaction",
    "CompactionContext",
    "CompactionResult",
    "Compactor",
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
    "ModelInfo",
    "NoPubSub",
    "NotFoundError",
    "Overflow",
    "OverloadedError",
    "PermissionDeniedError",
    "ProtocolError",
    "Provider",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeout",
    "PubSub",
    "QueueFull",
    "RateLimitError",
    "Receiver",
    "RedactedThinking",
    "ReplaceArguments",
    "Request",
    "Restart",
    "RestartIntensityExceeded",
    "Result",
    "Run",
    "RunCompleted",
    "RunContext",
    "RunOptions",
    "ScriptExhausted",
    "ServerError",
    "ServerToolCall",
    "ServerToolResult",
    "Session",
    "SessionHalted",
    "Status",
    "StopReason",
    "Strategy",
    "StreamingProvider",
    "Subscription",
    "SubscriptionOverflow",
    "Supervisor",
    "Text",
    "TextDelta",
    "Thinking",
    "TokenCounter",
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
    "ToolTimeout",
    "TurnCompleted",
    "UnknownBlock",
    "Usage",
    "context_window",
    "dump_messages",
    "dump_usage",
    "load_messages",
    "load_usage",
    "open_supervisor",
    "run",
    "run_sync",
    "stream",
    "tool",
]

_LAZY = frozenset({"dump_messages", "dump_usage", "load_messages", "load_usage"})


def __getattr__(name: str) -> Any:
    # The history converter needs cattrs: import it on first use, not with ``import alloy``.
    if name in _LAZY:
        from ._codec import _json

        return getattr(_json, name)
    raise AttributeError(f"module 'alloy' has no attribute {name!r}")
