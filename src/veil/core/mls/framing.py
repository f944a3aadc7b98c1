"""Message protection (RFC 9420 §6): signing, PublicMessage and PrivateMessage.

* :func:`sign_content` -- the FramedContentTBS signature (SignWithLabel "FramedContentTBS",
  §6.1) giving an :class:`AuthenticatedContent`;
* :func:`protect_public` / :func:`unprotect_public` -- §6.2: the membership tag
  MAC(membership_key, AuthenticatedContentTBM) for member senders, the signature check, and
  the rule that application data is never sent as a PublicMessage;
* :func:`protect_private` / :func:`unprotect_private` -- §6.3: content encrypted under the
  sender's handshake or application ratchet key, with the 4-byte reuse guard XORed into the
  nonce (§6.3.1), and the SenderData encrypted under the key/nonce derived from the
  ciphertext sample (§6.3.2); the padding must be all zero.

Every unprotect failure is typed -- :class:`~veil.core.mls.errors.ValidationError` (with a
requirement id), :class:`~veil.core.mls.errors.MlsDecryptError` or
:class:`~veil.core.errors.DecodeError` -- and the secret tree passed in is never changed:
:func:`unprotect_private` works on a copy and returns it on success.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

from veil.core.errors import LocalError
from veil.core.mls.errors import ValidationError
from veil.core.mls.secret_tree import RatchetType, SecretTree, sender_data_key_nonce
from veil.core.mls.structs.framing import (
    AuthenticatedContent,
    ContentType,
    FramedContent,
    FramedContentAuthData,
    PrivateMessage,
    PrivateMessageContent,
    PublicMessage,
    Sender,
    SenderData,
    SenderType,
    WireFormat,
)
from veil.core.mls.structs.group import GroupContext
from veil.core.mls.suite import CipherSuite
from veil.core.rng import Rng

SIGN_LABEL = b"FramedContentTBS"
REUSE_GUARD_LEN = 4

SignerLookup = Callable[[Sender], bytes]
"""Resolves a sender to its signature public key (raise ValidationError if there is none)."""


@dataclass(frozen=True, slots=True)
class Unprotected:
    """A verified message: the authenticated content and (for PrivateMessage) the secret
    tree to keep from now on (the caller's tree is left as it was)."""

    content: AuthenticatedContent
    secret_tree: SecretTree | None = None


def sign_content(
    suite: CipherSuite,
    signature_priv: bytes,
    wire_format: WireFormat,
    content: FramedContent,
    context: GroupContext | None,
    rng: Rng,
    confirmation_tag: bytes | None = None,
) -> AuthenticatedContent:
    """Sign ``content`` (§6.1); a commit needs its ``confirmation_tag``, nothing else has one."""
    if (confirmation_tag is not None) != (content.content_type == ContentType.COMMIT):
        raise LocalError("a confirmation tag goes with commits and only with commits")
    tbs = AuthenticatedContent(wire_format, content, FramedContentAuthData(b"")).tbs(context)
    signature = suite.sign_with_label(signature_priv, SIGN_LABEL, tbs, rng)
    return AuthenticatedContent(
        wire_format, content, FramedContentAuthData(signature, confirmation_tag)
    )


def _verify_signature(
    suite: CipherSuite, ac: AuthenticatedContent, context: GroupContext, lookup: SignerLookup
) -> None:
    public_key = lookup(ac.content.sender)
    tbs = ac.tbs(context)
    if not suite.verify_with_label(public_key, SIGN_LABEL, tbs, ac.auth.signature):
        raise ValidationError("RFC9420-6.1-signature", "FramedContentTBS signature is invalid")


def _check_group(group_id: bytes, epoch: int, context: GroupContext) -> None:
    if group_id != context.group_id:
        raise ValidationError("RFC9420-6-group-id", "message is for another group")
    if epoch != context.epoch:
        raise ValidationError("RFC9420-6-epoch", f"message epoch {epoch} != {context.epoch}")


# --- PublicMessage (§6.2) ---------------------------------------------------------------------


def _membership_tag(
    suite: CipherSuite, ac: AuthenticatedContent, context: GroupContext, membership_key: bytes
) -> bytes:
    return suite.mac(membership_key, ac.tbm(context))


def protect_public(
    suite: CipherSuite,
    ac: AuthenticatedContent,
    context: GroupContext,
    membership_key: bytes,
) -> PublicMessage:
    """Frame signed content as a PublicMessage; members add the membership tag (§6.2)."""
    if ac.wire_format != WireFormat.MLS_PUBLIC_MESSAGE:
        raise LocalError("content was signed for another wire format")
    if ac.content.content_type == ContentType.APPLICATION:
        raise LocalError("application messages must be sent as PrivateMessage (§6.2)")
    tag = None
    if ac.content.sender.sender_type == SenderType.MEMBER:
        tag = _membership_tag(suite, ac, context, membership_key)
    return PublicMessage(ac.content, ac.auth, tag)


def unprotect_public(
    suite: CipherSuite,
    message: PublicMessage,
    context: GroupContext,
    membership_key: bytes,
    lookup: SignerLookup,
) -> Unprotected:
    """Check a PublicMessage (§6.2): group and epoch, no application data, the membership
    tag of member senders, the signature. Returns the AuthenticatedContent."""
    content = message.content
    _check_group(content.group_id, content.epoch, context)
    if content.content_type == ContentType.APPLICATION:
        raise ValidationError(
            "RFC9420-6.2-application-not-public", "application data sent as PublicMessage"
        )
    ac = message.authenticated_content()
    if content.sender.sender_type == SenderType.MEMBER:
        expected = _membership_tag(suite, ac, context, membership_key)
        if message.membership_tag is None or not _equal(expected, message.membership_tag):
            raise ValidationError("RFC9420-6.2-membership-tag", "membership tag is invalid")
    _verify_signature(suite, ac, context, lookup)
    return Unprotected(ac)


def _equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


# --- PrivateMessage (§6.3) --------------------------------------------------------------------


def _ratchet_type(content_type: ContentType) -> RatchetType:
    if content_type == ContentType.APPLICATION:
        return RatchetType.APPLICATION
    return RatchetType.HANDSHAKE


def _guarded_nonce(nonce: bytes, reuse_guard: bytes) -> bytes:
    """§6.3.1: XOR the reuse guard into the first four bytes of the nonce."""
    head = bytes(a ^ b for a, b in zip(nonce[:REUSE_GUARD_LEN], reuse_guard, strict=True))
    return head + nonce[REUSE_GUARD_LEN:]


def protect_private(
    suite: CipherSuite,
    ac: AuthenticatedContent,
    secret_tree: SecretTree,
    sender_data_secret: bytes,
    rng: Rng,
    padding: int = 0,
) -> PrivateMessage:
    """Encrypt signed content as a PrivateMessage (§6.3). Takes the next key of the sender's
    ratchet from ``secret_tree`` (which therefore advances)."""
    content = ac.content
    if ac.wire_format != WireFormat.MLS_PRIVATE_MESSAGE:
        raise LocalError("content was signed for another wire format")
    if content.sender.sender_type != SenderType.MEMBER:
        raise LocalError("only members send PrivateMessage (§6.3)")
    leaf = content.sender.index
    key_nonce = secret_tree.next_key(leaf, _ratchet_type(content.content_type))
    reuse_guard = rng(REUSE_GUARD_LEN)
    shell = PrivateMessage(
        content.group_id, content.epoch, content.content_type, content.authenticated_data, b"", b""
    )
    plaintext = PrivateMessageContent(content.content, ac.auth, padding).to_bytes()
    ciphertext = suite.aead_encrypt(
        key_nonce.key,
        _guarded_nonce(key_nonce.nonce, reuse_guard),
        shell.content_aad(),
        plaintext,
    )
    sd_key, sd_nonce = sender_data_key_nonce(suite, sender_data_secret, ciphertext)
    sender_data = SenderData(leaf, key_nonce.generation, reuse_guard).to_bytes()
    encrypted_sd = suite.aead_encrypt(sd_key, sd_nonce, shell.sender_data_aad(), sender_data)
    return PrivateMessage(
        shell.group_id,
        shell.epoch,
        shell.content_type,
        shell.authenticated_data,
        encrypted_sd,
        ciphertext,
    )


def _open_sender_data(
    suite: CipherSuite, message: PrivateMessage, sender_data_secret: bytes
) -> SenderData:
    sd_key, sd_nonce = sender_data_key_nonce(suite, sender_data_secret, message.ciphertext)
    plain = suite.aead_decrypt(
        sd_key, sd_nonce, message.sender_data_aad(), message.encrypted_sender_data
    )
    return SenderData.from_bytes(plain)


def unprotect_private(
    suite: CipherSuite,
    message: PrivateMessage,
    secret_tree: SecretTree,
    sender_data_secret: bytes,
    context: GroupContext,
    lookup: SignerLookup,
) -> Unprotected:
    """Decrypt and verify a PrivateMessage (§6.3). ``secret_tree`` is not changed; the
    result carries the advanced copy to keep."""
    _check_group(message.group_id, message.epoch, context)
    sender_data = _open_sender_data(suite, message, sender_data_secret)
    tree = secret_tree.copy()
    key_nonce = tree.key_for(
        sender_data.leaf_index, _ratchet_type(message.content_type), sender_data.generation
    )
    plain = suite.aead_decrypt(
        key_nonce.key,
        _guarded_nonce(key_nonce.nonce, sender_data.reuse_guard),
        message.content_aad(),
        message.ciphertext,
    )
    pmc = PrivateMessageContent.from_bytes(plain, message.content_type)
    framed = FramedContent(
        message.group_id,
        message.epoch,
        Sender.member(sender_data.leaf_index),
        message.authenticated_data,
        pmc.content,
    )
    ac = AuthenticatedContent(WireFormat.MLS_PRIVATE_MESSAGE, framed, pmc.auth)
    _verify_signature(suite, ac, context, lookup)
    return Unprotected(ac, tree)


__all__ = [
    "SignerLookup",
    "Unprotected",
    "protect_private",
    "protect_public",
    "sign_content",
    "unprotect_private",
    "unprotect_public",
]
