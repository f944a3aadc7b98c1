"""Between the server's wire schemas (:mod:`veil.wire`) and the engine's plain data."""

from __future__ import annotations

from veil.engine import IncomingEnvelope, KeyBatch, OutgoingCopy, PreKeyBundle, bundle
from veil.wire.keys import (
    BundleResponse,
    KeyUpload,
    KyberPreKeyIn,
    OneTimePreKeyIn,
    SignedPreKeyIn,
)
from veil.wire.messages import EnvelopeOut, OutgoingEnvelopeIn


def bundles(answer: BundleResponse) -> dict[int, PreKeyBundle]:
    """The engine's bundles, by device id, from ``GET /v1/keys/...``. Signatures are checked
    when a session starts, not here."""
    out = {}
    for device in answer.devices:
        one_time = device.one_time_prekey
        signed, kyber = device.signed_prekey, device.kyber_prekey
        out[device.device_id] = bundle(
            answer.identity_key,
            device.device_id,
            device.registration_id,
            (signed.key_id, signed.public_key, signed.signature),
            (kyber.key_id, kyber.public_key, kyber.signature),
            None if one_time is None else (one_time.key_id, one_time.public_key),
        )
    return out


def key_upload(batch: KeyBatch) -> KeyUpload:
    """``PUT /v1/keys`` for a batch of new keys."""
    signed = batch.signed_prekey
    last = batch.last_resort_kyber
    return KeyUpload(
        signed_prekey=None
        if signed is None
        else SignedPreKeyIn(signed.key_id, signed.public_key, signed.signature),
        last_resort_kyber=None
        if last is None
        else KyberPreKeyIn(last.key_id, last.public_key, last.signature),
        kyber_prekeys=[
            KyberPreKeyIn(k.key_id, k.public_key, k.signature) for k in batch.kyber_prekeys
        ],
        one_time_prekeys=[OneTimePreKeyIn(i, key) for i, key in batch.one_time_prekeys],
    )


def outgoing(copy: OutgoingCopy, recipient: str, franking_tag: bytes) -> OutgoingEnvelopeIn:
    """One envelope of a send to ``recipient`` (the account id is given only for copies to
    other accounts, i.e. the sender's own other devices), with the franking tag of its
    content."""
    return OutgoingEnvelopeIn(
        copy.device_id,
        copy.registration_id,
        copy.type,
        copy.content,
        None if copy.account_id == recipient else copy.account_id,
        franking_tag,
    )


def incoming(envelope: EnvelopeOut) -> IncomingEnvelope:
    """An envelope pushed by the server, for the engine."""
    return IncomingEnvelope(
        envelope.envelope_id,
        envelope.sender_account_id,
        envelope.sender_device_id,
        envelope.server_ms,
        envelope.type,
        envelope.content,
        envelope.franking_tag,
        envelope.reporting_tag,
        envelope.franking_key_id,
        envelope.request,
    )
