"""aiortc and PyAV (about 0.3 s of imports) load only for calls: not with ``import
veil.client``, ``veil --help`` or ``veil send``. Each check runs in a fresh interpreter, so
nothing imported by the test session hides a regression."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import People

HEAVY = ("aiortc", "av", "aioice", "textual")
REPORT = f"import sys, json; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"


def loaded_after(code: str) -> list[str]:
    """The heavy packages a fresh interpreter has loaded after running ``code``."""
    proc = subprocess.run(
        [sys.executable, "-c", f"{code}\n{REPORT}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded: list[str] = json.loads(proc.stdout.splitlines()[-1])
    return loaded


@pytest.mark.parametrize("module", ["veil.client", "veil.cli.main", "veil.cli.chat"])
def test_importing_the_sdk_or_the_cli_loads_no_media_stack(module: str) -> None:
    assert loaded_after(f"import {module}") == []


def test_parsing_every_command_loads_no_media_stack() -> None:
    code = (
        "import contextlib, io\n"
        "from veil.cli.main import main\n"
        "for argv in (['--help'], ['call', '--help'], ['answer', '--help'], ['send', '--help'],"
        " ['chat', '--help']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "        main(argv)\n"
    )
    assert loaded_after(code) == []


def test_starting_call_support_loads_it() -> None:
    """The control: the check does see aiortc and PyAV once calls are used."""
    code = "from veil.client import Client\nClient('/nonexistent').calls"
    assert loaded_after(code)[:3] == ["aiortc", "av", "aioice"]


def test_veil_send_and_inbox_load_no_media_stack(people: People) -> None:
    for args in (["send", "bob", "hello"], ["inbox", "bob"]):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "veil", "--profile",
             str(people.alice.profile), *args],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()]
        assert "veil.client.client" in imported  # the report is real
        assert not [m for m in imported if m.split(".")[0] in ("aiortc", "av", "aioice")]
