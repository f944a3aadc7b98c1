"""Joining from a Welcome (RFC 9420 §12.4.3.1): vectors and one test per requirement id."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from veil.core.errors import DecodeError
from veil.core.mls.errors import ValidationError
from veil.core.mls.key_schedule import from_joiner
from veil.core.mls.psk import Psk, psk_secret
from veil.core.mls.structs.framing import MLSMessage
from veil.core.mls.structs.group import GroupContext, GroupInfo, GroupSecrets, Welcome
from veil.core.mls.structs.key_package import KeyPackage
from veil.core.mls.structs.proposals import PreSharedKeyID, ResumptionPSKUsage
from veil.core.mls.suite import CipherSuite, suite
from veil.core.mls.vectors import welcome as runner
from veil.core.mls.welcome import open_welcome, seal_welcome
from veil.core.rng import Rng


@pytest.fixture(scope="module")
def cases(vectors_dir: Path) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((vectors_dir / "mls" / "welcome.json").read_text())
    return data


def test_vectors_all_suites(cases: list[dict[str, Any]]) -> None:
    assert sorted(c["cipher_suite"] for c in cases) == list(range(1, 8))
    for case in cases:
        runner.check(case)


def test_vector_with_wrong_signer_fails(cases: list[dict[str, Any]]) -> None:
    case = dict(cases[0])
    case["signer_pub"] = suite(1).signature_public(b"\x07" * 32).hex()
    with pytest.raises(ValidationError) as info:
        runner.check(case)
    assert info.value.requirement == "RFC9420-12.4.3-group-info-signature"


class Scene:
    """A Welcome we build ourselves for the vector's KeyPackage (suite 1), to break on purpose."""

    def __init__(self, case: dict[str, Any], rng: Rng) -> None:
        self.s: CipherSuite = suite(1)
        self.rng = rng
        kp = MLSMessage.from_bytes(bytes.fromhex(case["key_package"])).body
        assert isinstance(kp, KeyPackage)
        self.kp = kp
        self.init_priv = bytes.fromhex(case["init_priv"])
        self.sig_priv, self.sig_pub = self.s.generate_signature_key(rng)
        self.context = GroupContext(1, b"group", 4, rng(32), rng(32))

    def welcome(
        self,
        *,
        psks: tuple[PreSharedKeyID, ...] = (),
        psk_values: tuple[bytes, ...] = (),
        context: GroupContext | None = None,
        joiner: bytes | None = None,
        tag: bytes | None = None,
        kp: KeyPackage | None = None,
    ) -> tuple[Welcome, bytes]:
        s, ctx = self.s, context or self.context
        joiner = joiner if joiner is not None else self.rng(32)
        psk = psk_secret(s, [Psk.of(i, v) for i, v in zip(psks, psk_values, strict=True)])
        if tag is None:
            secrets = from_joiner(s, joiner, psk, ctx.to_bytes())
            tag = secrets.confirmation_tag(ctx.confirmed_transcript_hash)
        info = GroupInfo(ctx, (), tag, signer=3)
        sig = s.sign_with_label(self.sig_priv, b"GroupInfoTBS", info.tbs(), self.rng)
        info = replace(info, signature=sig)
        recipients = [(kp or self.kp, GroupSecrets(joiner, None, psks))]
        return seal_welcome(s, info, joiner, psk, recipients, self.rng), joiner

    def open(
        self,
        welcome: Welcome,
        signer: Callable[[int], bytes | None] | None = None,
        psks: Callable[[PreSharedKeyID], bytes | None] = lambda _p: None,
        init_priv: bytes | None = None,
    ) -> Any:
        key = signer or (lambda leaf: self.sig_pub if leaf == 3 else None)
        return open_welcome(
            welcome, self.kp, init_priv or self.init_priv, lambda info: key(info.signer), psks
        )


@pytest.fixture
def scene(cases: list[dict[str, Any]], rng: Rng) -> Scene:
    return Scene(cases[0], rng)


def _requirement(excinfo: pytest.ExceptionInfo[ValidationError]) -> str:
    return excinfo.value.requirement


def test_own_welcome_round_trip(scene: Scene) -> None:
    welcome, joiner = scene.welcome()
    joined = scene.open(welcome)
    assert joined.group_info.group_context == scene.context
    assert joined.epoch_secrets == from_joiner(scene.s, joiner, None, scene.context.to_bytes())
    tag = joined.group_info.confirmation_tag
    w_tag = bytes([scene.s.nh]) + tag
    assert joined.interim_transcript_hash == scene.s.hash(
        scene.context.confirmed_transcript_hash + w_tag
    )
    assert joiner.hex() not in repr(joined)


def test_RFC9420_12_4_3_1_cipher_suite(scene: Scene) -> None:
    welcome, _ = scene.welcome()
    with pytest.raises(ValidationError) as e:
        scene.open(replace(welcome, cipher_suite=3))
    assert _requirement(e) == "RFC9420-12.4.3.1-cipher-suite"


def test_RFC9420_12_4_3_1_welcome_entry(scene: Scene) -> None:
    other = replace(scene.kp, extensions=(), signature=b"other")
    welcome, _ = scene.welcome(kp=other)
    with pytest.raises(ValidationError) as e:
        scene.open(welcome)
    assert _requirement(e) == "RFC9420-12.4.3.1-welcome-entry"


def test_RFC9420_12_4_3_1_group_secrets_decrypt(scene: Scene) -> None:
    welcome, _ = scene.welcome()
    wrong_priv, _ = scene.s.derive_key_pair(b"x" * 32)
    with pytest.raises(ValidationError) as e:
        scene.open(welcome, init_priv=wrong_priv)
    assert _requirement(e) == "RFC9420-12.4.3.1-group-secrets-decrypt"
    short, _ = scene.welcome(joiner=b"j" * 16, tag=b"t" * 32)
    with pytest.raises(ValidationError) as e:
        scene.open(short)
    assert _requirement(e) == "RFC9420-12.4.3.1-group-secrets-decrypt"


def test_RFC9420_12_4_3_1_group_info_decrypt(scene: Scene) -> None:
    welcome, _ = scene.welcome()
    other, _ = scene.welcome()
    # our GroupSecrets were encrypted with the original encrypted_group_info as context, so
    # swapping the GroupInfo breaks the HPKE step already
    with pytest.raises(ValidationError) as e:
        scene.open(replace(welcome, encrypted_group_info=other.encrypted_group_info))
    assert _requirement(e) == "RFC9420-12.4.3.1-group-secrets-decrypt"


def test_RFC9420_12_4_3_1_group_info_cipher_suite(scene: Scene) -> None:
    welcome, _ = scene.welcome(context=replace(scene.context, cipher_suite=2))
    with pytest.raises(ValidationError) as e:
        scene.open(welcome)
    assert _requirement(e) == "RFC9420-12.4.3.1-group-info-cipher-suite"


def test_RFC9420_12_4_3_signer_leaf_and_signature(scene: Scene) -> None:
    welcome, _ = scene.welcome()
    with pytest.raises(ValidationError) as e:
        scene.open(welcome, signer=lambda _leaf: None)
    assert _requirement(e) == "RFC9420-12.4.3-signer-leaf"
    _, stranger = scene.s.generate_signature_key(scene.rng)
    with pytest.raises(ValidationError) as e:
        scene.open(welcome, signer=lambda _leaf: stranger)
    assert _requirement(e) == "RFC9420-12.4.3-group-info-signature"


def test_RFC9420_12_4_3_1_confirmation_tag(scene: Scene) -> None:
    welcome, _ = scene.welcome(tag=bytes(32))
    with pytest.raises(ValidationError) as e:
        scene.open(welcome)
    assert _requirement(e) == "RFC9420-12.4.3.1-confirmation-tag"


def test_RFC9420_12_4_3_1_psk_known(scene: Scene) -> None:
    psk_id = PreSharedKeyID.external(b"ext", scene.rng(32))
    welcome, _ = scene.welcome(psks=(psk_id,), psk_values=(b"k" * 32,))
    with pytest.raises(ValidationError) as e:
        scene.open(welcome)
    assert _requirement(e) == "RFC9420-12.4.3.1-psk-known"
    joined = scene.open(welcome, psks=lambda p: b"k" * 32 if p == psk_id else None)
    assert joined.psk_secret == psk_secret(scene.s, [Psk.of(psk_id, b"k" * 32)])
    with pytest.raises(ValidationError) as e:  # the wrong PSK value: wrong welcome key
        scene.open(welcome, psks=lambda _p: b"K" * 32)
    assert _requirement(e) == "RFC9420-12.4.3.1-group-info-decrypt"


def test_RFC9420_12_4_3_1_psk_single_resumption(scene: Scene) -> None:
    branch = [
        PreSharedKeyID.resumption(ResumptionPSKUsage.BRANCH, b"old", n, scene.rng(32))
        for n in (1, 2)
    ]
    welcome, _ = scene.welcome(psks=tuple(branch), psk_values=(b"a" * 32, b"b" * 32))
    with pytest.raises(ValidationError) as e:
        scene.open(welcome, psks=lambda _p: b"a" * 32)
    assert _requirement(e) == "RFC9420-12.4.3.1-psk-single-resumption"


def test_RFC9420_12_4_3_1_resumption_epoch(scene: Scene) -> None:
    reinit = PreSharedKeyID.resumption(ResumptionPSKUsage.REINIT, b"old", 9, scene.rng(32))
    welcome, _ = scene.welcome(psks=(reinit,), psk_values=(b"r" * 32,))
    with pytest.raises(ValidationError) as e:
        scene.open(welcome, psks=lambda _p: b"r" * 32)
    assert _requirement(e) == "RFC9420-12.4.3.1-resumption-epoch"
    ok, _ = scene.welcome(
        psks=(reinit,), psk_values=(b"r" * 32,), context=replace(scene.context, epoch=1)
    )
    assert scene.open(ok, psks=lambda _p: b"r" * 32).group_info.group_context.epoch == 1


def test_truncated_welcome_is_a_decode_error(cases: list[dict[str, Any]]) -> None:
    data = bytes.fromhex(cases[0]["welcome"])
    with pytest.raises(DecodeError):
        MLSMessage.from_bytes(data[:-1])
