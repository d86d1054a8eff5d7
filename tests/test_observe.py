"""Who holds, who waits: LOCK.WAITERS and LOCK.INFO's `holder-client` / `held-ms`."""

import time

import pytest
import redis
import redis_lock

from harness import Background, acquire_bg, error_code, lock_info, snapshot, wait_until, wait_waiters


def as_dict(entry):
    """A RESP3 map or a RESP2 flat array → {str: value}."""
    if isinstance(entry, dict):
        return {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}
    assert isinstance(entry, list) and len(entry) % 2 == 0, entry
    return {entry[i].decode(): entry[i + 1] for i in range(0, len(entry), 2)}


def lock_waiters(c, name, *args):
    reply = c.execute_command("LOCK.WAITERS", name, *args)
    assert isinstance(reply, list), reply
    return [as_dict(e) for e in reply]


WAITER_FIELDS = {"client-id", "waited-ms", "timeout-ms", "ttl-ms", "fence", "session"}


def test_waiters_of_a_free_or_unknown_lock(c):
    assert c.execute_command("LOCK.WAITERS", "nobody") == []
    c.execute_command("LOCK.ACQUIRE", "held", "ID", "me")
    assert c.execute_command("LOCK.WAITERS", "held") == []


def test_queue_order_shown_is_the_grant_order(server, c, protocol):
    c.execute_command("LOCK.ACQUIRE", "x", "ID", "holder")
    queued = []
    for i in range(5):
        options = ["ID", f"w{i}"] + (["PX", "60000"] if i % 2 else []) + (["TIMEOUT", "30"] if i == 3 else [])
        w = acquire_bg(server, "x", *options, protocol=protocol)
        wait_waiters(c, "x", i + 1)
        queued.append(w)
    shown = lock_waiters(c, "x")
    assert [set(e) for e in shown] == [WAITER_FIELDS] * 5
    assert [e["client-id"] for e in shown] == [w.client_id for w in queued]
    assert [e["ttl-ms"] for e in shown] == [-1, 60000, -1, 60000, -1]
    assert [e["timeout-ms"] for e in shown] == [-1, -1, -1, 30000, -1]
    assert [(e["fence"], e["session"]) for e in shown] == [(0, 0)] * 5
    waited = [e["waited-ms"] for e in shown]
    assert waited == sorted(waited, reverse=True) and waited[-1] >= 0, waited
    # Releasing one by one serves them in exactly the order shown.
    owner = b"holder"
    granted = []
    for _ in range(5):
        assert c.execute_command("LOCK.RELEASE", "x", owner) == b"OK"
        owner = c.execute_command("LOCK.OWNER", "x")
        granted.append(next(w for w in queued if w.result() == owner).client_id)
    assert granted == [e["client-id"] for e in shown]
    assert c.execute_command("LOCK.WAITERS", "x") == []


def test_count_returns_the_head(server, c, protocol):
    c.execute_command("LOCK.ACQUIRE", "x", "ID", "holder")
    bgs = []
    for i in range(3):
        bgs.append(acquire_bg(server, "x", "ID", f"w{i}", protocol=protocol))
        wait_waiters(c, "x", i + 1)
    ids = [w.client_id for w in bgs]
    assert [e["client-id"] for e in lock_waiters(c, "x", "COUNT", 1)] == ids[:1]
    assert [e["client-id"] for e in lock_waiters(c, "x", "count", 2)] == ids[:2]
    assert [e["client-id"] for e in lock_waiters(c, "x", "COUNT", 100)] == ids
    c.execute_command("LOCK.RESET", "x")
    for w in bgs[1:]:
        c.execute_command("LOCK.RESET", "x")
    assert sorted(w.result() for w in bgs) == [b"w0", b"w1", b"w2"]


def test_timed_out_and_disconnected_waiters_disappear(server, c):
    c.execute_command("LOCK.ACQUIRE", "x", "ID", "holder")
    short = acquire_bg(server, "x", "ID", "short", "TIMEOUT", "0.3")
    wait_waiters(c, "x", 1)
    gone = acquire_bg(server, "x", "ID", "gone")
    wait_waiters(c, "x", 2)
    stays = acquire_bg(server, "x", "ID", "stays")
    wait_waiters(c, "x", 3)
    assert [e["client-id"] for e in lock_waiters(c, "x")] == [short.client_id, gone.client_id, stays.client_id]
    assert short.result() is None  # timed out
    assert [e["client-id"] for e in lock_waiters(c, "x")] == [gone.client_id, stays.client_id]
    c.execute_command("CLIENT", "KILL", "ID", gone.client_id)
    wait_waiters(c, "x", 1)
    assert [e["client-id"] for e in lock_waiters(c, "x")] == [stays.client_id]
    c.execute_command("LOCK.RELEASE", "x", "holder")
    assert stays.result() == b"stays"


def test_bad_arguments_change_nothing(server, c):
    c.execute_command("LOCK.ACQUIRE", "x", "ID", "holder")
    before = snapshot(c)
    for args in (["COUNT"], ["COUNT", "0"], ["COUNT", "-3"], ["COUNT", "x"], ["LIMIT", "1"],
                 ["COUNT", "1", "COUNT", "1"]):
        with pytest.raises(redis.ResponseError) as e:
            c.execute_command("LOCK.WAITERS", "x", *args)
        assert error_code(e.value) == "ERR", args
    with pytest.raises(redis.ResponseError):
        c.execute_command("LOCK.WAITERS")
    assert snapshot(c) == before


def test_waiters_shape_resp2_and_resp3(server):
    c2, c3 = server.client(protocol=2), server.client(protocol=3)
    c2.execute_command("LOCK.ACQUIRE", "x", "ID", "holder")
    w = acquire_bg(server, "x", "ID", "w")
    wait_waiters(c2, "x", 1)
    r2 = c2.execute_command("LOCK.WAITERS", "x")
    r3 = c3.execute_command("LOCK.WAITERS", "x")
    assert isinstance(r2[0], list) and len(r2[0]) == 12
    assert isinstance(r3[0], dict) and len(r3[0]) == 6
    raw = server.raw(protocol=3)
    raw.call("LOCK.WAITERS", "x")
    assert raw.last_type == b"*"
    c2.execute_command("LOCK.RELEASE", "x", "holder")
    assert w.result() == b"w"


def test_holder_after_an_immediate_grant(c):
    me = c.client_id()
    assert lock_info(c, "x")["holder-client"] is None and lock_info(c, "x")["held-ms"] is None
    c.execute_command("LOCK.ACQUIRE", "x", "ID", "me", "EX", "30")
    info = lock_info(c, "x")
    assert info["holder-client"] == me
    assert 0 <= info["held-ms"] < 5000
    time.sleep(0.05)
    assert lock_info(c, "x")["held-ms"] >= 40
    c.execute_command("LOCK.RELEASE", "x", "me")
    info = lock_info(c, "x")
    assert (info["holder-client"], info["held-ms"]) == (None, None)


def test_holder_after_a_hand_off(server, c, protocol):
    c.execute_command("LOCK.ACQUIRE", "x", "ID", "first")
    w = acquire_bg(server, "x", "ID", "second", protocol=protocol)
    wait_waiters(c, "x", 1)
    c.execute_command("LOCK.RELEASE", "x", "first")
    assert w.result() == b"second"
    info = lock_info(c, "x")
    assert info["holder-client"] == w.client_id and info["owner"] == b"second"
    assert info["held-ms"] >= 0


def test_no_holder_for_python_redis_lock_or_foreign_writes(server, c):
    conn = server.client()
    plock = redis_lock.Lock(conn, "x", id="py")
    assert plock.acquire(blocking=False)  # SET NX by python-redis-lock
    info = lock_info(c, "x")
    assert info["owner"] == b"py"
    assert (info["holder-client"], info["held-ms"]) == (None, None)
    plock.release()
    # A module grant overwritten by a plain SET is no longer the module's grant.
    c.execute_command("LOCK.ACQUIRE", "y", "ID", "mod")
    c.set("lock:y", "someone-else")
    info = lock_info(c, "y")
    assert (info["holder-client"], info["held-ms"]) == (None, None)


def test_holder_from_a_script_is_unknown_but_timed(c):
    c.eval("return redis.call('LOCK.ACQUIRE', 'x', 'ID', 'lua', 'NOWAIT')", 0)
    info = lock_info(c, "x")
    assert info["owner"] == b"lua"
    assert info["holder-client"] is None and info["held-ms"] is not None
