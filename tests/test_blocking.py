"""Blocking LOCK.ACQUIRE: FIFO hand-off, timeouts, disconnects, CLIENT UNBLOCK, races.

Ordering is never established by sleeping: every waiter is confirmed queued with
wait_waiters() (a bounded poll of LOCK.INFO) before the next step.
"""

import threading
import time

import pytest
import redis

from harness import (AUTO_ID, acquire_bg, assert_pttl, assert_signalled, wait_until, wait_waiters,
                     waiters)


def hold(c, name, token=b"holder", *opts):
    assert c.execute_command("LOCK.ACQUIRE", name, "ID", token, *opts) == token
    return token


def info_of(reply):
    if isinstance(reply, dict):
        return {k.decode(): v for k, v in reply.items()}
    return {reply[i].decode(): reply[i + 1] for i in range(0, len(reply), 2)}


# ---------------------------------------------------------------------------
# FIFO


def test_twenty_waiters_are_served_in_arrival_order(server):
    c = server.client(protocol=3)
    hold(c, "n")
    order = []
    mu = threading.Lock()

    def then(conn, reply):
        with mu:
            order.append(reply)
        assert conn.execute_command("LOCK.RELEASE", "n", reply) == b"OK"

    ws = []
    for i in range(20):
        ws.append(acquire_bg(server, "n", "ID", f"w{i:02d}", protocol=2 + i % 2,
                             label=f"w{i:02d}", then=then))
        wait_waiters(c, "n", i + 1)
    assert c.get("lock:n") == b"holder"
    assert c.execute_command("LOCK.RELEASE", "n", "holder") == b"OK"
    for i, w in enumerate(ws):
        assert w.result(timeout=20) == f"w{i:02d}".encode()
    assert order == [f"w{i:02d}".encode() for i in range(20)]
    # the last waiter released with nobody queued: the lock is free and signalled
    assert c.exists("lock:n") == 0
    assert waiters(c, "n") == 0
    assert_signalled(c, b"n")


def test_waiters_on_different_locks_are_independent(server, protocol):
    c = server.client(protocol=protocol)
    hold(c, "a")
    hold(c, "b")
    wa = acquire_bg(server, "a", "ID", "wa", protocol=protocol)
    wb = acquire_bg(server, "b", "ID", "wb", protocol=protocol)
    wait_waiters(c, "a", 1)
    wait_waiters(c, "b", 1)
    assert c.execute_command("LOCK.RELEASE", "b", "holder") == b"OK"
    assert wb.result() == b"wb"
    assert wa.is_running()
    assert c.get("lock:a") == b"holder" and c.get("lock:b") == b"wb"
    assert c.execute_command("LOCK.RELEASE", "a", "holder") == b"OK"
    assert wa.result() == b"wa"


def test_newcomer_cannot_barge_past_a_waiter(server, protocol):
    c = server.client(protocol=protocol)
    hold(c, "n")
    w = acquire_bg(server, "n", "ID", "w", protocol=protocol)
    wait_waiters(c, "n", 1)
    p = c.pipeline(transaction=False)
    p.execute_command("LOCK.RELEASE", "n", "holder")
    p.execute_command("LOCK.ACQUIRE", "n", "ID", "barger", "NOWAIT")
    p.set("lock:n", "barger-set", nx=True)
    assert p.execute() == [b"OK", None, None]
    assert w.result() == b"w"
    assert c.get("lock:n") == b"w"


# ---------------------------------------------------------------------------
# direct hand-off on RELEASE


@pytest.mark.parametrize("opts,expected_pttl", [
    (["PX", "30000"], 30000),
    (["EX", "50"], 50000),
    ([], -1),
], ids=["px", "ex", "no-expiry"])
def test_release_hands_over_directly(server, protocol, opts, expected_pttl):
    c = server.client(protocol=protocol)
    hold(c, "n", b"holder", "EX", "100")
    w = acquire_bg(server, "n", "ID", "waiter", *opts, protocol=protocol)
    wait_waiters(c, "n", 1)
    assert c.execute_command("LOCK.RELEASE", "n", "holder") == b"OK"
    assert w.result() == b"waiter"
    w.assert_clean()
    assert c.get("lock:n") == b"waiter"
    if expected_pttl < 0:
        assert c.pttl("lock:n") == -1
    else:
        assert_pttl(c, "lock:n", expected_pttl)
    # the lock never became free: no signal
    assert c.exists("lock-signal:n") == 0
    assert waiters(c, "n") == 0


def test_waiter_with_generated_id(server, protocol):
    c = server.client(protocol=protocol)
    hold(c, "n")
    w = acquire_bg(server, "n", protocol=protocol)
    wait_waiters(c, "n", 1)
    c.execute_command("LOCK.RELEASE", "n", "holder")
    token = w.result()
    assert AUTO_ID.match(token), token
    assert c.get("lock:n") == token


def test_waiter_with_binary_name_and_id(server, protocol):
    c = server.client(protocol=protocol)
    name, token = b"b\x00\xffn", b"\x00w\xfe\r\n"
    hold(c, name)
    w = acquire_bg(server, name, "ID", token, protocol=protocol)
    wait_waiters(c, name, 1)
    assert c.execute_command("LOCK.RELEASE", name, "holder") == b"OK"
    assert w.result() == token
    assert c.get(b"lock:" + name) == token


def test_waiter_with_timeout_granted_before_deadline(server, protocol):
    c = server.client(protocol=protocol)
    hold(c, "n")
    w = acquire_bg(server, "n", "ID", "w", "TIMEOUT", "30", "PX", "20000", protocol=protocol)
    wait_waiters(c, "n", 1)
    c.execute_command("LOCK.RELEASE", "n", "holder")
    assert w.result() == b"w"
    assert w.elapsed < 10
    assert_pttl(c, "lock:n", 20000)


def test_release_inside_eval_hands_over(server, protocol):
    c = server.client(protocol=protocol)
    hold(c, "n")
    w = acquire_bg(server, "n", "ID", "w", protocol=protocol)
    wait_waiters(c, "n", 1)
    assert c.eval("return redis.call('LOCK.RELEASE', KEYS[1], ARGV[1])", 1, "n", "holder") == b"OK"
    assert w.result() == b"w"
    assert c.get("lock:n") == b"w"


# ---------------------------------------------------------------------------
# TIMEOUT


def test_timeout_returns_null_and_leaves_the_queue(server, protocol):
    c = server.client(protocol=protocol)
    hold(c, "n")
    w = acquire_bg(server, "n", "ID", "w", "TIMEOUT", "0.2", protocol=protocol)
    assert w.result() is None
    assert 0.15 <= w.elapsed <= 2.0, w.elapsed
    w.assert_clean()
    wait_waiters(c, "n", 0)
    assert c.get("lock:n") == b"holder"
    # a later release signals normally (nobody to hand over to)
    assert c.execute_command("LOCK.RELEASE", "n", "holder") == b"OK"
    assert c.exists("lock:n") == 0
    assert_signalled(c, b"n")


def test_timed_out_waiter_between_two_others_is_skipped(server, protocol):
    c = server.client(protocol=protocol)
    hold(c, "n")
    a = acquire_bg(server, "n", "ID", "A", "TIMEOUT", "0", protocol=protocol, label="A")
    wait_waiters(c, "n", 1)
    b = acquire_bg(server, "n", "ID", "B", "TIMEOUT", "0.3", protocol=protocol, label="B")
    wait_waiters(c, "n", 2)
    cc = acquire_bg(server, "n", "ID", "C", "TIMEOUT", "60", protocol=protocol, label="C")
    wait_waiters(c, "n", 3)
    assert b.result() is None
    wait_waiters(c, "n", 2)
    assert c.execute_command("LOCK.RELEASE", "n", "holder") == b"OK"
    assert a.result() == b"A"
    assert c.get("lock:n") == b"A"
    assert cc.is_running()
    assert c.execute_command("LOCK.RELEASE", "n", "A") == b"OK"
    assert cc.result() == b"C"
    assert c.get("lock:n") == b"C"
    assert waiters(c, "n") == 0


def test_timeout_0_blocks_forever(server, protocol):
    c = server.client(protocol=protocol)
    hold(c, "n")
    w = acquire_bg(server, "n", "ID", "w", "TIMEOUT", "0", protocol=protocol)
    wait_waiters(c, "n", 1)
    time.sleep(0.5)  # the assertion itself: still blocked after a while
    assert w.is_running()
    assert waiters(c, "n") == 1
    assert c.execute_command("LOCK.RELEASE", "n", "holder") == b"OK"
    assert w.result() == b"w"
    assert c.get("lock:n") == b"w"


def test_timeout_with_decimals(server, protocol):
    c = server.client(protocol=protocol)
    hold(c, "n")
    w = acquire_bg(server, "n", "TIMEOUT", "0.35", protocol=protocol)
    assert w.result() is None
    assert 0.3 <= w.elapsed <= 2.5, w.elapsed


def test_timeout_does_not_touch_the_holder(server, protocol):
    c = server.client(protocol=protocol)
    hold(c, "n", b"holder", "PX", "60000")
    w = acquire_bg(server, "n", "ID", "w", "TIMEOUT", "0.1", "PX", "5", protocol=protocol)
    assert w.result() is None
    assert c.get("lock:n") == b"holder"
    assert_pttl(c, "lock:n", 60000)
    assert c.exists("lock-signal:n") == 0


# ---------------------------------------------------------------------------
# disconnects


def test_killed_waiter_is_skipped(server, protocol):
    c = server.client(protocol=protocol)
    hold(c, "n")
    a = acquire_bg(server, "n", "ID", "A", protocol=protocol, label="A")
    wait_waiters(c, "n", 1)
    b = acquire_bg(server, "n", "ID", "B", protocol=protocol, label="B")
    wait_waiters(c, "n", 2)
    assert c.execute_command("CLIENT", "KILL", "ID", a.client_id) == 1
    a.join()
    assert isinstance(a.error, redis.ConnectionError), a.error
    wait_waiters(c, "n", 1)
    assert c.execute_command("LOCK.RELEASE", "n", "holder") == b"OK"
    assert b.result() == b"B"
    assert c.get("lock:n") == b"B"
    assert c.execute_command("LOCK.RELEASE", "n", "B") == b"OK"
    # A never owned it
    assert c.exists("lock:n") == 0
    assert_signalled(c, b"n")


def test_killed_only_waiter_lock_then_free(server, protocol):
    c = server.client(protocol=protocol)
    hold(c, "n")
    a = acquire_bg(server, "n", "ID", "A", "TIMEOUT", "30", protocol=protocol)
    wait_waiters(c, "n", 1)
    assert c.execute_command("CLIENT", "KILL", "ID", a.client_id) == 1
    a.join()
    wait_waiters(c, "n", 0)
    assert c.execute_command("LOCK.RELEASE", "n", "holder") == b"OK"
    assert c.exists("lock:n") == 0
    assert_signalled(c, b"n")


def test_closed_socket_waiter_is_skipped(server, protocol):
    c = server.client(protocol=protocol)
    hold(c, "n")
    a = acquire_bg(server, "n", "ID", "A", protocol=protocol, label="A")
    wait_waiters(c, "n", 1)
    b = acquire_bg(server, "n", "ID", "B", protocol=protocol, label="B")
    wait_waiters(c, "n", 2)
    a.close_socket()
    a.join()
    assert a.error is not None
    wait_waiters(c, "n", 1)
    assert c.execute_command("LOCK.RELEASE", "n", "holder") == b"OK"
    assert b.result() == b"B"
    assert c.get("lock:n") == b"B"


def test_closed_raw_socket_waiter_is_skipped(server, protocol):
    c = server.client(protocol=protocol)
    hold(c, "n")
    r = server.raw(protocol)
    r.send("LOCK.ACQUIRE", "n", "ID", "A")
    wait_waiters(c, "n", 1)
    b = acquire_bg(server, "n", "ID", "B", protocol=protocol)
    wait_waiters(c, "n", 2)
    r.close()
    wait_waiters(c, "n", 1)
    c.execute_command("LOCK.RELEASE", "n", "holder")
    assert b.result() == b"B"
    assert c.get("lock:n") == b"B"


def test_grant_to_client_killed_in_same_turn_is_passed_on(server, protocol):
    """RELEASE grants to A, then CLIENT KILL A in the same event-loop turn (one pipeline):
    the grant was never delivered, so it must be taken back and given to B."""
    c = server.client(protocol=protocol)
    hold(c, "n")
    a = acquire_bg(server, "n", "ID", "A", protocol=protocol, label="A")
    wait_waiters(c, "n", 1)
    b = acquire_bg(server, "n", "ID", "B", protocol=protocol, label="B")
    wait_waiters(c, "n", 2)
    p = server.client(protocol=protocol).pipeline(transaction=False)
    p.execute_command("LOCK.RELEASE", "n", "holder")
    p.execute_command("CLIENT", "KILL", "ID", a.client_id)
    assert p.execute() == [b"OK", 1]
    a.join()
    if a.error is None:
        # A's reply made it out before the kill: then A owns the lock, legitimately
        assert a.reply == b"A"
        assert c.get("lock:n") == b"A"
        assert b.is_running()
    else:
        assert b.result() == b"B"
        assert c.get("lock:n") == b"B"


def test_grant_to_only_waiter_killed_in_same_turn_frees_the_lock(server, protocol):
    c = server.client(protocol=protocol)
    hold(c, "n")
    a = acquire_bg(server, "n", "ID", "A", protocol=protocol, label="A")
    wait_waiters(c, "n", 1)
    p = server.client(protocol=protocol).pipeline(transaction=False)
    p.execute_command("LOCK.RELEASE", "n", "holder")
    p.execute_command("CLIENT", "KILL", "ID", a.client_id)
    assert p.execute() == [b"OK", 1]
    a.join()
    if a.error is None:
        assert a.reply == b"A"
        assert c.get("lock:n") == b"A"
    else:
        # an orphaned lock held by a dead client's id is the bug this guards against
        wait_until(lambda: c.get("lock:n") is None, timeout=5, message="lock:n taken back")
        assert waiters(c, "n") == 0
        assert c.lrange("lock-signal:n", 0, -1) == [b"1"]  # freed with nobody waiting: signalled


# ---------------------------------------------------------------------------
# CLIENT UNBLOCK


@pytest.mark.parametrize("opts", [[], ["TIMEOUT", "30"]], ids=["no-timeout", "timeout"])
def test_client_unblock_returns_null(server, protocol, opts):
    c = server.client(protocol=protocol)
    hold(c, "n")
    a = acquire_bg(server, "n", "ID", "A", *opts, protocol=protocol, label="A")
    wait_waiters(c, "n", 1)
    b = acquire_bg(server, "n", "ID", "B", protocol=protocol, label="B")
    wait_waiters(c, "n", 2)
    assert c.execute_command("CLIENT", "UNBLOCK", a.client_id) == 1
    assert a.result() is None
    a.assert_clean()
    wait_waiters(c, "n", 1)
    assert c.execute_command("LOCK.RELEASE", "n", "holder") == b"OK"
    assert b.result() == b"B"
    assert c.get("lock:n") == b"B"


def test_client_unblock_only_waiter_then_release_signals(server, protocol):
    c = server.client(protocol=protocol)
    hold(c, "n")
    a = acquire_bg(server, "n", "ID", "A", protocol=protocol)
    wait_waiters(c, "n", 1)
    assert c.execute_command("CLIENT", "UNBLOCK", a.client_id) == 1
    assert a.result() is None
    wait_waiters(c, "n", 0)
    assert c.execute_command("LOCK.RELEASE", "n", "holder") == b"OK"
    assert c.exists("lock:n") == 0
    assert_signalled(c, b"n")


def test_client_unblock_in_same_turn_as_grant(server, protocol):
    """Pipelined RELEASE + CLIENT UNBLOCK A. Whatever the server version does with A's
    reply, the lock must not be orphaned: A holds it only if A received its id,
    otherwise B gets it."""
    c = server.client(protocol=protocol)
    hold(c, "n")
    a = acquire_bg(server, "n", "ID", "A", protocol=protocol, label="A")
    wait_waiters(c, "n", 1)
    b = acquire_bg(server, "n", "ID", "B", protocol=protocol, label="B")
    wait_waiters(c, "n", 2)
    p = server.client(protocol=protocol).pipeline(transaction=False)
    p.execute_command("LOCK.RELEASE", "n", "holder")
    p.execute_command("CLIENT", "UNBLOCK", a.client_id)
    res = p.execute()
    assert res[0] == b"OK"
    wait_until(lambda: a.done.is_set() or b.done.is_set(), timeout=5,
               message="A or B answered")
    if a.done.is_set() and a.error is None and a.reply == b"A":
        assert c.get("lock:n") == b"A"
        assert b.is_running()
    else:
        # A got null, or (Redis 7.0) no reply at all: the grant went on to B
        assert b.result() == b"B"
        assert c.get("lock:n") == b"B"
        assert not (a.done.is_set() and a.reply == b"A")


# ---------------------------------------------------------------------------
# the grant / timeout race


def test_release_and_timeout_in_the_same_turn(server, protocol):
    """Holder + waiter with TIMEOUT 0.1; one pipeline: DEBUG SLEEP 0.3, LOCK.RELEASE.
    The waiter's deadline and the grant land in the same event-loop turn. It must get
    exactly one reply, and the lock must match that reply (no orphaned lock)."""
    c = server.client(protocol=protocol)
    for attempt in range(5):
        name = f"race{attempt}"
        hold(c, name)
        w = acquire_bg(server, name, "ID", "w", "TIMEOUT", "0.1", protocol=protocol)
        wait_until(lambda: w.done.is_set() or waiters(c, name) == 1, timeout=10,
                   message="waiter queued")
        p = server.client(protocol=protocol).pipeline(transaction=False)
        p.execute_command("LOCK.INFO", name)
        p.execute_command("DEBUG", "SLEEP", "0.3")
        p.execute_command("LOCK.RELEASE", name, "holder")
        res = p.execute()
        was_queued = info_of(res[0])["waiters"] == 1
        assert res[2] == b"OK"
        reply = w.result()
        assert reply in (b"w", None)
        w.assert_clean()
        if reply == b"w":
            assert c.get(f"lock:{name}") == b"w"
        else:
            assert c.get(f"lock:{name}") is None
        assert waiters(c, name) == 0
        if was_queued:
            return
    pytest.fail("the waiter timed out before the pipeline ran, 5 times: race not exercised")


# ---------------------------------------------------------------------------
# contexts that cannot block


def test_multi_on_busy_lock_does_not_block(server, protocol):
    c = server.client(protocol=protocol)
    hold(c, "n")
    p = c.pipeline(transaction=True)
    p.execute_command("LOCK.ACQUIRE", "n", "ID", "x")
    p.execute_command("LOCK.ACQUIRE", "n", "ID", "y", "TIMEOUT", "5")
    t0 = time.monotonic()
    assert p.execute() == [None, None]
    assert time.monotonic() - t0 < 2.0
    assert c.get("lock:n") == b"holder"
    assert waiters(c, "n") == 0


def test_multi_on_free_lock_acquires(server, protocol):
    c = server.client(protocol=protocol)
    p = c.pipeline(transaction=True)
    p.execute_command("LOCK.ACQUIRE", "n", "ID", "x", "EX", "10")
    p.execute_command("LOCK.OWNER", "n")
    assert p.execute() == [b"x", b"x"]
    assert c.get("lock:n") == b"x"
    assert_pttl(c, "lock:n", 10000)


def test_eval_on_busy_lock_does_not_block(server, protocol):
    c = server.client(protocol=protocol)
    hold(c, "n")
    t0 = time.monotonic()
    assert c.eval("return redis.call('LOCK.ACQUIRE', KEYS[1])", 1, "n") is None
    assert c.eval("return redis.call('LOCK.ACQUIRE', KEYS[1], 'TIMEOUT', '5')", 1, "n") is None
    assert time.monotonic() - t0 < 2.0
    assert c.get("lock:n") == b"holder"
    assert waiters(c, "n") == 0


def test_eval_on_free_lock_acquires(server, protocol):
    c = server.client(protocol=protocol)
    token = c.eval("return redis.call('LOCK.ACQUIRE', KEYS[1])", 1, "n")
    assert AUTO_ID.match(token), token
    assert c.get("lock:n") == token


def test_function_on_busy_lock_does_not_block(server, protocol):
    c = server.client(protocol=protocol)
    c.function_load(
        "#!lua name=locklib\n"
        "redis.register_function('acq', function(keys, args) "
        "return redis.call('LOCK.ACQUIRE', keys[1], 'ID', args[1]) end)"
    )
    assert c.fcall("acq", 1, "n", "first") == b"first"
    t0 = time.monotonic()
    assert c.fcall("acq", 1, "n", "second") is None
    assert time.monotonic() - t0 < 2.0
    assert c.get("lock:n") == b"first"


# ---------------------------------------------------------------------------
# other ways of freeing a lock hand it to the waiter


def test_reset_hands_over_to_waiter(server, protocol):
    c = server.client(protocol=protocol)
    hold(c, "n")
    w = acquire_bg(server, "n", "ID", "w", "PX", "20000", protocol=protocol)
    wait_waiters(c, "n", 1)
    assert c.execute_command("LOCK.RESET", "n") == 1
    assert w.result() == b"w"
    assert c.get("lock:n") == b"w"
    assert_pttl(c, "lock:n", 20000)


def test_reset_hand_over_pushes_no_signal(server, protocol):
    # the lock never became free (as for RELEASE with a waiter)
    c = server.client(protocol=protocol)
    hold(c, "n")
    w = acquire_bg(server, "n", "ID", "w", protocol=protocol)
    wait_waiters(c, "n", 1)
    assert c.execute_command("LOCK.RESET", "n") == 1
    assert w.result() == b"w"
    assert c.exists("lock-signal:n") == 0


def test_resetall_hands_over_to_waiter(server, protocol):
    c = server.client(protocol=protocol)
    hold(c, "n")
    hold(c, "m")
    w = acquire_bg(server, "n", "ID", "w", "EX", "30", protocol=protocol)
    wait_waiters(c, "n", 1)
    assert c.execute_command("LOCK.RESETALL") == 2
    assert w.result() == b"w"
    assert c.get("lock:n") == b"w"
    assert_pttl(c, "lock:n", 30000)
    assert c.exists("lock:m") == 0
    assert_signalled(c, b"m")


def test_expiry_hands_over_to_waiter(server, protocol):
    c = server.client(protocol=protocol)
    hold(c, "n", b"holder", "PX", "300")
    w = acquire_bg(server, "n", "ID", "w", "PX", "20000", protocol=protocol)
    wait_waiters(c, "n", 1)
    assert w.result() == b"w"
    # granted at the deadline (generous bound: the contract says within a few ms)
    assert w.elapsed < 2.0, w.elapsed
    assert c.get("lock:n") == b"w"
    assert_pttl(c, "lock:n", 20000)


def test_expiry_without_waiters_signals(make_server, protocol):
    s = make_server("signal-expire", 5000)
    c = s.client(protocol=protocol)
    hold(c, "n", b"holder", "PX", "200")
    # nobody touches lock:n: the module notices the expiry by itself
    wait_until(lambda: c.exists("lock-signal:n"), timeout=3, message="signal after expiry")
    assert c.lrange("lock-signal:n", 0, -1) == [b"1"]
    assert c.exists("lock:n") == 0


def test_foreign_del_hands_over_to_waiter(server, protocol):
    c = server.client(protocol=protocol)
    hold(c, "n")
    w = acquire_bg(server, "n", "ID", "w", protocol=protocol)
    wait_waiters(c, "n", 1)
    assert c.delete("lock:n") == 1
    assert w.result(timeout=5) == b"w"
    assert c.get("lock:n") == b"w"


def test_python_unlock_script_hands_over_to_waiter(server, protocol):
    import redis_lock

    c = server.client(protocol=protocol)
    hold(c, "n")
    w = acquire_bg(server, "n", "ID", "w", "EX", "30", protocol=protocol)
    wait_waiters(c, "n", 1)
    redis_lock.Lock(c, "n", id="holder").release()
    assert w.result(timeout=5) == b"w"
    assert c.get("lock:n") == b"w"
    assert_pttl(c, "lock:n", 30000)


def test_flushall_hands_over_to_waiter(server, protocol):
    c = server.client(protocol=protocol)
    hold(c, "n")
    c.set("other", "x")
    w = acquire_bg(server, "n", "ID", "w", protocol=protocol)
    wait_waiters(c, "n", 1)
    c.flushall()
    assert w.result(timeout=5) == b"w"
    assert c.get("lock:n") == b"w"
    assert c.exists("other") == 0


# ---------------------------------------------------------------------------
# reply types seen by waiters


def test_waiter_reply_types_raw(server, protocol):
    c = server.client(protocol=protocol)
    hold(c, "n")
    r = server.raw(protocol)
    r.send("LOCK.ACQUIRE", "n", "ID", "w")
    wait_waiters(c, "n", 1)
    assert not r.pending()
    c.execute_command("LOCK.RELEASE", "n", "holder")
    assert r.read() == b"w"
    assert r.last_type == b"$"  # bulk string
    assert not r.pending(0.2)  # exactly one reply
    r.send("LOCK.ACQUIRE", "n", "ID", "v", "TIMEOUT", "0.2")
    assert r.read() is None
    if protocol == 3:
        assert r.last_type == b"_"
    else:
        assert r.last_type in (b"$", b"*")  # $-1 or *-1
    assert not r.pending(0.2)


def test_waiter_reply_types_redis_py(server, protocol):
    c = server.client(protocol=protocol)
    hold(c, "n")
    ok = acquire_bg(server, "n", "ID", "ok", protocol=protocol)
    wait_waiters(c, "n", 1)
    c.execute_command("LOCK.RELEASE", "n", "holder")
    got = ok.result()
    assert type(got) is bytes and got == b"ok"
    nope = acquire_bg(server, "n", "ID", "nope", "TIMEOUT", "0.1", protocol=protocol)
    assert nope.result() is None
    assert nope.error is None


# ---------------------------------------------------------------------------
# more hand-off edges


def test_old_holder_cannot_release_after_hand_off(server, protocol):
    c = server.client(protocol=protocol)
    hold(c, "n", b"holder", "EX", "100")
    w = acquire_bg(server, "n", "ID", "w", "EX", "100", protocol=protocol)
    wait_waiters(c, "n", 1)
    assert c.execute_command("LOCK.RELEASE", "n", "holder") == b"OK"
    assert w.result() == b"w"
    for args in (["LOCK.RELEASE", "n", "holder"], ["LOCK.EXTEND", "n", "holder", "EX", "5"]):
        with pytest.raises(redis.ResponseError) as ei:
            c.execute_command(*args)
        assert str(ei.value).startswith("NOTACQUIRED")
    assert c.get("lock:n") == b"w"
    # the new owner can extend and release
    assert c.execute_command("LOCK.EXTEND", "n", "w", "EX", "200") == b"OK"
    assert c.execute_command("LOCK.RELEASE", "n", "w") == b"OK"
    assert c.exists("lock:n") == 0


def test_holder_reacquire_with_waiters_queued_is_alreadyacquired(server, protocol):
    c = server.client(protocol=protocol)
    hold(c, "n")
    w = acquire_bg(server, "n", "ID", "w", protocol=protocol)
    wait_waiters(c, "n", 1)
    with pytest.raises(redis.ResponseError) as ei:
        c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder")
    assert str(ei.value).startswith("ALREADYACQUIRED")
    assert waiters(c, "n") == 1
    assert w.is_running()


def test_waiters_are_per_database(server, protocol):
    c0 = server.client(protocol=protocol, db=0)
    c1 = server.client(protocol=protocol, db=1)
    hold(c0, "n")
    hold(c1, "n")
    w1 = acquire_bg(server, "n", "ID", "w1", protocol=protocol, db=1)
    wait_waiters(c1, "n", 1)
    assert waiters(c0, "n") == 0
    assert c0.execute_command("LOCK.RELEASE", "n", "holder") == b"OK"
    assert c0.exists("lock:n") == 0  # db0's release does not feed db1's waiter
    assert w1.is_running()
    assert c1.get("lock:n") == b"holder"
    assert c1.execute_command("LOCK.RELEASE", "n", "holder") == b"OK"
    assert w1.result() == b"w1"
    assert c1.get("lock:n") == b"w1"
    assert c0.exists("lock:n") == 0


def test_overwritten_lock_is_not_a_free(server, protocol):
    """A plain SET replacing the owner is not a release: the waiter keeps waiting."""
    c = server.client(protocol=protocol)
    hold(c, "n")
    w = acquire_bg(server, "n", "ID", "w", protocol=protocol)
    wait_waiters(c, "n", 1)
    c.set("lock:n", "intruder")
    time.sleep(0.2)  # the assertion: nothing happens
    assert w.is_running()
    assert c.get("lock:n") == b"intruder"
    assert c.execute_command("LOCK.RELEASE", "n", "intruder") == b"OK"
    assert w.result() == b"w"
    assert c.get("lock:n") == b"w"


def test_newcomer_cannot_steal_an_expiring_lock_from_a_waiter(server, protocol):
    """Around the holder's deadline a NOWAIT newcomer hammers the lock: the queued waiter
    must get it, never the newcomer (first come, first served)."""
    c = server.client(protocol=protocol)
    hold(c, "n", b"holder", "PX", "300")
    w = acquire_bg(server, "n", "ID", "w", protocol=protocol)
    wait_waiters(c, "n", 1)
    deadline = time.monotonic() + 5
    attempts = 0
    while not w.done.is_set() and time.monotonic() < deadline:
        assert c.execute_command("LOCK.ACQUIRE", "n", "ID", "barger", "NOWAIT") is None
        attempts += 1
    assert w.result() == b"w"
    assert c.get("lock:n") == b"w"
    assert attempts > 10


def test_waiter_timeout_shorter_than_holder_expiry(server, protocol):
    c = server.client(protocol=protocol)
    hold(c, "n", b"holder", "PX", "1000")
    w = acquire_bg(server, "n", "ID", "w", "TIMEOUT", "0.2", protocol=protocol)
    assert w.result() is None
    assert w.elapsed < 0.9
    # later the lock expires with nobody waiting: free, signalled
    wait_until(lambda: c.exists("lock-signal:n"), timeout=5, message="signal after expiry")
    assert c.get("lock:n") is None
