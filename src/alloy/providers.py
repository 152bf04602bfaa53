"""The HTTP providers: swap one for another in one line.

::

    from alloy.providers import Anthropic, OpenAI, OpenAICompat

    Anthropic(api_key=..., model="claude-sonnet-4-6")                 # Messages API
    OpenAI(api_key=..., model="gpt-5.4")                              # Responses API
    OpenAI(api_key=..., api_url="https://api.x.ai", model="grok-4")   # xAI via Responses
    OpenAICompat(api_url="http://localhost:11434", model="llama4")    # Ollama, vLLM, Groq...

Each is a sans-IO codec (``alloy._codec``) behind one pooled httpx2 client, with retries
(``RetryPolicy``), an idle ``read_timeout`` between streamed chunks, an overall ``timeout``
per model call, and optional ``fallbacks`` tried when this provider is unavailable. Use a
provider as an async context manager (or call ``aclose()``) to close its connections.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._codec import _anthropic, _chat, _responses
from ._codec._wire import HttpRequest, StreamDecoder
from ._errors import ProviderError
from ._provider import Completion, Provider, Request
from ._providers._http import HttpProvider, api_key_from
from ._retry import RetryPolicy

__all__ = ["Anthropic", "OpenAI", "OpenAICompat", "RetryPolicy"]


class _Bound:
    """A codec module with its settings bound: what ``HttpProvider`` calls."""

    def __init__(self, module: Any, settings: Any) -> None:
        self._module = module
        self.settings = settings

    def encode(self, request: Request, *, stream: bool) -> HttpRequest:
        result: HttpRequest = self._module.encode_request(request, self.settings, stream=stream)
        return result

    def decode_response(self, body: bytes) -> Completion:
        result: Completion = self._module.decode_response(body)
        return result

    def stream_decoder(self) -> StreamDecoder:
        result: StreamDecoder = self._module.StreamDecoder()
        return result

    def decode_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        result: ProviderError = self._module.decode_error(status, headers, body)
        return result


def _headers(extra: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    return tuple((str(k), str(v)) for k, v in (extra or {}).items())


class Anthropic(HttpProvider):
    """Anthropic's Messages API.

    ``api_key`` defaults to ``$ANTHROPIC_API_KEY``. ``max_tokens`` caps the reply;
    ``thinking_budget`` turns on extended thinking; ``cache=True`` sets prompt-cache
    breakpoints on the system prompt, the tools and the last message; ``code_execution=True``
    adds Anthropic's code execution tool (run by Anthropic, never locally)::

        provider = Anthropic(model="claude-sonnet-4-6", thinking_budget=2048, cache=True)
        result = await alloy.run("Plan the refactor", provider=provider, tools=[Read])
    """

    def __init__(
        self,
        *,
        model: str,
        api_key: str | None = None,
        api_url: str = "https://api.anthropic.com",
        max_tokens: int = 4096,
        thinking_budget: int | None = None,
        cache: bool = False,
        code_execution: bool = False,
        betas: Sequence[str] = (),
        tool_choice: str | Mapping[str, Any] | None = None,
        api_version: str = "2023-06-01",
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        client: Any | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        timeout: float | None = 600.0,
        retry: RetryPolicy | None = None,
        fallbacks: Sequence[Provider] = (),
    ) -> None:
        settings = _anthropic.AnthropicSettings(
            model=model,
            api_key=api_key_from(api_key, "ANTHROPIC_API_KEY", "anthropic", required=False),
            max_tokens=max_tokens,
            api_version=api_version,
            betas=tuple(betas),
            extra_headers=_headers(extra_headers),
            thinking_budget=thinking_budget,
            cache=cache,
            code_execution=code_execution,
            tool_choice=tool_choice,
            extra_body=extra_body,
        )
        self.model = model
        super().__init__(
            name="anthropic",
            codec=_Bound(_anthropic, settings),
            api_url=api_url,
            client=client,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            timeout=timeout,
            retry=retry,
            fallbacks=fallbacks,
        )


class OpenAI(HttpProvider):
    """OpenAI's Responses API (also xAI and other hosts that speak it).

    ``api_key`` defaults to ``$OPENAI_API_KEY``. Reasoning items are kept encrypted in the
    history (``store=False``), so multi-turn reasoning works without server-side state::

        provider = OpenAI(model="gpt-5.4", reasoning_effort="medium")
        grok = OpenAI(api_key=xai_key, api_url="https://api.x.ai", model="grok-4")
    """

    def __init__(
        self,
        *,
        model: str,
        api_key: str | None = None,
        api_url: str = "https://api.openai.com",
        max_output_tokens: int | None = None,
        reasoning_effort: str | None = None,
        reasoning_summary: str | None = None,
        store: bool = False,
        tool_choice: str | Mapping[str, Any] | None = None,
        parallel_tool_calls: bool | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        client: Any | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        timeout: float | None = 600.0,
        retry: RetryPolicy | None = None,
        fallbacks: Sequence[Provider] = (),
    ) -> None:
        settings = _responses.ResponsesSettings(
            model=model,
            api_key=api_key_from(api_key, "OPENAI_API_KEY", "openai", required=False),
            max_output_tokens=max_output_tokens,
            reasoning_effort=reasoning_effort,
            reasoning_summary=reasoning_summary,
            store=store,
            extra_headers=_headers(extra_headers),
            tool_choice=tool_choice,
            parallel_tool_calls=parallel_tool_calls,
            extra_body=extra_body,
        )
        self.model = model
        super().__init__(
            name="openai",
            codec=_Bound(_responses, settings),
            api_url=api_url,
            client=client,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            timeout=timeout,
            retry=retry,
            fallbacks=fallbacks,
        )


class OpenAICompat(HttpProvider):
    """Any OpenAI-compatible chat completions endpoint: Ollama, vLLM, OpenRouter, DeepSeek,
    Groq, Mistral, Gemini's compatibility endpoint...

    ``api_key`` is optional (no ``Authorization`` header without it). Set
    ``include_usage=False`` for hosts that reject ``stream_options``; ``name`` (default
    ``"chat"``) tells hosts apart in errors (``exc.provider``)::

        OpenAICompat(api_url="http://localhost:11434", model="llama4")
        OpenAICompat(api_url="https://generativelanguage.googleapis.com",
                     chat_path="/v1beta/openai/chat/completions",
                     api_key=key, model="gemini-2.5-flash-lite")
    """

    def __init__(
        self,
        *,
        api_url: str,
        model: str,
        api_key: str | None = None,
        chat_path: str = "/v1/chat/completions",
        name: str = "chat",
        max_tokens: int | None = None,
        include_usage: bool = True,
        send_reasoning: bool = False,
        tool_choice: str | Mapping[str, Any] | None = None,
        parallel_tool_calls: bool | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        client: Any | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        timeout: float | None = 600.0,
        retry: RetryPolicy | None = None,
        fallbacks: Sequence[Provider] = (),
    ) -> None:
        settings = _chat.ChatSettings(
            model=model,
            api_key=api_key,
            chat_path=chat_path,
            max_tokens=max_tokens,
            include_usage=include_usage,
            send_reasoning=send_reasoning,
            extra_headers=_headers(extra_headers),
            tool_choice=tool_choice,
            parallel_tool_calls=parallel_tool_calls,
            extra_body=extra_body,
        )
        self.model = model
        super().__init__(
            name=name,
            codec=_Bound(_chat, settings),
            api_url=api_url,
            client=client,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            timeout=timeout,
            retry=retry,
            fallbacks=fallbacks,
        )
