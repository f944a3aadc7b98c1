"""Who may reach whom: follows, accepted chats (message requests) and blocks.

The routes are listed in :mod:`veil.wire.social`; the rule every send obeys is enforced by the
repositories inside the send's transaction (:meth:`Repository.store_message`). This service
only validates the other account and maps the repository's answers to HTTP ones:

* following oneself, accepting oneself or blocking oneself is a 400;
* following an unknown account, or one that blocks the caller, is the same 404 ``not_found``
  (a blocked user learns nothing more there than from a missing account);
* accepting or blocking an unknown account is a 404; removing a follow, a chat or a block that
  does not exist is a 204 like any other removal (idempotent).
"""

from __future__ import annotations

from collections.abc import Callable

from veil.server import errors
from veil.server.accounts import Caller, require_account_id
from veil.server.model import LinkedAccount
from veil.server.repository import NotFoundError, Repository
from veil.wire.social import AccountList, AccountSummary, Relationship


class SocialService:
    """Follows, chats and blocks of the calling account."""

    def __init__(self, repo: Repository, now_ms: Callable[[], int]) -> None:
        self.repo = repo
        self.now_ms = now_ms

    def _other(self, caller: Caller, account_id: str, action: str) -> str:
        require_account_id(account_id)
        if account_id == caller.account_id:
            raise errors.bad_request(f"an account cannot {action} itself")
        return account_id

    async def follow(self, caller: Caller, account_id: str) -> None:
        """Follow ``account_id``; 404 if it does not exist or blocks the caller."""
        other = self._other(caller, account_id, "follow")
        try:
            followed = await self.repo.follow(caller.account_id, other, self.now_ms())
        except NotFoundError:
            raise errors.not_found("account") from None
        if not followed:
            raise errors.not_found("account")

    async def unfollow(self, caller: Caller, account_id: str) -> None:
        """Stop following ``account_id`` (nothing to do if the caller did not follow it)."""
        await self.repo.unfollow(caller.account_id, require_account_id(account_id))

    async def following(self, caller: Caller) -> AccountList:
        """The accounts the caller follows."""
        return _list(await self.repo.following(caller.account_id))

    async def followers(self, caller: Caller) -> AccountList:
        """The accounts that follow the caller."""
        return _list(await self.repo.followers(caller.account_id))

    async def accept(self, caller: Caller, account_id: str) -> None:
        """Accept ``account_id``'s messages in the inbox (its message request); 404 if none."""
        other = self._other(caller, account_id, "accept")
        try:
            accepted = await self.repo.accept_chat(caller.account_id, other, self.now_ms())
        except NotFoundError:
            raise errors.not_found("account") from None
        if not accepted:
            raise errors.not_found("account")

    async def decline(self, caller: Caller, account_id: str) -> None:
        """Stop accepting ``account_id``'s messages (they become requests again)."""
        await self.repo.decline_chat(caller.account_id, require_account_id(account_id))

    async def block(self, caller: Caller, account_id: str) -> None:
        """Block ``account_id``: its queued messages to the caller go, follows both ways go."""
        other = self._other(caller, account_id, "block")
        try:
            dropped = await self.repo.block(caller.account_id, other, self.now_ms())
        except NotFoundError:
            raise errors.not_found("account") from None
        if dropped is None:
            raise errors.not_found("account")

    async def unblock(self, caller: Caller, account_id: str) -> None:
        """Remove a block (nothing to do if there was none)."""
        await self.repo.unblock(caller.account_id, require_account_id(account_id))

    async def blocks(self, caller: Caller) -> AccountList:
        """The accounts the caller blocks."""
        return _list(await self.repo.blocked_accounts(caller.account_id))

    async def relationship(self, caller: Caller, account_id: str) -> Relationship:
        """Follows, chats and block between the caller and ``account_id``; 404 if unknown."""
        relation = await self.repo.relation(caller.account_id, require_account_id(account_id))
        if relation is None:
            raise errors.not_found("account")
        r = relation
        return Relationship(r.following, r.followed_by, r.accepted, r.accepted_by, r.blocked)


def _list(accounts: list[LinkedAccount]) -> AccountList:
    return AccountList(
        [AccountSummary(a.account_id, a.display_username, a.since_ms) for a in accounts]
    )
