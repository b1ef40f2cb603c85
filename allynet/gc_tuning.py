"""The server process's garbage-collector settings (wsgi.py), shared with the benchmarks that
measure the server's paths in-process (bench/sos.py).

CPython's 700,10,10 runs a young collection every 700 net allocations; a live server allocates
that in a few milliseconds and keeps most of it (connections, the embedded store), so the
collector re-walks survivors over and over: ~10 % of the CPU under 1,000 riders.
Garbage cycles still go, in batches. `GC_THRESHOLDS` (gen0,gen1,gen2) overrides the default.
"""
import gc
import os

DEFAULT_THRESHOLDS = "20000,20,10"


def thresholds_from_env():
    """(gen0, gen1, gen2) from GC_THRESHOLDS, else the default."""
    return tuple(int(n) for n in os.environ.get("GC_THRESHOLDS", DEFAULT_THRESHOLDS).split(","))


def tune_gc():
    """Collect less often (GC_THRESHOLDS), and never re-walk what start-up built (modules, the app,
    indexes)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds_from_env())
