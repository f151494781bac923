"""Shared test helpers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import settings

_ROOT = Path(__file__).resolve().parents[1]
_SHARED = _ROOT.parent / "shared" / "vectors"
_LOCAL = _ROOT / "tests" / "vectors"

settings.register_profile("ci", deadline=None, print_blob=True)
settings.load_profile("ci")


def vectors_dir() -> Path:
    """The published vectors: ../shared/vectors beside the checkout, else the copies in tests/."""
    return _SHARED if _SHARED.is_dir() else _LOCAL


def load_vector(name: str) -> Any:
    return json.loads((vectors_dir() / name).read_text())
