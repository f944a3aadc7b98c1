"""The README's MLS example runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[3] / "README.md"


def test_the_mls_example_runs() -> None:
    text = README.read_text()
    section = text[text.index("## MLS, the group protocol core") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None, "no python block under the MLS section"
    proc = subprocess.run(
        [sys.executable, "-c", code.group(1)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    data, exported = proc.stdout.strip().rsplit(" ", 1)
    assert data == "b'hi group'" and len(bytes.fromhex(exported)) == 16
