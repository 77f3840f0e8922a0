"""Where the real recordings live (../shared/printer-walks from the repo root), and loading them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tonerwatch_shared.snmp.snmprec import load_snmprec
from tonerwatch_shared.snmp.types import SnmpValue

WALKS = Path(__file__).resolve().parents[3].parent / "shared" / "printer-walks"


def recordings() -> list[Path]:
    """Return every recording, sorted; empty when the folder is absent."""
    return sorted(WALKS.glob("*.snmprec")) if WALKS.is_dir() else []


def walk(name: str) -> dict[str, SnmpValue]:
    """Return the values of one recording, skipping (or failing in CI) when it is absent."""
    path = WALKS / f"{name}.snmprec"
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"recording {path} missing in CI")
        pytest.skip(f"recording {path} not present")
    return load_snmprec(path)
