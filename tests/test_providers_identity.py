"""Successful replies carry the provider's request id and rate-limit headers too."""

from __future__ import annotations

import httpx2
import pytest
import trio

import alloy
from alloy.providers import Anthropic, OpenAI, OpenAICompat
from alloy.testing import WireServer, text

PROVIDERS = {"anthropic": Anthropic, "openai": OpenAI, "chat": OpenAICompat}


@pytest.mark.parametrize("format", ["anthropic", "openai", "chat"])
@pytest.mark.parametrize("streaming", [False, True])
async def test_request_id_on_completions_and_turn_events(format: str, streaming: bool) -> None:
    with trio.fail_after(10):
        async with (
            WireServer([text("hello")], format=format) as server,  # type: ignore[arg-type]
            httpx2.AsyncClient(trust_env=False) as client,
        ):
            provider = PROVIDERS[format](api_url=server.url, model="m", api_key="k", client=client)
            events: list[alloy.Event] = []
            await alloy.run("hi", provider=provider, on_event=events.append if streaming else None)
            request = alloy.Request(messages=(alloy.Message.user("hi"),))
            server.extend([text("again")])
            completion = await provider.complete(request)
    assert completion.request_id == "req_wire_2"
    if streaming:
        turn = next(e for e in events if isinstance(e, alloy.TurnCompleted))
        assert turn.request_id == "req_wire_1"


async def test_user_client_keeps_its_own_timeouts() -> None:
    from alloy.testing import stall

    with trio.fail_after(10):
        async with (
            WireServer([stall(text("slow answer"), seconds=5)], format="chat") as server,
            httpx2.AsyncClient(trust_env=False, timeout=httpx2.Timeout(5, read=0.3)) as client,
        ):
            provider = OpenAICompat(
                api_url=server.url,
                model="m",
                client=client,
                read_timeout=120,
                retry=alloy.providers.RetryPolicy(max_retries=0),
            )
            with pytest.raises(alloy.ProviderTimeout):
                await alloy.run("hi", provider=provider, on_event=lambda e: None)


async def test_v1_in_the_base_url_is_not_doubled() -> None:
    with trio.fail_after(10):
        async with (
            WireServer([text("ok")], format="chat") as server,
            httpx2.AsyncClient(trust_env=False) as client,
        ):
            provider = OpenAICompat(api_url=server.url + "/v1", model="m", client=client)
            result = await alloy.run("hi", provider=provider)
    assert result.text == "ok"
    assert server.requests[0].path == "/v1/chat/completions"
