"""Shared fixtures: the shipped hardware library and a tiny self-contained one with round numbers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from recsim.hardware.library import HardwareLibrary, shipped_root

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def shipped() -> HardwareLibrary:
    return HardwareLibrary([shipped_root()])


@pytest.fixture(scope="session")
def minilib() -> HardwareLibrary:
    return HardwareLibrary([FIXTURES / "minilib"])


_NUMERIC_VALUE = re.compile(r":\s*[-+]?\.?\d")
_LABELS = ("description:", "kind:", "extends:", "generation:", "name:")


def unsourced_lines(path: Path) -> list[str]:
    """Lines of a shipped YAML file that give a numeric value without a '#' source comment.

    Rows of a list under a commented key (``- [0, 1, 2]`` mesh rows) are documented at the key.
    """
    out = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        code = line.split("#", 1)[0]
        stripped = code.strip()
        if line.lstrip().startswith("#") or re.match(r"^\s*- \[", line) or stripped.startswith(_LABELS):
            continue
        if _NUMERIC_VALUE.search(code) and "#" not in line:
            out.append(f"{path.name}:{number}: {line.strip()}")
    return out


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="Rewrite tests/golden/*/expected.json from the current results instead of checking them.",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """True under ``pytest --update-golden``: golden tests rewrite their expected metrics."""
    return bool(request.config.getoption("--update-golden"))
