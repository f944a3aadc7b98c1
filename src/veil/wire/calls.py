"""Calls: short-lived TURN credentials (``GET /v1/calls/turn``).

The server and its TURN relay (coturn, ``use-auth-secret``) share a secret; the server hands
each device credentials in the TURN REST scheme (draft-uberti-behave-turn-rest-00 §2.2):
``username = "<expiry unix seconds>:<account id>"``, ``credential = base64(HMAC-SHA1(secret,
username))``, so the relay needs no user database and a credential stops working at its
expiry. With no TURN configured, ``urls`` is empty (calls use host candidates only; Veil
never falls back to a public STUN server).
"""

from __future__ import annotations

import msgspec


class TurnCredentials(msgspec.Struct, frozen=True):
    """ICE servers for a call (an ``RTCIceServer`` each way: these urls, this username)."""

    urls: list[str]
    username: str
    credential: str
    ttl_s: int
