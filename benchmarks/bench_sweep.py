"""Sweep throughput of recsim itself: points per second, analytic and DES, local pool and Dask.

The sweep is the tiny-but-real grid of ``experiments/zionex-sharding.yaml`` cut to 2 and 4 nodes
(16 points a run), into a fresh temporary store each time. Prints figures; asserts nothing.
Usage: ``python benchmarks/bench_sweep.py [workers]`` (default 2).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from recsim.explore.sweep import run_sweep

SPEC = Path(__file__).resolve().parents[1] / "experiments" / "zionex-sharding.yaml"
CUT = ["axes.nodes=[2, 4]"]


def bench(executor: str, workers: int, fidelity: str) -> tuple[int, float]:
    overrides = [*CUT, f"stages=[{{fidelity: {fidelity}}}]"]
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = run_sweep(SPEC, out, executor=executor, workers=workers, overrides=overrides, progress=False)
        wall = time.perf_counter() - start
    return len(result.final), wall


def main() -> None:
    workers = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    for executor, n in (("local", 1), ("local", workers), ("dask", workers)):
        for fidelity in ("analytic", "des"):
            points, wall = bench(executor, n, fidelity)
            print(
                f"{executor:5s} x{n} {fidelity:8s}: {points} points in {wall:6.1f} s "
                f"= {points / wall:5.2f} points/s (start-up included)"
            )


if __name__ == "__main__":
    main()
