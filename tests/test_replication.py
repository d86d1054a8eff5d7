"""Replication and failover: a real replica (redis-server --replicaof, module loaded) holds,
after every module action, exactly the primary's keys, values and absolute deadlines; it never
grants, expires, signals or writes on its own; a promoted replica serves the locks.

After each action: WAIT on the primary, then for every key TYPE, value and PEXPIRETIME (absolute
ms) must be equal on both, no key more or less, and DEBUG DIGEST equal. A module that propagated
`SET … PX <ttl>` (relative) or re-ran LOCK.* on the replica would give the replica a later
deadline and fail here.
"""

import time

import pytest
import redis_lock

from harness import acquire_bg, error_code, wait_until, wait_waiters, waiters
from topology import (KeyEvents, as_replicated, assert_same_keyspace, diff_keyspaces, info_field,
                      keyspace, sleep_until_wallclock_ms, start_replica, stopped, sync)

LONG_SIGNAL = 600000  # signal-expire on the primary: signal lists outlive the test


@pytest.fixture
def pair(make_server):
    primary = make_server("signal-expire", LONG_SIGNAL,
                          extra_config=[("repl-diskless-sync-delay", 0)])
    replica = start_replica(make_server, primary)
    return primary, replica, primary.client(), replica.client()


def digest(c):
    return c.execute_command("DEBUG", "DIGEST")


def test_replica_has_same_locks_and_deadlines(pair):
    master, replica, m, r = pair
    m.execute_command("LOCK.ACQUIRE", "a", "ID", "x", "PX", "60000")
    m.execute_command("LOCK.ACQUIRE", "b", "ID", "y", "EX", "100")
    m.execute_command("LOCK.EXTEND", "b", "y", "PX", "90000")
    m.execute_command("LOCK.ACQUIRE", "c", "ID", "z")
    w = acquire_bg(master, "c", "ID", "w", "PX", "50000")
    wait_waiters(m, "c", 1)
    m.execute_command("LOCK.RELEASE", "c", "z", "SIGNAL-EXPIRE", "60000")
    assert w.result() == b"w"
    m.execute_command("LOCK.ACQUIRE", "d", "ID", "q")
    m.execute_command("LOCK.RELEASE", "d", "q", "SIGNAL-EXPIRE", "60000")
    m.execute_command("LOCK.RESET", "a", "SIGNAL-EXPIRE", "60000")
    sync(m)
    assert r.get("lock:c") == b"w"
    assert r.get("lock:b") == b"y"
    assert r.exists("lock:a") == 0 and r.exists("lock:d") == 0
    assert r.lrange("lock-signal:d", 0, -1) == [b"1"]
    assert digest(r) == digest(m)


def test_replica_matches_primary_after_every_action(pair):
    """Acquire, hand-off from release / expiry / foreign DEL / python's unlock script, extend,
    release, reset, resetall, expiry signal: after each one the replica equals the primary, and
    the replica's keyspace events are exactly the primary's (it wrote nothing on its own)."""
    primary, replica, m, r = pair
    ev_p, ev_r = KeyEvents(primary.client()), KeyEvents(replica.client())

    def check(what):
        sync(m)
        assert_same_keyspace(m, r, what)
        on_p, on_r = as_replicated(ev_p.drain()), ev_r.drain()
        assert on_r == on_p, (f"after {what}: the replica's own keyspace events differ from the "
                              f"primary's stream:\nprimary {on_p}\nreplica {on_r}")
        return on_p

    def handoff(name, free, waiter_px="50000"):
        m.execute_command("LOCK.ACQUIRE", name, "ID", "h")
        w = acquire_bg(primary, name, "ID", "w-" + name, "PX", waiter_px)
        wait_waiters(m, name, 1)
        free(name)
        assert w.result() == b"w-" + name.encode()

    m.execute_command("LOCK.ACQUIRE", "a", "ID", "x", "PX", "60000")
    assert check("ACQUIRE PX") == [("set", b"lock:a"), ("expire", b"lock:a")]
    m.execute_command("LOCK.ACQUIRE", "b", "ID", "y")
    check("ACQUIRE without expiry")
    token = m.execute_command("LOCK.ACQUIRE", "c", "EX", "100")
    check("ACQUIRE with a generated id, EX")
    assert r.get("lock:c") == token
    m.execute_command("LOCK.EXTEND", "a", "x", "PX", "90000")
    check("EXTEND")
    assert r.execute_command("PEXPIRETIME", "lock:a") == m.execute_command("PEXPIRETIME", "lock:a")

    handoff("rel", lambda n: m.execute_command("LOCK.RELEASE", n, "h"))
    check("hand-off from RELEASE")
    assert r.get("lock:rel") == b"w-rel"

    # expiry hand-off: the holder's lock has a short TTL
    m.execute_command("LOCK.ACQUIRE", "exp", "ID", "h", "PX", "300")
    w = acquire_bg(primary, "exp", "ID", "w-exp", "PX", "40000")
    wait_waiters(m, "exp", 1)
    assert w.result() == b"w-exp"
    check("hand-off from expiry")
    assert r.get("lock:exp") == b"w-exp"

    handoff("del", lambda n: m.delete("lock:" + n))
    check("hand-off from a foreign DEL")
    assert r.get("lock:del") == b"w-del"

    def python_release(n):
        redis_lock.Lock(m, n, id="h", signal_expire=LONG_SIGNAL).release()

    handoff("py", python_release)
    check("hand-off from python-redis-lock's unlock script")
    assert r.get("lock:py") == b"w-py"

    m.execute_command("LOCK.ACQUIRE", "s", "ID", "q")
    m.execute_command("LOCK.RELEASE", "s", "q")
    check("RELEASE without waiters (signal pushed)")
    assert r.lrange("lock-signal:s", 0, -1) == [b"1"]

    m.execute_command("LOCK.ACQUIRE", "x", "ID", "q", "PX", "200")
    wait_until(lambda: m.exists("lock-signal:x") == 1, message="expiry signal on the primary")
    check("expiry without waiters (signal pushed)")
    assert r.exists("lock:x") == 0

    handoff("rst", lambda n: m.execute_command("LOCK.RESET", n))
    check("hand-off from RESET")
    assert m.execute_command("LOCK.RESET", "b") == 1
    check("RESET without waiters")

    m.execute_command("LOCK.ACQUIRE", "all", "ID", "h", "PX", "70000")
    w = acquire_bg(primary, "all", "ID", "w-all", "PX", "25000")
    wait_waiters(m, "all", 1)
    held = len(list(m.scan_iter(match="lock:*", _type="string")))
    assert held >= 8
    assert m.execute_command("LOCK.RESETALL") == held
    assert w.result() == b"w-all"
    check("RESETALL (one lock handed over)")
    assert r.get("lock:all") == b"w-all"
    assert r.exists("lock:a") == 0 and r.exists("lock:c") == 0

    m.execute_command("LOCK.RELEASE", "all", "w-all")
    check("RELEASE of a handed-over lock")
    # the replica ends with signal lists only: every lock was freed
    assert not [k for k in keyspace(r) if k.startswith(b"lock:")]


def test_lagging_replica_gets_the_primary_deadlines(pair):
    """The replica is stopped while the primary acquires, hands over and extends locks, and
    resumes 200 ms later: it must still end with the primary's absolute deadlines. A deadline
    propagated as a relative TTL would come out about 200 ms later on the replica."""
    primary, replica, m, r = pair
    with stopped(replica):
        m.execute_command("LOCK.ACQUIRE", "a", "ID", "x", "PX", "60000")
        m.execute_command("LOCK.ACQUIRE", "b", "ID", "y", "EX", "100")
        m.execute_command("LOCK.EXTEND", "b", "y", "PX", "90000")
        m.execute_command("LOCK.ACQUIRE", "c", "ID", "h")
        w = acquire_bg(primary, "c", "ID", "w", "PX", "50000")
        wait_waiters(m, "c", 1)
        m.execute_command("LOCK.RELEASE", "c", "h")
        assert w.result() == b"w"
        m.execute_command("LOCK.ACQUIRE", "d", "ID", "q")
        m.execute_command("LOCK.RELEASE", "d", "q")
        sleep_until_wallclock_ms(time.time() * 1000, slack_ms=200)  # the replica lags 200 ms
    sync(m)
    assert_same_keyspace(m, r, "a 200 ms replication lag")
    for key in ("lock:a", "lock:b", "lock:c", "lock-signal:d"):
        assert r.execute_command("PEXPIRETIME", key) == m.execute_command("PEXPIRETIME", key) > 0


def test_replica_gets_expiry_hand_off(pair):
    master, replica, m, r = pair
    m.execute_command("LOCK.ACQUIRE", "n", "ID", "holder", "PX", "300")
    w = acquire_bg(master, "n", "ID", "w", "PX", "50000")
    wait_waiters(m, "n", 1)
    assert w.result() == b"w"
    sync(m)
    assert r.get("lock:n") == b"w"
    assert digest(r) == digest(m)


def replica_counters(r):
    stats = r.info("stats")
    return {
        "digest": digest(r),
        "dbsize": r.dbsize(),
        "expired_keys": stats.get("expired_keys"),
        "evicted_keys": stats.get("evicted_keys"),
    }


@pytest.mark.parametrize("freeze", ["sigstop", "client-pause"])
def test_replica_never_grants_expires_or_signals_on_its_own(pair, freeze):
    """Locks with and without waiters reach their deadline while the primary cannot propagate
    (process stopped, or CLIENT PAUSE WRITE): the replica keeps its keyspace exactly as it was
    (no grant, no expiry, no signal, no write at all), even when read there; it changes only
    once the primary propagates, and then equals the primary."""
    primary, replica, m, r = pair
    # deadlines far enough ahead to be reached only once the primary is frozen
    m.execute_command("LOCK.ACQUIRE", "n", "ID", "h", "PX", "1500")
    w = acquire_bg(primary, "n", "ID", "w", "PX", "60000")
    wait_waiters(m, "n", 1)
    m.execute_command("LOCK.ACQUIRE", "e", "ID", "h2", "PX", "1500")      # no waiter: signal
    m.execute_command("LOCK.ACQUIRE", "keep", "ID", "k", "PX", "60000")  # untouched
    sync(m)
    assert_same_keyspace(m, r, "setup")
    deadline_ms = max(r.execute_command("PEXPIRETIME", k) for k in ("lock:n", "lock:e"))
    before = replica_counters(r)

    def watch_replica(primary_offset=None):
        """Poll the replica past the deadlines; it must not change by itself."""
        assert time.time() * 1000 < deadline_ms - 100, "setup too slow: deadline already passed"
        end = deadline_ms + 400
        while time.time() * 1000 < end:
            # reads on the replica of keys past their deadline must not make it act either
            r.execute_command("LOCK.INFO", "n")
            r.execute_command("LOCK.OWNER", "e")
            r.get("lock:n")
            now = replica_counters(r)
            if now != before:
                # only the primary may change the replica: then it must have propagated
                assert primary_offset is not None and primary_offset() > offset0, (
                    f"replica changed on its own ({freeze}): {before} -> {now}")
                return False
            time.sleep(0.02)
        return True

    if freeze == "sigstop":
        offset0 = None
        with stopped(primary):
            assert w.is_running(), f"the waiter ended before the freeze: {w.reply!r} {w.error!r}"
            assert watch_replica(), "unreachable"
            assert w.is_running()
        # the primary resumes: its deadline timer hands the lock over
    else:
        offset0 = info_field(m, "replication", "master_repl_offset")
        m.execute_command("CLIENT", "PAUSE", 10000, "WRITE")
        try:
            watch_replica(lambda: info_field(m, "replication", "master_repl_offset"))
        finally:
            m.execute_command("CLIENT", "UNPAUSE")
    assert w.result() == b"w"
    wait_until(lambda: m.exists("lock-signal:e") == 1, message="expiry signal on the primary")
    sync(m)
    assert_same_keyspace(m, r, f"the primary resumed ({freeze})")
    assert r.get("lock:n") == b"w"
    assert r.lrange("lock-signal:e", 0, -1) == [b"1"]
    assert r.info("stats").get("expired_keys") == 0


def test_replica_refuses_writes_but_answers_reads(pair):
    master, replica, m, r = pair
    m.execute_command("LOCK.ACQUIRE", "n", "ID", "x", "EX", "100")
    sync(m)
    for args in (["LOCK.ACQUIRE", "m"], ["LOCK.RELEASE", "n", "x"], ["LOCK.RESET", "n"],
                 ["LOCK.EXTEND", "n", "x", "EX", "5"], ["LOCK.RESETALL"]):
        with pytest.raises(Exception) as ei:
            r.execute_command(*args)
        assert error_code(ei.value) == "READONLY", (args, ei.value)
    assert r.execute_command("LOCK.OWNER", "n") == b"x"
    assert r.get("lock:n") == b"x"
    assert digest(r) == digest(m)


def test_waiter_unblocked_when_master_becomes_replica(make_server):
    a = make_server()
    b = make_server()
    ca = a.client()
    ca.execute_command("LOCK.ACQUIRE", "n", "ID", "holder")
    w = acquire_bg(a, "n", "ID", "w")
    wait_waiters(ca, "n", 1)
    ca.execute_command("REPLICAOF", "127.0.0.1", b.port)
    w.join()
    assert w.error is not None, w.reply
    assert error_code(w.error) == "UNBLOCKED"
    assert waiters(ca, "n") == 0


def test_failover_promoted_replica_serves_the_locks(pair):
    """REPLICAOF NO ONE on the replica, then the old primary follows it: the old primary's
    waiters get an error reply (not a hang, not a grant); the promoted replica has every lock
    with the same owner and PEXPIRETIME, and LOCK.* work on it (release, acquire, blocking
    hand-off, expiry hand-off)."""
    primary, replica, m, r = pair
    m.execute_command("LOCK.ACQUIRE", "n", "ID", "h", "PX", "60000")
    m.execute_command("LOCK.ACQUIRE", "forever", "ID", "f")
    m.execute_command("LOCK.ACQUIRE", "short", "ID", "s", "PX", "2500")
    w1 = acquire_bg(primary, "n", "ID", "w1")                    # waits forever
    w2 = acquire_bg(primary, "n", "ID", "w2", "TIMEOUT", "30")
    w3 = acquire_bg(primary, "forever", "ID", "w3", "PX", "5000")
    wait_waiters(m, "n", 2)
    wait_waiters(m, "forever", 1)
    sync(m)
    before = keyspace(m)

    assert r.execute_command("REPLICAOF", "NO", "ONE") == b"OK"
    wait_until(lambda: info_field(r, "replication", "role") == "master", message="promoted")
    assert m.execute_command("REPLICAOF", "127.0.0.1", replica.port) == b"OK"
    for w in (w1, w2, w3):
        w.join(10)
        assert w.error is not None, f"{w.label}: demoted primary replied {w.reply!r}"
        assert error_code(w.error) == "UNBLOCKED", w.error
        assert w.elapsed < 10
    assert waiters(m, "n") == 0 and waiters(m, "forever") == 0

    # the promoted replica holds exactly what the primary had: owners and absolute deadlines
    after = keyspace(r)
    assert after == before, "promoted replica:\n" + "\n".join(diff_keyspaces(before, after))
    assert r.execute_command("PEXPIRETIME", "lock:n") == before[b"lock:n"][2]

    # and the locks are usable there
    assert r.execute_command("LOCK.ACQUIRE", "n", "ID", "x", "NOWAIT") is None
    assert r.execute_command("LOCK.RELEASE", "n", "h") == b"OK"
    assert r.execute_command("LOCK.ACQUIRE", "n", "ID", "x", "NOWAIT") == b"x"
    w4 = acquire_bg(replica, "forever", "ID", "w4", "PX", "30000")
    wait_waiters(r, "forever", 1)
    assert r.execute_command("LOCK.RELEASE", "forever", "f") == b"OK"
    assert w4.result() == b"w4"
    w5 = acquire_bg(replica, "short", "ID", "w5", "TIMEOUT", "10")   # expiry hand-off
    assert w5.result() == b"w5"
    assert r.execute_command("LOCK.OWNER", "short") == b"w5"

    # the old primary, now a replica of the promoted one, converges on it
    wait_until(lambda: info_field(m, "replication", "master_link_status") == "up",
               message="the old primary follows the new one")
    sync(r)
    assert_same_keyspace(r, m, "failover and writes on the promoted replica")
