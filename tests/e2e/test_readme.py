"""The README's SDK example runs as written (against a real server, in temporary folders)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from .conftest import VeilServer

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_sdk_in_ten_lines_runs(veil_server: VeilServer, tmp_path: Path) -> None:
    text = README.read_text()
    section = text[text.index("## The SDK in ten lines") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None, "no python block under 'The SDK in ten lines'"
    body = code.group(1)
    assert len([line for line in body.splitlines() if line.strip()]) <= 12
    body = body.replace("http://127.0.0.1:8080", veil_server.url)
    body = body.replace('"/tmp/alice"', repr(str(tmp_path / "alice")))
    body = body.replace('"/tmp/bob"', repr(str(tmp_path / "bob")))
    proc = subprocess.run(
        [sys.executable, "-c", body], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "alice hello bob"
