"""Shared fixtures and tools for the test suite."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

import alloy


class Echo:
    """A tool that returns its text, for loop tests."""

    name = "echo"
    description = "Echo the text back."
    input_schema: Mapping[str, Any] = {
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
        "additionalProperties": False,
    }

    async def execute(self, arguments: Mapping[str, Any], context: alloy.ToolContext) -> str:
        return f"Echo: {arguments['text']}"


@pytest.fixture
def echo() -> Echo:
    return Echo()
