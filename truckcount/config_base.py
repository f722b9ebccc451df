"""The base of every config model, and the error a bad config raises."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or invalid."""


class StrictModel(BaseModel):
    """Base for every config model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def describe(exc: ValidationError) -> str:
    """A pydantic error as ``place: message; …``, without pydantic's prefixes and links."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "top level"
        msg = str(err["msg"]).removeprefix("Value error, ")  # our validators' own words
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)
