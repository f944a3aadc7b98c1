"""Running ``veil server`` as a child process: what ``veil demo`` does, and what the
end-to-end tests and the call benchmark do with a throw-away data folder."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import IO


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    port: int,
    data_dir: Path,
    *,
    log: Path | None = None,
    log_level: str = "warning",
    env: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
) -> subprocess.Popen[bytes]:
    """``python -m veil server`` on 127.0.0.1:``port`` over SQLite in ``data_dir``, once it
    answers ``/v1/health``. Its output goes to ``log`` (appended), else to ours; ``env`` adds
    or overrides variables (the database and NATS URLs of ours are dropped)."""
    variables = dict(os.environ, VEIL_DATA_DIR=str(data_dir), **(env or {}))
    variables.pop("VEIL_DATABASE_URL", None)
    variables.pop("VEIL_NATS_URL", None)
    command = [sys.executable, "-m", "veil", "server", "--port", str(port)]
    command += ["--log-level", log_level]
    sink: IO[bytes] | None = log.open("ab") if log is not None else None
    try:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            command, env=variables, stdout=sink, stderr=subprocess.STDOUT if sink else None
        )
    finally:
        if sink is not None:
            sink.close()
    try:
        _wait_up(proc, f"http://127.0.0.1:{port}", log, timeout_s)
    except BaseException:  # not up (or Ctrl-C meanwhile): leave no server behind
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise
    return proc


def _wait_up(proc: subprocess.Popen[bytes], url: str, log: Path | None, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            shown = log.read_text(errors="replace") if log is not None else "see its output"
            raise RuntimeError(f"the server exited at start-up: {shown}")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(url + "/v1/health", timeout=1).read()  # noqa: S310 - http URL
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not answer within {timeout_s:g} s")
        time.sleep(0.05)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a clean stop), then SIGKILL if it takes over 15 s."""
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
