"""The builder records a folded rank's all-to-all parts per collective (``_Builder._record_folded``)
instead of one ``add`` call per folded rank: the same ``folded_parts``, in the same order, and the
same nodes as before.

The reference is what the previous code did: ``add`` for a folded rank recorded its uneven
all-to-all part under the op's key, in call order, which is the order the unfolded graph has those
ranks' nodes in; the kept ranks' nodes are the unfolded graph's, renumbered."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from recsim.api import make_plan, prepare
from recsim.graph.build import BuildOptions, build_training_step, interchangeable_ranks
from recsim.graph.ir import ExecutionGraph, is_uneven_all_to_all


def _reference_parts(whole: ExecutionGraph, skip: frozenset[int]) -> dict[str, dict[int, Any]]:
    parts: dict[str, dict[int, Any]] = {}
    for node in whole.nodes:
        if node.rank in skip and is_uneven_all_to_all(node.op):
            parts.setdefault(node.op.key, {})[node.rank] = node.op
    return parts


CASES = [
    ("dgx-h100", "dlrm-dcnv2", 4, "table_wise", {}),
    ("dgx-h100", "dlrm-dcnv2", 16, "table_wise", {}),
    ("dgx-h100", "dlrm-dcnv2", 4, "table_wise", {"include_input_pipeline": False}),
    ("dgx-h100", "dlrm-dcnv2", 4, "table_wise", {"comm_dtype": "fp8"}),
    ("dgx-a100", "rmc1", 2, "data_parallel", {}),
    ("dgx-a100", "dlrm-mlperf", 4, "table_wise", {}),
]


@pytest.mark.parametrize(("system_name", "workload_name", "nodes", "strategy", "extra"), CASES)
def test_folded_parts_and_nodes_are_the_previous_ones(
    system_name: str, workload_name: str, nodes: int, strategy: str, extra: dict[str, Any]
) -> None:
    # An fp8 wire is TorchRec's (eager): HugeCTR, the default runtime, sends none.
    runtime = "eager" if extra.get("comm_dtype") == "fp8" else None
    system, workload = prepare(
        system_name, workload_name, nodes=nodes, batch_size=8192 * nodes, runtime=runtime
    )
    plan = make_plan(strategy, workload, system)
    options = BuildOptions(ranks_per_node=8, validate_plan=False, **extra)
    whole = build_training_step(workload, plan, options)
    folded = build_training_step(workload, plan, replace(options, fold_ranks=True))
    free = interchangeable_ranks(plan)
    assert len(free) > 1
    skip = frozenset(free[1:])
    expected = _reference_parts(whole, skip)
    got = folded.metadata.get("folded_parts", {})
    # Equal values, keys and ranks in the same order.
    assert list(got) == list(expected)
    for key in expected:
        assert list(got[key].items()) == list(expected[key].items())
    # The kept ranks' nodes are the whole graph's, numbered in order.
    kept = [n for n in whole.nodes if n.rank not in skip]
    ids = {n.id: k for k, n in enumerate(kept)}
    assert len(folded.nodes) == len(kept)
    for node, ref in zip(folded.nodes, kept, strict=True):
        assert node == replace(ref, id=ids[ref.id], deps=tuple(ids[d] for d in ref.deps))
