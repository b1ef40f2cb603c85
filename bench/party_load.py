#!/usr/bin/env python3
"""Load test of the party live path: K parties of M riders, each sending `party:update` at a fixed rate.

Runs against a RUNNING server, e.g.

    RATELIMIT_ENABLED=0 BCRYPT_ROUNDS=4 python wsgi.py &        # BCRYPT_ROUNDS=4: quick sign-ups
    python bench/party_load.py --url http://127.0.0.1:5000 --parties 10 --members 8 \\
        --duration 20 --server-pid $!

It registers (or logs in) K*M users through REST, connects one asyncio
python-socketio client per rider, makes each party over Socket.IO
(`party:create` by the first rider, `party:join` by invite code for the
rest), then every rider sends `--rate` updates per second for `--duration`
seconds. Latency is measured end to end inside this tool: each update carries
a unique position, and the receiving client looks up when that position was
sent (one clock, no server timestamps involved). It prints p50/p99/max
delivery latency, deliveries made vs expected ((M-1) per accepted update),
acks (ok / refused), and the server's CPU use over the measured window (from
/proc/<pid>/stat, with --server-pid). Riders are split over `--procs` client
processes so the load generator is not the bottleneck (it shares the machine
with the server: keep that in mind when reading the figures).
"""
import argparse
import asyncio
import json
import math
import multiprocessing
import os
import random
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--url", default="http://127.0.0.1:5000", help="server base URL (default %(default)s)")
    parser.add_argument("--parties", "-k", type=int, default=50, help="parties (default %(default)s)")
    parser.add_argument("--members", "-m", type=int, default=8, help="riders per party (default %(default)s)")
    parser.add_argument("--duration", "-d", type=float, default=30.0,
                        help="measured seconds of sending (default %(default)s)")
    parser.add_argument("--rate", type=float, default=1.0, help="updates per second per rider (default %(default)s)")
    parser.add_argument("--grace", type=float, default=2.0,
                        help="seconds to wait for in-flight deliveries after sending stops (default %(default)s)")
    parser.add_argument("--procs", type=int, default=max(1, min(4, os.cpu_count() or 1)),
                        help="client processes (default %(default)s)")
    parser.add_argument("--server-pid", type=int, help="server process id, to report its CPU use")
    parser.add_argument("--password", default="bench-password-123", help="password of the bench users")
    parser.add_argument("--user-prefix", default="bench-party",
                        help="bench users are <prefix>-<n>@example.com; reused across runs (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="also print the result as one JSON line")
    args = parser.parse_args(argv)
    if args.parties < 1 or args.members < 2 or args.duration <= 0 or args.rate <= 0 or args.procs < 1:
        parser.error("need --parties >= 1, --members >= 2, --duration > 0, --rate > 0, --procs >= 1")
    return args


# ---- users -----------------------------------------------------------------

def get_token(url, email, password):
    """Register `email` (or log in when it exists); returns (user_id, access_token)."""
    import requests

    body = {"email": email, "password": password, "display_name": email.split("@")[0][:50]}
    response = requests.post(f"{url}/api/v1/auth/register", json=body, timeout=60)
    if response.status_code == 409:
        response = requests.post(f"{url}/api/v1/auth/login", json={"email": email, "password": password},
                                 timeout=60)
    if response.status_code not in (200, 201):
        raise RuntimeError(f"{email}: HTTP {response.status_code} {response.text[:200]}")
    data = response.json()["data"]
    return data["user"]["id"], data["access_token"]


def get_tokens(url, count, password, prefix, workers=16):
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda n: get_token(url, f"{prefix}-{n}@example.com", password), range(count)))


# ---- server CPU --------------------------------------------------------------

def cpu_seconds(pid):
    """utime + stime of a process, in seconds (None when it cannot be read)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the command name: state is field 3, utime 14 and stime 15 (1-based, man proc).
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


# ---- one client process ----------------------------------------------------------

async def _worker_main(url, groups, duration, rate, grace, barrier):
    import socketio

    loop = asyncio.get_running_loop()
    sent = {}  # (user_id, lat, lng) -> perf_counter at send
    stats = {"latencies": [], "delivered": 0, "unmatched": 0, "sent": 0, "ok": 0, "refused": {},
             "expected": 0, "connect_failures": 0}
    members_of = {}
    clients = []

    def on_update_factory():
        def on_update(data):
            key = (data.get("user_id"), data["location"]["lat"], data["location"]["lng"])
            started = sent.get(key)
            if started is None:
                stats["unmatched"] += 1
                return
            stats["latencies"].append(time.perf_counter() - started)
            stats["delivered"] += 1
        return on_update

    semaphore = asyncio.Semaphore(50)

    async def connect(user_id, token):
        client = socketio.AsyncClient(reconnection=False)
        client.on("party:update", on_update_factory())
        async with semaphore:
            try:
                await client.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=20)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                stats["connect_failures"] += 1
                print(f"connect failed for {user_id}: {exc}", file=sys.stderr)
                return None
        return client

    riders = []  # (client, user_id, party_id, base_lat, base_lng)
    for index, group in enumerate(groups):
        connected = await asyncio.gather(*(connect(uid, token) for uid, token in group))
        if any(client is None for client in connected):
            continue
        clients.extend(connected)
        leader, others = connected[0], connected[1:]
        ack = await leader.call("party:create", {"name": f"bench {index}"}, timeout=20)
        if not ack.get("ok"):
            raise RuntimeError(f"party:create refused: {ack}")
        party = ack["party"]
        for client in others:
            ack = await client.call("party:join", {"invite_code": party["invite_code"]}, timeout=20)
            if not ack.get("ok"):
                raise RuntimeError(f"party:join refused: {ack}")
        base_lat, base_lng = 45 + random.random() * 5, 5 + random.random() * 10
        members_of[party["id"]] = len(group)
        for client, (uid, _) in zip(connected, group):
            riders.append((client, uid, party["id"], base_lat, base_lng))

    # Everyone (all client processes and the parent, which samples the server CPU) starts together.
    await loop.run_in_executor(None, barrier.wait)
    start = time.perf_counter()
    interval = 1.0 / rate

    async def ride(client, uid, party_id, base_lat, base_lng):
        await asyncio.sleep(random.random() * interval)  # spread riders over the period
        seq = 0
        next_at = time.perf_counter()
        while time.perf_counter() - start < duration:
            seq += 1
            lat = round(base_lat + seq * 1e-6, 7)
            lng = round(base_lng + (hash(uid) % 1000) * 1e-5, 7)
            sent[(uid, lat, lng)] = time.perf_counter()
            stats["sent"] += 1

            def acked(ack, party_id=party_id):
                if isinstance(ack, dict) and ack.get("ok"):
                    stats["ok"] += 1
                    stats["expected"] += members_of[party_id] - 1
                else:
                    code = (ack or {}).get("error", {}).get("code", "no_ack") if isinstance(ack, dict) else "bad_ack"
                    stats["refused"][code] = stats["refused"].get(code, 0) + 1

            try:
                await client.emit("party:update", {"party_id": party_id, "location": {"lat": lat, "lng": lng},
                                                   "speed_kmh": 40.0, "heading": 90.0, "status": "riding"},
                                  callback=acked)
            except Exception:  # noqa: BLE001 - a dropped socket is counted, the run goes on
                stats["refused"]["emit_failed"] = stats["refused"].get("emit_failed", 0) + 1
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    await asyncio.gather(*(ride(*rider) for rider in riders))
    await asyncio.sleep(grace)
    for client in clients:
        try:
            await client.disconnect()
        except Exception:  # noqa: BLE001
            pass
    return stats


def _worker(args):
    url, groups, duration, rate, grace, barrier = args
    return asyncio.run(_worker_main(url, groups, duration, rate, grace, barrier))


# ---- report ------------------------------------------------------------------

def percentile(sorted_values, fraction):
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def main(argv=None):
    args = parse_args(argv)
    url = args.url.rstrip("/")
    total = args.parties * args.members
    t0 = time.time()
    print(f"signing up / logging in {total} users at {url} ...", flush=True)
    tokens = get_tokens(url, total, args.password, args.user_prefix)
    print(f"  done in {time.time() - t0:.1f}s", flush=True)
    groups = [tokens[i * args.members:(i + 1) * args.members] for i in range(args.parties)]
    procs = min(args.procs, args.parties)
    shares = [groups[i::procs] for i in range(procs)]
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Manager().Barrier(procs + 1)
    with ctx.Pool(procs) as pool:
        pending = pool.map_async(_worker, [(url, share, args.duration, args.rate, args.grace, barrier)
                                           for share in shares])
        barrier.wait()  # every client connected and in its party
        cpu_start, wall_start = (cpu_seconds(args.server_pid) if args.server_pid else None), time.monotonic()
        time.sleep(args.duration)
        cpu_end, wall_end = (cpu_seconds(args.server_pid) if args.server_pid else None), time.monotonic()
        results = pending.get()
    latencies = sorted(value for result in results for value in result["latencies"])
    summary = {
        "parties": args.parties, "members": args.members, "rate_hz": args.rate, "duration_s": args.duration,
        "procs": procs,
        "updates_sent": sum(r["sent"] for r in results),
        "updates_acked_ok": sum(r["ok"] for r in results),
        "refused": {},
        "deliveries": sum(r["delivered"] for r in results),
        "deliveries_expected": sum(r["expected"] for r in results),
        "unmatched": sum(r["unmatched"] for r in results),
        "connect_failures": sum(r["connect_failures"] for r in results),
        "latency_ms": {
            "p50": None if not latencies else round(statistics.median(latencies) * 1000, 2),
            "p99": None if not latencies else round(percentile(latencies, 0.99) * 1000, 2),
            "max": None if not latencies else round(latencies[-1] * 1000, 2),
        },
        "server_cpu_percent": None,
    }
    for result in results:
        for code, count in result["refused"].items():
            summary["refused"][code] = summary["refused"].get(code, 0) + count
    if cpu_start is not None and cpu_end is not None:
        summary["server_cpu_percent"] = round((cpu_end - cpu_start) / (wall_end - wall_start) * 100, 1)
    expected = summary["deliveries_expected"]
    ratio = summary["deliveries"] / expected * 100 if expected else 0.0
    lat = summary["latency_ms"]
    print(f"\n{args.parties} parties x {args.members} riders, {args.rate:g} Hz, {args.duration:g}s "
          f"({procs} client processes)")
    print(f"updates sent {summary['updates_sent']}, acked ok {summary['updates_acked_ok']}, "
          f"refused {summary['refused'] or 0}")
    print(f"deliveries {summary['deliveries']} / expected {expected} ({ratio:.2f}%)"
          + (f", unmatched {summary['unmatched']}" if summary["unmatched"] else ""))
    print(f"delivery latency ms: p50 {lat['p50']}  p99 {lat['p99']}  max {lat['max']}")
    if summary["server_cpu_percent"] is not None:
        print(f"server CPU: {summary['server_cpu_percent']}% of one core (pid {args.server_pid})")
    if summary["connect_failures"]:
        print(f"connect failures: {summary['connect_failures']}")
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
