"""What the DES engine keeps between fillings is bounded by its size, not only by a count.

At 64 ZionEX nodes a mix of collectives with the all-to-all in it has 1.6 x 10^7 (subflow, link)
entries; 16 such mixes kept whatever their size took a run to 8.5 GB (a tester's find). The
fillings' results do not depend on what is kept: these tests check the bounds and the sharing.
"""

from __future__ import annotations

import itertools

import numpy as np
import simpy

import recsim.engine.des as des
from recsim.api import load_system
from recsim.cost.collectives import Flow
from recsim.engine.des import FluidNetwork, Traffic, _Job
from recsim.engine.network import Scratch, _EdgeIndex, _fill, _FlowSet
from recsim.hardware.topology import build_topology

H2 = build_topology(load_system("dgx-h100", nodes=2))


def traffics(network: FluidNetwork, count: int, seed: int = 0) -> list[Traffic]:
    """``count`` random all-to-alls of ``network``'s topology."""
    rng = np.random.default_rng(seed)
    gpus = network.topology.accelerators
    out = []
    for _ in range(count):
        flows = [Flow(a, b, 1e6) for a in gpus for b in gpus if a != b and rng.random() < 0.5]
        traffic = network.traffic(flows)
        assert traffic is not None
        out.append(traffic)
    return out


def test_kept_mixes_are_bounded_by_their_entries_and_the_newest_is_always_kept(monkeypatch):
    network = FluidNetwork(simpy.Environment(), H2)
    made = traffics(network, 5)
    size = max(len(t.paths.cols) for t in made)
    cap = 3 * size  # room for a mix of two and a bit, not for two mixes of two
    monkeypatch.setattr(des, "_SET_ENTRIES", cap)
    mixes = [*itertools.combinations(made, 2), tuple(made)]  # the last alone is over the cap
    for mix in mixes:
        fs = network._flow_set(mix)
        kept = network._sets
        assert kept[tuple(t.uid for t in mix)] is fs  # the newest, even over the cap
        entries = sum(len(s.cols) for s in kept.values())
        assert entries == network._set_entries
        assert entries <= max(cap, len(fs.cols))
        assert len(kept) <= des._SETS
    assert len(network._sets) == 1  # the mix of all five fills the cap alone


def test_a_mix_kept_is_found_again_not_made_again():
    network = FluidNetwork(simpy.Environment(), H2)
    a, b, c = traffics(network, 3)
    first = network._flow_set([a, b])
    network._flow_set([a, c])
    assert network._flow_set([a, b]) is first


def test_fillings_share_one_scratch_buffer_and_give_the_same_rates():
    """The writable copy of a set's weights is one buffer per network, as long as the largest set
    it filled (a copy kept with every set had held a second copy of every collective's weights);
    the rates are the very ones a filling with its own copy gives."""
    network = FluidNetwork(simpy.Environment(), H2)
    made = traffics(network, 3, seed=1)
    capacity = network.capacity = _EdgeIndex(H2).capacity()
    rng = np.random.default_rng(2)
    largest = 0
    for mix in ([made[0]], [made[0], made[1]], made):
        jobs = []
        for t in mix:
            live = np.flatnonzero(rng.random(t.paths.n_flows) < 0.8)  # most: zeroed in a copy
            jobs.append(_Job(t, live, t.wire_bytes[live], network.env.event()))
        got = network._rates(jobs)
        fs = _FlowSet.concat([t.paths for t in mix])
        offsets = np.cumsum([0] + [t.paths.n_flows for t in mix[:-1]])
        live = np.concatenate([job.live + o for job, o in zip(jobs, offsets, strict=True)])
        want = _fill(fs, H2, capacity, live).wire[live]
        assert np.array_equal(got, want)
        largest = max(largest, len(fs.cols))
    assert 0 < len(network._scratch._buffer) <= largest
    for fs in [*network._sets.values(), *(t.paths for t in made)]:
        assert all(v is not network._scratch._buffer for v in vars(fs).values())
    # A caller with a scratch of its own gets the same filling as one without.
    fs = made[2].paths
    live = np.arange(0, fs.n_flows, 3)
    assert np.array_equal(_fill(fs, H2, capacity, live, Scratch()).wire, _fill(fs, H2, capacity, live).wire)


def test_the_allocation_memo_counts_its_keys():
    """A key holds a bit per flow of each job in flight: late in a big all-to-all only a handful
    of flows are live, and the key then outweighs the rates it finds."""
    network = FluidNetwork(simpy.Environment(), H2)
    (traffic,) = traffics(network, 1, seed=3)
    live = np.array([0, 5])
    job = _Job(traffic, live, traffic.wire_bytes[live], network.env.event())
    wire = network._rates([job])
    mask = job.live_key()
    assert mask is not None and len(mask) * 8 >= traffic.paths.n_flows
    assert network._memo_floats == len(wire) + len(mask) // 8


def test_pairs_keep_int32_link_ids_and_share_their_path_lengths():
    """The pairs' cache: int32 link ids, one read-only lengths array for all the pairs between nodes
    whose paths are as many and as long; the flow sets made from them are int64 (what a filling
    indexes with)."""
    index = _EdgeIndex(H2)
    gpus = H2.accelerators
    pairs = [(a, b) for a in gpus[:3] for b in gpus if a != b]
    arrays = [index.pair(a, b) for a, b in pairs]
    assert all(cols.dtype == np.int32 and lens.dtype == np.int32 for cols, lens in arrays)
    between = [lens for (a, b), (_, lens) in zip(pairs, arrays, strict=True) if index._composed(a, b)]
    assert len(between) > 3
    assert len({id(lens) for lens in between}) < len(between)
    assert all(not lens.flags.writeable for lens in between)
    fs = _FlowSet.of_pairs([gpus[0]], [gpus[-1]], H2)
    assert fs.cols.dtype == np.int64 and fs.sub_len.dtype == np.int64
