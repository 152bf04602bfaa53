"""Mapping HTTP statuses and error bodies to typed errors (shared by every codec)."""

from __future__ import annotations

import pytest

import alloy
from alloy._codec._wire import error_from_status, parse_retry_after


@pytest.mark.parametrize(
    ("status", "error_type", "kind", "retryable"),
    [
        (401, "authentication_error", alloy.AuthenticationError, False),
        (403, "permission_error", alloy.PermissionDeniedError, False),
        (404, "not_found_error", alloy.NotFoundError, False),
        (400, "invalid_request_error", alloy.InvalidRequestError, False),
        (408, None, alloy.ProviderTimeout, True),
        (409, None, alloy.InvalidRequestError, True),
        (413, "request_too_large", alloy.InvalidRequestError, False),
        (422, None, alloy.InvalidRequestError, False),
        (429, "rate_limit_error", alloy.RateLimitError, True),
        (429, "insufficient_quota", alloy.RateLimitError, False),
        (500, "api_error", alloy.ServerError, True),
        (502, None, alloy.ServerError, True),
        (503, None, alloy.ServerError, True),
        (503, "server_is_overloaded", alloy.OverloadedError, True),
        (504, "timeout_error", alloy.ServerError, True),
        (529, "overloaded_error", alloy.OverloadedError, True),
        (501, None, alloy.ServerError, False),
    ],
)
def test_status_classification(
    status: int, error_type: str | None, kind: type[alloy.ProviderError], retryable: bool
) -> None:
    error = error_from_status(
        provider="p",
        status=status,
        headers={"request-id": "req_1"},
        body=b'{"error": "x"}',
        error_type=error_type,
        message="something",
    )
    assert type(error) is kind
    assert error.retryable is retryable
    assert error.status == status
    assert error.request_id == "req_1"
    assert error.body == '{"error": "x"}'
    assert error.provider == "p"
    assert "something" in str(error)


def test_context_length_exceeded() -> None:
    error = error_from_status(
        provider="p",
        status=400,
        headers={},
        body=b"",
        error_type="invalid_request_error",
        message="prompt is too long: 250000 tokens > 200000 maximum",
    )
    assert isinstance(error, alloy.ContextLengthExceeded)
    assert isinstance(error, alloy.InvalidRequestError)


@pytest.mark.parametrize(
    ("error_type", "kind", "retryable"),
    [
        ("overloaded_error", alloy.OverloadedError, True),
        ("rate_limit_exceeded", alloy.RateLimitError, True),
        ("api_error", alloy.ServerError, True),
        ("invalid_request_error", alloy.InvalidRequestError, False),
        ("something_new", alloy.ProviderError, False),
    ],
)
def test_in_stream_errors_classified_by_type(
    error_type: str, kind: type[alloy.ProviderError], retryable: bool
) -> None:
    error = error_from_status(provider="p", status=None, error_type=error_type, message="m")
    assert type(error) is kind
    assert error.retryable is retryable
    assert "error in stream" in str(error)


def test_retry_after_and_rate_limit_headers() -> None:
    headers = {
        "retry-after": "12",
        "anthropic-ratelimit-requests-remaining": "0",
        "x-ratelimit-remaining-tokens": "100",
        "content-type": "application/json",
    }
    error = error_from_status(provider="p", status=429, headers=headers, body="")
    assert error.retry_after == 12
    assert error.rate_limits == {
        "anthropic-ratelimit-requests-remaining": "0",
        "x-ratelimit-remaining-tokens": "100",
    }


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, 10.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "-4"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    now = 1445412480.0  # 07:28:00 GMT that day
    assert parse_retry_after(headers, now=now) == expected
