"""``transcript-hashes.json``: confirmed and interim transcript hashes (RFC 9420 §8.2).

Each case: ``cipher_suite``; inputs ``confirmation_key``, ``authenticated_content`` (a
serialized AuthenticatedContent carrying a Commit) and ``interim_transcript_hash_before``;
outputs ``confirmed_transcript_hash_after`` and ``interim_transcript_hash_after``.

Check: the AuthenticatedContent parses (and re-encodes identically) as a Commit; the
confirmed hash over its ConfirmedTranscriptHashInput, then the interim hash over its
``confirmation_tag``; and ``confirmation_tag == MAC(confirmation_key,
confirmed_transcript_hash_after)`` (§6.1).
"""

from __future__ import annotations

import hmac

from veil.core.mls import transcript
from veil.core.mls.structs.commit import Commit
from veil.core.mls.structs.framing import AuthenticatedContent
from veil.core.mls.vectors import Case
from veil.core.mls.vectors._util import suite_of


def check(case: Case) -> None:
    cs = suite_of(case)
    data = bytes.fromhex(case["authenticated_content"])
    ac = AuthenticatedContent.from_bytes(data)
    assert ac.to_bytes() == data, "AuthenticatedContent re-encoding differs"
    assert isinstance(ac.content.content, Commit), "content is not a Commit"
    tag = ac.auth.confirmation_tag
    assert tag is not None
    before = bytes.fromhex(case["interim_transcript_hash_before"])
    confirmed = transcript.confirmed_transcript_hash(
        cs, before, ac.confirmed_transcript_hash_input()
    )
    expected_confirmed = bytes.fromhex(case["confirmed_transcript_hash_after"])
    assert confirmed == expected_confirmed, "confirmed_transcript_hash_after"
    interim = transcript.interim_transcript_hash(cs, confirmed, tag)
    assert interim == bytes.fromhex(case["interim_transcript_hash_after"]), "interim hash"
    expected_tag = cs.mac(bytes.fromhex(case["confirmation_key"]), expected_confirmed)
    assert hmac.compare_digest(tag, expected_tag), "confirmation_tag"
