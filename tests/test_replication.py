"""A replica (module loaded too) ends up with exactly the master's locks, owners and deadlines.

DEBUG DIGEST covers values and absolute expire times, so equal digests after WAIT prove the
module's writes were propagated in order with absolute expiries (SET ... PXAT), not
re-executed with a later clock on the replica.
"""

import pytest

from harness import acquire_bg, error_code, wait_until, wait_waiters, waiters


def info_field(c, section, field):
    return c.info(section).get(field)


@pytest.fixture
def pair(make_server):
    master = make_server(extra_config=[("repl-diskless-sync-delay", 0)])
    replica = make_server(extra_config=[("replicaof", f"127.0.0.1 {master.port}")])
    m, r = master.client(), replica.client()
    wait_until(lambda: info_field(r, "replication", "master_link_status") == "up",
               message="replica link up")
    wait_until(lambda: info_field(m, "replication", "connected_slaves") == 1,
               message="master sees the replica")
    return master, replica, m, r


def digest(c):
    return c.execute_command("DEBUG", "DIGEST")


def sync(m):
    assert m.execute_command("WAIT", 1, 5000) == 1


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


def test_replica_gets_expiry_hand_off(pair):
    master, replica, m, r = pair
    m.execute_command("LOCK.ACQUIRE", "n", "ID", "holder", "PX", "300")
    w = acquire_bg(master, "n", "ID", "w", "PX", "50000")
    wait_waiters(m, "n", 1)
    assert w.result() == b"w"
    sync(m)
    assert r.get("lock:n") == b"w"
    assert digest(r) == digest(m)


def test_replica_refuses_writes_but_answers_reads(pair):
    master, replica, m, r = pair
    m.execute_command("LOCK.ACQUIRE", "n", "ID", "x", "EX", "100")
    sync(m)
    for args in (["LOCK.ACQUIRE", "m"], ["LOCK.RELEASE", "n", "x"], ["LOCK.RESET", "n"],
                 ["LOCK.EXTEND", "n", "x", "EX", "5"]):
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
