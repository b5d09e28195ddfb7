"""The fit cases of ``recsim validate`` run as tests: each stays inside the issue's accuracy band."""

import pytest

from recsim.validation import CASES, run_cases
from recsim.validation.cases import published

FIT_CASES = [c.id for c in CASES if c.kind == "fit"]


@pytest.mark.parametrize("case_id", FIT_CASES)
def test_fit_case_within_band(case_id):
    (result,) = run_cases([case_id])
    assert result.status == "pass", (result.error, result.band, result.note)
    assert result.error is not None
    assert result.error <= result.band


def test_end_to_end_cases_are_defined_from_the_published_data():
    ids = {c.id for c in CASES if c.kind == "end_to_end"}
    assert "mlperf-train-v4.0-dcnv2-dgxh100x1" in ids
    assert sum(i.startswith("torchrec-p4d") for i in ids) == 4
    assert {"mlperf-train-v4.0-dcnv2-dgxh100-n8", "mlperf-train-v2.0-dlrmv1-dgxa100-n14"} <= ids
    mlperf = next(c for c in CASES if c.id == "mlperf-train-v4.0-dcnv2-dgxh100x1")
    assert mlperf.measured == 1.567e7


# End-to-end cases against published throughput. The ones recsim does not reach yet are strict
# xfails with the reason, so a fix that brings one into its band shows up as an unexpected pass.
KNOWN_GAPS = {
    "torchrec-p4d-dot-adagrad-16384": (
        "+29 %: the eager host model (TorchRec traces) predicts 13.7 ms per step, measured 17.7 ms; the "
        "DCNv2 run at the same batch takes 18.2 ms with about 13 ms more GPU work, so the dot run is "
        "bound by something the GPU work hides under, host-side, that grows with the batch (the model "
        "at batch 2048 is within 15 %); an earlier TorchRec README gave 1.67M samples/s (9.8 ms) at "
        "this batch under SGD, so the figure is software-version sensitive"
    ),
    "torchrec-p4d-dcnv2-adagrad-16384": (
        "+28 %: 14.3 ms predicted, 18.2 ms measured, about the dot run's 17.7 ms although the DCNv2 run "
        "has far more GPU work: both are bound by the same host-side floor the dot case misses. This case "
        "was in band (+4.5 %) only while fp32 GEMMs were held to the tensor-core fit's 74 % of peak; at "
        "the measured SGEMM efficiency (recsim.cost.compute.SIMT_GEMM_EFFICIENCY) the GPU work falls "
        "under that floor, and the GPU-bound run at batch 131072 moved from -14.3 % to +6.5 %"
    ),
    "mlperf-train-v5.0-dcnv2-hgxh200-hpe-n2": (
        "+27 %: two HGX H200 nodes on NDR InfiniBand at batch 65536 run 19.4M samples/s, one node's "
        "16.2-16.7M plus 16-20 %; recsim gives one node +40 %: its hier_auto plan (the run's config: "
        "MEM_COMM_BW_RATIO 67, SHARP off) sends 5.2 MB a rank across the nodes in 169 us, and the "
        "compute and lookups (60 % of the step) halve with the per-GPU batch. HPE's 4-node run (not a "
        "case) is +20 % with SHARP on, so SHARP is not it. hugectr_auto at ratio 9 or 11 gives +21 to +28 %. "
        "NVIDIA's own multi-node runs (Eos, 8 and 16 nodes) are in band, so what another site's 2-node "
        "run pays (its software, NCCL settings, fabric) is outside the model; nothing here measures it. "
        "The fabric may well be Ethernet: HPE's config calls NCCL_IB_GID_INDEX=3 a 'Mandatory param' (a "
        "GID index only matters on a RoCE link layer) and its system JSON lists VPI 'InfiniBand "
        "NDR/Ethernet 400Gb' adapters (MCX75310AAS-NEAT), so both +27 % cases likely ran NCCL over RoCE, "
        "the in-band Eos runs and Dell's XE8640 pair over InfiniBand. The NIC rate that would reproduce "
        "it, about 1/3 of NDR's (100 Gb/s: -5 %), is no RoCE mechanism anything here measures"
    ),
    "mlperf-train-v5.1-dcnv2-dgxh100-cisco-n8": (
        "+26 %: eight H100 nodes on 8 x 400G RoCE per node at batch 160000 (SHARP off, as on any "
        "Ethernet fabric: +28 % with it). recsim costs RoCE as "
        "InfiniBand: a NIC without a calibration block takes DEFAULT_NETWORK's 0.97 of line rate, with "
        "no congestion, and the library has no 400G RoCE NIC (mapped to dgx-h100's NDR). Halving the "
        "per-GPU scale-out bandwidth reproduces the figure (52.3M), and NVIDIA's InfiniBand runs of "
        "the same software at this scale are within 9 %; a measured RoCE collective would decide it"
    ),
}
# Passing cases near their band's edge, with what is known of the gap, so that a change moving one
# out of band starts from the diagnosis rather than from nothing:
#
# * mlperf-train-v2.1-dlrmv1-dgxh100-n4: -14.4 % (band 15 %, a 0.6-point margin; a strict xfail at
#   -15.2 % before the collective refit). With HugeCTR's inter-iteration overlap modelled (the next
#   batch's routed lookups and all-to-all inside the step, Runtime.prefetches_routed_forward: -17.9 %
#   before) the single-node HugeCTR DLRM v1 cases are +6 to +10 % and the 8- and 14-node A100 ones
#   +2 and +10 %. What is left: the exchange overlaps the replicated update and the dense optimizer,
#   which the interference model stretches by the A100 NVLink trace's 1.67
#   (recsim.cost.interference; without interference -2 %, but the single-node cases then +21 to
#   +24 %, both measured before the refit), and HugeCTR 3.x's own collectives (the hierarchical
#   all-to-all and the one-shot SHARP all-reduce over its IbComm, no NCCL) are costed with NCCL's
#   fitted per-call latencies (26.3 us Simple base on NVLink4, 9.6 us per network step); nothing
#   measures either on InfiniBand, so neither is tuned to this case.
#
# * The multi-node bias (a session's survey, analytic engine): the 2-node cases sit 4-6 points above
#   their submitter's 1-node ones (HGX 4-GPU +10.4 vs +3.0 at almost the same per-GPU batch; Dell B200
#   +9.8 vs +5.9), the step's inter-node collectives are large, bandwidth-bound messages at the NIC's
#   fitted rate (HPE's 5-7 MB to one rail peer, B200's 0.9-1.8 MB per peer), so no per-peer latency,
#   channel or message-rate rule of NCCL adds to them. A uniform network slowdown does not fit either:
#   every NIC at 200 Gb/s puts Cisco at +4 % but B200 x 2 at -23 %, HGX 4-GPU x 2 at -13 % and HPE
#   still at +14 %. Eos 8 -> 16 nodes at the same global batch: measured 2.353 -> 1.773 ms a step,
#   recsim 2.183 -> 1.841 ms: the model's step shrinks 0.34 ms where the real one shrinks 0.58 ms,
#   so at 16 nodes the model holds too much that does not scale with the per-GPU work (its busiest
#   rank's row-wise hot table, 0.42-0.46M lookups at both sizes, and a 0.29 ms replicated-table
#   backward), not too little network time.
#   A later session checked both and found mechanisms, not defects. (1) The lookups are HugeCTR's
#   plan: its Planner (DLRM-DCNv2 sharding/planner.py, re-run on these tables) keeps t20 (hotness
#   100) over 4 nodes at both sizes, busiest-node cost 61.5 (t20/4 + t10) and 41.75 (t20/4 alone),
#   as hier_auto does (tests/unit/test_hier_auto.py): the busiest GPU gets 135,168 x 100 / 32 =
#   422,400 t20 lookups at both sizes (+ t10's 50,688 at 8 nodes); splitting t20 over 8 nodes would
#   add a table's 67/4 to each. Row shards divide their table's lookups evenly, and every table's
#   lookups sum to batch x hotness over the ranks. (2) The replicated tables are HugeCTR's
#   UniformDPEmbedding (whole small tables, not hybrid-embedding frequent rows): index sort, unique,
#   local reduce, then a dense all-reduce of the whole table's gradient (31,605 rows x 128 x fp32 =
#   16.2 MB), then recsim steps every row (45 us). Alone the backward is 175 us (16 nodes) / 191 us
#   (8 nodes): 16 kernels (11 + 2 radix passes sort, 3 update) x (7.857 us per kernel + 2 us gap) =
#   158 us fixed, as small as kernels go in the A100 trace (its 1,000-row TBE's 13 sort kernels take
#   4-16 us each, 96 us together); the interference model stretches it 1.67x (290-320 us) because it
#   runs entirely beside the backward exchange and all-reduce. With the busiest rank's embedding time
#   fixed by the plan (1.11-1.14 ms in the model), the measured steps put the real embedding at about
#   1.19 ms and the rest at 1.16 -> 0.58 ms (halving with the per-GPU batch); the model's rest goes
#   1.04 -> 0.73 ms (MLP 0.54 -> 0.39 ms, dense Adagrad 0.12 ms at both, exposed exchanges
#   0.39 -> 0.22 ms). So what fails to scale is more likely outside the embeddings (GEMM and
#   exchange fixed costs at a 1,056-sample GPU batch), where nothing here measures H100 at that size.
#   The async-wgrad lead, checked: NVIDIA's DCNv2 train.py passes DenseLayerComputeConfig(
#   async_wgrad=True) to the bottom MLP, the cross layers and the top MLP, so HugeCTR runs each
#   layer's weight-gradient GEMM on a second stream that only the dense all-reduce waits for;
#   recsim runs both GEMMs of a layer in one node on one stream. Overlapped perfectly it would
#   remove at most ~180 us at 8 nodes and ~130 us at 16 (the wgrad share of 359 / 261 us of MLP and
#   cross backward): both faster, 8 nodes to about +14 %, the 8 -> 16 speed-up 1.18 -> 1.17 against
#   1.33 measured. A real mechanism recsim lacks (it needs a second compute lane sharing the GPU
#   with the embedding backward), but not the missing scaling: that grows with the per-GPU batch.
END_TO_END = [
    pytest.param(c.id, marks=pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[c.id]))
    if c.id in KNOWN_GAPS
    else c.id
    for c in CASES
    if c.kind == "end_to_end"
]


def test_a_fit_reports_its_error_and_no_placeholder_figures():
    (fit,) = run_cases(["gemm-a100-heldout"])
    assert fit.kind == "fit" and fit.predicted is None and fit.measured is None
    assert fit.error is not None and 0 < fit.error <= fit.band and fit.status == "pass"
    assert fit.to_dict()["measured"] is None


@pytest.mark.parametrize("case_id", END_TO_END)
def test_end_to_end_case_within_band(case_id):
    (result,) = run_cases([case_id])
    assert result.status == "pass", (result.predicted, result.measured, result.error, result.band)


def test_torchrec_throughput_rises_with_batch_as_measured():
    small, large = run_cases(["torchrec-p4d-dcnv2-adagrad-16384", "torchrec-p4d-dcnv2-adagrad-131072"])
    assert large.predicted > small.predicted
    assert large.measured > small.measured


def test_every_published_run_row_has_only_known_keys():
    # A comma inside a flow mapping's plain text starts a new key: three rows' log texts had been
    # cut short into stray keys ("195", "0.049994 epoch of ...": a reviewer's find).
    known = {
        "round", "submitter", "tag", "platform", "system", "nodes", "workload", "global_batch",
        "samples_per_s", "intervals", "log", "plan", "planner", "set", "config", "interaction", "optimizer",
    }  # fmt: skip

    def rows(node):
        if isinstance(node, dict):
            if "samples_per_s" in node:
                yield node
            for value in node.values():
                yield from rows(value)
        elif isinstance(node, list):
            for value in node:
                yield from rows(value)

    found = list(rows(published()))
    assert len(found) > 30
    assert [sorted(set(map(str, row)) - known) for row in found if set(map(str, row)) - known] == []
