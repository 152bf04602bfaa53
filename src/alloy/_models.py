"""Context windows of known models, for the compaction budget.

A run's context budget (``max_tokens``) is, unless given, the context window of the provider's
``model`` looked up here. An entry matches a model id that is its ``name`` followed by one of its
``suffixes``: ``""`` (the bare name) or a regular expression for a dated snapshot
(``claude-haiku-4-5-20251001``, ``gpt-5.2-2025-12-11``). A model id with a routing prefix
(``anthropic/claude-sonnet-4-6``, ``models/gemini-2.5-pro``) is also looked up by the part after
the last ``/``. Unknown models get ``DEFAULT_CONTEXT_WINDOW``::

    >>> context_window("claude-haiku-4-5-20251001")
    200000
    >>> context_window("acme-reasoner", {"acme-reasoner": 512_000})
    512000

What the numbers are: the most **input** tokens a request may hold. Where a provider advertises a
total window shared with the reply (OpenAI's GPT-5: "400K context, 128K output"), the entry holds
the input limit the API enforces (272K), since that is what a request must fit under. Anthropic's
windows hold input and output together; the run's ``reserve`` keeps room for the reply.

Sources and assumptions (checked 2026-10): Anthropic's model pages (platform.claude.com/docs,
``models/*/overview``: Claude Opus 4.6 and Sonnet 4.6 have a 1M window, generally available;
Haiku 4.5 and the Claude 4.0-4.5 models 200K without the 1M beta header); OpenAI's model pages
and its API errors ("Input tokens exceed the configured limit of 272,000 tokens" for GPT-5; GPT-5.4
advertises 1.05M with 128K output, so 922K input); Google's Gemini model pages (1,048,576);
xAI's model pages. The Alloy 0.7.4 catalogue these start from listed Claude 4.6 at 200K and the
GPT-5 family at its advertised total; both were corrected upstream later, as here. When a window
is uncertain the smaller value is kept: a budget too small only compacts early, one too large
makes the provider reject the request (which the run then recovers from once, see
``docs/compaction.md``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeAlias

import attrs

from ._errors import ConfigError

__all__ = [
    "CATALOGUE",
    "DEFAULT_CONTEXT_WINDOW",
    "ModelInfo",
    "context_window",
    "lookup",
]

DEFAULT_CONTEXT_WINDOW = 200_000
"""The budget of a model the catalogue does not know (and of providers without a ``model``)."""

Suffix: TypeAlias = "str | re.Pattern[str]"

_ANTHROPIC_DATE = re.compile(r"-\d{8}")  # claude-haiku-4-5-20251001
_OPENAI_DATE = re.compile(r"-\d{4}-\d{2}-\d{2}")  # gpt-5.2-2025-12-11
_GEMINI_PREVIEW = re.compile(r"-preview-\d{2}-\d{4}")  # gemini-2.5-flash-preview-05-2025
_GEMINI_DATE = re.compile(r"-\d{2}-\d{4}")  # gemini-3-pro-preview-11-2025


def _suffix(value: object) -> str | re.Pattern[str]:
    if isinstance(value, str | re.Pattern):
        return value
    raise ConfigError(f"a model suffix must be a string or a compiled regex, got {value!r}")


def _suffixes(value: Iterable[str | re.Pattern[str]]) -> tuple[str | re.Pattern[str], ...]:
    if isinstance(value, str | re.Pattern):
        value = (value,)
    return tuple(_suffix(item) for item in value)


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{attribute.name} must be a positive integer, got {value!r}")


@attrs.frozen
class ModelInfo:
    """A model family's context window, and the id suffixes that belong to it.

    A suffix is a string matched exactly (``""`` is the bare name) or a compiled regex that must
    match the whole rest of the id::

        >>> ModelInfo("acme-reasoner", 640_000, suffixes=("", re.compile(r"-\\d{4}\\.\\d{2}")))
    """

    name: str
    context_window: int = attrs.field(validator=_positive)
    suffixes: tuple[str | re.Pattern[str], ...] = attrs.field(default=("",), converter=_suffixes)

    def matches(self, model: str) -> bool:
        """Whether ``model`` is this family's name followed by one of its suffixes."""
        if not model.startswith(self.name):
            return False
        rest = model[len(self.name) :]
        for suffix in self.suffixes:
            if isinstance(suffix, str):
                if rest == suffix:
                    return True
            elif suffix.fullmatch(rest):
                return True
        return False


def _family(name: str, window: int, *dated: re.Pattern[str] | str) -> ModelInfo:
    return ModelInfo(name, window, suffixes=("", *dated))


CATALOGUE: tuple[ModelInfo, ...] = (
    # Anthropic (window shared by input and output).
    _family("claude-opus-4-6", 1_000_000, _ANTHROPIC_DATE),
    _family("claude-sonnet-4-6", 1_000_000, _ANTHROPIC_DATE),
    _family("claude-haiku-4-5", 200_000, _ANTHROPIC_DATE),
    _family("claude-opus-4-5", 200_000, _ANTHROPIC_DATE),
    _family("claude-sonnet-4-5", 200_000, _ANTHROPIC_DATE),
    _family("claude-opus-4-1", 200_000, _ANTHROPIC_DATE),
    _family("claude-opus-4", 200_000, _ANTHROPIC_DATE),
    _family("claude-sonnet-4", 200_000, _ANTHROPIC_DATE),
    # OpenAI: the input limit (advertised total minus the 128K output).
    _family("o3-pro", 200_000, _OPENAI_DATE),
    _family("o3", 200_000, _OPENAI_DATE),
    _family("o4-mini", 200_000, _OPENAI_DATE),
    _family("gpt-5", 272_000, _OPENAI_DATE),
    _family("gpt-5-mini", 272_000, _OPENAI_DATE),
    _family("gpt-5-nano", 272_000, _OPENAI_DATE),
    _family("gpt-5.1", 272_000, _OPENAI_DATE),
    _family("gpt-5.2", 272_000, _OPENAI_DATE),
    _family("gpt-5.4", 922_000, _OPENAI_DATE),
    _family("gpt-4.1", 1_047_576, _OPENAI_DATE),
    _family("gpt-4.1-mini", 1_047_576, _OPENAI_DATE),
    _family("gpt-4.1-nano", 1_047_576, _OPENAI_DATE),
    _family("gpt-4o", 128_000, _OPENAI_DATE),
    _family("gpt-4o-mini", 128_000, _OPENAI_DATE),
    # Google.
    _family("gemini-flash-latest", 1_048_576),
    _family("gemini-2.5-pro", 1_048_576, _GEMINI_PREVIEW),
    _family("gemini-2.5-flash", 1_048_576, _GEMINI_PREVIEW),
    _family("gemini-2.5-flash-lite", 1_048_576, _GEMINI_PREVIEW),
    _family("gemini-3-pro-preview", 1_048_576, _GEMINI_DATE),
    _family("gemini-3-flash-preview", 1_048_576, _GEMINI_DATE),
    # xAI.
    _family("grok-4", 256_000),
    _family("grok-4-fast-reasoning", 2_000_000),
    _family("grok-4-fast-non-reasoning", 2_000_000),
    _family("grok-4-1-fast-reasoning", 2_000_000),
    _family("grok-4-1-fast-non-reasoning", 2_000_000),
    _family("grok-code-fast-1", 256_000),
    _family("grok-3", 131_072, "-fast"),
    _family("grok-3-mini", 131_072, "-fast"),
)
"""The built-in catalogue, in lookup order (the first entry that matches wins)."""

_BY_NAME = {entry.name: entry for entry in CATALOGUE}

Override: TypeAlias = "int | ModelInfo"


def _override_entry(name: object, value: object) -> ModelInfo:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"model_overrides keys must be model names, got {name!r}")
    if isinstance(value, ModelInfo):
        if value.name != name:
            raise ConfigError(
                f"model_overrides[{name!r}] is a ModelInfo named {value.name!r}; the names differ"
            )
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"model_overrides[{name!r}] must be a positive context window or a ModelInfo, "
            f"got {value!r}"
        )
    known = _BY_NAME.get(name)
    # A catalogue family keeps its dated suffixes; another name matches exactly.
    return ModelInfo(name, value, suffixes=known.suffixes if known is not None else ("",))


def check_overrides(overrides: Mapping[str, Override] | None) -> tuple[ModelInfo, ...]:
    """Validate ``model_overrides=`` into entries, in the mapping's order."""
    if overrides is None:
        return ()
    if not isinstance(overrides, Mapping):
        raise ConfigError(
            f"model_overrides must be a mapping of model name to window, got {overrides!r}"
        )
    return tuple(_override_entry(name, value) for name, value in overrides.items())


def lookup(model: str, overrides: Iterable[ModelInfo] = ()) -> ModelInfo | None:
    """The entry for ``model``: overrides first (in order), then the catalogue; or ``None``."""
    entries = tuple(overrides)
    if not entries:
        return _in_catalogue(model)  # every run asks this: remembered
    return _first_match(model, entries) or _in_catalogue(model)


@functools.lru_cache(maxsize=256)
def _in_catalogue(model: str) -> ModelInfo | None:
    return _first_match(model, CATALOGUE)


def _first_match(model: str, entries: Sequence[ModelInfo]) -> ModelInfo | None:
    candidates = [model]
    if "/" in model:
        candidates.append(model.rsplit("/", 1)[1])
    for candidate in candidates:
        for entry in entries:
            if entry.matches(candidate):
                return entry
    return None


def context_window(
    model: str | None, overrides: Mapping[str, Override] | Iterable[ModelInfo] | None = None
) -> int:
    """The context window of ``model`` (``DEFAULT_CONTEXT_WINDOW`` when unknown or ``None``).

    ``overrides`` maps model names to windows (or ``ModelInfo``) and wins over the catalogue;
    a catalogue name given a new window keeps its dated suffixes::

        >>> context_window("gpt-5.4-2026-03-05", {"gpt-5.4": 900_000})
        900000
        >>> context_window("my-local-model")
        200000
    """
    if overrides is None:
        entries: tuple[ModelInfo, ...] = ()
    elif isinstance(overrides, Mapping):
        entries = check_overrides(overrides)
    else:
        entries = tuple(overrides)
    if not isinstance(model, str) or not model:
        return DEFAULT_CONTEXT_WINDOW
    entry = lookup(model, entries)
    return DEFAULT_CONTEXT_WINDOW if entry is None else entry.context_window
