"""The MLS key schedule (RFC 9420 §8, §8.1, §8.5, §8.6, §8.7, §12.4.3.1).

One epoch step, from the previous ``init_secret``, the ``commit_secret`` (all zero without a
path), the ``psk_secret`` (all zero without PSKs, see ``veil.core.mls.psk``) and the encoded
GroupContext of the new epoch::

    joiner_secret  = ExpandWithLabel(Extract(init_secret, commit_secret), "joiner", ctx, Nh)
    member_secret  = Extract(joiner_secret, psk_secret)
    welcome_secret = DeriveSecret(member_secret, "welcome")
    epoch_secret   = ExpandWithLabel(member_secret, "epoch", ctx, Nh)
    <secret>       = DeriveSecret(epoch_secret, <label>)   (table of §8)

:func:`advance` does all of it; a new member who learns ``joiner_secret`` from a Welcome uses
:func:`from_joiner`. :class:`EpochSecrets` holds the results (hidden from ``repr``) and offers
the external key pair (§8.6, ``DeriveKeyPair(external_secret)``), MLS-Exporter (§8.5) and the
Welcome key/nonce (§12.4.3.1). ``commit_secret`` and ``psk_secret`` may be ``None`` for the
all-zero value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from veil.core.errors import LocalError
from veil.core.mls.suite import CipherSuite

EPOCH_LABELS = {
    "sender_data_secret": b"sender data",
    "encryption_secret": b"encryption",
    "exporter_secret": b"exporter",
    "external_secret": b"external",
    "confirmation_key": b"confirm",
    "membership_key": b"membership",
    "resumption_psk": b"resumption",
    "epoch_authenticator": b"authentication",
    "init_secret": b"init",
}
"""Secrets derived from epoch_secret with DeriveSecret, by field name (§8, table)."""


def _zero_or(suite: CipherSuite, value: bytes | None, what: str) -> bytes:
    if value is None:
        return bytes(suite.nh)
    if len(value) != suite.nh:
        raise LocalError(f"{what} must be {suite.nh} bytes")
    return value


def joiner_secret(
    suite: CipherSuite, init_secret: bytes, commit_secret: bytes | None, group_context: bytes
) -> bytes:
    """joiner_secret (§8) from the previous init_secret and this epoch's commit_secret."""
    commit = _zero_or(suite, commit_secret, "commit_secret")
    prk = suite.extract(init_secret, commit)
    return suite.expand_with_label(prk, b"joiner", group_context, suite.nh)


def welcome_secret(suite: CipherSuite, joiner: bytes, psk_secret: bytes | None) -> bytes:
    """welcome_secret (§8) = DeriveSecret(Extract(joiner_secret, psk_secret), "welcome")."""
    member = suite.extract(joiner, _zero_or(suite, psk_secret, "psk_secret"))
    return suite.derive_secret(member, b"welcome")


def welcome_key_nonce(suite: CipherSuite, welcome: bytes) -> tuple[bytes, bytes]:
    """The AEAD key and nonce that encrypt a Welcome's GroupInfo (§12.4.3.1)."""
    key = suite.expand_with_label(welcome, b"key", b"", suite.nk)
    nonce = suite.expand_with_label(welcome, b"nonce", b"", suite.nn)
    return key, nonce


def mls_exporter(
    suite: CipherSuite, exporter_secret: bytes, label: bytes, context: bytes, length: int
) -> bytes:
    """MLS-Exporter (§8.5): ExpandWithLabel(DeriveSecret(exporter_secret, label),
    "exported", Hash(context), length)."""
    secret = suite.derive_secret(exporter_secret, label)
    return suite.expand_with_label(secret, b"exported", suite.hash(context), length)


@dataclass(frozen=True, slots=True)
class EpochSecrets:
    """Every secret of one epoch (§8); ``repr`` shows none of them."""

    suite: CipherSuite = field(repr=False)
    joiner_secret: bytes = field(repr=False)
    welcome_secret: bytes = field(repr=False)
    epoch_secret: bytes = field(repr=False)
    sender_data_secret: bytes = field(repr=False)
    encryption_secret: bytes = field(repr=False)
    exporter_secret: bytes = field(repr=False)
    external_secret: bytes = field(repr=False)
    confirmation_key: bytes = field(repr=False)
    membership_key: bytes = field(repr=False)
    resumption_psk: bytes = field(repr=False)
    epoch_authenticator: bytes = field(repr=False)
    init_secret: bytes = field(repr=False)
    """init_secret_[n]: the input of the next epoch's key schedule."""

    def __repr__(self) -> str:
        return f"EpochSecrets(suite={self.suite.id})"

    def external_key_pair(self) -> tuple[bytes, bytes]:
        """(external_priv, external_pub) = KEM.DeriveKeyPair(external_secret) (§8.6)."""
        return self.suite.derive_key_pair(self.external_secret)

    def exporter(self, label: bytes, context: bytes, length: int) -> bytes:
        """MLS-Exporter(label, context, length) of this epoch (§8.5)."""
        return mls_exporter(self.suite, self.exporter_secret, label, context, length)

    def welcome_key_nonce(self) -> tuple[bytes, bytes]:
        """The Welcome's GroupInfo key and nonce (§12.4.3.1)."""
        return welcome_key_nonce(self.suite, self.welcome_secret)

    def confirmation_tag(self, confirmed_transcript_hash: bytes) -> bytes:
        """confirmation_tag = MAC(confirmation_key, confirmed_transcript_hash) (§6.1)."""
        return self.suite.mac(self.confirmation_key, confirmed_transcript_hash)


def from_joiner(
    suite: CipherSuite, joiner: bytes, psk_secret: bytes | None, group_context: bytes
) -> EpochSecrets:
    """The epoch's secrets from joiner_secret (what a Welcome gives a new member, §8)."""
    if len(joiner) != suite.nh:
        raise LocalError(f"joiner_secret must be {suite.nh} bytes")
    member = suite.extract(joiner, _zero_or(suite, psk_secret, "psk_secret"))
    epoch = suite.expand_with_label(member, b"epoch", group_context, suite.nh)

    def derive(name: str) -> bytes:
        return suite.derive_secret(epoch, EPOCH_LABELS[name])

    return EpochSecrets(
        suite=suite,
        joiner_secret=joiner,
        welcome_secret=suite.derive_secret(member, b"welcome"),
        epoch_secret=epoch,
        sender_data_secret=derive("sender_data_secret"),
        encryption_secret=derive("encryption_secret"),
        exporter_secret=derive("exporter_secret"),
        external_secret=derive("external_secret"),
        confirmation_key=derive("confirmation_key"),
        membership_key=derive("membership_key"),
        resumption_psk=derive("resumption_psk"),
        epoch_authenticator=derive("epoch_authenticator"),
        init_secret=derive("init_secret"),
    )


def advance(
    suite: CipherSuite,
    init_secret: bytes,
    commit_secret: bytes | None,
    psk_secret: bytes | None,
    group_context: bytes,
) -> EpochSecrets:
    """The next epoch's secrets from the previous init_secret (§8)."""
    joiner = joiner_secret(suite, init_secret, commit_secret, group_context)
    return from_joiner(suite, joiner, psk_secret, group_context)
