"""Engines: turn an execution graph and a cost model into a schedule.

``analytic`` is the critical path with stream order and collective synchronisation and no
contention (fast; the default for sweeps); ``des`` is the simpy discrete-event engine where
collectives move as flows sharing the network max-min fairly. On a graph with no shared resource
both give the same schedule to floating-point precision.
"""

ENGINES = ("analytic", "des")
#: Chained steps per simulation: the first starts cold; by the third the input pipeline overlaps.
DEFAULT_STEPS = 3
#: The most chained steps a simulation takes. The chained graph grows with each step (a typo's
#: 10^6 steps ran for minutes, 10^12 asked for 7 TiB of step offsets before failing); the reported
#: step is steady by the third, so a thousand checks steadiness far past need. An input bound, as
#: ``recsim.hardware.system.MAX_NODES`` is, not a model constant.
MAX_STEPS = 1_000
