"""The JSON error body every refusal carries."""

from __future__ import annotations

from typing import Any

import msgspec


class ErrorBody(msgspec.Struct, frozen=True):
    """``{"error": code, "message": human text, ...details}``; ``code`` is stable."""

    error: str
    message: str
    details: dict[str, Any] = msgspec.field(default_factory=dict)
