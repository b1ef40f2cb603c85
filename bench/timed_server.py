#!/usr/bin/env python3
"""Where one `party:update` spends the server's time: `wsgi.py` with wall-clock timers around the
hot functions and per-greenlet accounting, for one window of a benchmark run.

    BENCH_SERVER_SCRIPT=bench/timed_server.py TIMED_START=26 TIMED_SECONDS=10 \\
        python bench/run.py --setup ours-1p --clients 1000 --duration 20 --warmup 8 --label timed
    python bench/timed_server.py --report /tmp/allynet-timed.json

Unlike cProfile (which inflates cheap calls and, under eventlet, charges a greenlet the time it
spent switched out) the timers wrap a few functions that never yield (the handling of one
client message, the relay, the trail insert, the episode rules, each `send()` of the fan-out), so
their wall time is their CPU time on a calm host; the greenlet tracer splits the rest between
the hub (its `epoll` wait apart), the websocket readers and everything else (background loops,
Engine.IO's pings and writers). The process's user and system CPU over the same window come
from `getrusage`. Results go to TIMED_OUT (default /tmp/allynet-timed.json) when the window ends;
`--report FILE` prints them per update. Timers cost about 0.1-0.3 us per wrapped call.
"""
import json
import os
import sys

TIMED_OUT = os.environ.get("TIMED_OUT", "/tmp/allynet-timed.json")


def report(path):
    with open(path) as fh:
        data = json.load(fh)
    timers, greenlets = data["timers"], data["greenlets"]
    updates = timers.get("handle", [0, 0])[1] or 1
    print(f"window {data['wall']:.1f} s: user {data['user']:.2f} s, sys {data['sys']:.2f} s, "
          f"{updates} messages handled -> per message user {data['user'] / updates * 1e6:.0f} us, "
          f"sys {data['sys'] / updates * 1e6:.0f} us")
    print("\nfunction timers (wall, never yielding):")
    for name, (total, calls) in sorted(timers.items(), key=lambda item: -item[1][0]):
        print(f"  {name:22s} {calls:8d} calls  {total / 1e6:8.1f} ms  {total / calls / 1e3:8.1f} us/call  "
              f"{total / updates / 1e3:7.1f} us/message")
    print("\ngreenlets (wall while running; the hub's includes its epoll wait, shown apart):")
    if "hub" in greenlets and "hub: epoll wait" in greenlets:
        greenlets["hub: own work"] = greenlets["hub"] - greenlets["hub: epoll wait"]
    for name, total in sorted(greenlets.items(), key=lambda item: -item[1]):
        print(f"  {name:22s} {total / 1e6:8.1f} ms  {total / updates / 1e3:7.1f} us/message")


def serve():
    import eventlet

    eventlet.monkey_patch()
    import resource
    import runpy
    import time
    from time import perf_counter_ns as ns

    import greenlet

    sys.path.insert(0, os.getcwd())
    timers, greenlets = {}, {}
    state = {"at": ns(), "on": False}

    def timed(owner, name, label=None):
        original = getattr(owner, name)
        label = label or name

        def wrapper(*args, **kwargs):
            start = ns()
            try:
                return original(*args, **kwargs)
            finally:
                entry = timers.setdefault(label, [0, 0])
                entry[0] += ns() - start
                entry[1] += 1

        setattr(owner, name, wrapper)

    def tracer(event, args):
        if event in ("switch", "throw"):
            now = ns()
            if state["on"]:
                label = getattr(args[0], "_allynet_label", "other")
                greenlets[label] = greenlets.get(label, 0) + now - state["at"]
            state["at"] = now

    greenlet.settrace(tracer)
    from eventlet import hubs

    hub = hubs.get_hub()
    hub.greenlet._allynet_label = "hub"
    do_poll = hub.do_poll

    def polled(seconds):
        start = ns()
        try:
            return do_poll(seconds)
        finally:
            greenlets["hub: epoll wait"] = greenlets.get("hub: epoll wait", 0) + ns() - start

    hub.do_poll = polled

    from mongomock.collection import Collection

    from allynet import realtime
    from allynet.parties import events, live
    from allynet.transport import batching, delivery, dispatch as transport_dispatch, eventlet_ws

    timed(live, "record_update")
    timed(live, "_check_episodes", "check_episodes")
    timed(events, "validate_update")
    timed(realtime, "relay_to_room")
    timed(delivery, "deliver_encoded")
    timed(batching.Batcher, "add", "batcher.add")
    timed(batching.Batcher, "flush", "batcher.flush")
    for method in ("insert_one", "update_one", "find_one", "find"):
        timed(Collection, method, f"store.{method}")

    class TimedSocket:
        """The plain socket of direct writes, its `send` timed (the syscall and its C wrapper)."""

        __slots__ = ("sock",)

        def __init__(self, sock):
            self.sock = sock

        def send(self, data, *args):
            start = ns()
            try:
                return self.sock.send(data, *args)
            finally:
                entry = timers.setdefault("socket.send (direct)", [0, 0])
                entry[0] += ns() - start
                entry[1] += 1

        def __getattr__(self, name):
            return getattr(self.sock, name)

    direct_fd = eventlet_ws._direct_fd

    def timed_direct_fd(ws):
        fd = direct_fd(ws)
        return None if fd is None else TimedSocket(fd)

    eventlet_ws._direct_fd = timed_direct_fd

    bare_dispatch = transport_dispatch.bare_event_dispatch

    def dispatch(server, bare):
        handle = bare_dispatch(server, bare)

        def timed_handle(eio_sid, data):
            greenlet.getcurrent()._allynet_label = "websocket readers"
            start = ns()
            try:
                return handle(eio_sid, data)
            finally:
                entry = timers.setdefault("handle", [0, 0])
                entry[0] += ns() - start
                entry[1] += 1

        timed_handle.allynet_original = handle.allynet_original
        return timed_handle

    transport_dispatch.bare_event_dispatch = dispatch

    def window():
        eventlet.sleep(float(os.environ.get("TIMED_START", "26")))
        greenlet.getcurrent()._allynet_label = "timer window"
        timers.clear()
        greenlets.clear()
        state["on"] = True
        before, started = resource.getrusage(resource.RUSAGE_SELF), time.time()
        eventlet.sleep(float(os.environ.get("TIMED_SECONDS", "10")))
        after, ended = resource.getrusage(resource.RUSAGE_SELF), time.time()
        state["on"] = False
        with open(TIMED_OUT, "w") as fh:
            json.dump({"wall": ended - started, "user": after.ru_utime - before.ru_utime,
                       "sys": after.ru_stime - before.ru_stime, "timers": timers,
                       "greenlets": greenlets}, fh)

    eventlet.spawn(window)
    sys.argv = ["wsgi.py"]
    runpy.run_path("wsgi.py", run_name="__main__")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--report":
        report(sys.argv[2])
    else:
        serve()
