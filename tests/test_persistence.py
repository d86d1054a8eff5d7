"""Persistence: with AOF (appendfsync always) and with RDB, a restarted server holds every lock
with its original owner and absolute deadline (PEXPIRETIME equal to the ms, never later); a lock
that expired (before the restart or while the server was down) stays gone; waiters, which were
connections, are not persisted: nobody is granted a lock after the restart on their behalf.

Each scenario builds the same keyspace through every kind of module write (acquire, hand-off
from release / expiry / foreign DEL, extend, release, reset), then stops the server (SIGKILL, or
SHUTDOWN) with a waiter still blocked, starts it again on the same port and directory, and
compares the whole keyspace before and after.
"""

import pytest
import redis_lock

from harness import acquire_bg, lock_info, wait_until, wait_waiters
from topology import diff_keyspaces, keyspace, restart, sleep_until_wallclock_ms

LONG_SIGNAL = 600000

MODES = {
    # name: (extra config, how the server is stopped, what runs before stopping)
    "aof-kill": ([("appendonly", "yes"), ("appendfsync", "always")], "kill", None),
    "aof-rewrite-kill": ([("appendonly", "yes"), ("appendfsync", "always")], "kill", "rewrite"),
    "aof-shutdown": ([("appendonly", "yes"), ("appendfsync", "always")], "shutdown-nosave", None),
    "rdb-save-kill": ([], "kill", "save"),
    "rdb-shutdown-save": ([], "shutdown-save", None),
}


def persistence_info(c):
    return c.info("persistence")


def bgrewriteaof(c):
    c.execute_command("BGREWRITEAOF")
    wait_until(lambda: (lambda i: i["aof_rewrite_in_progress"] == 0
                        and i["aof_rewrite_scheduled"] == 0)(persistence_info(c)),
               timeout=30, message="AOF rewrite done")


def handoff(server, c, name, free, waiter_px):
    c.execute_command("LOCK.ACQUIRE", name, "ID", "h")
    w = acquire_bg(server, name, "ID", "w-" + name, "PX", waiter_px)
    wait_waiters(c, name, 1)
    free(name)
    assert w.result() == b"w-" + name.encode()


@pytest.mark.parametrize("mode", list(MODES))
def test_restart_restores_locks_with_their_deadlines(make_server, mode):
    config, how, before_stop = MODES[mode]
    s = make_server("signal-expire", LONG_SIGNAL, extra_config=config)
    c = s.client()

    c.execute_command("LOCK.ACQUIRE", "a", "ID", "x", "PX", "60000")   # held, a waiter below
    c.execute_command("LOCK.ACQUIRE", "b", "ID", "y")                  # no expiry
    c.execute_command("LOCK.ACQUIRE", "e", "ID", "q", "EX", "100")
    c.execute_command("LOCK.EXTEND", "e", "q", "PX", "80000")
    handoff(s, c, "rel", lambda n: c.execute_command("LOCK.RELEASE", n, "h"), "50000")
    if before_stop == "rewrite":
        bgrewriteaof(c)  # what follows lands in the incremental AOF, the rest in the base
    handoff(s, c, "del", lambda n: c.delete("lock:" + n), "45000")
    c.execute_command("LOCK.ACQUIRE", "exp", "ID", "h", "PX", "300")
    w = acquire_bg(s, "exp", "ID", "w-exp", "PX", "40000")
    wait_waiters(c, "exp", 1)
    assert w.result() == b"w-exp"                                      # expiry hand-off
    c.execute_command("LOCK.ACQUIRE", "f", "ID", "q")
    c.execute_command("LOCK.RELEASE", "f", "q")                        # signal list
    c.execute_command("LOCK.ACQUIRE", "r", "ID", "q", "PX", "70000")
    assert c.execute_command("LOCK.RESET", "r") == 1
    # expired before the restart (its expiry signal stays, with signal-expire's deadline)
    c.execute_command("LOCK.ACQUIRE", "g", "ID", "q", "PX", "200")
    wait_until(lambda: c.exists("lock-signal:g") == 1, message="expiry signal of g")
    # a waiter still blocked when the server stops
    wa = acquire_bg(s, "a", "ID", "ghost", "PX", "90000")
    wait_waiters(c, "a", 1)
    # expires while the server is down
    c.execute_command("LOCK.ACQUIRE", "k", "ID", "q", "PX", "800")
    k_deadline = c.execute_command("PEXPIRETIME", "lock:k")

    if before_stop == "save":
        assert c.execute_command("SAVE") in (True, b"OK")
    before = keyspace(c)
    assert before[b"lock:a"][:2] == ("string", b"x") and before[b"lock:a"][2] > 0
    assert before[b"lock:b"] == ("string", b"y", -1)
    for name in (b"rel", b"del", b"exp"):
        assert before[b"lock:" + name][1] == b"w-" + name
    assert b"lock:g" not in before

    restart(s, how)
    wa.join()
    assert wa.error is not None, f"the blocked waiter got {wa.reply!r} from a stopping server"
    sleep_until_wallclock_ms(k_deadline)  # the lock k is past its deadline now
    c = s.client()
    after = keyspace(c)

    # k expired while the server was down: gone, not revived with a new deadline. Its expiry,
    # seen after the restart, may signal python waiters (the contract signals every expiry).
    assert c.exists("lock:k") == 0, f"lock:k revived: PEXPIRETIME {c.execute_command('PEXPIRETIME', 'lock:k')}, was {k_deadline}"
    assert c.execute_command("LOCK.OWNER", "k") is None
    expected = {key: v for key, v in before.items() if key != b"lock:k"}
    after.pop(b"lock:k", None)
    if b"lock-signal:k" in after:
        assert after.pop(b"lock-signal:k")[:2] == ("list", (b"1",))
    problems = diff_keyspaces(expected, after)
    assert not problems, f"{mode}: keyspace after restart differs:\n" + "\n".join(problems)

    # the waiter was a connection: not persisted, never granted
    info = lock_info(c, "a")
    assert info["owner"] == b"x" and info["waiters"] == 0
    assert c.execute_command("LOCK.RELEASE", "a", "x") == b"OK"
    assert c.execute_command("LOCK.OWNER", "a") is None
    assert c.exists("lock:a") == 0
    # the restored locks work as before
    assert c.execute_command("LOCK.ACQUIRE", "b", "ID", "other", "NOWAIT") is None
    assert c.execute_command("LOCK.RELEASE", "b", "y") == b"OK"
    assert c.execute_command("LOCK.EXTEND", "e", "q", "PX", "1000") == b"OK"


@pytest.mark.parametrize("mode", ["aof-kill", "rdb-save-kill"])
def test_restart_writes_nothing_on_its_own(make_server, mode):
    """Loading the AOF replays old deletions of locks (a release, python's unlock script);
    they are history, not frees happening now: the restarted server must not push a new signal
    (or write anything else) for them. The keyspace after the restart is exactly the one before."""
    config, how, before_stop = MODES[mode]
    s = make_server("signal-expire", LONG_SIGNAL, extra_config=config)
    c = s.client()
    c.execute_command("LOCK.ACQUIRE", "held", "ID", "x", "PX", "60000")
    # released with a short-lived signal, which then expired
    c.execute_command("LOCK.ACQUIRE", "z", "ID", "q")
    c.execute_command("LOCK.RELEASE", "z", "q", "SIGNAL-EXPIRE", "100")
    # released by python-redis-lock's unlock script (a foreign DEL), signal expired too
    c.execute_command("LOCK.ACQUIRE", "py", "ID", "p")
    redis_lock.Lock(c, "py", id="p", signal_expire=100).release()
    # deleted by hand while nobody waited: the module signals it (signal-expire), then a user
    # deletes the signal
    c.execute_command("LOCK.ACQUIRE", "d", "ID", "q")
    c.delete("lock:d")
    wait_until(lambda: c.exists("lock-signal:d") == 1, message="signal of d")
    c.delete("lock-signal:d")
    wait_until(lambda: c.exists("lock-signal:z", "lock-signal:py") == 0,
               message="short signals expired")
    if before_stop == "save":
        assert c.execute_command("SAVE") in (True, b"OK")
    before = keyspace(c)
    assert set(before) == {b"lock:held"}

    restart(s, how)
    c = s.client()
    # give a post-load write (timer, job) every chance to happen, bounded: a LOCK.* round trip
    # after the first event-loop turns
    for _ in range(20):
        c.execute_command("LOCK.INFO", "z")
    problems = diff_keyspaces(before, keyspace(c))
    assert not problems, f"{mode}: the restarted server wrote on its own:\n" + "\n".join(problems)
