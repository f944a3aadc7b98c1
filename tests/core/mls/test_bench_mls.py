"""The MLS benchmark script runs and reports every operation (a smoke run, not a timing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "bench_mls.py"


def test_bench_mls_smoke_run_reports_every_operation() -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--sizes", "2,10,12", "--runs", "1", "--warm", "1", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    result = json.loads(out.stdout)
    ten = result["sizes"]["10"]
    for key in (
        "create_commit",
        "join_welcome",
        "update_commit_fresh",
        "update_process_warm",
        "remove_commit",
        "remove_process",
        "app_encrypt",
        "app_decrypt",
    ):
        assert ten[key] > 0, key
    assert ten["update_ciphertexts_fresh"] >= 1
    assert result["floor"]["receiver_floor"] > 0
    assert result["growth"]["from_n"] == 10 and result["growth"]["to_n"] == 12
