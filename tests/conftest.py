"""Shared fixtures: the shipped hardware library and a tiny self-contained one with round numbers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from hypothesis import HealthCheck, settings

from recsim.hardware.devices import Memory, NmpDimm
from recsim.hardware.library import HardwareLibrary, shipped_root

# Hypothesis' two clocks off for every property test: its per-example deadline (200 ms by default)
# and its too_slow health check (data generation time) fail a correct test on a loaded machine, and
# the default run shares its cores between pytest-xdist workers and the tests' own subprocesses.
# Speed is measured in benchmarks/, not asserted in tests. An explicit @settings(...) inherits these
# unless it names the key itself.
settings.register_profile("recsim", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("recsim")

#: The environment through which rich, which prints the CLI's tables, reads the console: its width
#: (COLUMNS; without it, the size of the terminal on file descriptors 0-2, the developer's under
#: ``pytest -s``) and whether it is a terminal with colours (``TTY_*``, ``FORCE_COLOR``, ``NO_COLOR``).
CONSOLE_ENV = ("COLUMNS", "LINES", "JUPYTER_COLUMNS", "JUPYTER_LINES", "TTY_COMPATIBLE", "TTY_INTERACTIVE")
CONSOLE_ENV += ("FORCE_COLOR", "NO_COLOR")


@pytest.fixture(autouse=True)
def _a_known_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test prints to the console a pipe gets: 80 columns, no terminal, no colours, wherever
    pytest runs. The human tables wrap to the console's width, so a test's words had depended on
    the shell it ran from: under COLUMNS=40 seven CLI tests failed (a table's cell folded inside
    "dgx-h100", a rank row of `run` over two lines). A test of another console sets its own (its
    CliRunner ``env``). Where the checkout or the temporary folder lives still moves what a table
    with a path in it wraps: such a test compares with the whitespace taken out."""
    for key in CONSOLE_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("COLUMNS", "80")


FIXTURES = Path(__file__).parent / "fixtures"
#: The CLI tests' library paths: the tiny hardware (minilib) and workload fixtures.
TINY_ENV = {
    "RECSIM_HARDWARE_PATH": str(FIXTURES / "minilib"),
    "RECSIM_WORKLOAD_PATH": str(FIXTURES / "workloads"),
}
#: ``recsim run``/``plan`` arguments for tiny-dlrm on one tiny node of two GPUs.
TINY_2_RANKS = [
    "--system",
    "tiny",
    "--workload",
    "tiny-dlrm",
    "--nodes",
    "1",
    "--set",
    "node.accelerators.count=2",
]


@pytest.fixture(scope="session")
def shipped() -> HardwareLibrary:
    return HardwareLibrary([shipped_root()])


@pytest.fixture(scope="session")
def minilib() -> HardwareLibrary:
    return HardwareLibrary([FIXTURES / "minilib"])


def tiny_nmp_dimm(memory: Memory) -> NmpDimm:
    """A RecNMP-style DIMM of round numbers on ``memory``: 2 ranks, 64 KiB RankCaches, 8 FLOP per
    cycle at 1 GHz per rank, 1 W idle and 5 W busy."""
    return NmpDimm.model_validate(
        {
            "kind": "nmp",
            "name": "tiny-nmp",
            "memory": memory,
            "ranks": 2,
            "rank_cache": "65536 B",
            "rank_cache_latency": "1 ns",
            "rank_cache_energy_per_bit": "0.3 pJ/bit",
            "processing_unit": {"clock": "1 GHz", "flop_per_cycle": 8},
            "power": {"idle": "1 W", "max": "5 W"},
        }
    )


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


def error_line(result: Result) -> str:
    """The one line a user mistake prints (exit 2, no traceback)."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [x for x in result.output.splitlines() if x.startswith("recsim: error:")]
    assert len(lines) == 1, result.output
    return lines[0]


def rail_pxn_step(pxn: bool) -> tuple[Any, Any, Any]:
    """The step a tester found PXN slow in DES on: 2 rail-optimized DGX H100 nodes, dlrm-dcnv2 at
    global batch 16384, NCCL's PXN on or off (``cluster.scale_out.pxn``), a table-wise plan:
    (system, workload, plan)."""
    from recsim.api import make_plan, prepare

    system, workload = prepare(
        "dgx-h100",
        "dlrm-dcnv2",
        nodes=2,
        overrides=[
            "cluster.scale_out.topology=rail_optimized",
            f"cluster.scale_out.pxn={str(pxn).lower()}",
            "workload.training.global_batch_size=16384",
        ],
    )
    return system, workload, make_plan("table_wise", workload, system)
