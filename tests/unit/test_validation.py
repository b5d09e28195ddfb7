"""The fit cases of ``recsim validate`` run as tests: each stays inside the issue's accuracy band."""

import pytest

from recsim.errors import ConfigError
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
# torchrec-p4d-dot-adagrad-16384 was listed here at +30 % (13.6 ms a step predicted, host-bound,
# 17.7 measured) until TorchRec's per-sharding-type host work and its planner's plan (the note
# "The TorchRec p4d gap" below): +11.7 %.
KNOWN_GAPS: dict[str, str] = {}
# HugeCTR's DCNv2 cross layers as two GEMMs and HugeCTR's element-wise kernels (recsim.graph.build.
# _cross_layer_ops, a reviewer's find: the layer had been one op at the matrix fit's best efficiency,
# its element-wise traffic one read and one write) made every DCNv2 step 10-20 % longer and took 12
# single-node H100/H200/B200/GB200 MLPerf cases out of band (headline mlperf-train-v4.0-dcnv2-dgxh100x1
# -4.7 -> -22.6 %). The lumped op had been hiding two overlaps HugeCTR runs, which the fused runtime
# now models: the embedding backward's index calculation on its "dp" stream beside the dense
# forward and backward (Runtime.backward_index_overlap: -0.43 ms a step on DGX H100 at batch 55296)
# and the cross layers' weight-gradient GEMMs on a stream of their own, contended (Runtime.
# async_cross_wgrad: -0.19 ms). With both, the 12 are back in band (headline -9.6 %; the 31 MLPerf
# DCNv2 cases +1.1 % mean, 5.0 % mean |error|, against +4.4 % and 6.2 % before the split), and HPE's
# and Cisco's multi-node cases, which the split alone had brought into band, are out again:
# HPE's two-node H200 case (mlperf-train-v5.0-dcnv2-hgxh200-hpe-n2) was listed here at +16.1 % (+18.1 %
# before the TBE sort stage's own efficiency and today's other refits, +27.2 % before the cross-layer
# split, +7.7 % with the split alone; the fabric likely RoCE, which recsim costs as InfiniBand: HPE's
# config calls NCCL_IB_GID_INDEX=3 mandatory and its adapters are VPI MCX75310AAS-NEAT). It passed at
# +6.6 % with MLPerf's fixed multi-hot rows alone (the note after this one), which slowed every DCNv2
# step, and was back at +15.9 % (listed below until 2026-12-07) with the update's row visit priced at
# its own rate.
# MLPerf's fixed multi-hot rows (workloads/dlrm-dcnv2.yaml multi_hot: fixed_rows, recsim.workload.
# access.multi_hot: facebookresearch/dlrm torchrec_dlrm/multi_hot.py gives each one-hot id a fixed row
# of pooling - 1 uniform ids) make 0.43 of a 40M-row table's lookups distinct rows at batch 55,296,
# against 0.22-0.28 for independent Zipf lookups (the busiest DGX H100 rank's distinct rows 412k ->
# 650k a step). With the update's visit to each (fp32 row and Adagrad state read and written) at the
# A100 gather fit's eff(1 KB) = 0.34 of HBM peak, every MLPerf DCNv2 case went 5-14 points slower
# (the 43 end-to-end cases 6.37 -> 11.64 % mean |error|, +0.52 -> -6.40 % signed) and nine one-node
# H100 cases were strict xfails here at -15.0 to -21.6 %. With the visit priced as the coalesced
# read-modify-write it is (recsim.cost.embedding.gpu.row_visit_efficiency: eff(row) x elementwise /
# max_efficiency, 0.77 of peak for 1 KB on H100, within 15 % of the measured H100 row-gather rates,
# tests/unit/test_cost_embedding.py) the 43 cases are at 5.97 % mean |error| (+1.25 % signed, 41 in
# band) and the nine pass: -0.4 to -9.1 % (the headline mlperf-train-v4.0-dcnv2-dgxh100x1 -8.4 %,
# -11.4 % before both; the PCIe server -9.1 %, the worst).
# HPE's two-node case was listed here at +15.9 % until 2026-12-07, when two mechanisms, each held
# back by the other, went in together (the SHARP-off note below): NCCL's SHM pairs capped at their
# staged rate with their links charged plain bytes (hardware.topology SHM_LINE_FRACTION) and HugeCTR's
# one NCCL communicator, which runs the gradient all-reduces after the backward all-to-all
# (Runtime.all_reduces_after_exchange). Validate, analytic (45 end-to-end cases: mean |error|,
# signed, in band; DCNv2 35): before 5.43 %, +0.83 %, 44 (DCNv2 4.34 %, -0.02 %, 34); the SHM cap
# alone 5.66 %, +1.46 %, 43 (the PCIe server -9.1 -> +19.3 %: a strict xfail here for one commit);
# the order alone 6.48 %, -2.61 %, 44 (the PCIe server -21.4 %); both 6.21 %, -1.93 %, 45 (DCNv2
# 5.34 %, -3.57 %, 35): HPE n2 +6.8 %, n4 +1.9 %, Cisco n8 +4.0 %, the PCIe server +9.5 %, the
# headline -10.8 % (-8.4 % before), every DCNv2 case 2-9 points slower, the nearest to an edge Eos
# v4.1 n8 -12.1 %. DES (validate --fidelity des): before 6.25 %, -1.72 %, 44 (the PCIe server -21.9 %
# out); the SHM cap alone 6.03 %, -0.96 %, 45 (PCIe +12.4 %); both 7.08 %, -2.98 %, 45 (HPE n2
# +6.4 %, PCIe +7.3 %, headline -13.2 %; Eos v4.1 n8 -12.9 %, Oracle -12.5 % within 3 points of the
# edge). Caveat, measured: with --no-comm-interference HPE n2 is +18.7 % with or without the order,
# so its gain is recsim.cost.interference's stretch of the embedding backward that now runs beside
# the all-reduces, a slowdown measured beside NVLink collectives (the note below); the PCIe server's
# gain is the SHM cap's, which assumes each of a GPU's staged pairs keeps the one measured pair's
# rate (not measured in ../shared/reference). With the cap, recsim's own intra-node chain (Tree)
# beat the ring on that node (a pair's cap holds each direction: a chain sends S each way on a
# pair, a ring 2 (n - 1) / n S one way), which NCCL's tuner never picks inside one node
# (``DoubleBinaryTreeAllReduce.auto_for``, src/graph/tuning.cc's bandwidth ratios); on the ring the
# PCIe server is -1.2 % analytic (+9.5 % on the chain), -3.0 % DES (+7.3 %), and validate stands at
# 6.03 %, -2.16 %, 45 (DCNv2 5.10 %, -3.87 %, 35); DES 6.98 %, -3.20 %, 45 (DCNv2 6.33 %, -5.21 %).
# A review then found the first all-reduce waiting for a node-level row split's gather copies too,
# which HugeCTR runs after its NCCL all-to-all, outside the communicator (``recsim.graph.build``,
# ``communicator_parts``): since it waits for the NCCL parts only, 6.20 %, -1.60 %, 45 (DCNv2 5.32 %,
# -3.15 %): HPE n2 +12.7 %, n4 +8.0 %, Cisco n8 +8.4 %, Eos n8 -5.7 / -8.1 %, n16 -5.1 / -7.9 %. DES
# 7.42 %, -3.73 %, 43 in band: Eos v4.1 n8 -16.7 % and n16 -15.3 % out (their all-reduce now beside
# the gather copies, sharing NVLink with them); `recsim validate` runs the analytic engine.
# Cisco's 8-node RoCE case (mlperf-train-v5.1-dcnv2-dgxh100-cisco-n8) was listed here at +16.3 %
# (+28.4 % before the cross-layer split, +7.5 % with the split alone). It passes narrowly, +13.8 %
# (+14.3 % before MLPerf's fixed multi-hot rows and the update's row-visit rate, +6.3 % with the rows
# alone), since the TBE sort stage streams at its own measured efficiency and the update stage was
# refitted (recsim.cost.embedding.gpu.SORT_EFFICIENCY: every DCNv2 step about 2 % longer), not because its
# suspected cause is modelled: recsim still costs its 8 x 400G RoCE per node as InfiniBand (a NIC
# without a calibration block takes DEFAULT_NETWORK's 0.97 of line rate, no congestion; no 400G RoCE
# NIC in the library, mapped to dgx-h100's NDR). NVIDIA's InfiniBand runs of the same software at
# this scale (mlperf-train-v4.x-dcnv2-dgxh100-n8/-n16) are within 3 %. No RoCE penalty is sourced
# (recsim.validation.cases, the network-side finding); under `recsim validate --fidelity des` the
# case is +4.9 % (+5.3 % before the fixed rows and the row-visit rate; +6.8 % then with links
# shared but not HBM: its backward all-to-all shares each NIC
# with the dense all-reduce, which the analytic engine does not price).
# HugeCTR's MLP weight-gradient GEMMs on the wgrad lane (Runtime.async_mlp_wgrad, contended as the
# cross layers': each hides only behind the memory-bound kernels before the next matrix product, the
# dot interaction's tensor-core backward included, and the first dense layer's behind the step's
# rest) took the fused cases 0.9-4.2 % faster (headline v4.0 DGX H100 -11.5 -> -8.8 %; the 31 MLPerf
# DCNv2 cases -1.1 -> +1.2 % mean, 5.0 -> 5.1 % mean |error|; the six DLRM v1 cases +3.5 -> +6.1 %
# mean) and took mlperf-train-v2.0-dlrmv1-hgxa1004gpu-n1, already the model's most optimistic case,
# just out of band (+14.1 -> +15.4 %: 4 x A100-SXM-80GB at batch 55,296, 2.311 ms a step predicted,
# 2.666 measured). Split-K's reduction priced as the kernel it is (recsim.cost.compute._gemm_kernel,
# checked on the recsys A100 trace's GEMMs: gemm-a100-recsys-trace) brought it back to +14.9 %,
# barely inside: the A100 DLRM v1 gap (+10.9 % on DGX A100, mlperf-train-v2.1-dlrmv1-dgxa100x1) is
# still there; the trace's TF32 GEMMs that run unsplit are priced ~19 % fast (tests/unit/
# test_gemm_on_trace.py), a candidate for the rest.
# The TorchRec DCNv2 run at batch 16384 came into band with the split (+26.6 -> +19.5 %) and PyTorch's
# unfused element-wise kernels counted one by one (Compute.kernels: +12.6 %), then the cross stack's
# input concatenation (TorchRec's two torch.cat and split's backward cat) and DDP's per-tensor bucket
# copies (+10.4 %, 16.5 vs 18.2 ms); +7.5 % on TorchRec's plan (the note below).
# The TorchRec p4d gap (the dot Adagrad case was a strict xfail), as a session checked it against the
# sources; measured minus predicted step: -1.7 ms (dot, SGD, local batch 256), +4.0 (dot, Adagrad,
# 2048), +4.0 (DCNv2, Adagrad, 2048, GPU-bound in recsim), +6.7 (DCNv2, Adagrad, 16384, GPU-bound);
# since the cross layers' split into GEMMs and element-wise kernels the DCNv2 ones are +3.0 and
# +5.6. A cause must add about 4 ms at local batch 2048 to a host-bound and a GPU-bound step alike,
# and nothing at 256 under SGD (a later session's partial find closes the paragraph).
#
# * EXACT_ADAGRAD (dlrm_main's torch.optim.Adagrad -> EmbOptimType.EXACT_ADAGRAD, torchrec
#   optimizer_type_to_emb_opt_type): FBGEMM reads and writes momentum1[idx * D + d] of each touched
#   row only (fbgemm_gpu/codegen/genscript/optimizers.py, adagrad()), which recsim costs (4 x dim bytes
#   a row, recsim.cost.embedding.base): at most 26 x 16384 rows x 128 x fp32 x 2 = 436 MB a step over
#   8 GPUs, under 0.05 ms each. Not it.
# * A dense Adagrad over the tables: dlrm_main hands torch.optim.Adagrad only
#   in_backward_optimizer_filter(model.named_parameters()), and the fused TBE's named_parameters mark
#   every table _in_backward_optimizers = [EmptyFusedOptimizer()] (torchrec/distributed/
#   batched_embedding_kernel.py). Tables the planner makes data-parallel are stepped whole in backward,
#   but its estimate (shard_estimators _get_dp_sharding_perf: table_size / (12.5 GiB/s x 8) of
#   all-reduce plus 9.22 x table_size / 897 GiB/s) only favours that for tables of a few MB. The dense
#   Adagrad itself (2.4M dot / 16M DCNv2 parameters) recsim already issues: about 0.2 ms on the GPU.
# * The planner's memory: dlrm_main's Topology names no hbm_cap, so HBM_CAP = 32 GiB
#   (torchrec/distributed/planner/constants.py), and _get_optimizer_multipler gives
#   torch.optim.Adagrad a table's worth of state: a 40M-row table needs 40.96 GB under Adagrad and
#   cannot go table-wise in HBM (20.5 GB under SGD can). The planner must row-split it (UVM's
#   kernel_bw_lookup rate is a tenth of HBM's, so not while HBM fits); recsim's auto plans split them
#   too (rows for dot, columns for DCNv2), and a row split's reduce-scatter (16384 x 128 fp32 a
#   table) is well under 1 ms.
# * The Criteo loader (torchrec/datasets/criteo.py InMemoryBinaryCriteoIterDataPipe: % hashes per batch
#   in mmap mode, the shuffle_batches permutation, the copies; DataLoader pins in the main thread): its
#   numpy work measured here at 0.09 / 0.79 / 10.4 ms for local batches 256 / 2048 / 16384, about
#   0.4 us a sample: 0.8 of the 4 ms at 2048. Whether the runs used --mmap_mode (reading 160 B a sample
#   from storage) is not known: the README's flags are not in shared/ (the Ascend ports of dlrm_main
#   quote its DCNv2 row: "--batch_size 2048 --learning_rate 0.006 --adagrad --interaction_type=dcn",
#   104.54 GiB of tables, ~55.0 batches/s, 1h20m21s an epoch, which that rate accounts for).
# * Host syncs: KJTAllToAllSplitsAwaitable's .tolist() (recsim's sync:input_dist_splits) and the dot
#   interaction's triu_indices copy (sync:interaction_index; DCNv2 has none) are modelled;
#   KeyedJaggedTensor.dist_init ends in kjt.sync() (length_per_key's .tolist() when the forward waits
#   for its input dist), whose all-to-all was queued before the previous backward's collectives, so it
#   has finished by then; its CPU time is in the calibration trace's forward.
# What would fit: host work of about 2 us per local sample (4 ms at 2048; hidden under the GPU-bound
# step at 16384; the SGD case at 256 would go to about -18 %), or a ~4 ms Adagrad- or version-specific
# cost serial to both host and GPU. Nothing in these sources is either; a trace of these runs would tell.
# Found since (a later session): TorchRec's host work grows with the plan's sharding types.
# ShardedEmbeddingBagCollection builds an input dist, a lookup and an output dist per sharding type
# (torchrec/distributed/embeddingbag.py), and the calibration trace has one routed type; under
# Adagrad the planner must split the five 40M-row tables by rows and keeps the rest whole (its
# estimator rates a row split above a whole table that fits), so these runs dispatch two routed
# types a step and the SGD run one. Charging each further type its input dist (1.42 ms) and output
# side (0.69 ms forward, 0.13 ms backward, measured on the trace: EagerCosts.group_forward_s), with
# the cases on TorchRec's plan (table-wise under SGD, 40M-row tables row-wise under Adagrad; they
# had been on recsim's auto plans, TW + RW even under SGD): dot Adagrad +30.0 -> +11.7 %, DCNv2
# 16384 +11.6 -> +7.5 % (the plan; it stays GPU-bound), 131072 +3.9 -> +1.0 %, dot SGD -14.5 %
# unchanged. Since then the cases plan with the ``torchrec`` proposer (recsim's emulation of TorchRec's
# planner: the same schemes, whole tables on the ranks its partitioner picks rather than
# table_wise_greedy's): DCNv2 16384 +7.53 -> +7.62 %, 131072 +0.97 -> +1.05 %, the dot cases
# unchanged. What is left (about 3 ms a step for dot at 2048) is not found. Also checked:
# * The README's rate is tqdm's live it/s, an exponential moving average over recent updates
#   (smoothing 0.3); only close() prints n / elapsed (tqdm/std.py: "stats for overall rate (no
#   weighted average)"), and dlrm_main's _train runs any --validation_freq_within_epoch passes between
#   updates. The one row with its epoch time (DCNv2 at 16384: 256,054 steps in 1h20m21s = 53.1 it/s,
#   quoted ~55.0) shows the rate leaves out the pauses: the mean step is up to 3.5 % longer, not
#   shorter, so the gap is no artefact of the figure.
# * UVM: with every table in UVM caching at 0.2 (--set planner.tiers=[uvm_caching]
#   --set planner.cache_ratios=[0.2]) the dot run stays 13.6 ms (host-bound: the PCIe traffic lands
#   on the GPU), so a UVM placement cannot explain it (nor would the planner pick it, above).
# * The older README (same p4d, CUDA 11.0, NCCL 2.10.3; SGD, 91.10 GiB tables, in-memory loader with
#   --shuffle_batches; Jesse-Yan/dlrm's copy of torchrec_dlrm/README.MD): 8 GPUs at local batch
#   256 / 2048 / 8192 ran 284,615 / 1,671,168 / 5,373,952 rec/s, 7.2 / 9.8 / 12.2 ms a step, where
#   recsim (dot, SGD, MLPerf table sizes, before this change) gives 11.7 / 12.4 / 16.3 ms. That
#   software dispatched about 40 % faster than the V100 trace's calibration (local batch 16, random
#   loader), and the 12.2 ms at 8192 bounds any per-sample host cost to 0.63 us a sample: no constant
#   per-sample host term fits both README generations; the host part of these steps moves by tens
#   of percent with the software version (published.yaml's SGD row, 10.0 ms, is a later figure).
#
# Passing cases near their band's edge, with what is known of the gap, so that a change moving one
# out of band starts from the diagnosis rather than from nothing:
#
# * mlperf-train-v2.1-dlrmv1-dgxh100-n4: -12.8 % (-14.4 % before HugeCTR's async MLP weight gradients,
#   the GEMM refit and NCCL 2.20.3's latencies; band 15 %; a strict xfail at
#   -15.2 % before the collective refit). With HugeCTR's inter-iteration overlap modelled (the next
#   batch's routed lookups and all-to-all inside the step, Runtime.prefetches_routed_forward: -17.9 %
#   before) the single-node HugeCTR DLRM v1 cases are +6 to +10 % and the 8- and 14-node A100 ones
#   +2 and +10 %. What is left: the exchange overlaps the replicated update and the dense optimizer,
#   which the interference model stretches by the A100 NVLink trace's 1.67
#   (recsim.cost.interference; without interference -2 %, but the single-node cases then +21 to
#   +24 %, both measured before the refit), and HugeCTR 3.x's own collectives (the hierarchical
#   all-to-all and the one-shot SHARP all-reduce over its IbComm, no NCCL) are costed with NCCL's
#   fitted per-call latencies (26.3 us Simple base on NVLink4, 14.0 us per network step: NCCL
#   2.20.3's, 9.6 us before, when the 8- and 14-node A100 cases were +0.8 and +5.3 %, then -2.0 and
#   +2.0 %; the SHARP all-reduce since at 2.20.3's once-per-call CollNet Direct row, 31 us + 0.4 us
#   a local peer each way, not 14.0 us per switch link: +0.7 and +5.6 %, this case -12.3 -> -12.8 %);
#   nothing measures either on InfiniBand, so neither is tuned to this case.
#
# * The six DLRM v1 cases as a family (a session's survey, 2026-12-07, analytic, rank 0, steady
#   step; nothing changed). Measured vs predicted step at the per-GPU batch: 1 x DGX A100 (6,912)
#   1.506 vs 1.358 ms (+148 us); 1 x HGX A100 4-GPU (13,824) 2.666 vs 2.320 (+346 us); 1 x DGX H100
#   (6,912) 0.855 vs 0.790 (+65 us); 8 / 14 x DGX A100 (1,120 / 640) 0.628 vs 0.623 and 0.569 vs
#   0.538; 4 x DGX H100 (2,240) 0.484 vs 0.555 (-71 us). The single-node gap grows with the per-GPU
#   batch (21-25 ns a sample on A100, 9.5 on H100); the A100 multi-node cases are in; only the
#   H100 4-node case is slow. 1 x DGX A100's step: MLPs 742 us (fwd 213, dgrad 212, wgrad 317, all
#   serial on the compute lane), interaction 113, hybrid-embedding kernels 509, dense SGD 38; the
#   exchanges (a2a 72 us each way, grouped all-reduce 125 us) are hidden but stretch their
#   neighbours: --no-comm-interference gives 1.194 ms (HGX 4-GPU 2.111, DGX H100 0.705, 4 x H100
#   0.503, 8 / 14 x A100 0.594 / 0.520). Checked, none adopted:
#   - The split. HugeCTR counts categories over num_iterations_statistics = 20 batches and keeps
#     those over a threshold (hybrid_embedding/calibration_data.cu, calculate_threshold):
#     NVLink_SingleNode B x 20 x sqrt(2 p_dup_max / (M (M - 1))) (M the per-GPU batch; p_dup_max
#     0.03 in training_results_v2.0 NVIDIA dgx_a100.py and v2.1 hugectr-preview dgx_h100.py: p >=
#     3.5e-5 a sample at M = 6,912), IB_NVLink(_Hier) 20 x nodes^2 / (nodes - 1) x a2a_bw / ar_bw x
#     efficiency (dgx_h100_4x8x2240.py 23.75e9 / 1.3e11, 1.0; v1.1 dgx_a100_14x8x640.py 1.9e11 /
#     1.3e11, 0.5). Under the Zipf 1.05 access: 35,080 frequent rows (8 GPUs), 63,102 (4), 79,757
#     (4 x H100), against hybrid_embedding's 5,943 / 8,672 / 14,267. hybrid_embedding's threshold
#     x10 / x100 (fewer frequent rows): 1 x DGX A100 -1.3 / -0.9 points, HGX 4-GPU -1.3 / -3.4, DGX
#     H100 -1.6 / -4.8, 4 x H100 +1.0 / -8.5, 8 x A100 -1.3 / -12.3. Not the single-node gap.
#   - The access model. dgx_h100_4x8x2240.py sizes the hierarchical all-to-all's buffers with
#     max_num_infrequent_samples = 29120 + 1707 ("mean num of infrequent plus 10-sigma guardband";
#     hybrid_sparse_embedding.cu divides it by the global batch x 26 slots, a GPU's send buffer
#     holding its 1/32 of the batch's infrequent lookups): 29,120 of a GPU's 58,240, half of the
#     real Criteo lookups infrequent at HugeCTR's threshold. Zipf 1.05 puts 12.7 % there (21 % on
#     recsim's split), and no alpha >= 0.6 passes 30 % (the 18 tables under 40k rows stay
#     frequent). So dlrm-dcnv2's access (alpha an ASSUMPTION) is far more concentrated than the
#     Criteo ids for this purpose; not acted on: more routed lookups slow the 4-node case further
#     (its a2a_bwd is on the critical path) and no per-table Criteo count is sourced (the result
#     logs hold MLLOG lines only, not HugeCTR's "Initialized hybrid model with N frequent
#     categories"). A later session (2026-12-07) sourced per-feature counts (workloads/dlrm-dcnv2.yaml,
#     alpha; tests/unit/test_criteo_access.py) and read the figure again: 29,120 is exactly
#     2,240 x 13 (half the 26 slots) and 1,707 is 10 x sqrt(29,120) rounded up, so it reads as a
#     buffer sized for half the lookups, not a measured mean; and at this threshold (p* = 1.36e-5 a
#     lookup) no popularity gets there: a table of R rows holds at most R p* of infrequent mass,
#     37.1 % over the 26 tables. The sourced alphas of t0 / t9 / t19 / t21 give 11.3 %.
#   - GEMMs: vidur's fp16 points nearest these shapes (4,096 x 4,096 x 512 / 1,024) are priced
#     -3 / +4 %; the A100 recsys trace's TF32 GEMMs run 17 % slower than priced (median signed,
#     102 held-out tensor-core ops), which at fp16 would cover the A100 single-node gaps (20 % of
#     742 us), but nothing measures fp16 at M = 6,912. HugeCTR's extra FC kernels (the Tail layer's
#     output copy, reverse_add_bias_and_re_kernel, the bias GEMV; fused_relu_bias_fully_connected_
#     layer.cu) are a few small kernels, 10-20 us a step.
#   - Interference on the 4-node run: IB_NVLink_Hier's lookup kernel writes the node's peers' send
#     buffers itself (fused_intra_forward_model) and the inter-node part is posted to the NIC
#     (HierAll2Allv_Multi_IB over HugeCTR's IbComm, verbs RDMA: no SMs), so the NCCL-measured
#     slowdown should not apply to its window. Leaving the multi-node routed all-to-alls out of the
#     interference windows: 4 x H100 -12.8 -> -3.8 %, 8 / 14 x A100 +0.8 -> +5.8 % / +5.7 -> +9.3 %;
#     the same on one node (NVLink_SingleNode has no collective at all) takes the three
#     single-node cases to +14 to +21 %. Half a mechanism: the intra-node phase then belongs to
#     the compute-stream kernels, which recsim does not charge; both halves or neither.
#   - Async wgrad: the 4-node case's top-MLP wgrads on the critical path sum to 71 us (12.9-15.4
#     us each at M = 2,240, mostly the GEMM fit's 5.5 us fixed time and the 2 us launch gap): the
#     whole gap, but hiding them takes 8 / 14 x A100 to about +15 / +19 %.
#   What is left is two-sided: on one DGX A100 about 310 us a step that no modelled kernel carries
#   once the stretch that HugeCTR's collective-free single-node exchange cannot cause is left out
#   (148 us with it), and 70 us too many at 4 x H100.
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
#   (8 nodes): 16 kernels (11 + 2 radix passes sort, 3 update) x (7.857 us per kernel, 7.683 since
#   the sort stage's own efficiency, + 2 us gap) = 158 us fixed (155 us at 7.683), as small as
#   kernels go in the A100 trace (its 1,000-row TBE's 13 sort kernels take 4-16 us each, 96 us
#   together); the interference model stretches it 1.67x (290-320 us) because it runs entirely
#   beside the backward exchange and all-reduce. With the busiest rank's embedding time
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
#   (Since modelled, contended: Runtime.async_mlp_wgrad; v4.0 n8 +0.1 -> +1.4 %, n16 +1.0 -> +2.2 %.)
#
# * The SHARP-off multi-node runs (HPE x 2, Cisco x 8) against Eos x 8, as a session broke them down
#   (analytic, rank 0, steady step). HPE: 2.818 ms predicted, 3.374 measured. Its critical path is the
#   embedding chain: the busiest node's lookups (294 us), the row splits' intra-node reduce (246 us),
#   a2a_fwd (169 us), the dense forward and backward, a2a_bwd (169 us), the intra-node gather (246 us),
#   the 5-table backward (533 us), the updates and dense Adagrad. Across nodes a rank sends 5.2 MB
#   (a2a_fwd) and 7.3 MB (a2a_bwd) to its one rail peer. The dense all-reduce (31.75 MB fp16, a ring
#   because CollNet is unavailable) and the replicated tables' one (16.2 MB fp32) run beside the
#   exchange and the embedding backward, off the critical path: turning SHARP off takes Eos x 8 only
#   from 2.372 to 2.391 ms. Cisco: 2.636 ms predicted, 3.136 measured, with the same structure (a2a
#   4.5 / 9.0 MB, its ring all-reduce 255 us against Eos's CollNet 228 us).
#   What HugeCTR does, read in its sources. HugeCTR/src/pybind/model_pipeline.cpp
#   (create_train_pipeline_with_ebc) runs the backward all-to-all on the "mp" stream once the top
#   network's backward is done. On the default stream, after the whole network backward, it runs the
#   dense weight-gradient all-reduce: one ncclAllReduce of the whole fp16 wgrad buffer
#   (src/exchange_wgrad.cpp, collectives/all_reduce_comm.cu; train.py sets grouped_all_reduce=True
#   and AllReduceAlgo.NCCL), then the replicated tables' all-reduce (embedding/operators/
#   communication.cpp). The intra-node parts of the hierarchical exchange are peer-memory copy
#   kernels (embedding/operators/hier_model_forward.cu), not NCCL. Every NCCL call goes through the
#   GPU's single communicator (GPUResource::get_nccl, include/gpu_resource.hpp; the embedding's
#   resource manager hands out the same one, core/hctr_impl/hctr_backend.hpp). NCCL runs a
#   communicator's operations one after another, whatever their streams (its maintainer in
#   NVIDIA/nccl#574; the deviceStream dependencies of enqueue.cc quoted in NVIDIA/nccl#1476). So the
#   all-reduces queue behind the backward all-to-all and then run beside the embedding backward.
#   recsim's fused runtime gives them a lane of their own (recsim.graph.build LANE_DENSE), where they
#   overlap the all-to-all.
#   - The DES engine puts HPE at +10.6 %, Cisco +11.6 %, Dell B200 x 2 +2.9 %, HGX 4-GPU x 2 0.0 %,
#     Eos +0.7 / -0.7 / -1.8 / -3.7 % (v4.0 n8, n16, v4.1 n8, n16), but the PCIe ASUSTeK -15.6 %. Its
#     gain is the all-reduce sharing a NIC with the concurrent backward all-to-all, which HugeCTR's
#     single communicator rules out, so it is not the mechanism.
#   - A model of HugeCTR's order (one queue: a2a_bwd, the grouped dense all-reduce, the replicated
#     one) puts the analytic engine at: HPE +9.7 %, Cisco +7.9 %, B200 x 2 +0.4 %, HGX 4-GPU x 2
#     -0.8 %, Eos -6.6 / -0.3 / -9.0 / -3.4 %, the single-node DGX H100 cases 2 points lower
#     (headline -11.5 %), Supermicro's GB200 x 64 -9.1 % and the PCIe ASUSTeK -18.3 % (out of band). The
#     gain comes from the interference stretch (recsim.cost.interference, measured beside NVLink
#     collectives), applied to the embedding backward that now runs beside the all-reduces. With
#     --no-comm-interference the queue leaves HPE at +18.7 % (+21.8 % without the queue) and Cisco at
#     +22.8 % (unchanged). So the serialisation is HugeCTR's, but it does not explain what the
#     SHARP-off runs pay and Eos does not. It was not adopted: it takes the PCIe case out of band and
#     rests on an NVLink-measured slowdown beside NIC-bound collectives.
#   - Adopted on 2026-12-07 (Runtime.all_reduces_after_exchange: the first gradient all-reduce of a
#     rank waits for its backward exchange, the others follow on their lane; the intra-node copy
#     kernels keep their places), together with NCCL's SHM pairs capped at their staged rate and
#     their links charged plain bytes (hardware.topology), which takes the PCIe case from -21.4 %
#     (the order alone) to -1.2 % (+9.5 % while the automatic choice could take Tree inside the
#     node, which NCCL's tuner does not): every case in band, both engines (the figures where KNOWN_GAPS
#     is defined). HPE +6.8 %, Cisco +4.0 %, HPE n4 +1.9 %, B200 x 2 -2.2 %, HGX 4-GPU x 2 -1.6 %,
#     Eos -9.9 / -5.1 / -12.1 / -8.0 %, headline -10.8 %. The caveat above stands, measured again:
#     with --no-comm-interference HPE is +18.7 % with or without the order.
#   - Also ruled out: NCCL algorithm or protocol settings (HPE's config_XD670_H200_2x8x4096.sh and
#     Cisco's config_DGX_common.sh set neither); fp32 dense gradients (they are fp16 under mixed
#     precision, NCCLARInplaceComm<__half>); the all-reduce's algorithm (it is off the critical path,
#     and NCCL's NVLS tree, which recsim lacks, would only shorten it).
#   What is left is about 0.5 ms a step that neither the exposed collectives nor their order gives.
#   The fabric is the remaining difference from Eos: both runs set NCCL_IB_GID_INDEX=3, so RoCE, and
#   shared/ has no RoCE measurement.
#
# * HPE's own one- and four-node runs (a session's search for RoCE evidence, 2026-12-07, branch
#   s30-hpe; no cost model changed). The same v5.0 submission ran DLRM-DCNv2 on 1, 2 and 4 XD670
#   nodes in one container (HPE/results/HPE-Cray-XD670-H200-SXM5-141GB_n{1,2,4}_24.09), now cases:
#   mlperf-train-v5.0-dcnv2-hgxh200-hpe-n1 (global batch 65,536, the two-node run's; HugeCTR's auto
#   plan at MEM_COMM_BW_RATIO 11) measured 17.659M samples/s, recsim 17.656M (-0.02 %; DES -3.3 %);
#   -n4 (batch 131,200, SHARP configured) 36.944M, recsim 40.886M (+10.7 %; DES +6.4 %). So HPE's node
#   is priced right (GPUs, HBM, host, software) and the gap is the multi-node part: at one batch two
#   nodes save 0.34 ms a step over one (3.711 -> 3.374 ms) where recsim saves 0.80 (3.712 -> 2.910).
#   Measured minus predicted step is +0.46 ms on 2 nodes and +0.34 on 4 while recsim's exposed
#   all-to-all grows 0.35 -> 0.56 ms (3 of 4 nodes' tables remote against 1 of 2): the missing cost
#   does not grow with the bytes a NIC sends, as a slower NIC or a RoCE efficiency would make it.
#   The NICs (HPE/systems/HPE-Cray-XD670-H200-SXM5-141GB_n2_24.09.json, host_networking_topology):
#   "8x HPE Slingshot SA210S Ethernet 200Gb 1-port PCIe NIC, 8x HPE InfiniBand NDR/Ethernet 400Gb
#   1-port OSFP PCIe5 x16 MCX75310AAS-NEAT Adapter, 1x HPE InfiniBand HDR/Ethernet 200Gb 2-port
#   QSFP56 PCIe4 x16 MCX653106A-HDAT Adapter": two 8-rail fabrics, and which one NCCL used is not
#   stated (run.sub's NCCL tests and the NCCL_DEBUG=INFO output are not in the result files).
#   NCCL_IB_GID_INDEX=3 only matters to NCCL's verbs transport on an Ethernet link layer, so it
#   points at the ConnectX-7s run as 400GbE RoCE (Slingshot's Cassini NICs are driven through
#   libfabric's cxi provider, which NCCL reaches through a plugin nothing names); HPE's v4.0 XD670
#   H100 system listed "8x 200Gbe Infiniband" (mlcommons/training_results_v4.0 HPE/systems/
#   HPE-Cray-XD670-Gen11-H100-SXM5-80GB_n2_pytorch_24.04.json). With every rail NIC at 200 Gb/s
#   (--set node.nics.device=ib-hdr-200g as the stand-in) HPE n2 is +4.0 %, n4 -4.9 % and Cisco's
#   8-node RoCE case -6.3 % (+13.9 % at 400G), all in band; not adopted: it picks the NIC by the fit
#   against the GID-index evidence, and it makes the added time grow with the bytes, 2 -> 4 nodes
#   (+0.33 and +0.53 ms a step), where the measured gap shrinks (+0.46 -> +0.34).
#   RoCE against InfiniBand, searched: Tolly report 225107 (https://tolly.com/publications/225107;
#   H3C RoCE against QM9700 InfiniBand, 8 servers x 8 H20, 8 x 400G, NCCL 2.22.3: all-reduce 231.8
#   against 230.7 GB/s busbw, all-to-all 37.5 against 36.5); Meta's SIGCOMM 2024 paper "RDMA over
#   Ethernet for Distributed AI Training at Meta Scale" (https://doi.org/10.1145/3651890.3672233:
#   parity once routing and congestion control were tuned; no DLRM-sized figure);
#   https://github.com/NVIDIA/nccl/issues/1316 (8 x H800, 8 x 2 x 200G NICs: all-to-all ~90 % of line
#   rate on 2 nodes); https://github.com/NVIDIA/nccl/issues/2409 (2 x 8 H100, 8 x 400G RoCE, sendrecv
#   capped at ~13 GB/s a connection: one site's untuned report) and /1403 (ECE on RoCE, a bug). No
#   measured RoCE/InfiniBand gap at 5-7 MB messages on a tuned fabric: nothing usable. What is left
#   is about 0.4 ms a step, roughly constant from 2 to 4 nodes, that only multi-node runs pay. Across
#   the multi-node DCNv2 cases, measured minus predicted step: NVIDIA's Eos -0.03 to -0.09 ms (8 and
#   16 nodes, v4.0 and v4.1), Dell B200 x 2 +0.14, Dell HGX 4-GPU x 2 +0.20, HPE x 4 +0.34, Cisco x 8
#   +0.38, HPE x 2 +0.46: every other submitter's multi-node run pays some of it, NVIDIA's none,
#   whatever the fabric (Dell's is not stated) or the node count.
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
    assert fit.fidelity is None and fit.to_dict()["fidelity"] is None  # a fit runs no engine choice


@pytest.mark.parametrize("case_id", END_TO_END)
def test_end_to_end_case_within_band(case_id):
    (result,) = run_cases([case_id])
    assert result.status == "pass", (result.predicted, result.measured, result.error, result.band)


# `recsim validate --fidelity des` against the analytic engine (a session's audit, 2026-12-07, at
# b993551): the 45 end-to-end cases 6.50 % mean |error| (-2.09 % signed, 44 in band) against 5.43 %
# (+0.83 %, 44); every single-node DCNv2 case slower, the DLRM v1, DLE and TorchRec cases the same.
# With the HBM links left out (des._hbm_demands returning nothing) 5.57 % (-0.68 %), so HBM is
# 1.2-3.8 points of each single-node DCNv2 case and the links the rest. The HBM part is the cross
# layers' memory-bound kernels sharing HBM with the index sort and the weight-gradient GEMMs beside
# them: physical, no stretch counts it already (recsim.engine.des module docstring, with the
# figures). The links part is the backward all-to-all sharing NVSwitch ports, the 4-GPU NVLink mesh
# or the PCIe server's uplinks with the dense all-reduce recsim ran beside it, where HugeCTR's one
# communicator runs them one after the other (the SHARP-off note above): the PCIe ASUSTeK case
# -9.1 % analytic, -20.8 % DES without HBM, -21.9 % DES, out of band. Its analytic pass rested on two
# collectives running at full speed over the same PCIe links at once. Since 2026-12-07 recsim runs
# them in the communicator's order and caps the SHM pairs rather than charging their links
# (hardware.topology): the PCIe case -1.2 % analytic, -3.0 % DES on NCCL's intra-node ring
# (+9.5 / +7.3 % while recsim could pick its chain there); HPE n2 +6.8 / +6.4 % while the
# all-reduce also waited for the node's gather copies after the all-to-all (a review's find), +12.7 /
# +6.9 % since it waits for the NCCL all-to-all only (``recsim.graph.build``, ``communicator_parts``).
def test_des_validation_shares_links_only_where_ops_overlap_on_them():
    """``run_cases(fidelity="des")``: DLRM v1 on one DGX A100 puts no two ops on one link at once
    (its all-to-alls and grouped all-reduce run one after another), so both engines give the same
    step; HPE's two HGX H200 nodes run the dense-gradient all-reduce after the backward all-to-all
    (HugeCTR's one NCCL communicator), so no NIC is shared between them, but beside the node's
    gather copies that follow the all-to-all, whose links it shares in DES: slower by that."""
    one_id, two_id = "mlperf-train-v2.1-dlrmv1-dgxa100x1", "mlperf-train-v5.0-dcnv2-hgxh200-hpe-n2"
    analytic = {r.id: r for r in run_cases([one_id, two_id])}
    des = {r.id: r for r in run_cases([one_id, two_id], fidelity="des")}
    assert des[one_id].predicted == pytest.approx(analytic[one_id].predicted, rel=1e-12)
    assert (analytic[one_id].fidelity, des[one_id].fidelity) == ("analytic", "des")
    # 5.7 points since the all-reduce waits for the NCCL all-to-all only, not the gather copies
    # after it (+12.7 % analytic, +6.9 % DES; +7.3 % DES with its HBM links left out, so the links);
    # 0.4 points while it waited for those copies too (+6.8 %, +6.4 %: the check was 0.99 x to 1 x);
    # 8.3 points before the order (+16.1 -> +7.8 %): the a2a_bwd 174 -> 290 us, its NIC shared with
    # the all-reduce.
    assert 0.94 * analytic[two_id].predicted < des[two_id].predicted < 0.96 * analytic[two_id].predicted
    # The fits run no engine: the same figure either way.
    (fit,) = run_cases(["gemm-a100-heldout"], fidelity="des")
    assert fit.error == run_cases(["gemm-a100-heldout"])[0].error


def test_validation_fidelity_must_name_an_engine():
    with pytest.raises(ConfigError, match="fidelity 'fast': expected one of analytic, des"):
        run_cases(["gemm-a100-heldout"], fidelity="fast")


def test_the_validation_fidelity_is_restored_when_run_cases_raises(monkeypatch):
    """``run_cases`` sets the engine for its own call only: after a call that raised (an unknown id,
    or a case run that escaped it) the next end-to-end case runs on the analytic default again."""
    from recsim.validation import cases

    with pytest.raises(ConfigError, match="no validation case id starts with 'nope'"):
        run_cases(["nope"], fidelity="des")
    assert cases._FIDELITY.get() == "analytic"

    def boom(ids):
        assert cases._FIDELITY.get() == "des"
        raise KeyboardInterrupt

    monkeypatch.setattr(cases, "_run_cases", boom)
    with pytest.raises(KeyboardInterrupt):
        run_cases(None, fidelity="des")
    assert cases._FIDELITY.get() == "analytic"


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
