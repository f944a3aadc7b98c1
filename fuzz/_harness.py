"""Shared plumbing for the atheris harnesses in this folder (atheris is optional).

Every harness defines ``test_one_input(data: bytes) -> None`` that raises only on a broken
contract, and calls :func:`run` from ``__main__``. Without atheris the harness still imports
(the pytest smoke test in ``tests/test_fuzz_parsers.py`` calls ``test_one_input`` directly).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

try:
    import atheris  # type: ignore[import-not-found]
except ImportError:  # atheris is not a dependency: pip install atheris to fuzz
    atheris = None

TESTS = Path(__file__).resolve().parent.parent / "tests"


@contextlib.contextmanager
def instrumented() -> Iterator[None]:
    """Instrument the imports made inside for coverage feedback, when atheris is there."""
    if atheris is None:
        yield
    else:
        with atheris.instrument_imports(include=["veil"]):
            yield


def run(test_one_input: Callable[[bytes], None]) -> None:
    """Fuzz ``test_one_input`` with libFuzzer's command line (``-max_total_time=60 corpus/``)."""
    if atheris is None:
        sys.exit("atheris is not installed: .venv/bin/pip install atheris")
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
