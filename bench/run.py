#!/usr/bin/env python3
"""Run one real-time benchmark scenario end to end (issue 9) and append its result.

Starts the server(s) of a setup, runs `bench/loadgen.js` against them, stops them, and
appends one JSON line per run to the results file (default docs/bench/history/<UTC date>/results.jsonl).

    python bench/run.py --setup peer-1p --clients 1000 --duration 30
    python bench/run.py --setup ours-1p --async-mode gevent --clients 500
    python bench/run.py --setup ours-1p,peer-1p --clients 250,500,1000 --repeat 2   # A B A B
    python bench/run.py --setup peer-2p --clients 250,500,1000,2000,4000 --stop-at-knee

Setups: peer-1p, peer-2p (Node relay, 2 processes through @socket.io/redis-adapter),
ours-1p, ours-2p (python wsgi.py, 2 processes through REDIS_URL). 2-process setups use a
private redis-server on --redis-port (so the suite's Redis and the bench never share channels).
ours-2p: the embedded store is per process, so a party's 8 members must connect to the process
that holds the party (placement "party"); see docs/BENCHMARKS.md.

One-time: `npm --prefix bench ci && npm --prefix bench/peer-node ci`.
"""
import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
LOG_DIR = os.path.join(ROOT, "docs", "bench-runs")  # gitignored: server logs, py-spy output
DEFAULT_RESULTS = os.path.join(ROOT, "docs", "bench", "history", time.strftime("%Y-%m-%d", time.gmtime()),
                               "results.jsonl")  # one folder per round
SETUPS = ("peer-1p", "peer-2p", "ours-1p", "ours-2p")
P99_LIMIT_MS = 800.0


def machine():
    """nproc and CPU model of this host (for the results table)."""
    model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "mem_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def git_rev():
    """Short commit of the tree under test."""
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def wait_http(url, timeout=60.0):
    """Poll `url` until it answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as res:
                if res.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


class Servers:
    """The processes of one setup, started and stopped together."""

    def __init__(self, args, setup):
        self.args = args
        self.setup = setup
        self.procs = []
        self.redis = None
        self.logs = []

    @property
    def processes(self):
        return 2 if self.setup.endswith("2p") else 1

    def _spawn(self, cmd, env, tag):
        os.makedirs(LOG_DIR, exist_ok=True)
        path = os.path.join(LOG_DIR, f"{dt.datetime.utcnow():%Y%m%dT%H%M%S}-{tag}.log")
        fh = open(path, "w")
        self.logs.append(path)
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs.append((proc, fh))
        return proc

    def start(self):
        """Start Redis if needed, then the servers; return their base URLs."""
        redis_url = None
        if self.processes == 2:
            redis_url = f"redis://127.0.0.1:{self.args.redis_port}/0"
            self.redis = subprocess.Popen(
                ["redis-server", "--port", str(self.args.redis_port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True)
            for _ in range(50):
                if subprocess.run(["redis-cli", "-p", str(self.args.redis_port), "ping"],
                                  capture_output=True, text=True).stdout.strip() == "PONG":
                    break
                time.sleep(0.1)
            else:
                raise RuntimeError("bench redis-server did not start")
        urls = []
        for i in range(self.processes):
            env = dict(os.environ)
            env.pop("REDIS_URL", None)
            if self.setup.startswith("peer"):
                port = self.args.peer_port + i
                env["PORT"] = str(port)
                if redis_url:
                    env["REDIS_URL"] = redis_url
                self._spawn(["node", os.path.join(BENCH, "peer-node", "server.js")], env, f"peer-{port}")
            else:
                port = self.args.ours_port + i
                env.update({
                    "PORT": str(port), "HOST": "127.0.0.1",
                    "SOCKETIO_ASYNC_MODE": self.args.async_mode,
                    "RATELIMIT_ENABLED": "0",
                    # Registration is setup, not the measured path: cheap hashes keep setup short.
                    "BCRYPT_ROUNDS": "4",
                    "JWT_SECRET_KEY": "bench-secret-key-shared-by-both-processes-0123456789",
                    "JWT_ACCESS_TOKEN_EXPIRES": "86400",
                    "LOG_LEVEL": "WARNING",
                    "MAX_CONNECTIONS": "12000",
                })
                if redis_url:
                    env["REDIS_URL"] = redis_url
                if self.args.batch_ms:
                    env["PARTY_BATCH_MS"] = str(self.args.batch_ms)
                script = "wsgi.py"
                if self.args.ours_config:  # a bench variant: config values the environment cannot set
                    env["BENCH_CONFIG_OVERRIDES"] = json.dumps(self.args.ours_config)
                    script = os.path.join("bench", "ours_server.py")
                script = os.environ.get("BENCH_SERVER_SCRIPT", script)  # e.g. a profiling wrapper
                self._spawn([sys.executable, script], env, f"ours-{self.args.async_mode}-{port}")
            urls.append(f"http://127.0.0.1:{port}")
        for url in urls:
            wait_http(url + "/healthz")
        return urls

    def pids(self):
        return [p.pid for p, _ in self.procs]

    def stop(self):
        """SIGTERM each server (then SIGKILL), and the bench Redis."""
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, fh in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            fh.close()
        if self.redis is not None and self.redis.poll() is None:
            self.redis.terminate()
            self.redis.wait(timeout=10)


def one_run(args, setup, clients, order, session):
    """Start `setup`, drive it with `clients` clients, stop it; return the result record."""
    target = "peer" if setup.startswith("peer") else "ours"
    placement = args.placement or ("spread" if setup == "peer-2p" else "party")
    stamp = args.stamp if target == "ours" else "t"
    servers = Servers(args, setup)
    started = dt.datetime.utcnow().replace(microsecond=0)
    record = None
    spy = None
    try:
        urls = servers.start()
        cmd = ["node", os.path.join(BENCH, "loadgen.js"), "--target", target, "--urls", ",".join(urls),
               "--clients", str(clients), "--duration", str(args.duration), "--warmup", str(args.warmup),
               "--drain", str(args.drain), "--server-pids", ",".join(map(str, servers.pids())),
               "--placement", placement, "--stamp", stamp, "--deflate", args.client_deflate]
        if args.batch_ms and target == "ours":
            cmd += ["--batch", "on"]
        if servers.redis is not None:  # Redis CPU is reported apart (aux_cpu_s), not as server CPU
            cmd += ["--aux-pids", str(servers.redis.pid)]
        batched = f" batched {args.batch_ms} ms" if args.batch_ms and target == "ours" else ""
        print(f"== {setup}{'/' + args.async_mode if target == 'ours' else ''}{batched} C={clients} "
              f"({placement}, {args.duration}s + {args.warmup}s warm-up)", file=sys.stderr, flush=True)
        gen = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        chunks = []
        reader = threading.Thread(target=lambda: chunks.append(gen.stdout.read()), daemon=True)
        reader.start()
        for line in gen.stderr:  # forward progress; start py-spy when the window opens
            sys.stderr.write(line)
            if "window open" in line and args.py_spy and target == "ours":
                spy = start_py_spy(args, servers, setup, clients)
        gen.wait(timeout=args.duration + args.warmup + 900)
        reader.join(timeout=30)
        out = "".join(chunks)
        if spy is not None:
            spy.wait(timeout=args.duration + 60)
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        if gen.returncode != 0 or not lines:
            raise RuntimeError(f"loadgen failed (exit {gen.returncode})")
        record = json.loads(lines[-1])
    except Exception as exc:  # a failed run is still a result worth recording
        record = {"target": target, "clients": clients, "valid": False, "invalid_reasons": [f"harness: {exc}"]}
        print(f"run failed: {exc}", file=sys.stderr)
    finally:
        if spy is not None and spy.poll() is None:
            spy.terminate()
        servers.stop()
    single = [sys.executable, "bench/run.py", "--setup", setup, "--clients", str(clients),
              "--duration", str(args.duration), "--warmup", str(args.warmup)]
    if target == "ours":
        single += ["--async-mode", args.async_mode]
        if stamp != "heading":
            single += ["--stamp", stamp]
        if args.batch_ms:
            single += ["--batch-ms", str(args.batch_ms)]
    if args.placement:
        single += ["--placement", args.placement]
    if args.client_deflate != "on":
        single += ["--client-deflate", args.client_deflate]
    if target == "ours":
        for key, value in (args.ours_config or {}).items():
            single += ["--ours-config", f"{key}={value}"]
    record.update({
        "setup": setup,
        "async_mode": args.async_mode if target == "ours" else "node",
        "ours_config": (args.ours_config or None) if target == "ours" else None,
        "batch_ms": args.batch_ms if target == "ours" else None,
        "processes": servers.processes,
        "command": " ".join(shlex.quote(c) for c in single).replace(sys.executable, "python"),
        "session": session,
        "order": order,
        "label": args.label,
        "py_spy": bool(args.py_spy and target == "ours"),  # a profiler was attached: costs host CPU
        "started_at": started.isoformat() + "Z",
        "git_rev": git_rev(),
        "machine": machine(),
        "server_logs": [os.path.relpath(p, ROOT) for p in servers.logs],
    })
    lat = record.get("latency_ms") or {}
    record["within_target"] = bool(record.get("valid") and record.get("delivery_ratio") == 1
                                   and lat.get("p99") is not None and lat["p99"] <= P99_LIMIT_MS)
    return record


def start_py_spy(args, servers, setup, clients):
    """Sample the (first) server process during the measured window, as collapsed stacks."""
    if not shutil.which("py-spy"):
        print("py-spy not installed; skipping profile", file=sys.stderr)
        return None
    os.makedirs(LOG_DIR, exist_ok=True)
    out = os.path.join(LOG_DIR, f"pyspy-{setup}-{args.async_mode}-{clients}.txt")
    cmd = ["py-spy", "record", "--pid", str(servers.pids()[0]), "--duration", str(max(5, args.duration - 2)),
           "--rate", os.environ.get("PYSPY_RATE", "100"), "--format", "raw", "--nonblocking", "-o", out]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setup", required=True, help=f"one or more (comma) of {', '.join(SETUPS)}; "
                        "several alternate within each client count (A B A B)")
    parser.add_argument("--clients", default="250", help="comma list, e.g. 250,500,1000,2000,4000")
    parser.add_argument("--duration", type=int, default=30, help="measured window, seconds")
    parser.add_argument("--warmup", type=int, default=10, help="warm-up before the window, seconds")
    parser.add_argument("--drain", type=int, default=3, help="seconds to wait for late deliveries")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of the setup list per client count")
    parser.add_argument("--async-mode", default="eventlet", choices=("eventlet", "gevent", "threading"))
    parser.add_argument("--placement", choices=("party", "spread"),
                        help="2-process client placement (default: peer-2p spread, ours-2p party)")
    parser.add_argument("--stamp", default="heading",
                        help="how our server's party:update carries the send time: 'heading' (a sequence "
                             "number in heading, which it echoes; default) or the name of an echoed field "
                             "such as client_ts. The peer always gets 't'.")
    parser.add_argument("--stop-at-knee", action="store_true",
                        help="stop raising clients for a setup after its first run outside the target")
    parser.add_argument("--py-spy", action="store_true", help="py-spy record our first server process")
    parser.add_argument("--ours-config", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for our server through bench/ours_server.py (a bench "
                             "variant, e.g. PARTY_POSITION_FLUSH_SECONDS=3600); repeatable")
    parser.add_argument("--client-deflate", choices=("on", "off"), default="on",
                        help="whether clients offer permessage-deflate (socket.io-client's default: on)")
    parser.add_argument("--batch-ms", type=int, default=0, metavar="MS",
                        help="our clients opt into batched party:updates (party:batch) and our "
                             "servers tick every MS (PARTY_BATCH_MS); the peer is unchanged")
    parser.add_argument("--results", default=DEFAULT_RESULTS)
    parser.add_argument("--label", default="")
    parser.add_argument("--session", help="session id to continue (several invocations, e.g. with different "
                        "--batch-ms, alternating in one session); default: a new one")
    parser.add_argument("--ours-port", type=int, default=5200)
    parser.add_argument("--peer-port", type=int, default=5100)
    parser.add_argument("--redis-port", type=int, default=6390)
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.ours_config:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--ours-config wants KEY=VALUE, got {item!r}")
        try:
            overrides[key] = json.loads(value)
        except ValueError:
            overrides[key] = value
    args.ours_config = overrides
    setups = [s.strip() for s in args.setup.split(",") if s.strip()]
    for s in setups:
        if s not in SETUPS:
            parser.error(f"unknown setup {s!r}")
    counts = [int(c) for c in args.clients.split(",")]
    session = args.session or dt.datetime.utcnow().strftime("%Y%m%dT%H%M%SZ")
    os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
    stopped = set()
    order = 0
    if args.session and os.path.exists(args.results):  # continuing a session: after its last run
        with open(args.results) as fh:
            records = [json.loads(line) for line in fh if line.strip()]
        order = 1 + max((r.get("order", -1) for r in records if r.get("session") == session), default=-1)
    for clients in counts:
        for _ in range(args.repeat):
            for setup in setups:
                if setup in stopped:
                    continue
                record = one_run(args, setup, clients, order, session)
                order += 1
                with open(args.results, "a") as fh:
                    fh.write(json.dumps(record, sort_keys=True) + "\n")
                if args.stop_at_knee and not record["within_target"]:
                    stopped.add(setup)
                time.sleep(2)  # let sockets in TIME_WAIT and the CPU settle between runs
    return 0


if __name__ == "__main__":
    sys.exit(main())
