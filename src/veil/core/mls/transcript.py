"""Transcript hashes (RFC 9420 §8.2), over encoded inputs.

::

    confirmed_transcript_hash_[n] = Hash(interim_transcript_hash_[n-1] ||
                                         ConfirmedTranscriptHashInput_[n])
    interim_transcript_hash_[n]   = Hash(confirmed_transcript_hash_[n] ||
                                         InterimTranscriptHashInput_[n])

``ConfirmedTranscriptHashInput`` is ``wire_format || FramedContent || signature<V>`` of the
Commit's AuthenticatedContent (the caller encodes it); ``InterimTranscriptHashInput`` is the
``confirmation_tag`` as ``opaque MAC<V>``, encoded here. Both hashes start as the empty string
at epoch 0.
"""

from __future__ import annotations

from veil.core.mls.codec import Writer
from veil.core.mls.suite import CipherSuite


def confirmed_transcript_hash(
    suite: CipherSuite, interim_before: bytes, confirmed_input: bytes
) -> bytes:
    """The confirmed transcript hash after a Commit (§8.2).

    ``confirmed_input`` is the encoded ConfirmedTranscriptHashInput.
    """
    return suite.hash(interim_before + confirmed_input)


def interim_transcript_hash(suite: CipherSuite, confirmed: bytes, confirmation_tag: bytes) -> bytes:
    """The interim transcript hash from the confirmed one and the Commit's confirmation_tag."""
    w = Writer()
    w.opaque(confirmation_tag)
    return suite.hash(confirmed + w.getvalue())


def transcript_hashes(
    suite: CipherSuite, interim_before: bytes, confirmed_input: bytes, confirmation_tag: bytes
) -> tuple[bytes, bytes]:
    """(confirmed, interim) after one Commit."""
    confirmed = confirmed_transcript_hash(suite, interim_before, confirmed_input)
    return confirmed, interim_transcript_hash(suite, confirmed, confirmation_tag)
