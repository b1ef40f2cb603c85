#!/usr/bin/env python3
"""Markdown table of the fast-path runs (docs/bench/history/2026-11-22-session1/fast-path.jsonl) for docs/BENCHMARKS.md.

    python bench/fastpath_table.py [docs/bench/history/2026-11-22-session1/fast-path.jsonl]

One row per run in file order: label (base = before the fast path, fast = after; "-nostore"
= bench variant without the per-update store writes), setup, C, UTC start, delivered %,
latency p50/p99, server CPU %, deliveries per server CPU-second, Redis CPU %, generator CPU %,
steal %, host busy %, load1, and whether py-spy was attached.
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fmt(value, digits=1):
    if value is None:
        return "—"
    if isinstance(value, (int, float)) and abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    path = argv[0] if argv else os.path.join(ROOT, "docs", "bench", "history", "2026-11-22-session1", "fast-path.jsonl")
    print("| label | setup | C | UTC | valid | delivered | p50 ms | p99 ms | server CPU % | deliveries / server CPU-s "
          "| Redis CPU % | generator CPU % | steal % | host busy % | load1 | py-spy |")
    print("|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    with open(path) as fh:
        for line in fh:
            run = json.loads(line)
            lat = run.get("latency_ms") or {}
            started = (run.get("started_at") or "")[11:16]
            setup = run["setup"] + (f"/{run['async_mode']}" if run["setup"].startswith("ours") else "")
            print(f"| {run.get('label') or ''} | {setup} | {run['clients']:,} | {started} | "
                  f"{'yes' if run.get('valid') else 'no'} | {run['delivery_ratio'] * 100:.2f}% | "
                  f"{fmt(lat.get('p50'))} | {fmt(lat.get('p99'))} | {fmt(run.get('server_cpu_pct'))} | "
                  f"{fmt(run.get('deliveries_per_server_cpu_s'))} | "
                  f"{fmt(run.get('aux_cpu_pct')) if run.get('processes') == 2 else '—'} | "
                  f"{fmt(run.get('generator_cpu_pct'))} | {fmt(run.get('steal_pct'))} | "
                  f"{fmt(run.get('host_busy_pct'))} | {fmt((run.get('loadavg') or [None])[0], 2)} | "
                  f"{'yes' if run.get('py_spy') else ''} |")


if __name__ == "__main__":
    main()
