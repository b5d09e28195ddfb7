"""Invariants of the framework runtimes on random small training setups: a framework that adds host
dispatch, syncs or unfused kernels never makes a step faster than the fused loop, the breakdown still
sums to the step, and nothing is busy more than the whole step."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsim.api import simulate

SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DOT = [
    "workload.interaction.type=dot",
    "workload.interaction.layers=null",
    "workload.interaction.low_rank=null",
]


@SETTINGS
@given(
    batch=st.sampled_from([1024, 4096, 16384]),
    interaction=st.sampled_from(["dot", "dcnv2"]),
    precision=st.sampled_from(["fp32", "fp16"]),
    runtime=st.sampled_from(["eager", "cuda_graphs"]),
)
def test_pytorch_runtimes_are_never_faster_than_the_fused_loop(batch, interaction, precision, runtime):
    sets = [*(DOT if interaction == "dot" else []), "workload.training.embedding_optimizer=sgd"]
    kwargs = dict(batch_size=batch, precision=precision, plan="table_wise", comm_dtype="fp32")
    fused = simulate("p4d-24xlarge", "dlrm-dcnv2", overrides=sets, **kwargs)
    other = simulate(
        "p4d-24xlarge", "dlrm-dcnv2", overrides=[*sets, f"workload.training.runtime={runtime}"], **kwargs
    )
    assert fused.status == other.status == "ok"
    assert other.iteration_time_s >= fused.iteration_time_s * (1 - 1e-12)
    assert sum(other.breakdown_s.values()) == pytest.approx(other.iteration_time_s, rel=1e-9)
    assert all(0.0 <= u <= 1.0 + 1e-9 for u in other.utilisation.values())
