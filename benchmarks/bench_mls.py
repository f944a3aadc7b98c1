"""CPU-time benchmark of Veil's MLS core (RFC 9420, cipher suite 1), per group size.

Run from the repository root::

    .venv/bin/python benchmarks/bench_mls.py --json             # n = 2, 10, 100, 1000
    .venv/bin/python benchmarks/bench_mls.py --sizes 2,10 --runs 3

For each group size n, all in this process, in memory, ``os.urandom`` as the RNG:

* ``create_commit``: the creator commits Adds of n - 1 KeyPackages with an UpdatePath (one
  Commit makes the whole group) and builds the Welcome;
* ``join_welcome``: a new member joins from that Welcome (the ratchet tree in it is checked
  in full: every leaf signature, parent hashes, tree hash -- inherently O(n));
* ``update_commit`` / ``update_process``: a member commits an empty Commit (a full
  UpdatePath) and another member processes and merges it. Measured twice: right after the
  group is created (``fresh``: the parent nodes off the creator's path are blank, so the
  committer encrypts to up to n/2 leaves) and after a few members have committed (``warm``);
  ``update_ciphertexts`` counts the HPKE ciphertexts of the UpdatePath;
* ``remove_commit`` / ``remove_process``: the creator removes a member, another processes it;
* ``app_encrypt`` / ``app_decrypt``: a 100-byte application message.

Values are CPU time (``time.process_time_ns``) in microseconds, the median over ``--runs``
repetitions. The same run measures the primitives a receiver cannot avoid (``floor``: one
HPKE open, two Ed25519 verifications, one X25519 DeriveKeyPair), so figures can be compared
across machines as multiples of that floor. ``growth`` gives each metric's ratio between the
largest and the smallest n >= 10, beside the ratios of log2 n and of n.
"""

# ruff: noqa: E402  (the checkout's src/ goes on sys.path before veil is imported)

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from veil.core.mls import group as g
from veil.core.mls.structs.common import Credential, Lifetime
from veil.core.mls.structs.framing import MLSMessage
from veil.core.mls.structs.group import Welcome
from veil.core.mls.structs.proposals import Add, Proposal, Remove
from veil.core.mls.suite import suite

SUITE = 1
LIFETIME = Lifetime(0, 2**63)
rng = os.urandom
clock = time.process_time_ns
T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """Run ``fn`` once with the collector off; its result and CPU microseconds."""
    gc.collect()
    gc.disable()
    try:
        t0 = clock()
        out = fn()
        return out, (clock() - t0) / 1000
    finally:
        gc.enable()


def bundle(name: bytes) -> g.KeyPackageBundle:
    s = suite(SUITE)
    sig_priv, _ = s.generate_signature_key(rng)
    return g.create_key_package(SUITE, Credential.basic(name), sig_priv, LIFETIME, rng)


def new_group(n: int) -> tuple[g.GroupState, list[g.KeyPackageBundle], g.CommitResult]:
    creator = bundle(b"member-0")
    state = g.create_group(
        SUITE,
        rng(16),
        creator.key_package.leaf_node,
        creator.encryption_priv,
        creator.signature_priv,
        rng,
    )
    joiners = [bundle(b"member-%d" % i) for i in range(1, n)]
    adds = [Proposal(Add(b.key_package)) for b in joiners]
    result = g.commit(state, rng, adds, path=True)
    return state, joiners, result


def join(result: g.CommitResult, b: g.KeyPackageBundle) -> g.GroupState:
    assert result.welcome is not None
    welcome = result.welcome.body
    assert isinstance(welcome, Welcome)
    return g.join_welcome(welcome, b)


def process(state: g.GroupState, message: MLSMessage) -> g.GroupState:
    return g.merge(g.process_commit(state, message))


def ciphertexts(message: MLSMessage) -> int:
    content = message.body.content.content  # type: ignore[union-attr]
    path = content.path
    return 0 if path is None else sum(len(node.encrypted_path_secret) for node in path.nodes)


def one_run(n: int, warm_commits: int) -> dict[str, float]:
    out: dict[str, float] = {}
    (_, joiners, result), out["create_commit"] = timed(lambda: new_group(n))
    creator = g.merge(result.staged)
    sample = [joiners[0]] if n == 2 else [joiners[-1], joiners[n // 2 - 1]]
    members, join_times = [], []
    for b in sample:
        state, t = timed(lambda b=b: join(result, b))
        members.append(state)
        join_times.append(t)
    out["join_welcome"] = statistics.median(join_times)
    everyone = [creator, *members]

    def update_round(label: str, committer: int) -> None:
        nonlocal everyone
        res, out[f"update_commit_{label}"] = timed(
            lambda: g.commit(everyone[committer], rng, path=True)
        )
        out[f"update_ciphertexts_{label}"] = ciphertexts(res.message)
        receiver = 0 if committer != 0 else 1
        new_receiver, out[f"update_process_{label}"] = timed(
            lambda: process(everyone[receiver], res.message)
        )
        nxt = []
        for i, st in enumerate(everyone):
            if i == committer:
                nxt.append(g.merge(res.staged))
            elif i == receiver:
                nxt.append(new_receiver)
            else:
                nxt.append(process(st, res.message))
        everyone = nxt

    update_round("fresh", len(everyone) - 1)
    for k in range(warm_commits):
        update_round("warmup", k % len(everyone))
    update_round("warm", len(everyone) - 1)
    out.pop("update_commit_warmup", None)
    out.pop("update_process_warmup", None)
    out.pop("update_ciphertexts_warmup", None)

    if n > 2:
        taken = {m.own_leaf for m in everyone}
        victim = next(i for i, _ in everyone[0].members() if i not in taken)
        res, out["remove_commit"] = timed(
            lambda: g.commit(everyone[0], rng, [Proposal(Remove(victim))], path=True)
        )
        _, out["remove_process"] = timed(lambda: process(everyone[1], res.message))

    sender, receiver = everyone[0], everyone[1]
    enc, dec = [], []
    for _ in range(20):
        (msg, sender), t = timed(partial(g.encrypt_application, sender, b"x" * 100, b"", rng))
        enc.append(t)
        (app, receiver), t = timed(partial(g.decrypt, receiver, msg))
        assert app.data == b"x" * 100
        dec.append(t)
    out["app_encrypt"] = statistics.median(enc)
    out["app_decrypt"] = statistics.median(dec)
    return out


def floor(runs: int) -> dict[str, float]:
    """Primitives a receiver of an update Commit cannot avoid, measured in this run."""
    s = suite(SUITE)
    priv, pub = s.derive_key_pair(rng(32))
    sig_priv, sig_pub = s.generate_signature_key(rng)
    kem, ct = s.encrypt_with_label(pub, b"UpdatePathNode", b"ctx", b"s" * 32, rng)
    sig = s.sign_with_label(sig_priv, b"LeafNodeTBS", b"m" * 200, rng)
    samples = []
    for _ in range(max(runs, 5) * 20):

        def work() -> None:
            s.decrypt_with_label(priv, b"UpdatePathNode", b"ctx", kem, ct)
            s.verify_with_label(sig_pub, b"LeafNodeTBS", b"m" * 200, sig)
            s.verify_with_label(sig_pub, b"LeafNodeTBS", b"m" * 200, sig)
            s.derive_key_pair(rng(32))

        samples.append(timed(work)[1])
    return {"receiver_floor": statistics.median(samples)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2,10,100,1000", help="group sizes (comma separated)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions per size (median)")
    parser.add_argument("--warm", type=int, default=4, help="commits that warm the tree")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    result: dict[str, Any] = {"suite": SUITE, "unit": "us CPU, median", "runs": args.runs}
    result["floor"] = floor(args.runs)
    per_size: dict[str, dict[str, float]] = {}
    for n in sizes:
        runs = [one_run(n, args.warm) for _ in range(args.runs)]
        per_size[str(n)] = {k: round(statistics.median(r[k] for r in runs), 1) for k in runs[0]}
        if not args.json:
            print(f"n={n}: {per_size[str(n)]}", file=sys.stderr)
    result["sizes"] = per_size
    big = [n for n in sizes if n >= 10]
    if len(big) >= 2:
        lo, hi = str(min(big)), str(max(big))
        result["growth"] = {
            "from_n": int(lo),
            "to_n": int(hi),
            "log2_n_ratio": round(math.log2(int(hi)) / math.log2(int(lo)), 2),
            "n_ratio": round(int(hi) / int(lo), 1),
            **{
                k: round(per_size[hi][k] / per_size[lo][k], 2)
                for k in per_size[hi]
                if k in per_size[lo] and per_size[lo][k]
            },
        }
    print(json.dumps(result, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
