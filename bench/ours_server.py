"""Run our server (wsgi.py) with config values the environment cannot set, for bench variants.

    BENCH_CONFIG_OVERRIDES='{"PARTY_POSITION_FLUSH_SECONDS": 3600}' python bench/ours_server.py

Used by `bench/run.py --ours-config KEY=VALUE` to isolate costs (e.g. the per-update store write)
from the relay itself. Only `os`, `json` and `config` (stdlib-only imports) load before wsgi.py,
so wsgi.py's eventlet/gevent monkey patch still runs before anything that matters.
"""
import json
import os
import runpy
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import config  # noqa: E402

for key, value in json.loads(os.environ.get("BENCH_CONFIG_OVERRIDES") or "{}").items():
    setattr(config.Config, key, value)

runpy.run_path(os.path.join(ROOT, "wsgi.py"), run_name="__main__")
