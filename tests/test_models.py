"""The model catalogue: context windows by model id, dated snapshots, overrides, the default."""

from __future__ import annotations

import re

import pytest

import alloy
from alloy._models import CATALOGUE, DEFAULT_CONTEXT_WINDOW, ModelInfo, context_window, lookup
from alloy.testing import ScriptedProvider, text


@pytest.mark.parametrize(
    ("model", "window"),
    [
        ("claude-opus-4-6", 1_000_000),
        ("claude-sonnet-4-6", 1_000_000),
        ("claude-haiku-4-5", 200_000),
        ("gpt-5", 272_000),
        ("gpt-5.1", 272_000),
        ("gpt-5.2", 272_000),
        ("gpt-5.4", 922_000),
        ("gemini-2.5-flash", 1_048_576),
        ("gemini-2.5-flash-lite", 1_048_576),
        ("gemini-3-flash-preview", 1_048_576),
        ("gemini-flash-latest", 1_048_576),
        ("grok-4", 256_000),
        ("grok-4-fast-reasoning", 2_000_000),
        ("grok-4-fast-non-reasoning", 2_000_000),
        ("grok-4-1-fast-reasoning", 2_000_000),
        ("grok-4-1-fast-non-reasoning", 2_000_000),
        ("grok-code-fast-1", 256_000),
        ("o3-pro", 200_000),
    ],
)
def test_exact_model_ids(model: str, window: int) -> None:
    assert context_window(model) == window


@pytest.mark.parametrize(
    ("model", "window"),
    [
        ("claude-opus-4-6-20251015", 1_000_000),
        ("claude-haiku-4-5-20251001", 200_000),
        ("claude-sonnet-4-5-20250929", 200_000),
        ("gpt-5-2025-08-07", 272_000),
        ("gpt-5.1-2025-11-13", 272_000),
        ("gpt-5.2-2025-12-11", 272_000),
        ("gpt-5.4-2026-03-05", 922_000),  # not the gpt-5 entry: ".4-2026-03-05" is no suffix of it
        ("gemini-2.5-pro-preview-06-2025", 1_048_576),
        ("gemini-3-pro-preview-11-2025", 1_048_576),
        ("grok-3-mini", 131_072),
        ("grok-3-mini-fast", 131_072),
        ("gpt-5-mini-2025-08-07", 272_000),
    ],
)
def test_dated_and_aliased_ids(model: str, window: int) -> None:
    assert context_window(model) == window


def test_unknown_models_get_the_default() -> None:
    assert lookup("unknown-model") is None
    assert context_window("unknown-model") == DEFAULT_CONTEXT_WINDOW == 200_000
    assert context_window(None) == DEFAULT_CONTEXT_WINDOW
    assert context_window("") == DEFAULT_CONTEXT_WINDOW


def test_a_suffix_must_match_the_whole_rest_of_the_id() -> None:
    # 0.7.4 stripped the prefix repeatedly ("gpt-5gpt-5" matched gpt-5) and let any date-ish
    # tail through; an entry matches only its name plus one of its exact suffixes.
    assert lookup("gpt-5gpt-5") is None
    assert lookup("claude-haiku-4-5-2025") is None
    assert lookup("claude-haiku-4-5-20251001-extra") is None
    assert lookup("grok-3-fast-fast") is None


def test_routing_prefixes_are_looked_through() -> None:
    assert context_window("anthropic/claude-haiku-4-5") == 200_000
    assert context_window("models/gemini-2.5-pro") == 1_048_576


def test_exact_match_override_for_a_custom_model() -> None:
    assert context_window("acme-reasoner", {"acme-reasoner": 512_000}) == 512_000
    # an unknown name matches exactly, no dated suffixes
    assert context_window("acme-reasoner-20260101", {"acme-reasoner": 512_000}) == 200_000


def test_an_override_of_a_catalogue_model_keeps_its_suffixes() -> None:
    assert context_window("gpt-5.4-2026-03-05", {"gpt-5.4": 900_000}) == 900_000
    assert context_window("gpt-5.4", {"gpt-5.4": 900_000}) == 900_000


def test_custom_suffix_patterns() -> None:
    info = ModelInfo("acme-reasoner", 640_000, suffixes=("", re.compile(r"-\d{4}\.\d{2}")))
    overrides = {"acme-reasoner": info}
    assert context_window("acme-reasoner-2026.03", overrides) == 640_000
    assert context_window("acme-reasoner", overrides) == 640_000
    assert context_window("acme-reasoner-2026", overrides) == 200_000
    assert context_window("acme-reasoner-2026.03", [info]) == 640_000


def test_overrides_win_in_their_own_order() -> None:
    overrides = {
        "acme": ModelInfo("acme", 1_000, suffixes=(re.compile(r"-.*"),)),
        "acme-large": 2_000,
    }
    assert context_window("acme-large", overrides) == 1_000  # the first match wins
    assert context_window("acme-large", dict(reversed(overrides.items()))) == 2_000


@pytest.mark.parametrize(
    "overrides",
    [
        {"m": 0},
        {"m": -5},
        {"m": True},
        {"m": "128k"},
        {"": 1_000},
        {"m": ModelInfo("other", 1_000)},
        ["m", 1_000],
    ],
)
def test_bad_overrides_are_config_errors(overrides: object) -> None:
    with pytest.raises(alloy.ConfigError):
        alloy.run_sync(
            "hi",
            provider=ScriptedProvider([text("hi")]),
            model_overrides=overrides,  # type: ignore[arg-type]
        )


def test_catalogue_has_the_current_families() -> None:
    names = {entry.name for entry in CATALOGUE}
    assert {"claude-sonnet-4-6", "grok-code-fast-1", "gpt-5.4", "gemini-2.5-pro"} <= names
    assert all(entry.context_window > 0 for entry in CATALOGUE)
    assert len(names) == len(CATALOGUE), "each family appears once"


def test_model_info_validates() -> None:
    with pytest.raises(alloy.ConfigError):
        ModelInfo("m", 0)
    with pytest.raises(alloy.ConfigError):
        ModelInfo("m", 10, suffixes=(3,))  # type: ignore[arg-type]
    assert ModelInfo("m", 10, suffixes="-x").suffixes == ("-x",)  # type: ignore[arg-type]
