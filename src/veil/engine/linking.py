"""Linking a new device to an account (docs/client-design.md "Identity and devices").

The new device makes an ephemeral X25519 key and shows ``veil-link:<mailbox>:<key>``; an
existing device seals the account's identity key, the linking code and its contacts to that
key (:mod:`veil.core.provisioning`) and puts the result in the mailbox; the new device opens
it, links with the code and publishes prekeys of its own. The server relays the sealed message
and cannot read it.
"""

from __future__ import annotations

from dataclasses import dataclass

from veil.core import provisioning
from veil.core.crypto.x25519 import PrivateKey
from veil.core.errors import LocalError
from veil.core.rng import Rng
from veil.engine.keys import KeyBatch, new_account_keys
from veil.store import AccountRecord, Contact, DeviceStore


@dataclass(frozen=True, slots=True)
class PendingLink:
    """The new device's side while it waits: its mailbox and ephemeral key."""

    provisioning_id: str
    ephemeral: PrivateKey
    uri: str

    def __repr__(self) -> str:
        return f"PendingLink({self.provisioning_id})"


@dataclass(frozen=True, slots=True)
class LinkInvite:
    """What the new device learned from the sealed message (secrets hidden in repr)."""

    message: provisioning.ProvisionMessage

    @property
    def account_id(self) -> str:
        return self.message.account_id

    @property
    def code(self) -> str:
        return self.message.linking_code


def start_link(provisioning_id: str, rng: Rng) -> PendingLink:
    """An ephemeral key for the mailbox and the URI to show (or put in a QR code)."""
    ephemeral = PrivateKey.generate(rng)
    return PendingLink(
        provisioning_id, ephemeral, provisioning.link_uri(provisioning_id, ephemeral.public_key)
    )


def open_invite(pending: PendingLink, sealed: bytes) -> LinkInvite:
    """Open the sealed message from the mailbox (:class:`RemoteError` if it is not for us)."""
    return LinkInvite(provisioning.open_provisioning(sealed, pending.ephemeral))


def seal_invite(store: DeviceStore, uri: str, code: str, rng: Rng) -> tuple[str, bytes]:
    """The existing device's side: the mailbox id and the sealed message for it."""
    provisioning_id, public = provisioning.parse_link_uri(uri)
    account = store.account()
    if account is None:
        raise LocalError("this profile has no account to share")
    contacts = tuple(
        (c.account_id, c.username) for c in store.contacts()[: provisioning.MAX_CONTACTS]
    )
    message = provisioning.ProvisionMessage(
        account.identity_private, account.account_id, account.username, code, contacts
    )
    return provisioning_id, provisioning.seal_provisioning(message, public, rng)


def finish_link(
    store: DeviceStore,
    invite: LinkInvite,
    *,
    server_url: str,
    device_id: int,
    credential: str,
    registration_id: int,
    rng: Rng,
    now_ms: int,
) -> KeyBatch:
    """Save the linked account and contacts, make this device's prekeys; returns what to
    upload. One transaction."""
    message = invite.message
    identity = PrivateKey(message.identity_private)
    with store.transaction():
        store.save_account(
            AccountRecord(
                server_url=server_url,
                account_id=message.account_id,
                device_id=device_id,
                credential=credential,
                username=message.username,
                identity_private=message.identity_private,
                registration_id=registration_id,
                created_ms=now_ms,
            )
        )
        for account_id, username in message.contacts:
            store.save_contact(Contact(account_id, username))
        return new_account_keys(store, identity, rng, now_ms)
