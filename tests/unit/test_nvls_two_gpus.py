"""NVLS needs more than two GPUs of the group on a node, as NCCL's ``ncclNvlsInit`` does
(src/transport/nvls.cc: ``gpuCount <= 2`` leaves ``nvlsSupport`` at 0): on its own and as
CollNet's node part."""

from __future__ import annotations

import pytest

from recsim.api import load_system
from recsim.cost.collectives import REGISTRY, choose_algorithm, collective_cost
from recsim.cost.collectives.base import group_layout
from recsim.errors import ConfigError
from recsim.graph.ir import Collective, CollectiveOp
from recsim.hardware.topology import build_topology

MiB = 2**20


def _all_reduce(group: tuple[int, ...], size: float = 256 * MiB) -> Collective:
    return Collective(CollectiveOp.ALL_REDUCE, "x", group, size, "fp16")


def test_nvls_asked_for_on_two_gpus_is_refused() -> None:
    topology = build_topology(load_system("dgx-h100"))
    with pytest.raises(ConfigError, match="NVLS needs one node of more than two GPUs"):
        collective_cost(_all_reduce((0, 1)), topology, "nvls")
    assert collective_cost(_all_reduce((0, 1, 2)), topology, "nvls").algorithm == "nvls"


@pytest.mark.parametrize("size", [4096.0, float(MiB), 256.0 * MiB, 4096.0 * MiB])
def test_two_gpus_never_choose_nvls(size: float) -> None:
    topology = build_topology(load_system("dgx-h100"))
    assert choose_algorithm(_all_reduce((3, 6), size), topology)[0] != "nvls"


def test_collnet_keeps_nvls_off_with_two_gpus_a_node() -> None:
    topology = build_topology(load_system("dgx-h100", nodes=2))
    collnet = REGISTRY["collnet"]
    two = (0, 1, 8, 9)
    three = (0, 1, 2, 8, 9, 10)
    assert "nvls" not in collnet.protocol_names(_all_reduce(two), group_layout(two, topology))
    assert "nvls" in collnet.protocol_names(_all_reduce(three), group_layout(three, topology))
    assert collective_cost(_all_reduce(two), topology, "collnet").protocol != "nvls"
