"""Growth of a ``CostMemo`` over many distinct evaluations: is what it keeps bounded?

One memo per (system, workload), as a planner search or a sweep holds it, is handed the
``greedy``, ``recshard`` and ``auto`` searches and then ``N`` analytic evaluations of distinct
plans: the table-wise round robin with its ranks shuffled (seeded) and, every other plan, one
table split by popularity rows at a drawn row between two ranks (a new slice, a new exchange).
After each block of evaluations it prints the entries of every structure the memo and its
``ShardOps`` keep and the bytes the process holds (``tracemalloc``, so the figures are slow to
get, not timed); then what one ``auto`` search on 856 of model-A's tables at 128 GPUs leaves.
Prints figures; asserts nothing.
Usage: ``python benchmarks/bench_memo_growth.py [evaluations] [block]`` (default 200, 50).
"""

from __future__ import annotations

import dataclasses
import gc
import random
import sys
import tracemalloc

from recsim.api import make_plan, prepare
from recsim.cost.memo import CostMemo
from recsim.engine.simulate import SimulationOptions, simulate_training
from recsim.planner.plan import table_wise_round_robin
from recsim.planner.types import Plan
from recsim.workload.spec import Workload

CASES = (("dgx-h100", "dlrm-dcnv2", 2), ("zionex", "dlrm-dcnv2", 1))
# One search alone: ``auto`` on Neo's model-A stand-in cut to 856 tables on 16 ZionEX nodes
# (``bench_planner.py``'s case), whose candidates split tables by popularity many ways.
SEARCH = ("zionex", "model-a", 16, 856)


def distinct_plan(workload: Workload, world: int, seed: int) -> Plan:
    """A table-wise plan with seeded ranks, one table split by popularity rows on odd seeds."""
    rng = random.Random(seed)
    base = table_wise_round_robin(workload, world)
    ranks = list(range(world))
    rng.shuffle(ranks)
    shards = [dataclasses.replace(s, ranks=(ranks[s.ranks[0]],)) for s in base.shards]
    if seed % 2 and world > 1:
        at = rng.randrange(len(shards))
        whole = shards[at]
        cut = rng.randrange(1, whole.row_end)
        other = (whole.ranks[0] + 1) % world
        shards[at : at + 1] = [
            dataclasses.replace(whole, row_end=cut, order="popularity", sharding="row_wise"),
            dataclasses.replace(
                whole, row_start=cut, order="popularity", sharding="row_wise", ranks=(other,)
            ),
        ]
    return dataclasses.replace(base, shards=tuple(shards), strategy=f"drawn-{seed}")


def sizes(memo: CostMemo) -> dict[str, int]:
    """Entries of every structure the memo and its ``ShardOps`` keep."""
    ops = memo.shard_ops
    out = {
        name: len(getattr(memo, name))
        for name in (
            "canonical_tuples",
            "collectives",
            "by_op",
            "energy_by_op",
            "durations_by_id",
            "energies_by_id",
            "mixtures",
            "traffic",
            "whole_keys",
        )
    }
    for name in ("_models", "_slices", "slices", "_figures", "_ops", "fused_ops", "layer_ops", "sorted_ops"):
        out[f"ops.{name}"] = len(getattr(ops, name))
    out["ops.exchanges"] = len(ops.exchanges)
    out["ops.inputs"] = len(ops.inputs)
    return out


def main() -> None:
    evaluations = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    block = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    tracemalloc.start()
    for system_name, workload_name, nodes in CASES:
        system, workload = prepare(system_name, workload_name, nodes=nodes)
        world = system.num_accelerators
        gc.collect()
        start_bytes = tracemalloc.get_traced_memory()[0]
        memo = CostMemo(system, workload)
        options = SimulationOptions(costs=memo, fold_ranks=True)
        for strategy in ("greedy", "recshard", "auto"):
            make_plan(strategy, workload, system, costs=memo)
        print(f"{system_name} {workload_name} {world} GPUs: after greedy, recshard, auto")
        for done in range(evaluations + 1):
            if done % block == 0:
                gc.collect()
                held = (tracemalloc.get_traced_memory()[0] - start_bytes) / 2**20
                counts = " ".join(f"{k}={v}" for k, v in sizes(memo).items() if v)
                print(f"  {done:5d} evaluations: {held:7.1f} MiB held; {counts}")
            if done < evaluations:
                simulate_training(system, workload, distinct_plan(workload, world, done), options)
        del memo, options
        gc.collect()
    system_name, workload_name, nodes, tables = SEARCH
    system, full = prepare(system_name, workload_name, nodes=nodes)
    data = full.model_dump(by_alias=True, exclude_none=True)
    data["tables"] = [t.model_dump(by_alias=True, exclude_none=True) for t in full.tables[:tables]]
    data.pop("table_groups", None)
    workload = Workload.model_validate(data)
    gc.collect()
    start_bytes = tracemalloc.get_traced_memory()[0]
    memo = CostMemo(system, workload)
    make_plan("auto", workload, system, costs=memo)
    gc.collect()
    held = (tracemalloc.get_traced_memory()[0] - start_bytes) / 2**20
    counts = " ".join(f"{k}={v}" for k, v in sizes(memo).items() if v)
    print(f"{system_name} {workload_name} ({tables} tables) {system.num_accelerators} GPUs, after auto:")
    print(f"  {held:7.1f} MiB held; {counts}")


if __name__ == "__main__":
    main()
