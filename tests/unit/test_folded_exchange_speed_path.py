"""The graph builder's pooled exchange asks whether an all-to-all part is uneven once per part
rather than once per folded rank: the same graph (columns and metadata, the folded ranks' parts
among them) as the method it replaced (kept below as the reference), on real configurations,
folded and not."""

from __future__ import annotations

from collections import defaultdict

import pytest

from recsim.graph import build as build_module
from recsim.graph.build import (
    DTYPE_BYTES,
    Collective,
    CollectiveOp,
    Stream,
    _group_label,
    build_training_step,
    exchange_sums,
    is_uneven_all_to_all,
    pooled_exchange,
)
from tests.unit.test_shared_memo_speed_paths import CONFIGS, _setup


def previous_pooled_exchange(
    self, batch: int, forward: bool, deps_by_rank: dict[int, list[int]]
) -> dict[int, list[int]]:
    """The code before the uneven flag was kept per part."""
    b = self.local_batch(batch)
    comm = DTYPE_BYTES[self.comm_dtype]
    phase = "forward" if forward else "backward"
    group = tuple(range(self.world))
    if self._exchange is None:
        self._exchange = pooled_exchange(self.ops, self.plan, batch, comm, self.node_size)
    exchange = self._exchange
    # TorchRec batches the output dist of every table sharded over the same ranks into one
    # collective (its RW/TWRW dists concatenate the tables' partial pools): one
    # reduce-scatter (forward) and one all-gather (backward) per rank group, of the summed dims.
    groups = exchange.reduce_groups
    out: dict[int, list[int]] = defaultdict(list)
    reduce_ids: dict[int, list[int]] = defaultdict(list)
    # The exchange's NCCL parts, which HugeCTR's communicator order waits for, recorded as the
    # builder records them (``_Builder.communicator_parts``: per node, a row split's collectives are
    # copy kernels, not NCCL calls), so that both graphs order their all-reduces alike.
    copies = self.node_size is not None
    nccl: dict[int, list[int]] = defaultdict(list)
    self.communicator_parts = nccl
    if forward:
        for ranks, dim in groups.items():
            key = f"rw_fwd:{_group_label(ranks, self.world)}"
            # Each member holds partial sums for all B samples and keeps B / |G| of them: the
            # same op on every member, made once.
            op = Collective(CollectiveOp.REDUCE_SCATTER, key, ranks, batch * dim * comm, self.comm_dtype)
            for r in ranks:
                nid = self.add(r, key, Stream.COMM, op, deps_by_rank.get(r, []), phase)
                out[r].append(nid)
                reduce_ids[r].append(nid)
                if not copies:
                    nccl[r].append(nid)
    a2a: dict[int, int] = {}
    if exchange.any_all_to_all:
        key = "a2a_fwd" if forward else "a2a_bwd"
        # The matrix's rows and columns as tuples, equal ones shared (``PooledExchange``), and
        # the sum of each distinct one worked out once (``sum``, as the op's bytes always were,
        # not the exact sum the planner reads).
        sends, recvs = (exchange.rows, exchange.columns) if forward else (exchange.columns, exchange.rows)
        totals = exchange_sums(sends, sum)
        # One part per distinct (row, column) pair of shared tuples, shared by its ranks (a
        # table-wise plan's ranks without tables all send nothing and receive alike).
        parts: dict[tuple[int, int], Collective] = {}
        skip = self.skip
        folded: dict[int, Collective] = {}  # the folded ranks' parts (``_record_folded``)
        for r in group:
            send, recv = sends[r], recvs[r]
            op = parts.get((id(send), id(recv)))
            if op is None:
                op = parts[(id(send), id(recv))] = Collective(
                    CollectiveOp.ALL_TO_ALL,
                    key,
                    group,
                    totals[r],
                    self.comm_dtype,
                    send,
                    recv,
                    self.a2a_algorithm,
                )
            if r in skip:  # a folded rank: only its part, for the matrix (as ``add`` keeps it)
                if is_uneven_all_to_all(op):
                    folded[r] = op
                continue
            deps = [*deps_by_rank.get(r, []), *reduce_ids.get(r, [])]
            a2a[r] = self.add(r, key, Stream.COMM, op, deps, phase)
            out[r].append(a2a[r])
            nccl[r].append(a2a[r])
        self._record_folded(key, folded)
    if not forward:
        for ranks, dim in groups.items():
            key = f"rw_bwd:{_group_label(ranks, self.world)}"
            size = b * dim * comm * (self.world / len(ranks))
            op = Collective(CollectiveOp.ALL_GATHER, key, ranks, size, self.comm_dtype)
            for r in ranks:
                deps = [a2a[r]] if r in a2a else deps_by_rank.get(r, [])
                nid = self.add(r, key, Stream.COMM, op, deps, phase)
                out[r].append(nid)
                if not copies:
                    nccl[r].append(nid)
    return out


@pytest.mark.parametrize(
    ("name", "nodes", "plan_name", "runtime", "fold"),
    [*CONFIGS, ("dgx-h100", 2, "table_wise", "fused", True)],
)
def test_pooled_exchange_builds_what_the_previous_code_built(
    name, nodes, plan_name, runtime, fold, monkeypatch
):
    _, workload, plan, memo, options = _setup(name, nodes, plan_name, runtime, fold)
    got = build_training_step(workload, plan, options, memo.shard_ops)
    monkeypatch.setattr(build_module._Builder, "pooled_exchange", previous_pooled_exchange)
    want = build_training_step(workload, plan, options, memo.shard_ops)
    for field in ("ids", "ranks", "names", "streams", "ops", "deps", "lanes", "phases"):
        assert getattr(got.columns, field) == getattr(want.columns, field), field
    assert got.metadata == want.metadata
    assert list(got.metadata.get("folded_parts", {})) == list(want.metadata.get("folded_parts", {}))
    if fold and nodes == 16:  # 128 ranks, most without tables, folded: their parts are kept
        assert any(want.metadata["folded_parts"].values())
    for key, parts in want.metadata.get("folded_parts", {}).items():
        assert list(got.metadata["folded_parts"][key]) == list(parts)
