"""TURN credentials for calls (:mod:`veil.wire.calls`; ARCHITECTURE.md §5).

The TURN REST scheme (draft-uberti-behave-turn-rest-00 §2.2): the relay (coturn with
``use-auth-secret`` and ``static-auth-secret=SECRET``) recomputes the password from the
username and refuses it after the expiry in the username. The server keeps nothing per
credential; the account id in the username lets the relay's logs name who relayed.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from veil.wire.calls import TurnCredentials

DEFAULT_TTL_S: Final = 3600


@dataclass(frozen=True, slots=True)
class TurnSettings:
    """Where the relay is and the secret it shares with this server."""

    urls: tuple[str, ...] = ()
    secret: str = field(default="", repr=False)
    ttl_s: int = DEFAULT_TTL_S


def turn_password(secret: str, username: str) -> str:
    """``base64(HMAC-SHA1(secret, username))``, what coturn computes for ``username``."""
    mac = hmac.digest(secret.encode(), username.encode(), "sha1")
    return base64.b64encode(mac).decode("ascii")


class TurnService:
    """Issues credentials valid for ``settings.ttl_s`` from now."""

    def __init__(self, settings: TurnSettings, now_ms: Callable[[], int]) -> None:
        self.settings = settings
        self.now_ms = now_ms

    def credentials(self, account_id: str) -> TurnCredentials:
        """Credentials for ``account_id`` (empty when no relay is configured)."""
        s = self.settings
        if not s.urls:
            return TurnCredentials([], "", "", 0)
        expiry = self.now_ms() // 1000 + s.ttl_s
        username = f"{expiry}:{account_id}"
        if not s.secret:  # STUN only: nothing to authenticate
            return TurnCredentials(list(s.urls), "", "", s.ttl_s)
        return TurnCredentials(list(s.urls), username, turn_password(s.secret, username), s.ttl_s)
