#!/usr/bin/env python3
"""REST figure (issue 9): requests/s and latency of GET /profile and GET /alerts under party load.

    python bench/rest.py --party-clients 500 --wrk-duration 15

Starts our server (1 process, --async-mode), registers one user for wrk, starts the party load
(bench/loadgen.js, parties of 8 at 1 Hz) against the same server, and while it runs measures with
wrk (Debian's `wrk`, one thread, `bench/wrk_auth.lua` adds the Authorization header):
GET /api/v1/profile and GET /api/v1/alerts?lat=..&lng=..&radius_m=5000 at 16 and 64 connections.
An endpoint that does not answer 200 before the run (e.g. not built yet) is skipped and said so.
Appends one JSON line to docs/bench/history/<UTC date>/rest.jsonl.

    python bench/rest.py --party-clients 500 --wrk-duration 15 --split

`--split`: two processes through Redis (the ours-2p launcher), the party load on the first and
wrk on the second, as a balancer routing `/socket.io/` and `/api/` to separate pools would (README,
"Keeping REST off the live path"). Without MongoDB each process has its own embedded store, so
wrk's user and reports live on the second one; the party's CPU and latency are what change.
"""
import argparse
import datetime as dt
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench_run  # noqa: E402

ROOT = bench_run.ROOT
RESULTS = os.path.join(ROOT, "docs", "bench", "history", time.strftime("%Y-%m-%d", time.gmtime()), "rest.jsonl")
LAT, LNG = 48.8566, 2.3522


def post_json(url, body, token=None):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {token}"} if token else {})})
    with urllib.request.urlopen(req, timeout=30) as res:
        return res.status, json.loads(res.read())


def status_of(url, token):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status
    except urllib.error.HTTPError as exc:
        return exc.code


def to_ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        return None
    v, unit = float(m.group(1)), m.group(2)
    return {"us": v / 1000, "ms": v, "s": v * 1000, "m": v * 60000}[unit]


def parse_wrk(out):
    """Requests/s, latency percentiles and error counts from `wrk --latency` output."""
    res = {"raw_tail": out.strip().splitlines()[-12:]}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["requests_per_s"] = float(m.group(1)) if m else None
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        res[f"p{pct}_ms"] = to_ms(m.group(1)) if m else None
    m = re.search(r"(\d+) requests in", out)
    res["requests"] = int(m.group(1)) if m else None
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: (.*)", out)
    res["socket_errors"] = m.group(1).strip() if m else None
    return res


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--party-clients", type=int, default=500)
    parser.add_argument("--wrk-duration", type=int, default=15)
    parser.add_argument("--concurrency", default="16,64")
    parser.add_argument("--seed-reports", type=int, default=200, help="reports created near the point first")
    parser.add_argument("--async-mode", default="eventlet", choices=("eventlet", "gevent", "threading"))
    parser.add_argument("--stamp", default="heading")
    parser.add_argument("--results", default=RESULTS)
    parser.add_argument("--ours-port", type=int, default=5200)
    parser.add_argument("--split", action="store_true",
                        help="REST on a second process (through Redis), the party load on the first")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install -y wrk")
    conc = [int(c) for c in args.concurrency.split(",")]
    run_args = argparse.Namespace(async_mode=args.async_mode, ours_port=args.ours_port, peer_port=5100,
                                  redis_port=6390, ours_config={}, batch_ms=None)
    servers = bench_run.Servers(run_args, "ours-2p" if args.split else "ours-1p")
    started = dt.datetime.utcnow().replace(microsecond=0)
    record = {"kind": "rest", "async_mode": args.async_mode, "party_clients": args.party_clients,
              "started_at": started.isoformat() + "Z", "machine": bench_run.machine(),
              "git_rev": bench_run.git_rev(), "wrk_duration_s": args.wrk_duration, "endpoints": [],
              "skipped": [], "split": args.split,
              "command": f"python bench/rest.py --party-clients {args.party_clients} "
                         f"--wrk-duration {args.wrk_duration} --async-mode {args.async_mode} --seed-reports {args.seed_reports}"
                         + (" --split" if args.split else "")}
    gen = None
    try:
        urls = servers.start()
        live, base = urls[0], urls[-1]  # one process: the same; --split: party on the first, REST on the second
        _, body = post_json(f"{base}/api/v1/auth/register", {
            "email": f"wrk-{int(time.time())}@example.com", "password": "bench-password-1",
            "display_name": "wrk"})
        token = body["data"]["access_token"]
        seeded = 0
        rng = random.Random(9)
        for i in range(args.seed_reports):  # something for /alerts to find and sort (non-camera reports are active, hence listed, at once)
            try:
                code, _ = post_json(f"{base}/api/v1/reports", {
                    "type": ("hazard", "traffic", "accident", "police")[i % 4],
                    "location": {"lat": LAT + rng.uniform(-0.04, 0.04), "lng": LNG + rng.uniform(-0.06, 0.06)},
                    "description": f"bench report {i}"}, token)
                seeded += code == 201
            except urllib.error.HTTPError as exc:
                if not record.get("seed_error"):
                    record["seed_error"] = f"HTTP {exc.code}: {exc.read()[:200]!r}"
        record["seeded_reports"] = seeded
        endpoints = [("profile", f"{base}/api/v1/profile"),
                     ("alerts", f"{base}/api/v1/alerts?lat={LAT}&lng={LNG}&radius_m=5000")]
        todo = []
        for name, url in endpoints:
            code = status_of(url, token)
            if code == 200:
                todo.append((name, url))
            else:
                record["skipped"].append({"endpoint": name, "status": code})
                print(f"skipping {name}: HTTP {code} before the run", file=sys.stderr)
        window = len(todo) * len(conc) * (args.wrk_duration + 2) + 5
        gen_cmd = ["node", os.path.join(ROOT, "bench", "loadgen.js"), "--target", "ours", "--urls", live,
                   "--clients", str(args.party_clients), "--duration", str(window), "--warmup", "8",
                   "--server-pids", str(servers.pids()[0]), "--stamp", args.stamp]  # the party's process
        gen = subprocess.Popen(gen_cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for line in gen.stderr:  # wait for the party load's measured window
            sys.stderr.write(line)
            if "window open" in line:
                break
        env = dict(os.environ, TOKEN=token)
        for name, url in todo:
            for c in conc:
                cmd = ["wrk", "-t1", f"-c{c}", f"-d{args.wrk_duration}s", "--latency", "--timeout", "10s",
                       "-s", os.path.join(ROOT, "bench", "wrk_auth.lua"), url]
                out = subprocess.run(cmd, env=env, capture_output=True, text=True).stdout
                res = parse_wrk(out)
                res.update({"endpoint": name, "concurrency": c, "url": url.replace(base, "")})
                record["endpoints"].append(res)
                print(f"{name} c={c}: {res['requests_per_s']} req/s p50 {res['p50_ms']} p99 {res['p99_ms']} ms "
                      f"non-2xx {res['non_2xx']}", file=sys.stderr, flush=True)
        rest_err = gen.stderr.read()
        sys.stderr.write(rest_err)
        out = gen.stdout.read()
        gen.wait(timeout=120)
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        record["party_load"] = json.loads(lines[-1]) if lines else None
    finally:
        if gen is not None and gen.poll() is None:
            gen.kill()
        servers.stop()
    with open(args.results, "a") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
