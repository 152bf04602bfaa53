"""Every exception Alloy raises.

The tree::

    AlloyError                      base; ``.result`` holds the partial Result when a run failed
    ├── ConfigError (ValueError)    a run was given a bad value (bad provider, duplicate tool names...)
    ├── ProviderError               the model call failed; the providers issue adds subclasses
    │   └── ScriptExhausted         a ScriptedProvider ran out of replies
    ├── MiddlewareError             a middleware hook raised or returned something it may not
    └── ToolDefinitionError (TypeError)  @tool could not build a schema for a function

``ToolError`` is not an ``AlloyError``: a tool raises it to hand the model an error result with
exactly that message. It never leaves the run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._result import Result

__all__ = [
    "AlloyError",
    "ConfigError",
    "MiddlewareError",
    "ProviderError",
    "ScriptExhausted",
    "ToolDefinitionError",
    "ToolError",
]


class AlloyError(Exception):
    """Base class of every error a run raises.

    When a run fails, the error carries what the run had done so far in ``result`` (status
    ``"error"``), so no message is lost::

        try:
            result = await alloy.run("hi", provider=provider)
        except alloy.AlloyError as exc:
            history = exc.result.messages if exc.result else ()
    """

    result: Result | None

    def __init__(self, message: str, *, result: Result | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.result = result

    def __str__(self) -> str:
        return self.message


class ConfigError(AlloyError, ValueError):
    """A run or a tool was configured with a value that cannot work.

    >>> alloy.run_sync("hi", provider=provider, max_turns=0)
    Traceback (most recent call last):
    alloy.ConfigError: max_turns must be a positive integer, got 0
    """


class ProviderError(AlloyError):
    """The model call failed (transport, HTTP status, malformed reply, or a provider bug).

    ``provider`` names the provider; ``retryable`` says whether trying again may help::

        except alloy.ProviderError as exc:
            log.warning("%s failed: %s", exc.provider, exc)
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        retryable: bool = False,
        result: Result | None = None,
    ) -> None:
        super().__init__(message, result=result)
        self.provider = provider
        self.retryable = retryable


class ScriptExhausted(ProviderError):
    """A ``ScriptedProvider`` was asked for a reply after its script ran out.

    >>> ScriptedProvider([text("only one")])   # a second request raises ScriptExhausted
    """


class MiddlewareError(AlloyError):
    """A middleware hook raised, or returned a value that hook may not return.

    ``hook`` names the hook, for example ``"before_tool_call"``.
    """

    def __init__(self, message: str, *, hook: str, result: Result | None = None) -> None:
        super().__init__(message, result=result)
        self.hook = hook


class ToolDefinitionError(AlloyError, TypeError):
    """``@alloy.tool`` cannot describe a function (an unsupported annotation, say).

    >>> @alloy.tool
    ... def f(x: object) -> str: ...
    Traceback (most recent call last):
    alloy.ToolDefinitionError: f: parameter 'x': cannot build a JSON schema for object
    """


class ToolError(Exception):
    """Raise inside a tool to give the model an error result with exactly this message.

    Any other exception also becomes an error result, prefixed with its type; ``ToolError`` is
    for errors the tool means to report::

        @alloy.tool
        async def fetch(url: str) -> str:
            if not url.startswith("https://"):
                raise alloy.ToolError("only https URLs are allowed")
            ...
    """
