"""Who may reach whom: follows, accepted chats (message requests) and blocks.

Routes (all authenticated; ``{account_id}`` is the other account)::

    PUT    /v1/follows/{account_id}    follow                      -> 204
    DELETE /v1/follows/{account_id}    unfollow                    -> 204
    GET    /v1/follows                 accounts I follow           -> AccountList
    GET    /v1/followers               accounts that follow me     -> AccountList
    PUT    /v1/chats/{account_id}      accept their message request -> 204
    DELETE /v1/chats/{account_id}      decline it (they are not told) -> 204
    PUT    /v1/blocks/{account_id}     block                       -> 204
    DELETE /v1/blocks/{account_id}     unblock                     -> 204
    GET    /v1/blocks                  accounts I block            -> AccountList
    GET    /v1/relationship/{account_id}                           -> Relationship

The rule the server enforces on every send from A to B (ARCHITECTURE.md §1): if B blocks A,
nothing is stored for B's devices (A's answer looks like any other); otherwise the envelopes
are tagged ``request`` unless B has accepted A (B accepted A's request, or B sent A a message
first) or A and B follow each other. Sending to B counts as A accepting B.
"""

from __future__ import annotations

import msgspec

from veil.wire.types import AccountId


class AccountSummary(msgspec.Struct, frozen=True):
    """An account in a list: id and (display) username."""

    account_id: AccountId
    username: str
    since_ms: int


class AccountList(msgspec.Struct, frozen=True):
    """Accounts, oldest relationship first."""

    accounts: list[AccountSummary]


class Relationship(msgspec.Struct, frozen=True):
    """Between the caller and one other account."""

    following: bool
    """The caller follows them."""
    followed_by: bool
    """They follow the caller."""
    accepted: bool
    """The caller accepts their messages in the inbox (not as requests)."""
    accepted_by: bool
    """They accept the caller's messages in their inbox."""
    blocked: bool
    """The caller blocks them."""
