"""Shared pytest fixtures.

Vector helpers come first: the official known-answer files live outside the checkout
(``$VEIL_VECTORS``, else ``../shared/vectors`` beside it). Without them the vector tests are
skipped, unless ``VEIL_REQUIRE_VECTORS=1`` (CI), which turns the skip into a failure.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from veil.core.rng import Rng, seeded_rng

# --- known-answer vectors -------------------------------------------------------------------

REPO_ROOT = Path(__file__).resolve().parent.parent
_MISSING = (
    "official vectors not found: set VEIL_VECTORS or put ../shared/vectors beside the checkout"
)


def find_vectors_dir() -> Path:
    """The vectors folder; skip (or fail, with ``VEIL_REQUIRE_VECTORS=1``) if it is missing."""
    env = os.environ.get("VEIL_VECTORS")
    path = Path(env) if env else REPO_ROOT.parent / "shared" / "vectors"
    if not path.is_dir():
        if os.environ.get("VEIL_REQUIRE_VECTORS") == "1":
            pytest.fail(f"{_MISSING} (looked in {path})")
        pytest.skip(_MISSING)
    return path


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    """The folder of official vectors (``signal/``, ...); see :func:`find_vectors_dir`."""
    return find_vectors_dir()


# --- determinism ----------------------------------------------------------------------------


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> Rng:
    """A seeded RNG, its seed derived from the test's node id (stable across runs)."""
    return seeded_rng(hashlib.sha256(request.node.nodeid.encode()).digest())


# --- interop fixtures go below ---------------------------------------------------------------
