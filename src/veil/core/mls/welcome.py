"""Joining a group from a Welcome: the cryptographic checks (RFC 9420 §12.4.3, §12.4.3.1).

:func:`open_welcome` is the one implementation of these steps (``group_join.join_welcome``
and the reinit/branch joins go through it). It runs:

1. the Welcome's cipher suite matches the KeyPackage's (``RFC9420-12.4.3.1-cipher-suite``);
2. an entry for our KeyPackageRef exists (§5.2; ``RFC9420-12.4.3.1-welcome-entry``);
3. GroupSecrets decrypt with DecryptWithLabel(init_priv, "Welcome", encrypted_group_info)
   (``RFC9420-12.4.3.1-group-secrets-decrypt``; the joiner secret must be Nh bytes);
4. every PSK it names is known, and at most one is a reinit/branch resumption PSK
   (``RFC9420-12.4.3.1-psk-known``, ``RFC9420-12.4.3.1-psk-single-resumption``);
5. the GroupInfo decrypts with the welcome key/nonce (``RFC9420-12.4.3.1-group-info-decrypt``)
   and names the KeyPackage's suite (``RFC9420-12.4.3.1-group-info-cipher-suite``);
6. its signature verifies (SignWithLabel "GroupInfoTBS") under the signer's leaf key
   (``RFC9420-12.4.3-signer-leaf``, ``RFC9420-12.4.3-group-info-signature``);
7. with a reinit/branch PSK, the epoch is 1 (``RFC9420-12.4.3.1-resumption-epoch``; the RFC
   lists it last, it is checked as soon as the signed GroupInfo is known -- every check must
   pass, so the order only decides which error a doubly bad Welcome gets);
8. the key schedule from joiner_secret gives a confirmation_tag equal to the GroupInfo's
   (``RFC9420-12.4.3.1-confirmation-tag``), and the interim transcript hash follows.

Each failure is a :class:`~veil.core.mls.errors.ValidationError` with that requirement id;
malformed bytes are a DecodeError. Tree checks (tree hash, parent hashes, leaf validation,
finding our leaf, path secrets) belong to the ratchet-tree layer; the signer's key is asked of
the caller as ``signer_key(group_info)`` (the key of leaf ``group_info.signer``, ``None`` for
a blank leaf), so the caller can take it from the tree the decrypted GroupInfo carries.
:func:`seal_welcome` builds the encrypted parts from the committer's side.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from veil.core.mls.errors import MlsDecryptError, ValidationError
from veil.core.mls.key_schedule import EpochSecrets, from_joiner, welcome_key_nonce
from veil.core.mls.key_schedule import welcome_secret as derive_welcome_secret
from veil.core.mls.psk import Psk, psk_secret
from veil.core.mls.structs.common import HPKECiphertext
from veil.core.mls.structs.group import EncryptedGroupSecrets, GroupInfo, GroupSecrets, Welcome
from veil.core.mls.structs.key_package import KeyPackage
from veil.core.mls.structs.proposals import PreSharedKeyID, PSKType, ResumptionPSKUsage
from veil.core.mls.suite import CipherSuite, suite
from veil.core.mls.transcript import interim_transcript_hash
from veil.core.rng import Rng

PskLookup = Callable[[PreSharedKeyID], bytes | None]
SignerKey = Callable[[GroupInfo], bytes | None]
"""The signature key of leaf ``info.signer`` of the tree that goes with ``info``."""


@dataclass(frozen=True, slots=True)
class JoinedEpoch:
    """What a verified Welcome gives: the GroupInfo, the secrets and the transcript state."""

    group_info: GroupInfo
    group_secrets: GroupSecrets = field(repr=False)
    epoch_secrets: EpochSecrets = field(repr=False)
    psk_secret: bytes = field(repr=False)
    interim_transcript_hash: bytes


def find_entry(s: CipherSuite, welcome: Welcome, key_package: KeyPackage) -> EncryptedGroupSecrets:
    """Steps 1-2: the EncryptedGroupSecrets addressed to ``key_package``."""
    if welcome.cipher_suite != key_package.cipher_suite:
        raise ValidationError("RFC9420-12.4.3.1-cipher-suite", "Welcome and KeyPackage differ")
    entry = welcome.find_secrets(s.key_package_ref(key_package.to_bytes()))
    if entry is None:
        raise ValidationError("RFC9420-12.4.3.1-welcome-entry", "no entry for our KeyPackage")
    return entry


def decrypt_group_secrets(
    s: CipherSuite, init_priv: bytes, welcome: Welcome, entry: EncryptedGroupSecrets
) -> GroupSecrets:
    """Step 3: DecryptWithLabel(init_priv, "Welcome", encrypted_group_info, ...)."""
    ct = entry.encrypted_group_secrets
    try:
        plain = s.decrypt_with_label(
            init_priv, b"Welcome", welcome.encrypted_group_info, ct.kem_output, ct.ciphertext
        )
    except MlsDecryptError:
        raise ValidationError("RFC9420-12.4.3.1-group-secrets-decrypt") from None
    secrets = GroupSecrets.from_bytes(plain)
    if len(secrets.joiner_secret) != s.nh:
        raise ValidationError("RFC9420-12.4.3.1-group-secrets-decrypt", "joiner_secret size")
    return secrets


def special_resumption(psk_id: PreSharedKeyID) -> bool:
    return psk_id.psktype == PSKType.RESUMPTION and psk_id.usage in (
        ResumptionPSKUsage.REINIT,
        ResumptionPSKUsage.BRANCH,
    )


def resolve_psks(s: CipherSuite, psk_ids: Sequence[PreSharedKeyID], lookup: PskLookup) -> bytes:
    """Step 4: psk_secret (§8.4) of the named PSKs, each of which must be known."""
    if sum(1 for p in psk_ids if special_resumption(p)) > 1:
        raise ValidationError("RFC9420-12.4.3.1-psk-single-resumption")
    psks = []
    for index, psk_id in enumerate(psk_ids):
        value = lookup(psk_id)
        if value is None:
            raise ValidationError("RFC9420-12.4.3.1-psk-known", f"PSK {index} is unknown")
        psks.append(Psk.of(psk_id, value))
    return psk_secret(s, psks)


def check_resumption_epoch(psk_ids: Sequence[PreSharedKeyID], info: GroupInfo) -> None:
    """Step 7: a group joined with a reinit or branch resumption PSK starts at epoch 1."""
    if any(special_resumption(p) for p in psk_ids) and info.group_context.epoch != 1:
        raise ValidationError("RFC9420-12.4.3.1-resumption-epoch")


def decrypt_group_info(
    s: CipherSuite, welcome: Welcome, joiner_secret: bytes, psk: bytes
) -> GroupInfo:
    """Step 5: the GroupInfo, decrypted with the welcome key and nonce (empty AAD)."""
    key, nonce = welcome_key_nonce(s, derive_welcome_secret(s, joiner_secret, psk))
    try:
        plain = s.aead_decrypt(key, nonce, b"", welcome.encrypted_group_info)
    except MlsDecryptError:
        raise ValidationError("RFC9420-12.4.3.1-group-info-decrypt") from None
    info = GroupInfo.from_bytes(plain)
    if info.group_context.cipher_suite != s.id:
        raise ValidationError("RFC9420-12.4.3.1-group-info-cipher-suite")
    return info


def verify_group_info(s: CipherSuite, info: GroupInfo, signer_key: SignerKey) -> None:
    """Step 6: the GroupInfo signature under the key of leaf ``info.signer``."""
    key = signer_key(info)
    if key is None:
        raise ValidationError("RFC9420-12.4.3-signer-leaf", f"leaf {info.signer} is blank")
    if not s.verify_with_label(key, b"GroupInfoTBS", info.tbs(), info.signature):
        raise ValidationError("RFC9420-12.4.3-group-info-signature")


def check_confirmation(s: CipherSuite, info: GroupInfo, secrets: EpochSecrets) -> bytes:
    """Step 8: the confirmation tag; returns the interim transcript hash."""
    confirmed = info.group_context.confirmed_transcript_hash
    if not hmac.compare_digest(secrets.confirmation_tag(confirmed), info.confirmation_tag):
        raise ValidationError("RFC9420-12.4.3.1-confirmation-tag")
    return interim_transcript_hash(s, confirmed, info.confirmation_tag)


def open_welcome(
    welcome: Welcome,
    key_package: KeyPackage,
    init_priv: bytes,
    signer_key: SignerKey,
    psks: PskLookup = lambda _psk_id: None,
) -> JoinedEpoch:
    """All the cryptographic checks of joining from ``welcome`` (see the module docstring)."""
    s = suite(welcome.cipher_suite)
    entry = find_entry(s, welcome, key_package)
    group_secrets = decrypt_group_secrets(s, init_priv, welcome, entry)
    psk = resolve_psks(s, group_secrets.psks, psks)
    info = decrypt_group_info(s, welcome, group_secrets.joiner_secret, psk)
    verify_group_info(s, info, signer_key)
    check_resumption_epoch(group_secrets.psks, info)
    epoch_secrets = from_joiner(s, group_secrets.joiner_secret, psk, info.group_context.to_bytes())
    interim = check_confirmation(s, info, epoch_secrets)
    return JoinedEpoch(info, group_secrets, epoch_secrets, psk, interim)


def seal_welcome(
    s: CipherSuite,
    info: GroupInfo,
    joiner_secret: bytes,
    psk: bytes,
    recipients: Sequence[tuple[KeyPackage, GroupSecrets]],
    rng: Rng,
) -> Welcome:
    """The committer's side: encrypt a signed GroupInfo and each new member's GroupSecrets."""
    key, nonce = welcome_key_nonce(s, derive_welcome_secret(s, joiner_secret, psk))
    encrypted_info = s.aead_encrypt(key, nonce, b"", info.to_bytes())
    entries = []
    for key_package, secrets in recipients:
        kem_output, ct = s.encrypt_with_label(
            key_package.init_key, b"Welcome", encrypted_info, secrets.to_bytes(), rng
        )
        ref = s.key_package_ref(key_package.to_bytes())
        entries.append(EncryptedGroupSecrets(ref, HPKECiphertext(kem_output, ct)))
    return Welcome(s.id, tuple(entries), encrypted_info)
