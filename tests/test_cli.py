"""The ``veil`` command: help, version and the self-check (in a subprocess and in process)."""

from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys
import types

import pytest

import veil
from veil.cli.main import SELFCHECK_MODULE, main

HAS_SELFCHECK = importlib.util.find_spec(SELFCHECK_MODULE) is not None


def run_veil(*args: str, module: str = "veil") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("module", ["veil", "veil.cli.main"])
def test_help_lists_subcommands(module: str) -> None:
    result = run_veil("--help", module=module)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: veil ")
    assert "selfcheck" in result.stdout
    assert "--version" in result.stdout


def test_version() -> None:
    result = run_veil("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"veil {veil.__version__}"


def test_no_command_prints_usage_and_fails() -> None:
    result = run_veil()
    assert result.returncode == 2
    assert "usage: veil" in result.stderr


@pytest.mark.skipif(not HAS_SELFCHECK, reason=f"{SELFCHECK_MODULE} is not written yet")
def test_selfcheck_json_passes() -> None:
    checks = importlib.import_module(SELFCHECK_MODULE).CHECKS
    result = run_veil("selfcheck", "--json")
    report = json.loads(result.stdout)
    failures = [c for c in report["checks"] if not c["ok"]]
    assert result.returncode == 0, failures or report["error"]
    assert report["ok"] is True
    assert report["error"] is None
    assert [c["name"] for c in report["checks"]] == [name for name, _ in checks]
    assert report["passed"] == len(checks) > 0
    assert report["failed"] == 0


def _fail() -> None:
    raise ValueError("boom")


@pytest.fixture
def fake_selfcheck(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType(SELFCHECK_MODULE)
    module.CHECKS = [("first", lambda: None), ("second", _fail), ("third", lambda: None)]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, SELFCHECK_MODULE, module)
    return module


def test_selfcheck_progress_reports_each_check(
    fake_selfcheck: types.ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["selfcheck"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[1/3] first ... ok (")
    assert lines[1].startswith("[2/3] second ... FAILED (")
    assert lines[2] == "    ValueError: boom"
    assert lines[3].startswith("[3/3] third ... ok (")
    assert lines[4] == "1 of 3 checks FAILED: second"


def test_selfcheck_json_reports_failure(
    fake_selfcheck: types.ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["selfcheck", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert (report["passed"], report["failed"]) == (2, 1)
    assert [(c["name"], c["ok"], c["error"]) for c in report["checks"]] == [
        ("first", True, None),
        ("second", False, "ValueError: boom"),
        ("third", True, None),
    ]


def test_selfcheck_without_core_module_fails_cleanly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, SELFCHECK_MODULE, None)  # makes the import fail
    assert main(["selfcheck", "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["ok"] is False
    assert f"{SELFCHECK_MODULE} is missing" in captured.err
    assert "Traceback" not in captured.err
