"""Every exception Alloy raises.

The tree::

    AlloyError                        base; ``.result`` holds the partial Result when a run failed
    ├── ConfigError (ValueError)      a bad option value (bad provider, duplicate tool names...)
    ├── ProviderError                 the model call failed; status, type, request id, body
    │   ├── AuthenticationError       401: the API key is missing or wrong
    │   ├── PermissionDeniedError     403
    │   ├── NotFoundError             404: unknown model or path
    │   ├── InvalidRequestError       400, 413, 422: the provider refused the request
    │   │   └── ContextLengthExceeded the conversation no longer fits the model's window
    │   ├── RateLimitError            429; ``retry_after`` in seconds when the provider said
    │   ├── OverloadedError           529, 503 overloaded
    │   ├── ServerError               other 5xx
    │   ├── ProviderTimeout           connect, idle-read or overall deadline exceeded; 408
    │   ├── ProviderConnectionError   the connection failed or broke
    │   ├── ProtocolError             the reply is not what the wire format promises
    │   └── ScriptExhausted           a ScriptedProvider ran out of replies
    ├── MiddlewareError               a middleware hook raised or returned something it may not
    └── ToolDefinitionError (TypeError)  @tool could not build a schema for a function

"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._result import Result

__all__ = [
    "AlloyError",
    "AuthenticationError",
    "ConfigError",
    "ContextLengthExceeded",
    "InvalidRequestError",
    "MiddlewareError",
    "NotFoundError",
    "OverloadedError",
    "PermissionDeniedError",
    "ProtocolError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeout",
    "RateLimitError",
    "ScriptExhausted",
    "ServerError",
    "ToolDefinitionError",
    "ToolError",
    "ToolTimeout",
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

    ``provider`` names the provider; ``retryable`` says whether trying again may help;
    ``status``, ``error_type``, ``request_id``, ``body``, ``retry_after`` (seconds) and
    ``rate_limits`` (the provider's rate-limit headers) are set when the wire had them::

        except alloy.ProviderError as exc:
            log.warning("%s failed (%s, request %s): %s", exc.provider, exc.status,
                        exc.request_id, exc)
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        retryable: bool = False,
        status: int | None = None,
        error_type: str | None = None,
        request_id: str | None = None,
        body: str | None = None,
        retry_after: float | None = None,
        rate_limits: Mapping[str, str] | None = None,
        result: Result | None = None,
    ) -> None:
        super().__init__(message, result=result)
        self.provider = provider
        self.retryable = retryable
        self.status = status
        self.error_type = error_type
        self.request_id = request_id
        self.body = body
        self.retry_after = retry_after
        self.rate_limits: Mapping[str, str] = rate_limits or {}


class AuthenticationError(ProviderError):
    """401: the API key is missing, wrong or revoked.

    >>> except alloy.AuthenticationError: print("check ANTHROPIC_API_KEY")
    """


class PermissionDeniedError(ProviderError):
    """403: the key may not use this model or feature.

    >>> except alloy.PermissionDeniedError as exc: print(exc.body)
    """


class NotFoundError(ProviderError):
    """404: the model or the API path does not exist (check ``model`` and ``api_url``).

    >>> except alloy.NotFoundError: print("unknown model or api_url")
    """


class InvalidRequestError(ProviderError):
    """The provider refused the request as malformed (400, 413, 422).

    >>> except alloy.InvalidRequestError as exc: print(exc.body)
    """


class ContextLengthExceeded(InvalidRequestError):
    """The conversation is longer than the model's context window.

    >>> except alloy.ContextLengthExceeded: ...   # compaction retries once on its own
    """


class RateLimitError(ProviderError):
    """429: too many requests or tokens; ``retry_after`` says when to try again, if known.

    >>> except alloy.RateLimitError as exc: await trio.sleep(exc.retry_after or 30)
    """


class OverloadedError(ProviderError):
    """The provider is overloaded (Anthropic 529, 503 "overloaded"); retryable.

    >>> except alloy.OverloadedError: provider = backup
    """


class ServerError(ProviderError):
    """The provider failed (5xx); retryable.

    >>> except alloy.ServerError as exc: log.warning("%s %s", exc.status, exc.request_id)
    """


class ProviderTimeout(ProviderError):
    """No reply in time: connecting, between streamed chunks, or the run's deadline.

    >>> Anthropic(model=..., read_timeout=30, timeout=300)   # idle and overall bounds
    """


class ProviderConnectionError(ProviderError):
    """The connection could not be made or broke before the reply was complete.

    >>> except alloy.ProviderConnectionError: print("is the server up?")
    """


class ProtocolError(ProviderError):
    """The reply breaks its wire format (bad JSON, a stream cut before its end...).

    >>> except alloy.ProtocolError as exc: print(exc.body)
    """


class ScriptExhausted(ProviderError):
    """A ``ScriptedProvider`` was asked for a reply after its script ran out.

    >>> ScriptedProvider([text("only one")])   # a second request raises ScriptExhausted
    """


class MiddlewareError(AlloyError):
    """A middleware hook raised, or returned a value that hook may not return.

    ``hook`` names the hook, for example ``"before_tool_call"``.

    >>> except alloy.MiddlewareError as exc: print(exc.hook, exc.result.status)
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


class ToolTimeout(ToolError):
    """Raise inside a tool whose own time limit ran out; recorded with outcome ``"timeout"``.

    >>> raise alloy.ToolTimeout("Command timed out after 30s")
    """
