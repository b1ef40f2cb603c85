"""The persistent read listener under eventlet (allynet.transport.eventlet_ws.PersistentReader): what a
websocket reader sees is what eventlet's green `recv` gives, without a register/unregister per
read. Each case runs in a child process under eventlet's monkey patch
(tests/eventlet_reader_cases.py)."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


CASES = ["served_connection", "served_connection_with_nagle", "stream", "timeout", "timeout_restarts_with_each_read", "busy_reader_does_not_spin",
         "spurious_wakeup", "obsolete_descriptor", "release_then_plain_read", "not_a_green_socket",
         "queue_and_lock_as_send_direct_reads_them"]


@pytest.fixture(scope="module")
def results():
    """Every case, in one child process (eventlet's start-up is the slow part)."""
    completed = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "eventlet_reader_cases.py"), *CASES],
                               capture_output=True, text=True, timeout=120, cwd=ROOT,
                               env={**os.environ, "PYTHONPATH": ROOT})
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.fixture
def run_case(results):
    return results.__getitem__


def test_a_served_websocket_reads_through_the_listener_and_sends_without_nagle_delay(run_case):
    # Under the monkey patch socket.socket is eventlet's wrapper: the checks must see through it.
    assert run_case("served_connection") == {"persistent": True, "data": "hello", "nodelay": True,
                                             "released": True}


def test_nagle_stays_on_when_configured(run_case):
    assert run_case("served_connection_with_nagle") == {"persistent": True, "data": "hello", "nodelay": False,
                                                        "released": True}


def test_the_nodelay_switch_reads_the_environment():
    import config

    assert config.load("development", environ={})["SOCKETIO_TCP_NODELAY"] is True
    assert config.load("development", environ={"SOCKETIO_TCP_NODELAY": "0"})["SOCKETIO_TCP_NODELAY"] is False


def test_a_stream_arrives_whole_and_in_order_then_reads_as_closed(run_case):
    result = run_case("stream")
    assert result == {"persistent": True, "same": True, "length": 278}


def test_the_socket_timeout_still_ends_a_silent_connection(run_case):
    assert run_case("timeout") == {"outcome": "timeout", "waited_at_least_timeout": True}


def test_each_read_restarts_the_timeout(run_case):
    result = run_case("timeout_restarts_with_each_read")
    assert result == {"chunks": 6, "bytes": 24}


def test_data_that_arrives_while_the_reader_is_busy_waits_without_the_hub_spinning(run_case):
    result = run_case("busy_reader_does_not_spin")
    assert result["first"] == "first" and result["second"] == "second"
    # One readiness callback removed the listener; the hub's many loops since did not call again.
    assert result["calls_while_busy"] == 1
    assert result["listening_while_busy"] is False


def test_a_wake_up_for_nothing_keeps_the_reader_waiting(run_case):
    assert run_case("spurious_wakeup") == {"still_waiting": True, "data": "late"}


def test_an_obsolete_descriptor_ends_the_read_as_eventlet_does(run_case):
    assert run_case("obsolete_descriptor") == {"outcome": "EOFError", "marked_closed": True}


def test_after_release_the_socket_reads_as_a_plain_green_socket(run_case):
    assert run_case("release_then_plain_read") == {"first": "one", "second": "two"}


def test_anything_but_a_green_socket_reads_through_its_own_recv(run_case):
    assert run_case("not_a_green_socket") == {"reader": True, "data": "plain"}


def test_send_direct_reads_the_writer_queue_and_send_lock_as_their_methods_answer(run_case):
    result = run_case("queue_and_lock_as_send_direct_reads_them")
    assert [row[:2] for row in result["queue"]] == [[True, True]] * 4
    # (qsize, getting): idle; writer parked; a packet put while it still waits; two queued, nobody waiting
    assert [row[2:] for row in result["queue"]] == [[0, 0], [0, 1], [1, 1], [2, 0]]
    assert result["lock"] == [True, True, True]
