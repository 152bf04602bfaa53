"""Alloy: a minimal, Trio-native agent loop."""

from ._errors import (
    AlloyError as AlloyError,
    ConfigError as ConfigError,
    MiddlewareError as MiddlewareError,
    ProviderError as ProviderError,
    ScriptExhausted as ScriptExhausted,
    ToolDefinitionError as ToolDefinitionError,
    ToolError as ToolError,
)
from ._messages import (
    Block as Block,
    Image as Image,
    Message as Message,
    RedactedThinking as RedactedThinking,
    ServerToolCall as ServerToolCall,
    ServerToolResult as ServerToolResult,
    Text as Text,
    Thinking as Thinking,
    ToolCall as ToolCall,
    ToolResult as ToolResult,
    UnknownBlock as UnknownBlock,
    Usage as Usage,
)
from ._tools._tool import Tool as Tool, ToolContext as ToolContext, ToolSpec as ToolSpec

__version__ = "0.1.0"
