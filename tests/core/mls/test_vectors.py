"""Every official MLS test-vector file, through the runner ``python -m veil.core.mls.vectors``.

Each file must run with no failure; files with cipher-suite skips must pass every suite-1 case
(the suite Veil uses). The runner's own command line is exercised once, as a user would run it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from veil.core.mls.vectors import checker, run_cases

ALL_FILES = [
    "tree-math.json",
    "crypto-basics.json",
    "secret-tree.json",
    "message-protection.json",
    "key-schedule.json",
    "psk_secret.json",
    "transcript-hashes.json",
    "welcome.json",
    "tree-operations.json",
    "tree-validation.json",
    "treekem.json",
    "messages.json",
    "deserialization.json",
    "passive-client-welcome.json",
    "passive-client-handling-commit.json",
    "passive-client-random.json",
]


def _has_runner(name: str) -> bool:
    try:
        checker(name)
    except LookupError:
        return False
    return True


IMPLEMENTED = [name for name in ALL_FILES if _has_runner(name)]


@pytest.fixture(scope="module")
def mls_dir(vectors_dir: Path) -> Path:
    return vectors_dir / "mls"


@pytest.mark.parametrize("name", IMPLEMENTED)
def test_vector_file(mls_dir: Path, name: str) -> None:
    cases = json.loads((mls_dir / name).read_text())
    result = run_cases(name, cases)
    assert result.failed == 0, "\n".join(result.failures[:10])
    assert result.passed > 0
    suite1 = result.per_suite.get("1") or result.per_suite.get("-")
    assert suite1 is not None and suite1[0] > 0 and suite1[2] == 0, result.line()


def test_runner_command_line(mls_dir: Path) -> None:
    files = [str(mls_dir / name) for name in IMPLEMENTED]
    out = subprocess.run(
        [sys.executable, "-m", "veil.core.mls.vectors", "--per-suite", *files],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "tree-math.json: 10 passed, 0 failed, 0 skipped" in out.stdout


def test_runner_fails_on_a_wrong_case(tmp_path: Path, mls_dir: Path) -> None:
    cases = json.loads((mls_dir / "tree-math.json").read_text())
    cases[3]["root"] += 1
    bad = tmp_path / "tree-math.json"
    bad.write_text(json.dumps(cases))
    out = subprocess.run(
        [sys.executable, "-m", "veil.core.mls.vectors", "-v", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 1
    assert "1 failed" in out.stdout and "FAIL case 3" in out.stdout


def test_runner_refuses_an_unknown_file(tmp_path: Path) -> None:
    other = tmp_path / "no-such-kind.json"
    other.write_text("[]")
    out = subprocess.run(
        [sys.executable, "-m", "veil.core.mls.vectors", str(other)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 1 and "no runner" in out.stdout
