"""Wake-ups: a module waiter is granted whoever freed the lock, and python waiters are signalled.

Every path that can free `lock:<name>` (plain DEL/UNLINK/GETDEL, expiry, eviction, flushes,
SWAPDB, RENAME/MOVE away, a DEL inside a script or a transaction) hands the lock to the head
module waiter; when no module waiter takes it, the signal list is pushed as python's release
does, so python-redis-lock's BLPOP waiters wake at once. An overwrite by SET is no free. A
role change answers every waiter with UNBLOCKED; MODULE UNLOAD never strands a waiter.

Ordering is never established by sleeping: waiters are confirmed queued with wait_waiters()
and python waiters with a bounded poll of CLIENT LIST (cmd=blpop). The few sleeps are the
assertion itself ("nothing happens during this window").
"""

import statistics
import time

import pytest
import redis
import redis_lock

from harness import (Background, acquire_bg, assert_pttl, assert_signalled, error_code,
                     lock_info, wait_until, wait_waiters, waiters)

SIGNAL_EXPIRE = 5000  # long enough for PTTL checks on a slow machine


def server_version(c) -> tuple:
    """(major, minor) of the Redis API the server implements (Valkey reports 7.2)."""
    v = c.info("server")["redis_version"]
    return tuple(int(x) for x in str(v).split(".")[:2])


def has_post_notification_jobs(c) -> bool:
    # Redis 7.2+ and Valkey: the grant is atomic with the command that freed the lock.
    return server_version(c) >= (7, 2)


def blpop_waiting(c, client_id) -> bool:
    for cl in c.client_list():
        if str(cl.get("id")) == str(client_id) and cl.get("cmd") == "blpop":
            return True
    return False


def python_waiter(server, name, protocol, timeout=10, db=0):
    """A python-redis-lock acquire(timeout=...) in the background (in database `db`),
    confirmed in BLPOP.

    Its reply is (acquired, id, wall-clock time acquire() returned)."""

    def fn(conn):
        lock = redis_lock.Lock(conn, name)
        ok = lock.acquire(timeout=timeout)
        return ok, lock.id.encode(), time.time()

    c = server.client(protocol=protocol)
    py = Background(server, fn, protocol=protocol, label=f"python {name}", db=db).start()
    wait_until(lambda: py.done.is_set() or blpop_waiting(c, py.client_id),
               message="python waiter in BLPOP")
    assert not py.done.is_set(), (py.reply, py.error)
    return py


def pexpiretime(c, key) -> int:
    return int(c.execute_command("PEXPIRETIME", key))


# ---------------------------------------------------------------------------
# every way of freeing a lock hands it to the module waiter


def _free_del(c):
    assert c.delete("lock:n") == 1


def _free_unlink(c):
    assert c.unlink("lock:n") == 1


def _free_getdel(c):
    assert c.execute_command("GETDEL", "lock:n") == b"holder"


def _free_pexpire_past(c):
    assert c.execute_command("PEXPIRE", "lock:n", 0) == 1


def _free_flushdb(c):
    assert c.flushdb() is True


def _free_flushdb_async(c):
    assert c.execute_command("FLUSHDB", "ASYNC") in (True, b"OK")


def _free_flushall_async(c):
    assert c.execute_command("FLUSHALL", "ASYNC") in (True, b"OK")


def _free_rename(c):
    assert c.rename("lock:n", "elsewhere") is True


def _free_move(c):
    assert c.move("lock:n", 5) is True


def _free_eval_del(c):
    assert c.eval("return redis.call('DEL', KEYS[1])", 1, "lock:n") == 1


def _free_multi_del(c):
    p = c.pipeline(transaction=True)
    p.delete("lock:n")
    p.set("other", "x")
    assert p.execute() == [1, True]


FREE_PATHS = {
    "del": _free_del,
    "unlink": _free_unlink,
    "getdel": _free_getdel,
    "pexpire-0": _free_pexpire_past,
    "flushdb": _free_flushdb,
    "flushdb-async": _free_flushdb_async,
    "flushall-async": _free_flushall_async,
    "rename": _free_rename,
    "move": _free_move,
    "eval-del": _free_eval_del,
    "multi-del": _free_multi_del,
}

# the free commands as raw arguments, to pipeline a GET right behind them
FREE_COMMANDS = {
    "del": ["DEL", "lock:n"],
    "unlink": ["UNLINK", "lock:n"],
    "getdel": ["GETDEL", "lock:n"],
    "pexpire-0": ["PEXPIRE", "lock:n", "0"],
    "flushdb": ["FLUSHDB"],
    "flushdb-async": ["FLUSHDB", "ASYNC"],
    "flushall-async": ["FLUSHALL", "ASYNC"],
    "rename": ["RENAME", "lock:n", "elsewhere"],
    "move": ["MOVE", "lock:n", "5"],
    "eval-del": ["EVAL", "return redis.call('DEL', KEYS[1])", "1", "lock:n"],
    "swapdb": ["SWAPDB", "0", "1"],  # db 1 is empty: the lock is free in db 0 afterwards
}


@pytest.mark.parametrize("path", sorted(FREE_PATHS), ids=sorted(FREE_PATHS))
def test_any_free_grants_the_module_waiter(server, protocol, path):
    c = server.client(protocol=protocol)
    assert c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder", "EX", "100") == b"holder"
    w = acquire_bg(server, "n", "ID", "w", "PX", "30000", protocol=protocol)
    wait_waiters(c, "n", 1)
    FREE_PATHS[path](c)
    assert w.result(timeout=5) == b"w"
    w.assert_clean()
    assert c.get("lock:n") == b"w"
    assert_pttl(c, "lock:n", 30000)
    assert waiters(c, "n") == 0
    # the lock never stayed free: nobody needed a signal
    assert c.exists("lock-signal:n") == 0
    if path == "rename":
        assert c.get("elsewhere") == b"holder"
    if path == "move":
        assert server.client(protocol=protocol, db=5).get("lock:n") == b"holder"


@pytest.mark.parametrize("path", sorted(FREE_COMMANDS), ids=sorted(FREE_COMMANDS))
def test_grant_is_atomic_with_the_freeing_command(server, path):
    """Redis 7.2+ and Valkey: a command pipelined right behind the free already sees the
    waiter's lock, and a pipelined SET NX cannot barge in. Redis 7.0 grants from a 0 ms timer
    in the same event-loop turn (the contract allows the barger there): the waiter then keeps
    waiting, and gets the lock when the barger lets it go."""
    c = server.client(protocol=3)
    assert c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder") == b"holder"
    w = acquire_bg(server, "n", "ID", "w", protocol=3)
    wait_waiters(c, "n", 1)
    p = server.client(protocol=3).pipeline(transaction=False)
    p.execute_command(*FREE_COMMANDS[path])
    p.set("lock:n", "barger", nx=True)
    p.get("lock:n")
    res = p.execute()
    if has_post_notification_jobs(c):
        assert res[1:] == [None, b"w"], res
        assert w.result(timeout=5) == b"w"
    elif res[1]:
        assert res[2] == b"barger"
        assert w.is_running()
        assert c.delete("lock:n") == 1
        assert w.result(timeout=5) == b"w"
    else:
        assert w.result(timeout=5) == b"w"
    assert c.get("lock:n") == b"w"
    assert waiters(c, "n") == 0


def test_free_of_a_ttl_lock_disarms_its_deadline(server, protocol):
    """The holder had PX 300 (deadline timer armed); a DEL gives the lock to a waiter without
    expiry. Past the old deadline the new holder must still hold it."""
    c = server.client(protocol=protocol)
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder", "PX", "300")
    t0 = time.monotonic()
    w = acquire_bg(server, "n", "ID", "w", protocol=protocol)
    wait_waiters(c, "n", 1)
    assert c.delete("lock:n") == 1
    assert w.result(timeout=5) == b"w"
    nxt = acquire_bg(server, "n", "ID", "next", protocol=protocol)
    wait_waiters(c, "n", 1)
    time.sleep(max(0.0, 0.5 - (time.monotonic() - t0)))  # the assertion: nothing happens
    assert c.get("lock:n") == b"w"
    assert c.pttl("lock:n") == -1
    assert nxt.is_running()
    assert c.execute_command("LOCK.RELEASE", "n", "w") == b"OK"
    assert nxt.result() == b"next"


def test_extended_lock_is_not_granted_at_the_old_deadline(server, protocol):
    c = server.client(protocol=protocol)
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder", "PX", "200")
    t0 = time.monotonic()
    w = acquire_bg(server, "n", "ID", "w", protocol=protocol)
    wait_waiters(c, "n", 1)
    assert c.execute_command("LOCK.EXTEND", "n", "holder", "PX", "20000") == b"OK"
    time.sleep(max(0.0, 0.45 - (time.monotonic() - t0)))  # the assertion: nothing happens
    assert w.is_running()
    assert c.get("lock:n") == b"holder"
    assert c.execute_command("LOCK.RELEASE", "n", "holder") == b"OK"
    assert w.result() == b"w"


# ---------------------------------------------------------------------------
# expiry: a timer at the deadline, not Redis's active-expire cycle


def test_expiry_grants_within_10ms_of_the_deadline(server, protocol):
    """With active expiry switched off, only the module's deadline timer can notice the
    expiry: the waiter must be granted within a few ms of the holder's deadline.

    Lateness is measured on the server's clock: the holder's PEXPIRETIME against the grant
    time (the waiter's PEXPIRETIME minus its PX)."""
    c = server.client(protocol=protocol)
    c.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
    late_server, late_client = [], []
    for i in range(5):
        name = f"x{i}"
        c.execute_command("LOCK.ACQUIRE", name, "ID", "holder", "PX", "150")
        deadline = pexpiretime(c, f"lock:{name}")
        w = acquire_bg(server, name, "ID", "w", "PX", "60000", protocol=protocol,
                       then=lambda conn, reply: setattr(conn, "granted_at", time.time()))
        wait_waiters(c, name, 1)
        assert w.result(timeout=5) == b"w"
        granted = pexpiretime(c, f"lock:{name}") - 60000
        late_server.append(granted - deadline)
        late_client.append(w.conn.granted_at * 1000 - deadline)
        assert c.exists(f"lock-signal:{name}") == 0
    print(f"\nexpiry lateness, server clock (ms): {late_server}")
    print("expiry lateness, client clock (ms): " + str([round(x, 1) for x in late_client]))
    assert all(x >= 0 for x in late_server), late_server  # never granted before the deadline
    assert min(late_server) < 10, late_server
    assert statistics.median(late_server) < 25, late_server
    assert min(late_client) < 10, late_client


def test_expiry_hands_over_down_a_queue(server, protocol):
    """Each granted waiter's own PX expires in turn; the next waiter gets it each time,
    with active expiry off (only the deadline timers act: each grant arms the next one)."""
    c = server.client(protocol=protocol)
    c.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder", "PX", "200")
    ws = []
    for i in range(3):
        px = "60000" if i == 2 else "100"
        ws.append(acquire_bg(server, "n", "ID", f"w{i}", "PX", px, protocol=protocol,
                             label=f"w{i}"))
        wait_waiters(c, "n", i + 1)
    for i, w in enumerate(ws):
        assert w.result(timeout=5) == f"w{i}".encode()
    assert c.get("lock:n") == b"w2"
    assert waiters(c, "n") == 0


# ---------------------------------------------------------------------------
# an overwrite is not a free


def test_overwrite_with_ttl_then_expiry_grants(server, protocol):
    """SET without NX replaces the owner: no grant, the waiter keeps waiting; when the
    intruder's lock expires, the waiter gets it."""
    c = server.client(protocol=protocol)
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder")
    w = acquire_bg(server, "n", "ID", "w", protocol=protocol)
    wait_waiters(c, "n", 1)
    assert c.set("lock:n", "intruder", px=300) is True
    assert c.get("lock:n") == b"intruder"
    assert w.is_running()
    assert waiters(c, "n") == 1
    assert w.result(timeout=5) == b"w"
    assert w.elapsed >= 0.25
    assert c.get("lock:n") == b"w"


def test_overwrite_of_expiring_lock_is_not_granted_at_the_old_deadline(server, protocol):
    c = server.client(protocol=protocol)
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder", "PX", "200")
    t0 = time.monotonic()
    w = acquire_bg(server, "n", "ID", "w", protocol=protocol)
    wait_waiters(c, "n", 1)
    assert c.set("lock:n", "intruder") is True  # no TTL any more
    time.sleep(max(0.0, 0.45 - (time.monotonic() - t0)))  # the assertion: nothing happens
    assert w.is_running()
    assert c.get("lock:n") == b"intruder"
    assert c.execute_command("LOCK.RELEASE", "n", "intruder") == b"OK"
    assert w.result() == b"w"


# ---------------------------------------------------------------------------
# SWAPDB


def test_swapdb_with_free_lock_grants_the_waiter(server, protocol):
    c0 = server.client(protocol=protocol, db=0)
    c1 = server.client(protocol=protocol, db=1)
    c0.execute_command("LOCK.ACQUIRE", "n", "ID", "holder")
    c1.set("marker", "db1")
    w = acquire_bg(server, "n", "ID", "w", "PX", "30000", protocol=protocol, db=0)
    wait_waiters(c0, "n", 1)
    assert c0.swapdb(0, 1) is True
    assert w.result(timeout=5) == b"w"
    # the waiter's database now holds what db 1 held, plus the waiter's lock
    assert c0.get("marker") == b"db1"
    assert c0.get("lock:n") == b"w"
    assert_pttl(c0, "lock:n", 30000)
    assert c1.get("lock:n") == b"holder"
    assert waiters(c0, "n") == 0 and waiters(c1, "n") == 0


def test_swapdb_with_held_lock_keeps_waiting(server, protocol):
    """db 1's lock is someone else's, without expiry; db 0's holder had PX 300. After
    SWAPDB the waiter keeps waiting (and db 0's old deadline, now in db 1, frees nothing
    in db 0); the new owner's release grants it."""
    c0 = server.client(protocol=protocol, db=0)
    c1 = server.client(protocol=protocol, db=1)
    c0.execute_command("LOCK.ACQUIRE", "n", "ID", "holder", "PX", "300")
    c1.execute_command("LOCK.ACQUIRE", "n", "ID", "other")
    w = acquire_bg(server, "n", "ID", "w", protocol=protocol, db=0)
    wait_waiters(c0, "n", 1)
    assert c0.swapdb(0, 1) is True
    assert c0.get("lock:n") == b"other"
    # the old holder's lock, now in db 1, expires; nothing changes in db 0
    wait_until(lambda: c1.get("lock:n") is None, timeout=5, message="db 1 lock expired")
    time.sleep(0.1)  # the assertion: nothing happens
    assert w.is_running()
    assert c0.get("lock:n") == b"other"
    assert waiters(c0, "n") == 1
    assert c0.execute_command("LOCK.RELEASE", "n", "other") == b"OK"
    assert w.result() == b"w"
    assert c0.get("lock:n") == b"w"
    assert c1.get("lock:n") is None


def test_module_lock_swapped_away_and_back_wakes_a_python_waiter(server, protocol):
    """The module's grant follows the data: after SWAPDB it is db 1's lock (another command's,
    as far as the module's records go), and a second SWAPDB that takes it away from db 1 frees
    it there: db 1's python-redis-lock waiter is signalled instead of sleeping to its timeout."""
    c0 = server.client(protocol=protocol, db=0)
    c1 = server.client(protocol=protocol, db=1)
    c0.execute_command("LOCK.ACQUIRE", "n", "ID", "holder", "EX", "100")
    assert c0.swapdb(0, 1) is True
    assert c1.get("lock:n") == b"holder" and c0.get("lock:n") is None
    py = python_waiter(server, "n", protocol, db=1)
    assert c0.swapdb(0, 1) is True
    ok, token, _ = py.result(timeout=4)
    assert ok is True
    assert py.elapsed < 4, py.elapsed  # the signal, not its 10 s timeout
    assert c1.get("lock:n") == token
    assert c0.get("lock:n") == b"holder"
    assert c0.execute_command("LOCK.RELEASE", "n", "holder") == b"OK"


# ---------------------------------------------------------------------------
# eviction


def _evicting_server(make_server):
    s = make_server("signal-expire", SIGNAL_EXPIRE,
                    extra_config=[("maxmemory-policy", "volatile-lru")])
    return s


BIG_ID = b"h" * 400_000  # evicting the lock frees far more than one filler write adds
FILLER = b"f" * 40_000


def _fill_until_gone(c, key=b"lock:n", holder=BIG_ID, limit=400):
    """Set maxmemory a little above the current use, then write keys without TTL until the
    only volatile key (the lock) has been evicted. Returns the number of writes."""
    used = int(c.info("memory")["used_memory"])
    c.config_set("maxmemory", used + 1_000_000)
    for i in range(limit):
        if c.get(key) != holder:
            return i
        try:
            c.set(f"fill:{i}", FILLER)
        except redis.ResponseError as e:
            pytest.fail(f"OOM before the lock was evicted ({i} writes): {e}")
    pytest.fail(f"lock not evicted after {limit} writes")


def test_eviction_grants_the_module_waiter(make_server, protocol):
    s = _evicting_server(make_server)
    c = s.client(protocol=protocol)
    c.execute_command("LOCK.ACQUIRE", "n", "ID", BIG_ID, "PX", "60000")
    w = acquire_bg(s, "n", "ID", "w", protocol=protocol)
    wait_waiters(c, "n", 1)
    _fill_until_gone(c)
    assert w.result(timeout=5) == b"w"
    c.config_set("maxmemory", 0)
    assert c.get("lock:n") == b"w"
    assert c.info("stats")["evicted_keys"] >= 1
    assert waiters(c, "n") == 0
    assert c.exists("lock-signal:n") == 0


def test_eviction_without_waiters_signals(make_server, protocol):
    s = _evicting_server(make_server)
    c = s.client(protocol=protocol)
    c.execute_command("LOCK.ACQUIRE", "n", "ID", BIG_ID, "PX", "60000")
    _fill_until_gone(c)
    wait_until(lambda: c.exists("lock-signal:n"), timeout=3, message="signal after eviction")
    c.config_set("maxmemory", 0)
    assert c.exists("lock:n") == 0
    assert_signalled(c, b"n", SIGNAL_EXPIRE)


def test_eviction_wakes_a_python_waiter(make_server, protocol):
    s = _evicting_server(make_server)
    c = s.client(protocol=protocol)
    c.execute_command("LOCK.ACQUIRE", "n", "ID", BIG_ID, "PX", "60000")
    py = python_waiter(s, "n", protocol)
    _fill_until_gone(c)
    ok, token, _ = py.result(timeout=8)
    c.config_set("maxmemory", 0)
    assert ok is True
    assert py.elapsed < 5, py.elapsed  # the signal, not its 10 s BLPOP timeout
    assert c.get("lock:n") == token


# ---------------------------------------------------------------------------
# no module waiter: python waiters are signalled, whatever freed the lock


# path -> protocol of the python client (both protocols are covered, each path once)
PY_FREE_PATHS = {"del": 2, "unlink": 3, "getdel": 2, "pexpire-0": 3, "rename": 2, "move": 3,
                 "eval-del": 2, "multi-del": 3, "swapdb": 3, "expiry": 2}


def _free_swapdb(c):
    assert c.swapdb(0, 1) is True  # db 1 is empty: db 0 no longer holds the lock


def _free_for_python(c, path):
    if path == "expiry":
        return  # the holder took a short PX
    if path == "swapdb":
        return _free_swapdb(c)
    FREE_PATHS[path](c)


@pytest.mark.parametrize("path", sorted(PY_FREE_PATHS))
def test_any_free_wakes_a_python_waiter(make_server, path):
    """No module waiter: whatever freed the lock, a python-redis-lock waiter blocked in BLPOP
    wakes at once (the module pushes the signal) instead of at its 10 s BLPOP timeout."""
    protocol = PY_FREE_PATHS[path]
    s = make_server("signal-expire", SIGNAL_EXPIRE)
    c = s.client(protocol=protocol)
    ttl = ["PX", "300"] if path == "expiry" else ["EX", "100"]
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder", *ttl)
    py = python_waiter(s, "n", protocol)
    _free_for_python(c, path)
    ok, token, _ = py.result(timeout=4)
    assert ok is True
    assert py.elapsed < 4, py.elapsed
    assert c.get("lock:n") == token


@pytest.mark.parametrize("protocol", [2, 3])
def test_python_release_wakes_one_python_waiter_as_without_the_module(server, protocol):
    """python-redis-lock's release script pushes one signal, which wakes one of its BLPOP
    waiters. The module also sees the lock freed by a foreign DEL, and must not push a second
    signal for it: on Redis 7.0 its settle step runs after the woken waiter has popped the first
    one, so the list no longer shows it (python-redis-lock alone wakes one waiter per release)."""
    c = server.client(protocol=protocol)
    holder = redis_lock.Lock(c, "n", expire=100)
    assert holder.acquire(blocking=False)

    def blpop(conn):
        return conn.blpop(["lock-signal:n"], timeout=5)

    sleepers = [Background(server, blpop, protocol=protocol, label=f"blpop {i}").start()
                for i in range(2)]
    wait_until(lambda: all(blpop_waiting(c, w.client_id) for w in sleepers),
               message="both in BLPOP")
    holder.release()
    wait_until(lambda: any(w.done.is_set() for w in sleepers), timeout=3,
               message="a waiter woken by the release")
    for _ in range(5):
        c.ping()  # a 0 ms timer or post-notification job of the module has run by now
    time.sleep(0.2)  # the assertion window: no second wake-up
    woken = [w for w in sleepers if w.done.is_set()]
    assert len(woken) == 1, [w.reply for w in woken]
    assert c.exists("lock:n") == 0
    c.lpush("lock-signal:n", 1)  # let the other one go
    for w in sleepers:
        w.result(timeout=3)


@pytest.mark.parametrize("flush", [["FLUSHDB"], ["FLUSHALL"], ["FLUSHDB", "ASYNC"]])
def test_flush_leaves_the_database_empty(server, flush):
    """A flush frees every lock but pushes no signal: the database stays empty, as users expect
    of FLUSHDB (python waiters wake at their own BLPOP timeout, as with python-redis-lock)."""
    c = server.client()
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder", "EX", "100")
    c.execute_command("LOCK.ACQUIRE", "m", "ID", "holder")
    c.execute_command(*flush)
    # Let any settle step (post-notification job or 0 ms timer) run: a few round trips.
    for _ in range(5):
        c.ping()
    time.sleep(0.05)
    assert c.dbsize() == 0


@pytest.mark.parametrize("path", ["del", "unlink", "getdel", "pexpire-0", "rename", "move",
                                  "eval-del", "multi-del", "expiry"])
def test_any_free_without_waiters_pushes_the_signal(make_server, path):
    s = make_server("signal-expire", SIGNAL_EXPIRE)
    c = s.client(protocol=3)
    ttl = ["PX", "200"] if path == "expiry" else []
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder", *ttl)
    _free_for_python(c, path)
    wait_until(lambda: c.exists("lock-signal:n"), timeout=3, message="signal pushed")
    assert c.exists("lock:n") == 0
    assert_signalled(c, b"n", SIGNAL_EXPIRE)


@pytest.mark.parametrize("path", ["del", "expiry"])
def test_free_replaces_a_non_list_signal_key(make_server, path):
    """Contract: where nobody can be answered (expiry, a foreign DEL, ...) a non-list signal
    key is replaced, as python's scripts do (DEL, LPUSH 1, PEXPIRE)."""
    s = make_server("signal-expire", SIGNAL_EXPIRE)
    c = s.client(protocol=3)
    ttl = ["PX", "200"] if path == "expiry" else []
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder", *ttl)
    c.set("lock-signal:n", "not a list")
    _free_for_python(c, path)
    wait_until(lambda: c.exists("lock:n") == 0, timeout=3, message="lock freed")
    wait_until(lambda: c.type("lock-signal:n") == b"list", timeout=3,
               message=f"lock-signal:n replaced by a list (type now {c.type('lock-signal:n')!r})")
    assert_signalled(c, b"n", SIGNAL_EXPIRE)


# ---------------------------------------------------------------------------
# role change: every waiter is answered UNBLOCKED


def test_role_change_unblocks_every_waiter_of_every_lock(make_server):
    """RESP2 and RESP3 waiters, with and without TIMEOUT, on a lock without expiry and on one
    whose deadline timer is armed: all answered UNBLOCKED, none left blocked, and the timer
    firing later on the now-replica grants nothing and does not crash it.
    (test_replication.py covers the single-waiter and failover cases.)"""
    a = make_server()
    b = make_server()
    ca = a.client(protocol=3)
    ca.execute_command("LOCK.ACQUIRE", "n1", "ID", "holder")
    ca.execute_command("LOCK.ACQUIRE", "n2", "ID", "holder", "PX", "400")  # deadline timer
    ws = [
        acquire_bg(a, "n1", "ID", "a", protocol=2, label="a"),
        acquire_bg(a, "n1", "ID", "b", "TIMEOUT", "30", protocol=3, label="b"),
        acquire_bg(a, "n2", "ID", "c", "PX", "1000", protocol=2, label="c"),
        acquire_bg(a, "n2", "ID", "d", protocol=3, label="d"),
    ]
    wait_until(lambda: waiters(ca, "n1") == 2 and waiters(ca, "n2") == 2,
               message="4 waiters queued")
    t0 = time.monotonic()
    assert ca.execute_command("REPLICAOF", "127.0.0.1", b.port) in (True, b"OK")
    for w in ws:
        w.join(timeout=5)
        assert w.error is not None, (w.label, w.reply)
        assert error_code(w.error) == "UNBLOCKED", (w.label, w.error)
        assert w.t1 - t0 < 3, (w.label, w.t1 - t0)
    assert waiters(ca, "n1") == 0 and waiters(ca, "n2") == 0
    assert int(ca.info("clients")["blocked_clients"]) == 0
    # past n2's deadline the (now replica) server must not grant, signal or crash
    time.sleep(0.6)
    assert ca.ping() is True
    assert int(ca.info("clients")["blocked_clients"]) == 0


# ---------------------------------------------------------------------------
# MODULE UNLOAD


def _modules(c):
    out = []
    for m in c.execute_command("MODULE", "LIST"):
        if isinstance(m, dict):
            d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in m.items()}
        else:
            d = {m[i].decode(): m[i + 1] for i in range(0, len(m), 2)}
        out.append(d["name"].decode() if isinstance(d["name"], bytes) else d["name"])
    return out


def test_module_unload_with_waiters_is_refused(server, protocol):
    c = server.client(protocol=protocol)
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder")
    c.execute_command("LOCK.ACQUIRE", "m", "ID", "holder")
    wn = acquire_bg(server, "n", "ID", "wn", protocol=2, label="wn")
    wm = acquire_bg(server, "m", "ID", "wm", "TIMEOUT", "30", protocol=3, label="wm")
    wait_waiters(c, "n", 1)
    wait_waiters(c, "m", 1)
    with pytest.raises(redis.ResponseError):
        c.execute_command("MODULE", "UNLOAD", "lock")
    assert "lock" in _modules(c)
    assert wn.is_running() and wm.is_running()
    assert waiters(c, "n") == 1 and waiters(c, "m") == 1
    # the waiters are still served afterwards
    assert c.execute_command("LOCK.RELEASE", "n", "holder") == b"OK"
    assert wn.result() == b"wn"
    assert c.execute_command("LOCK.RESET", "m") == 1
    assert wm.result() == b"wm"
    assert c.get("lock:n") == b"wn" and c.get("lock:m") == b"wm"


def test_module_unload_without_waiters_then_reload(server, protocol):
    c = server.client(protocol=protocol)
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder")
    w = acquire_bg(server, "n", "ID", "w", "TIMEOUT", "30", protocol=protocol)
    wait_waiters(c, "n", 1)
    assert c.execute_command("LOCK.RELEASE", "n", "holder") == b"OK"
    assert w.result() == b"w"
    assert c.execute_command("MODULE", "UNLOAD", "lock") in (True, b"OK")
    assert "lock" not in _modules(c)
    with pytest.raises(redis.ResponseError):
        c.execute_command("LOCK.OWNER", "n")
    # the keyspace is untouched: python-redis-lock keeps working on it
    assert c.get("lock:n") == b"w"
    c.delete("lock:n")  # no module: nothing to grant or signal
    assert c.exists("lock-signal:n") == 0
    assert c.execute_command("MODULE", "LOAD", server.module_path) in (True, b"OK")
    assert c.execute_command("LOCK.ACQUIRE", "n", "ID", "again") == b"again"
    w2 = acquire_bg(server, "n", "ID", "w2", protocol=protocol)
    wait_waiters(c, "n", 1)
    assert c.delete("lock:n") == 1
    assert w2.result(timeout=5) == b"w2"


def test_module_unload_with_a_pending_deadline_never_crashes(server):
    """The holder has PX 400 and a waiter that times out first: the lock's deadline timer may
    still be pending when UNLOAD comes. UNLOAD is refused or succeeds; the server survives
    the old deadline either way, and UNLOAD succeeds once nothing is pending."""
    c = server.client(protocol=3)
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder", "PX", "400")
    w = acquire_bg(server, "n", "ID", "w", "TIMEOUT", "0.1", protocol=3)
    assert w.result() is None
    try:
        c.execute_command("MODULE", "UNLOAD", "lock")
        unloaded = True
    except redis.ResponseError:
        unloaded = False
    time.sleep(0.5)  # past the deadline: a stray timer would fire now
    assert c.ping() is True
    if not unloaded:
        def try_unload():
            try:
                return c.execute_command("MODULE", "UNLOAD", "lock") in (True, b"OK")
            except redis.ResponseError:
                return False
        wait_until(try_unload, timeout=5, interval=0.05, message="MODULE UNLOAD succeeds")
    assert "lock" not in _modules(c)
    assert c.ping() is True
    assert c.execute_command("MODULE", "LOAD", server.module_path) in (True, b"OK")
    assert lock_info(c, "n")["waiters"] == 0


# ---------------------------------------------------------------------------
# issue 15 finding 3: a SET whose expiry is already past deletes the lock at once (lazily, when
# next read). Redis 7.0 drops an `expired` event raised inside the module's own notification
# callback, so the module must not read the key there.

PAST_EXPIRY = {
    "pxat-past": lambda c: c.execute_command("SET", "lock:n", "intruder", "PXAT", "1000"),
    "exat-1": lambda c: c.execute_command("SET", "lock:n", "intruder", "EXAT", "1"),
}


@pytest.mark.parametrize("how", sorted(PAST_EXPIRY), ids=sorted(PAST_EXPIRY))
def test_set_with_past_expiry_grants_the_next_waiter(server, protocol, how):
    c = server.client(protocol=protocol)
    c.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")  # only the module can notice
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder")
    w1 = acquire_bg(server, "n", "ID", "w1", protocol=protocol, label="w1")
    wait_waiters(c, "n", 1)
    w2 = acquire_bg(server, "n", "ID", "w2", protocol=protocol, label="w2")
    wait_waiters(c, "n", 2)
    assert PAST_EXPIRY[how](c) in (True, b"OK")
    assert w1.result(timeout=5) == b"w1"
    assert c.get("lock:n") == b"w1"
    assert waiters(c, "n") == 1
    assert w2.is_running()
    assert c.execute_command("LOCK.RELEASE", "n", "w1") == b"OK"
    assert w2.result(timeout=5) == b"w2"


@pytest.mark.parametrize("how", sorted(PAST_EXPIRY), ids=sorted(PAST_EXPIRY))
def test_set_with_past_expiry_without_module_waiters_signals(server, protocol, how):
    """The module granted the lock, nobody waits in the module: python waiters are signalled
    (their BLPOP returns) and the lock is free."""
    c = server.client(protocol=protocol)
    c.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder")
    py = python_waiter(server, "n", protocol, timeout=20)
    t0 = time.time()
    assert PAST_EXPIRY[how](c) in (True, b"OK")
    ok, py_id, at = py.result(timeout=10)
    assert ok is True
    assert at - t0 < 5, "python waiter woke only at its BLPOP timeout"
    assert c.get("lock:n") == py_id
