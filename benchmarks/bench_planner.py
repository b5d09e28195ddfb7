"""Speed of the planner: an 856-table model on 128 GPUs (16 ZionEX nodes), greedy and auto.

The model is Neo's model-A stand-in (``workloads/model-a.yaml``, 1000 drawn tables) cut to its
first 856 tables; prints wall times and the plan's estimated makespan. Target (issue 5): < 10 s.
"""

from __future__ import annotations

import resource
import sys
import time

from recsim.api import make_plan, prepare
from recsim.planner.estimator import Estimator, plan_makespan_s
from recsim.workload.spec import Workload

TABLES = 856


def cut(workload: Workload, tables: int) -> Workload:
    """``workload`` with its first ``tables`` tables as explicit tables (groups dropped)."""
    data = workload.model_dump(by_alias=True, exclude_none=True)
    kept = [t.model_dump(by_alias=True, exclude_none=True) for t in workload.tables[:tables]]
    data["tables"] = kept
    data.pop("table_groups", None)
    return Workload.model_validate(data)


def main() -> None:
    strategies = sys.argv[1:] or ["greedy", "auto"]
    system, full = prepare("zionex", "model-a", nodes=16)
    workload = cut(full, TABLES)
    gpus = system.num_accelerators
    print(f"model: {workload.num_tables} tables, {workload.parameters:.3e} parameters; {gpus} GPUs")
    for name in strategies:
        start = time.perf_counter()
        plan = make_plan(name, workload, system)
        wall = time.perf_counter() - start
        makespan = plan_makespan_s(Estimator(system, workload), plan)
        print(
            f"plan {name:16s} {wall:6.2f} s  ({plan.strategy}, {len(plan.shards)} shards, "
            f"estimated makespan {makespan * 1e3:.2f} ms)"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
