"""The fields ``recsim replay --json`` prints (``ReplayResult.to_dict``), and what each means.

One list for the replay command's ``--help`` and the result's docstring to point at; a unit test
checks that it names every key ``to_dict`` gives and no other. Kept apart from
``recsim.engine.replay`` so that the CLI's help does not import the simulation stack.
"""

from __future__ import annotations

import textwrap

#: (key, meaning) in ``to_dict``'s order; ``<...>`` stands for each key of a mapping figure.
REPLAY_FIELDS: tuple[tuple[str, str], ...] = (
    (
        "mode",
        "'keep' (the recorded durations, rescheduled by recsim's rules) or 're-estimate' (the GPU "
        "work re-costed on --system)",
    ),
    ("steps", "profiler steps (ProfilerStep#N) the trace marks per rank; 1 where it marks none"),
    ("recorded_step_s", "the marked steps' mean recorded duration (s); null where it marks none"),
    (
        "predicted_step_s",
        "the replayed span of the marked steps divided by their number (s); the whole trace's "
        "span where it marks none",
    ),
    ("predicted_total_s", "the replayed span of the whole trace, warm-up and unmarked work included (s)"),
    (
        "error",
        "predicted_step_s / recorded_step_s - 1; null without a recorded step. With re-estimate "
        "it is the what-if's change, not an error",
    ),
    (
        "breakdown_s.<category>",
        "the predicted step's critical path by category (s), as a run's; sums to predicted_step_s",
    ),
    (
        "utilisation.<stream>",
        "each stream class's (compute, comm, copy, host) busy share of the predicted steps, over "
        "the traced ranks",
    ),
    (
        "utilisation.<resource>",
        "a resource class's mean utilisation over the predicted steps: a re-estimate's "
        "scale_up, network and network_uplinks (from the collectives it records); null where "
        "not known (keep, and classes whose bytes a trace does not record)",
    ),
    ("utilisation_max.<resource>", "the busiest device or link of that class; null where not known"),
    ("avg_power_w", "the whole system's average power over the predicted step (W); null with keep"),
    ("power_by_component_w.<component>", "avg_power_w by component (W); null with keep"),
    ("energy_per_step_j", "the whole system's energy per predicted step (J); null with keep"),
    (
        "energy_per_sample_j",
        "energy per sample (J): needs the trace's batch size, which it rarely records; else null",
    ),
    ("recsim_version", "the recsim that replayed it"),
    ("notes", "what the figures rest on (the readers' notes, missing ranks, costs not modelled)"),
)


def replay_fields_help(width: int = 76) -> str:
    """``REPLAY_FIELDS`` as a click epilog: each key on a line and its meaning wrapped under it to
    ``width`` columns (``\\b`` keeps click from rewrapping the paragraph)."""
    lines = ["\b", "Fields of --json (ReplayResult.to_dict; SI units, null where not known):"]
    for key, meaning in REPLAY_FIELDS:
        lines.append(f"  {key}")
        lines.extend(
            textwrap.wrap(
                meaning, width, initial_indent=" " * 6, subsequent_indent=" " * 6, break_on_hyphens=False
            )
        )
    return "\n".join(lines)
