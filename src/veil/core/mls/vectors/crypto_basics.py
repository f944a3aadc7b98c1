"""``crypto-basics.json``: the labelled functions of RFC 9420 §5 and §8 for one suite.

Each case: ``cipher_suite`` and sub-objects

* ``ref_hash {label, value, out}`` -- RefHash (§5.2), label used verbatim;
* ``expand_with_label {secret, label, context, length, out}`` -- ExpandWithLabel (§8);
* ``derive_secret {secret, label, out}`` -- DeriveSecret (§8);
* ``derive_tree_secret {secret, label, generation, length, out}`` -- DeriveTreeSecret (§9);
* ``sign_with_label {priv, pub, content, label, signature}`` -- the signature verifies with
  VerifyWithLabel (§5.1.2) and so does a fresh one (not compared: may be randomised);
* ``encrypt_with_label {priv, pub, label, context, plaintext, kem_output, ciphertext}`` --
  DecryptWithLabel (§5.1.3) gives the plaintext, and a fresh EncryptWithLabel decrypts back.

Labels are bare strings; the functions add ``"MLS 1.0 "``.
"""

from __future__ import annotations

from veil.core.mls.suite import CipherSuite
from veil.core.mls.vectors import Case
from veil.core.mls.vectors._util import h, suite_of
from veil.core.rng import seeded_rng


def _kdf(s: CipherSuite, case: Case) -> None:
    r = case["ref_hash"]
    assert s.ref_hash(r["label"].encode(), h(r["value"])) == h(r["out"]), "ref_hash"
    e = case["expand_with_label"]
    got = s.expand_with_label(h(e["secret"]), e["label"].encode(), h(e["context"]), e["length"])
    assert got == h(e["out"]), "expand_with_label"
    d = case["derive_secret"]
    assert s.derive_secret(h(d["secret"]), d["label"].encode()) == h(d["out"]), "derive_secret"
    t = case["derive_tree_secret"]
    got = s.derive_tree_secret(h(t["secret"]), t["label"].encode(), t["generation"], t["length"])
    assert got == h(t["out"]), "derive_tree_secret"


def _sign(s: CipherSuite, case: Case) -> None:
    v = case["sign_with_label"]
    priv, pub, label, content = h(v["priv"]), h(v["pub"]), v["label"].encode(), h(v["content"])
    assert s.signature_public(priv) == pub, "signature public key"
    assert s.verify_with_label(pub, label, content, h(v["signature"])), "given signature"
    fresh = s.sign_with_label(priv, label, content, seeded_rng(1))
    assert s.verify_with_label(pub, label, content, fresh), "fresh signature"
    assert not s.verify_with_label(pub, label + b"x", content, fresh), "wrong label verifies"


def _encrypt(s: CipherSuite, case: Case) -> None:
    v = case["encrypt_with_label"]
    priv, pub, label, context = h(v["priv"]), h(v["pub"]), v["label"].encode(), h(v["context"])
    assert s.hpke_public(priv) == pub, "HPKE public key"
    pt = s.decrypt_with_label(priv, label, context, h(v["kem_output"]), h(v["ciphertext"]))
    assert pt == h(v["plaintext"]), "decrypt_with_label"
    kem_output, ct = s.encrypt_with_label(pub, label, context, pt, seeded_rng(2))
    assert s.decrypt_with_label(priv, label, context, kem_output, ct) == pt, "round trip"


def check(case: Case) -> None:
    s = suite_of(case)
    _kdf(s, case)
    _sign(s, case)
    _encrypt(s, case)
