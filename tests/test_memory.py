"""Memory pressure: a full server (maxmemory + noeviction) refuses new locks with OOM like any
other write, and still lets holders release, extend and reset (a full server must be able to
free its locks).

The server is filled until a plain SET fails with OOM; everything below is checked in that
state. Runs on whatever $REDIS_SERVER is (`make integration` runs it on all three servers).
"""

from __future__ import annotations

import pytest
import redis

from harness import acquire_bg, assert_signalled, error_code, lk, sig, snapshot, wait_waiters

FILL_VALUE = b"x" * 1000  # small: a big refused argument would itself count as used memory


def fill_until_oom(c, headroom=256 * 1024, below=32 * 1024):
    """maxmemory just above current use, SET values until the server says OOM, then put
    maxmemory `below` bytes under the usage: right at the limit a write can slip through (the
    refused command's own buffers are freed), well below it every write is refused."""
    used = int(c.info("memory")["used_memory"])
    c.config_set("maxmemory", used + headroom)
    for i in range(100000):
        try:
            c.set(b"filler:%d" % i, FILL_VALUE)
        except redis.exceptions.ResponseError as e:
            assert error_code(e) == "OOM", f"filling: unexpected error {e}"
            break
    else:
        pytest.fail("the server never refused a write with OOM")
    c.config_set("maxmemory", int(c.info("memory")["used_memory"]) - below)
    return i


def assert_oom(exc_info):
    """An OOM error reply (redis-py turns the OOM code into OutOfMemoryError and drops it from
    the message)."""
    e = exc_info.value
    assert isinstance(e, redis.exceptions.OutOfMemoryError) or error_code(e) == "OOM", repr(e)


def test_full_server_refuses_new_locks_but_frees_held_ones(make_server, protocol):
    server = make_server(extra_config=[("maxmemory-policy", "noeviction")])
    c = server.client(protocol=protocol)
    # held before the server fills up
    assert c.execute_command("LOCK.ACQUIRE", "r", "ID", "holder-r", "PX", 600000) == b"holder-r"
    assert c.execute_command("LOCK.ACQUIRE", "e", "ID", "holder-e", "PX", 600000) == b"holder-e"
    assert c.execute_command("LOCK.ACQUIRE", "x", "ID", "holder-x") == b"holder-x"
    assert c.execute_command("LOCK.ACQUIRE", "h", "ID", "holder-h", "PX", 600000) == b"holder-h"
    waiter = acquire_bg(server, "h", "ID", "waiter-h", "PX", 600000, "TIMEOUT", 30,
                        protocol=protocol)
    wait_waiters(c, "h", 1)

    filled = fill_until_oom(c)
    assert filled > 0
    with pytest.raises(redis.exceptions.ResponseError) as e:
        c.set("plain", "write")
    assert_oom(e)

    # a new lock is refused like any other write, and nothing changes
    before = snapshot(c)
    for options in (["NOWAIT"], ["PX", 1000, "NOWAIT"], ["ID", "new-id", "TIMEOUT", "0.01"], []):
        with pytest.raises(redis.exceptions.ResponseError) as e:
            c.execute_command("LOCK.ACQUIRE", "new", *options)
        assert_oom(e)
    with pytest.raises(redis.exceptions.ResponseError) as e:
        c.eval("return redis.call('LOCK.ACQUIRE', 'new', 'NOWAIT')", 0)
    assert_oom(e)
    assert snapshot(c) == before
    assert c.execute_command("LOCK.OWNER", "new") is None

    # reads still work
    assert c.execute_command("LOCK.OWNER", "r") == b"holder-r"
    info = c.execute_command("LOCK.INFO", "h")
    assert info is not None

    # the holders can still free, extend and reset their locks
    assert c.execute_command("LOCK.RELEASE", "r", "holder-r") == b"OK"
    assert c.exists(lk(b"r")) == 0
    assert_signalled(c, b"r")

    assert c.execute_command("LOCK.EXTEND", "e", "holder-e", "PX", 900000) == b"OK"
    assert 600000 < c.pttl(lk(b"e")) <= 900000

    assert c.execute_command("LOCK.RESET", "x") == 1
    assert c.exists(lk(b"x")) == 0
    assert_signalled(c, b"x")

    # a release with a waiter queued still hands the lock over
    assert c.execute_command("LOCK.RELEASE", "h", "holder-h") == b"OK"
    assert waiter.result() == b"waiter-h"
    assert c.get(lk(b"h")) == b"waiter-h"
    assert c.execute_command("LOCK.RELEASE", "h", "waiter-h", "SIGNAL-EXPIRE", 100) == b"OK"

    assert isinstance(c.execute_command("LOCK.RESETALL"), int)
    assert c.execute_command("LOCK.OWNER", "e") is None


def test_full_server_release_frees_memory_for_the_next_acquire(make_server):
    """Releasing a lock with a big id on a full server frees room: the contract's OOM is the
    server's own check (deny-oom), not a sticky module state."""
    server = make_server(extra_config=[("maxmemory-policy", "noeviction")])
    c = server.client()
    big_id = b"i" * 200000
    assert c.execute_command("LOCK.ACQUIRE", "big", "ID", big_id, "NOWAIT") == big_id
    fill_until_oom(c, headroom=64 * 1024)
    with pytest.raises(redis.exceptions.ResponseError) as e:
        c.execute_command("LOCK.ACQUIRE", "small", "NOWAIT")
    assert_oom(e)
    assert c.execute_command("LOCK.RELEASE", "big", big_id, "SIGNAL-EXPIRE", 1) == b"OK"
    assert c.exists(lk(b"big")) == 0
    # 200 KB freed: a small lock fits again
    got = c.execute_command("LOCK.ACQUIRE", "small", "ID", "s", "NOWAIT")
    assert got == b"s"
    assert c.execute_command("LOCK.RELEASE", "small", "s") == b"OK"
    assert c.type(sig(b"small")) == b"list"
