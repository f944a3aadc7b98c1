"""``welcome.json``: processing a Welcome (RFC 9420 §12.4.3.1).

Each case: ``cipher_suite``, ``init_priv`` (HPKE private key of the KeyPackage's init_key),
``signer_pub`` (signature key of the GroupInfo signer), ``key_package`` (MLSMessage holding a
KeyPackage) and ``welcome`` (MLSMessage holding a Welcome).

Check: find the entry for the KeyPackage (by KeyPackageRef), decrypt the GroupSecrets with
``init_priv``, decrypt the GroupInfo, verify its signature with ``signer_pub``, run the key
schedule from ``joiner_secret`` (no PSKs) and check the GroupInfo's confirmation tag. Then a
tampered Welcome (one bit of the encrypted GroupInfo flipped) must be refused.
"""

from __future__ import annotations

from dataclasses import replace

from veil.core.mls.errors import ValidationError
from veil.core.mls.structs.framing import MLSMessage
from veil.core.mls.structs.group import Welcome
from veil.core.mls.structs.key_package import KeyPackage
from veil.core.mls.vectors import Case
from veil.core.mls.vectors._util import h, suite_of
from veil.core.mls.welcome import open_welcome


def check(case: Case) -> None:
    s = suite_of(case)
    kp = MLSMessage.from_bytes(h(case["key_package"])).body
    welcome = MLSMessage.from_bytes(h(case["welcome"])).body
    assert isinstance(kp, KeyPackage) and isinstance(welcome, Welcome), "message types"
    assert s.hpke_public(h(case["init_priv"])) == kp.init_key, "init_priv matches init_key"
    signer = h(case["signer_pub"])
    joined = open_welcome(welcome, kp, h(case["init_priv"]), lambda _info: signer)
    ctx = joined.group_info.group_context
    assert ctx.cipher_suite == s.id, "group context suite"
    assert joined.epoch_secrets.joiner_secret == joined.group_secrets.joiner_secret
    bad = bytearray(welcome.encrypted_group_info)
    bad[-1] ^= 1
    try:
        open_welcome(
            replace(welcome, encrypted_group_info=bytes(bad)),
            kp,
            h(case["init_priv"]),
            lambda _info: signer,
        )
    except ValidationError:
        pass
    else:
        raise AssertionError("a tampered Welcome was accepted")
