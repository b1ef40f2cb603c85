#!/usr/bin/env python3
"""Turn one round's results.jsonl into the tables of its README.md and its plots (beside it).

    python bench/report.py                 # the newest round under docs/bench/history/
    python bench/report.py --print         # print the tables only
    python bench/report.py --results docs/bench/history/2026-11-22-session2/results.jsonl --block session2

The generated block sits between `<!-- results:begin -->` and `<!-- results:end -->` (or
`results:BLOCK:begin/end`) of the README.md beside the results; everything else there is
hand-written and left alone. docs/BENCHMARKS.md, the short report, is written by hand.
"""
import argparse
import json
import os
import re
import statistics
import sys
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HISTORY = os.path.join(ROOT, "docs", "bench", "history")
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
P99_LIMIT_MS = 800.0


def load(path):
    """Every run record, in file order."""
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def scenario(r):
    """Setup name plus async mode for ours (ours-1p/eventlet)."""
    suffix = " deflate-off" if r.get("client_deflate") == "off" else ""
    if r["setup"].startswith("peer"):
        return r["setup"] + suffix
    name = f"{r['setup']}/{r.get('async_mode')}"
    cfg = dict(r.get("ours_config") or {})
    if cfg.get("PARTY_POSITION_FLUSH_SECONDS", 0) >= 3600 and cfg.get("TRAIL_SAMPLE_SECONDS", 0) >= 3600:
        # The variant that takes the per-update store writes out of the hot path (see BENCHMARKS.md).
        cfg.pop("PARTY_POSITION_FLUSH_SECONDS")
        cfg.pop("TRAIL_SAMPLE_SECONDS")
        name += " no-store-writes"
    for key, value in sorted(cfg.items()):
        name += f" {key}={value}"
    if r.get("batch_ms"):
        name += f" batched-{r['batch_ms']}ms"  # clients opted into party:updates (party:batch)
    return name + suffix


def fmt(value, digits=0):
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def run_row(r):
    lat = r.get("latency_ms") or {}
    quotable = r.get("latency_quotable")

    def lat_cell(key):
        v = lat.get(key)
        if v is None:
            return "—"
        return f"{v:,.1f}" if quotable else f"({v:,.1f})"

    notes = []
    if not r.get("valid"):
        notes.append("INVALID: " + "; ".join(r.get("invalid_reasons") or []))
    elif not quotable:
        notes.append("steal >= 10%: latency not quotable")
    if r.get("py_spy") or (r.get("setup", "").startswith("ours") and "variant-eventlet" == r.get("label")):
        notes.append("py-spy attached")
    if contended(r):
        lag = (r.get("generator_lag_ms") or {}).get("p99")
        load1 = (r.get("loadavg") or [0])[0]
        nproc = (r.get("machine") or {}).get("nproc") or r.get("nproc") or 1
        notes.append(f"host contended (load1 {load1:.1f} on {nproc} CPUs, generator timer lag p99 {fmt(lag)} ms)")
    ratio = r.get("delivery_ratio")
    return "| " + " | ".join([
        f"{r['clients']:,}",
        r.get("started_at", "")[11:16],
        "yes" if r.get("within_target") else "no",
        "—" if ratio is None else f"{100 * ratio:.2f}%",
        lat_cell("p50"), lat_cell("p95"), lat_cell("p99"), lat_cell("max"),
        fmt(r.get("server_cpu_pct"), 1), fmt(r.get("server_rss_mb_max")),
        fmt(r.get("deliveries_per_server_cpu_s")), fmt(r.get("arrived_per_server_cpu_s")),
        fmt(r.get("generator_cpu_pct"), 1), fmt(r.get("steal_pct"), 1), fmt(r.get("host_busy_pct")),
        fmt((r.get("loadavg") or [None])[0], 2),
        " ".join(notes),
    ]) + " |"


def contended(r):
    """Other work on the host delayed the generator's own timers (or the run queue was long):
    part of the latency is the host's, not the server's."""
    lag = (r.get("generator_lag_ms") or {}).get("p99")
    load1 = (r.get("loadavg") or [0])[0]
    nproc = (r.get("machine") or {}).get("nproc") or r.get("nproc") or 1
    return (lag is not None and lag > 50) or load1 > 2 * nproc


HEADER = ("| clients | UTC | p99<=800 & 100% | delivered | p50 ms | p95 ms | p99 ms | max ms | server CPU % | "
          "server RSS MB | deliveries / server CPU-s | arrived / server CPU-s | generator CPU % | steal % | host busy % | load1 | notes |\n"
          "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")


def knee(runs, skip_contended=False):
    """Largest C such that every valid run at C and below met the target (None if none did)."""
    by_c = defaultdict(list)
    for r in runs:
        if skip_contended and contended(r) and not r.get("within_target"):
            continue  # a miss on a contended host says little about the server; a pass still counts
        by_c[r["clients"]].append(r)
    best = None
    for c in sorted(by_c):
        valid = [r for r in by_c[c] if r.get("valid")]
        if not valid:
            continue  # an invalid run (e.g. generator-bound) says nothing about the server
        if all(r.get("within_target") for r in valid):
            best = c
        else:
            break
    return best


def pairs(records):
    """(ours, peer) runs at the same C, adjacent in the same session (A B A B)."""
    out = []
    by_session = defaultdict(list)
    for r in records:
        by_session[r.get("session")].append(r)
    for runs in by_session.values():
        runs.sort(key=lambda r: r.get("order", 0))
        i = 0
        while i + 1 < len(runs):  # non-overlapping: A B | A B
            a, b = runs[i], runs[i + 1]
            kinds = {a["setup"][:4], b["setup"][:4]}
            if kinds == {"ours", "peer"} and a["clients"] == b["clients"] and \
                    a["setup"][-2:] == b["setup"][-2:]:
                ours, peer = (a, b) if a["setup"].startswith("ours") else (b, a)
                out.append((ours, peer))
                i += 2
            else:
                i += 1
    return out


def ratio(a, b):
    return None if not a or not b else a / b


def tables(records):
    lines = []
    groups = defaultdict(list)
    for r in records:
        groups[scenario(r)].append(r)
    lines.append("### Knees (largest C with p99 <= 800 ms and 100% delivered, valid runs only)\n")
    lines.append("| scenario | knee, all valid runs | knee, ignoring misses on a contended host | largest C measured | runs |\n"
                 "|---|---:|---:|---:|---:|")
    for name in sorted(groups):
        k = knee(groups[name])
        k2 = knee(groups[name], skip_contended=True)
        top = max(r["clients"] for r in groups[name])
        lines.append(f"| {name} | {'none' if k is None else f'{k:,}'} | {'none' if k2 is None else f'{k2:,}'} | "
                     f"{top:,} | {len(groups[name])} |")
    lines.append("\n'Host contended': generator timer lag p99 > 50 ms or load1 > 2 × nproc (see the notes column).\n")
    lines.append("")
    for name in sorted(groups):
        runs = sorted(groups[name], key=lambda r: (r["clients"], r.get("started_at", "")))
        cmds = list(dict.fromkeys(r.get("command", "") for r in runs))  # runs are sorted by C
        lines.append(f"### {name}\n")
        lines.append("Commands (one line per client count; the sessions ran them through a comma list):\n")
        lines.append("```bash\n" + "\n".join(cmds) + "\n```\n")
        m = runs[0].get("machine", {})
        dates = sorted({r.get("started_at", "")[:10] for r in runs})
        lines.append(f"Machine: {m.get('nproc')} × {m.get('cpu_model')}, {m.get('mem_gb')} GB, kernel "
                     f"{m.get('kernel')}; date {', '.join(dates)}; git {', '.join(sorted({str(r.get('git_rev')) for r in runs}))}; "
                     f"placement {', '.join(sorted({str(r.get('placement')) for r in runs}))}; "
                     f"send-time carried in `{', '.join(sorted({str(r.get('stamp')) for r in runs}))}`.\n")
        lines.append(HEADER)
        lines.extend(run_row(r) for r in runs)
        if any(r.get("aux_cpu_s") for r in runs):
            aux = ", ".join(f"C={r['clients']}: {r.get('aux_cpu_pct')}%" for r in runs if r.get("aux_pids"))
            lines.append(f"\nRedis (not counted as server CPU): {aux}.")
        lines.append("")
    ps = pairs(records)
    if ps:
        lines.append("### Ours / peer, same session, adjacent runs (A B A B)\n")
        lines.append("| ours scenario | peer | clients | session | ours deliv/CPU-s | peer deliv/CPU-s | "
                     "ratio (>= 1 is the target) | ours p99 ms | peer p99 ms | p99 quotable | ours delivered | peer delivered |\n"
                     "|---|---|---:|---|---:|---:|---:|---:|---:|---|---:|---:|")
        for ours, peer in ps:
            q = ours.get("latency_quotable") and peer.get("latency_quotable")
            rt = ratio(ours.get("deliveries_per_server_cpu_s"), peer.get("deliveries_per_server_cpu_s"))
            lines.append("| " + " | ".join([
                scenario(ours), peer["setup"], f"{ours['clients']:,}", str(ours.get("session")),
                fmt(ours.get("deliveries_per_server_cpu_s")), fmt(peer.get("deliveries_per_server_cpu_s")),
                "—" if rt is None else f"{rt:.2f}",
                fmt((ours.get("latency_ms") or {}).get("p99"), 1), fmt((peer.get("latency_ms") or {}).get("p99"), 1),
                "yes" if q else "no (steal >= 10% or invalid)",
                "—" if ours.get("delivery_ratio") is None else f"{100 * ours['delivery_ratio']:.2f}%",
                "—" if peer.get("delivery_ratio") is None else f"{100 * peer['delivery_ratio']:.2f}%",
            ]) + " |")
        lines.append("")
    return "\n".join(lines)


def rest_tables(path):
    """The REST figure: wrk under party load (docs/bench/rest.jsonl)."""
    if not os.path.exists(path):
        return ""
    lines = ["### REST under party load (wrk, 1 thread)\n"]
    for rec in load(path):
        load_ = rec.get("party_load") or {}
        lat = load_.get("latency_ms") or {}
        m = rec.get("machine", {})
        ratio = load_.get("delivery_ratio")
        delivered = "—" if ratio is None else f"{100 * ratio:.2f}%"
        lines.append(f"`{rec.get('command')}` — {rec.get('started_at')}, {m.get('nproc')} × {m.get('cpu_model')}, "
                     f"git {rec.get('git_rev')}, async mode {rec.get('async_mode')}, wrk {rec.get('wrk_duration_s')} s "
                     f"per cell, {rec.get('seeded_reports', 0)} reports seeded within ~5 km. "
                     + ("REST on a second process (through Redis), the party on the first; " if rec.get("split") else
                        "REST and the party on one process; ")
                     + f"party load meanwhile: {load_.get('clients')} clients, "
                     f"{delivered} delivered, "
                     f"p99 {fmt(lat.get('p99'), 1)} ms, its server CPU {fmt(load_.get('server_cpu_pct'), 1)} %, "
                     f"steal {fmt(load_.get('steal_pct'), 1)} %, load1 {fmt((load_.get('loadavg') or [None])[0], 2)}.\n")
        lines.append("| endpoint | connections | requests/s | p50 ms | p90 ms | p99 ms | non-2xx | socket errors |\n"
                     "|---|---:|---:|---:|---:|---:|---:|---|")
        for e in rec.get("endpoints", []):
            lines.append(f"| `GET {e.get('url')}` | {e.get('concurrency')} | {fmt(e.get('requests_per_s'), 1)} | "
                         f"{fmt(e.get('p50_ms'), 1)} | {fmt(e.get('p90_ms'), 1)} | {fmt(e.get('p99_ms'), 1)} | "
                         f"{e.get('non_2xx')} | {e.get('socket_errors') or ''} |")
        for sk in rec.get("skipped", []):
            lines.append(f"\nSkipped `{sk['endpoint']}`: HTTP {sk['status']} before the run (endpoint not available).")
        lines.append("")
    return "\n".join(lines)


def plots(records, directory):
    """latency vs clients per scenario, plus the cross-scenario p99 and efficiency plots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401

    groups = defaultdict(list)
    for r in records:
        if r.get("latency_ms") is not None:
            groups[scenario(r)].append(r)
    written = []

    def c_ticks(ax, cs):
        ax.set_xscale("log", base=2)
        ax.set_xticks(cs)
        ax.set_xticklabels([f"{c:,}" for c in cs])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())

    def median_by_c(runs, get):
        by_c = defaultdict(list)
        for r in runs:
            v = get(r)
            if v is not None:
                by_c[r["clients"]].append(v)
        cs = sorted(by_c)
        return cs, [statistics.median(by_c[c]) for c in cs]

    for name, runs in sorted(groups.items()):
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
        for key, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^-"), ("max", "x:")):
            cs, vs = median_by_c(runs, lambda r, k=key: r["latency_ms"].get(k))
            ax.plot(cs, vs, style, label=key)
        bad = [r for r in runs if not r.get("latency_quotable") and r["latency_ms"].get("p99") is not None]
        if bad:
            ax.scatter([r["clients"] for r in bad], [r["latency_ms"]["p99"] for r in bad], s=120,
                       facecolors="none", edgecolors="red", label="not quotable (steal>=10% / invalid)")
        short = defaultdict(list)
        for r in runs:  # say how much was delivered wherever it was not everything
            if r.get("delivery_ratio") is not None and r["delivery_ratio"] < 1:
                short[r["clients"]].append(100 * r["delivery_ratio"])
        for c, ratios in short.items():
            text = f"{min(ratios):.1f}%" if max(ratios) - min(ratios) < 0.05 else f"{min(ratios):.1f}-{max(ratios):.1f}%"
            ax.annotate(f"{text}\ndelivered", xy=(c, 0.03), xycoords=("data", "axes fraction"),
                        ha="center", va="bottom", fontsize=7, color="red")
        ax.axhline(P99_LIMIT_MS, color="grey", ls="--", lw=1, label="800 ms knee limit")
        cs_all = sorted({r["clients"] for r in runs})
        c_ticks(ax, cs_all)
        ax.set_xlim(cs_all[0] / 1.35, cs_all[-1] * 1.35)
        ax.set_yscale("log")
        ax.set_xlabel("clients (parties of 8, 1 update/s each)")
        ax.set_ylabel("delivery latency, ms (from scheduled send)")
        ax.set_title(f"{name}: party:update delivery latency vs clients")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = os.path.join(directory, "latency-" + re.sub(r"[^A-Za-z0-9_.]+", "-", name).strip("-") + ".png")
        fig.savefig(path)
        plt.close(fig)
        written.append(path)

    for metric, ylabel, fname, logy in (
            (lambda r: r["latency_ms"].get("p99"), "p99 delivery latency, ms", "p99-all.png", True),
            (lambda r: r.get("deliveries_per_server_cpu_s"), "deliveries per server CPU-second",
             "efficiency-all.png", None)):
        fig, ax = plt.subplots(figsize=(11, 5), dpi=110)
        colors = plt.get_cmap("tab20").colors
        for i, (name, runs) in enumerate(sorted(groups.items())):
            # Valid runs, leaving out misses on a contended host (the knee rule; see the tables).
            keep = [r for r in runs if r.get("valid") and not (contended(r) and not r.get("within_target"))]
            cs, vs = median_by_c(keep, metric)
            if cs:
                ax.plot(cs, vs, ("o-", "s--", "^-.", "D:")[i % 4], color=colors[i % len(colors)], label=name)
        if logy is None:
            ax.set_yscale("log")
        elif logy:
            ax.axhline(P99_LIMIT_MS, color="grey", ls="--", lw=1, label="800 ms")
            ax.set_yscale("log")
        c_ticks(ax, sorted({r["clients"] for rs in groups.values() for r in rs}))
        ax.set_xlabel("clients")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{ylabel} vs clients (median per C; misses on a contended host left out)", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        path = os.path.join(directory, fname)
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", default=None, help="default: the newest round under docs/bench/history/")
    parser.add_argument("--print", action="store_true")
    parser.add_argument("--block", default=None,
                        help="write between <!-- results:BLOCK:begin/end --> instead of the default "
                             "markers, and the plots next to --results (one block per session)")
    args = parser.parse_args(argv)
    begin, end = (BEGIN, END) if args.block is None else \
        (f"<!-- results:{args.block}:begin -->", f"<!-- results:{args.block}:end -->")
    if args.results is None:
        rounds = sorted(d for d in os.listdir(HISTORY) if os.path.exists(os.path.join(HISTORY, d, "results.jsonl")))
        args.results = os.path.join(HISTORY, rounds[-1], "results.jsonl")
    plot_dir = os.path.dirname(os.path.abspath(args.results))
    doc_path = os.path.join(plot_dir, "README.md")
    records = load(args.results)
    text = tables(records) + "\n" + rest_tables(os.path.join(os.path.dirname(os.path.abspath(args.results)), "rest.jsonl"))
    if args.print:
        print(text)
        return 0
    doc = ""
    if os.path.exists(doc_path):
        with open(doc_path) as fh:
            doc = fh.read()
    if begin not in doc:
        doc = doc.rstrip("\n") + f"\n\n{begin}\n{end}\n"
    head, _, rest = doc.partition(begin)
    _, _, tail = rest.partition(end)
    with open(doc_path, "w") as fh:
        fh.write(f"{head}{begin}\n\n{text}\n{end}{tail}")
    for path in plots(records, plot_dir):
        print(os.path.relpath(path, ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
