"""Cases for allynet.transport.eventlet_ws.PersistentReader, run in a child process under eventlet's monkey
patch (tests/test_eventlet_reader.py): `python tests/eventlet_reader_cases.py CASE...` prints one
JSON object, case name -> what the reader saw."""
import eventlet

eventlet.monkey_patch()

import json  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from types import SimpleNamespace  # noqa: E402

from eventlet import hubs, patcher  # noqa: E402
from eventlet.greenio import GreenSocket  # noqa: E402

from allynet.transport.eventlet_ws import BufferedReads, PersistentReader, _keep_websocket  # noqa: E402


def pair(timeout=5.0):
    """(reading side wrapped for the websocket, its green socket, writing side): green sockets
    around plain ones, as eventlet.wsgi hands a connection to the websocket (eventlet's own
    socketpair() wraps twice)."""
    a, b = patcher.original("socket").socketpair()
    a, b = GreenSocket(a), GreenSocket(b)
    a.settimeout(timeout)
    return BufferedReads(a, size=64, persistent=True), a, b


def case_served_connection_with_nagle():
    """SOCKETIO_TCP_NODELAY=0: the served connection keeps Nagle's algorithm."""
    from allynet.transport import eventlet_ws

    eventlet_ws.NODELAY = False
    try:
        return case_served_connection()
    finally:
        eventlet_ws.NODELAY = True


def case_served_connection():
    """A connection accepted the way eventlet.wsgi accepts it, through _keep_websocket."""
    listener = eventlet.listen(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    ws = SimpleNamespace(socket=accepted)
    seen = {}

    def handler(self, ws):
        seen["persistent"] = ws.socket._reader is not None
        client.sendall(b"hello")
        seen["data"] = ws.socket.recv(100).decode()

    _keep_websocket(handler)(SimpleNamespace(), ws)
    seen["nodelay"] = accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    seen["released"] = ws.socket._reader is None
    for sock in (client, accepted, listener):
        sock.close()
    return seen


def case_stream():
    reads, _, peer = pair()
    sent = [b"x" * n for n in (1, 10, 64, 200, 3)]

    def writer():
        for chunk in sent:
            eventlet.sleep(0.01)
            peer.sendall(chunk)
        eventlet.sleep(0.01)
        peer.close()

    eventlet.spawn(writer)
    got = b""
    while True:
        data = reads.recv(1000)
        if not data:
            break
        got += data
    reads.release()
    return {"persistent": reads._reader is None, "same": got == b"".join(sent), "length": len(got)}


def case_timeout():
    reads, _, peer = pair(timeout=0.2)
    started = time.monotonic()
    try:
        reads.recv(10)
        outcome = "returned"
    except socket.timeout:
        outcome = "timeout"
    waited = time.monotonic() - started
    reads.release()
    peer.close()
    return {"outcome": outcome, "waited_at_least_timeout": waited >= 0.19}


def case_timeout_restarts_with_each_read():
    reads, _, peer = pair(timeout=0.3)

    def writer():
        for _ in range(6):  # 0.6 s of traffic with gaps shorter than the timeout
            eventlet.sleep(0.1)
            peer.sendall(b"ping")

    eventlet.spawn(writer)
    got = []
    try:
        while True:
            got.append(reads.recv(100))
    except socket.timeout:
        pass
    reads.release()
    return {"chunks": len(got), "bytes": sum(len(c) for c in got)}


def case_busy_reader_does_not_spin():
    calls = []
    original = PersistentReader._ready

    def counting(self, fileno):
        calls.append(fileno)
        return original(self, fileno)

    PersistentReader._ready = counting
    reads, _, peer = pair()
    peer.sendall(b"first")
    first = reads.recv(100)
    peer.sendall(b"second")  # arrives while the reader is busy elsewhere ...
    for _ in range(50):
        eventlet.sleep(0.002)  # ... and the hub runs many loops meanwhile
    calls_while_busy = len(calls) - 1
    listening_while_busy = reads._reader._listener is not None
    second = reads.recv(100)
    reads.release()
    peer.close()
    return {"first": first.decode(), "second": second.decode(), "calls_while_busy": calls_while_busy,
            "listening_while_busy": listening_while_busy}


def case_spurious_wakeup():
    reads, _, peer = pair()
    result = {}

    def read():
        result["data"] = reads.recv(100).decode()

    reader_thread = eventlet.spawn(read)
    eventlet.sleep(0.02)
    hubs.get_hub().schedule_call_global(0, reader_thread.switch)  # the hub wakes it for nothing
    eventlet.sleep(0.02)
    result["still_waiting"] = "data" not in result
    peer.sendall(b"late")
    reader_thread.wait()
    reads.release()
    peer.close()
    return result


def case_obsolete_descriptor():
    reads, green, peer = pair()
    result = {}

    def read():
        try:
            reads.recv(100)
            result["outcome"] = "returned"
        except EOFError:
            result["outcome"] = "EOFError"

    reader_thread = eventlet.spawn(read)
    eventlet.sleep(0.02)
    hubs.get_hub().mark_as_reopened(green.fileno())  # what eventlet does when the number is reused
    eventlet.sleep(0.01)  # the hub deals with obsolete listeners at the top of its next loop
    reader_thread.wait()
    result["marked_closed"] = green._closed
    reads.release()
    peer.close()
    return result


def case_release_then_plain_read():
    reads, green, peer = pair()
    peer.sendall(b"one")
    first = reads.recv(100)
    reads.release()
    peer.sendall(b"two")
    second = green.recv(100)  # a plain green read of the same descriptor: no second-reader error
    peer.close()
    return {"first": first.decode(), "second": second.decode()}


def case_not_a_green_socket():
    class Plain:
        def recv(self, size):
            return b"plain"

    return {"reader": PersistentReader.of(Plain()) is None, "data": BufferedReads(Plain(), persistent=True).recv(10).decode()}


def case_queue_and_lock_as_send_direct_reads_them():
    """send_direct reads Queue.queue / Queue.getters and Semaphore.counter instead of calling
    qsize(), getting() and locked(): the same answers in every state the writer goes through."""
    from eventlet.queue import Queue
    from eventlet.semaphore import Semaphore

    queue, seen = Queue(), []

    def look():
        seen.append((bool(queue.queue) == bool(queue.qsize()), bool(queue.getters) == bool(queue.getting()),
                     queue.qsize(), queue.getting()))

    look()  # empty, nobody waiting
    waiter = eventlet.spawn(queue.get)
    eventlet.sleep(0)
    look()  # the writer parked in get()
    queue.put("a")
    look()  # handed over, not yet taken
    waiter.wait()
    queue.put("b")
    queue.put("c")
    look()  # two queued
    lock = Semaphore()
    locks = [(lock.counter <= 0) == lock.locked() and not lock.locked()]
    lock.acquire()
    locks.append((lock.counter <= 0) == lock.locked() and lock.locked())
    lock.release()
    locks.append((lock.counter <= 0) == lock.locked() and not lock.locked())
    return {"queue": seen, "lock": locks}


if __name__ == "__main__":
    print(json.dumps({name: globals()["case_" + name]() for name in sys.argv[1:]}))
