"""Write the experiment notebooks (one per sweep spec in this folder), outputs cleared.

Each notebook runs its spec with ``recsim.sweep``, shows the Pareto front and plots it. With
``RECSIM_NOTEBOOK_QUICK=1`` (what the test suite sets) it runs reduced axes into a temporary folder.
Run ``python experiments/make_notebooks.py`` after changing a spec's axes or this template.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent

EXPERIMENTS = {
    "zionex-sharding": {
        "title": "Sharding strategy x cluster size x NIC on ZionEX",
        "question": (
            "Which embedding sharding keeps a ZionEX cluster busy as it grows from 2 to 16 nodes, and what "
            "does a 100G instead of a 200G RoCE NIC per GPU cost? Throughput against average power."
        ),
        "quick": ["axes.plan=[table_wise, greedy]", "axes.nodes=[2]", "stages=[{fidelity: analytic}]"],
        "extra": "scaling",
    },
    "memory-tiers": {
        "title": "HBM size x UVM cache ratio x slow tier",
        "question": (
            "DLRM-DCNv2 at dim 512 does not fit in 8 x 40 GB of HBM. How much throughput do a bigger HBM, "
            "a larger UVM cache or host-DRAM tiers buy, and at what energy per sample?"
        ),
        "quick": [
            "axes.planner.cache_ratios=[[0.05]]",
            "axes.planner.tiers=[[hbm, uvm_caching, uvm, ddr]]",
        ],
        "extra": "breakdown",
    },
    "network": {
        "title": "Scale-out topology x oversubscription x NIC",
        "question": (
            "How much of an all-to-all-heavy DLRM step does the scale-out network set, and what do "
            "oversubscribed or rail-optimized fabrics cost in throughput?"
        ),
        "quick": [
            "base.nodes=2",
            "axes.cluster.scale_out.oversubscription=[1.0, 4.0]",
            "zip=[{node.nics.device: [roce-200g], cluster.scale_out.switch: [tomahawk3-64x200g]}]",
        ],
        "extra": "breakdown",
    },
    "precision": {
        "title": "Embedding precision x all-to-all precision",
        "question": (
            "What do fp16/int8 embedding tables and fp16/fp8 all-to-all buy in throughput and energy "
            "(model quality is not simulated)?"
        ),
        "quick": ["axes.workload.embedding.dtype=[fp32, int8]", "axes.comm_dtype=[fp32, fp16]"],
        "extra": "breakdown",
    },
}


def notebook(name: str, info: dict[str, object]) -> nbformat.NotebookNode:
    quick = info["quick"]
    cells = [
        new_markdown_cell(
            f"# {info['title']}\n\n{info['question']}\n\n"
            f"The sweep is `{name}.yaml` in this folder; `recsim sweep experiments/{name}.yaml --out DIR` "
            "runs the same from the command line. Set `RECSIM_NOTEBOOK_QUICK=1` for a reduced run (the test "
            "suite does)."
        ),
        new_code_cell(
            "import io\n"
            "import os\n"
            "import tempfile\n"
            "from pathlib import Path\n\n"
            "from IPython.display import Image, display\n"
            "from matplotlib.figure import Figure\n\n"
            "import recsim\n"
            "import recsim.plots\n"
            "from recsim.explore import load_sweep\n"
            "from recsim.fingerprint import model_fingerprint\n\n\n"
            "def show(fig: Figure) -> None:\n"
            '    """Display a recsim figure (built without pyplot, so render it to PNG)."""\n'
            "    buf = io.BytesIO()\n"
            '    fig.savefig(buf, format="png")\n'
            "    display(Image(buf.getvalue()))\n\n\n"
            'QUICK = os.environ.get("RECSIM_NOTEBOOK_QUICK") == "1"\n'
            f'SPEC = Path("{name}.yaml")\n'
            "QUICK_OVERRIDES = [\n" + "".join(f"    {q!r},\n" for q in quick) + "]\n"
            "OVERRIDES = QUICK_OVERRIDES if QUICK else []\n"
            "# One folder per model (recsim's code and data, ``recsim.fingerprint``): a rerun resumes\n"
            "# its stored points, and a changed recsim starts afresh instead of showing stale ones.\n"
            f'OUT = Path(tempfile.mkdtemp()) if QUICK else Path(f"../out/{name}-{{model_fingerprint()}}")\n'
            "spec = load_sweep(SPEC, OVERRIDES)\n"
            "objectives = dict(spec.objectives)\n"
            "x, y = list(objectives)[:2]\n"
            "spec.name, objectives"
        ),
        new_code_cell(
            "result = recsim.sweep(SPEC, OUT, overrides=OVERRIDES, resume=True, workers=2, progress=False)\n"
            "print(result.counts)\n"
            "axes = [c for c in result.front.columns if c.startswith('values.')]\n"
            "result.front[[*axes, *objectives]]"
        ),
        new_code_cell(
            "show(recsim.plots.pareto(result.final, x=x, y=y, senses=objectives, title=spec.name))"
        ),
    ]
    if info["extra"] == "scaling":
        cells.append(
            new_code_cell(
                "# One engine's figures (the analytic stage ran every point; DES re-ran some) and one\n"
                "# value of each axis not plotted: the plot would otherwise average over them.\n"
                "frame = result.frame\n"
                "ok = frame[(frame['status'] == 'ok') & (frame['fidelity'] == 'analytic')]\n"
                "plotted = ('values.nodes', 'values.plan')\n"
                "others = [c for c in ok.columns if c.startswith('values.') and c not in plotted]\n"
                "fixed = {c: ok[c].iloc[-1] for c in others} if len(ok) else {}\n"
                "for column, value in fixed.items():\n"
                "    ok = ok[ok[column] == value]\n"
                "label = ', '.join(f'{c.removeprefix(\"values.\")} = {v}' for c, v in fixed.items())\n"
                "fig = recsim.plots.scaling(\n"
                "    ok, x='values.nodes', y='throughput_samples_per_s', hue='values.plan',\n"
                "    title=f'throughput by cluster size (analytic; {label})',\n"
                ")\n"
                "show(fig)"
            )
        )
    else:
        cells.append(
            new_code_cell(
                "ok = result.final[result.final['status'] == 'ok'].reset_index(drop=True)\n"
                "ok['point'] = ok.index.astype(str)\n"
                "show(recsim.plots.breakdown(ok, 'point', title='step time breakdown per point'))"
            )
        )
    # Ids by position: a regenerated notebook differs from the committed one only where its cells do.
    for k, cell in enumerate(cells):
        cell["id"] = f"{name}-{k}"
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def main() -> None:
    for name, info in EXPERIMENTS.items():
        nbformat.write(notebook(name, info), HERE / f"{name}.ipynb")


if __name__ == "__main__":
    main()
