"""Every public name and method of python-redis-lock 4.x, exercised on redis_lock_native
against a real server with the module (RESP2 and RESP3 clients via the `c` fixture)."""

import gc
import inspect
import logging
import re
import time

import pytest
import redis

import redis_lock
import redis_lock_native as rl
from harness import wait_waiters
from helpers import Call, cmd_calls, owner

EXCEPTIONS = ["AlreadyAcquired", "NotAcquired", "AlreadyStarted", "TimeoutNotUsable",
              "InvalidTimeout", "TimeoutTooLarge", "NotExpirable"]


# ---------------------------------------------------------------------------
# the surface


def test_public_names_mirror_python_redis_lock():
    # what python-redis-lock merely imports, and its Lua sources, are not API
    not_api = {"StrictRedis", "Union", "b64encode", "getLogger", "urandom", "threading", "weakref",
               "UNLOCK_SCRIPT", "EXTEND_SCRIPT", "RESET_SCRIPT", "RESET_ALL_SCRIPT"}
    public = {n for n in dir(redis_lock) if not n.startswith("_")} - not_api
    assert sorted(public - set(dir(rl))) == []
    assert {"Lock", "reset_all", "reset_all_script", *EXCEPTIONS} <= public  # the check is not vacuous
    for name in EXCEPTIONS:
        cls = getattr(rl, name)
        assert cls.__mro__[1:] == getattr(redis_lock, name).__mro__[1:] == (RuntimeError, Exception, BaseException, object)
    for attr in ("unlock_script", "extend_script", "reset_script", "reset_all_script", "blocking"):
        assert getattr(rl.Lock, attr) is None
    assert rl.reset_all_script is None
    assert isinstance(rl.Lock.id, property) and isinstance(rl.Lock._held, property)


@pytest.mark.parametrize("method", ["__init__", "acquire", "release", "extend", "reset", "locked",
                                    "get_owner_id", "__enter__", "__exit__", "register_scripts",
                                    "_start_lock_renewer", "_stop_lock_renewer", "_lock_renewer"])
def test_signatures_match(method):
    ours = inspect.signature(getattr(rl.Lock, method))
    if method == "__init__":
        # python-redis-lock's parameters, in its order, plus trailing additions: fence, session
        params = list(ours.parameters.values())
        assert [(p.name, p.default) for p in params[-2:]] == [("fence", False), ("session", False)]
        ours = ours.replace(parameters=params[:-2])
    assert ours == inspect.signature(getattr(redis_lock.Lock, method))


def test_reset_all_signature_and_logger_names():
    assert inspect.signature(rl.reset_all) == inspect.signature(redis_lock.reset_all)
    theirs = {n: getattr(redis_lock, n).name for n in dir(redis_lock) if n.startswith("logger_for_")}
    ours = {n: getattr(rl, n).name for n in dir(rl) if n.startswith("logger_for_")}
    assert len(theirs) == 6
    assert ours == {n: v.replace("redis_lock", "redis_lock_native", 1) for n, v in theirs.items()}


def test_no_lua_no_polling(c):
    """A whole lifecycle uses native commands only: no script is registered or run, no BLPOP."""
    rl.Lock.register_scripts(c)
    with rl.Lock(c, "n", expire=5) as lock:
        lock.extend()
        assert lock.locked() and lock.get_owner_id() == lock.id
    rl.Lock(c, "n").reset()
    rl.reset_all(c)
    shas = ["90da91872223f85eb1376a17e3c4df21ace8c54b", "fed16109024d968d9496e4140fe1355bac05ebff",
            "afbc8014508f92e446b56567e8ba600e811c1bd5", "b121d3548d693116c3851b63befe947e49f28c7c"]
    assert c.script_exists(*shas) == [False] * 4
    for cmd in ("eval", "evalsha", "script|load", "blpop"):
        assert cmd_calls(c, cmd) == 0, cmd
    for cmd in ("lock.acquire", "lock.release", "lock.extend", "lock.owner", "lock.reset", "lock.resetall"):
        assert cmd_calls(c, cmd) >= 1, cmd
    assert rl.Lock.unlock_script is None


# ---------------------------------------------------------------------------
# constructor


def test_constructor_validation(c):
    with pytest.raises(ValueError, match="StrictRedis"):
        rl.Lock(object(), "n")
    assert rl.Lock(object(), "n", strict=False).id
    with pytest.raises(ValueError, match="auto_renewal"):
        rl.Lock(c, "n", auto_renewal=True)
    with pytest.raises(ValueError, match="negative"):
        rl.Lock(c, "n", expire=-1)
    with pytest.raises(TypeError, match="Incorrect type for `id`"):
        rl.Lock(c, "n", id=5)
    with pytest.raises(TypeError):
        rl.Lock(c, b"n")  # python-redis-lock concatenates 'lock:' + name
    assert c.keys() == []


def test_constructor_values(c):
    assert rl.Lock(c, "n", expire="7")._expire == 7
    assert rl.Lock(c, "n", expire=2.9)._expire == 2
    assert rl.Lock(c, "n", expire=0)._expire is None
    assert rl.Lock(c, "n", expire=3, auto_renewal=True)._lock_renewal_interval == 2.0
    assert rl.Lock(c, "n", expire=3)._lock_renewal_interval is None
    assert rl.Lock(c, "n", id=b"abc").id == "abc"
    assert rl.Lock(c, "n", id=b"\xff\x00").id == "/wA="
    assert rl.Lock(c, "n", id="x y").id == "x y"
    ids = {rl.Lock(c, "n").id for _ in range(20)}
    assert len(ids) == 20 and all(re.fullmatch(r"[A-Za-z0-9+/]{24}", i) for i in ids)
    assert rl.Lock(c, "n").blocking is True and rl.Lock(c, "n", blocking=False).blocking is False
    lock = rl.Lock(c, "n", expire=7)
    assert lock.acquire(blocking=False)
    assert c.get("lock:n") == lock.id.encode() and 0 < c.ttl("lock:n") <= 7


# ---------------------------------------------------------------------------
# acquire


def test_acquire_non_blocking(c, caplog):
    a, b = rl.Lock(c, "n"), rl.Lock(c, "n")
    with caplog.at_level(logging.DEBUG, logger="redis_lock_native"):
        assert a.acquire(blocking=False) is True
        assert b.acquire(blocking=False) is False
    assert owner(c, "n") == a.id and c.ttl("lock:n") == -1
    records = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert ("redis_lock_native.acquire", "INFO", "Acquired Lock('lock:n').") in records
    assert ("redis_lock_native.acquire", "WARNING", "Failed to acquire Lock('lock:n').") in records


def test_acquire_blocking_waits_for_release(server, c, protocol):
    a = rl.Lock(c, "n")
    assert a.acquire()
    b = rl.Lock(server.client(protocol=protocol), "n")
    call = Call(b.acquire, "b")
    wait_waiters(c, "n", 1)
    assert call.running()
    a.release()
    assert call.result() is True
    assert owner(c, "n") == b.id


def test_acquire_timeout_gives_up(server):
    c = server.client(protocol=2)  # RESP3: the parity table's busy_timeout scenario
    a = rl.Lock(c, "n")
    assert a.acquire()
    b = rl.Lock(server.client(protocol=2), "n")
    t0 = time.monotonic()
    assert b.acquire(timeout=1) is False
    assert 0.9 <= time.monotonic() - t0 < 2.5
    assert owner(c, "n") == a.id


def test_acquire_timeout_zero_blocks_until_free(server, c, protocol):
    a = rl.Lock(c, "n")
    assert a.acquire()
    b = rl.Lock(server.client(protocol=protocol), "n")
    call = Call(lambda: b.acquire(timeout=0), "b")  # 0 == no timeout, as in python-redis-lock
    wait_waiters(c, "n", 1)
    time.sleep(0.2)
    assert call.running()
    a.release()
    assert call.result() is True


def test_already_acquired(c):
    a = rl.Lock(c, "n", expire=10)
    assert a.acquire()
    for kwargs in ({}, {"blocking": False}, {"timeout": 5},
                   # python-redis-lock checks ownership before the arguments
                   {"blocking": False, "timeout": 1}, {"timeout": -1}, {"timeout": 11}):
        with pytest.raises(rl.AlreadyAcquired):
            a.acquire(**kwargs)
    with pytest.raises(rl.AlreadyAcquired):
        rl.Lock(c, "n", id=a.id).acquire(blocking=False)  # "if you specify id the lock is held"
    assert owner(c, "n") == a.id


def test_argument_errors(c):
    with pytest.raises(rl.TimeoutNotUsable):
        rl.Lock(c, "n").acquire(blocking=False, timeout=1)
    with pytest.raises(rl.TimeoutNotUsable):
        rl.Lock(c, "n").acquire(blocking=False, timeout=0)
    with pytest.raises(rl.InvalidTimeout):
        rl.Lock(c, "n").acquire(timeout=-1)
    with pytest.raises(rl.TimeoutTooLarge):
        rl.Lock(c, "n", expire=1).acquire(timeout=2)
    assert c.keys() == []
    assert cmd_calls(c, "lock.acquire") == 0
    # with auto-renewal a timeout longer than expire is fine
    lock = rl.Lock(c, "n", expire=1, auto_renewal=True)
    assert lock.acquire(timeout=2) is True
    lock.release()


def test_server_errors_pass_through(c, make_server):
    c.rpush("lock:n", "x")
    with pytest.raises(redis.ResponseError, match="^WRONGTYPE"):
        rl.Lock(c, "n").acquire(blocking=False)
    with pytest.raises(redis.ResponseError, match="^WRONGTYPE"):
        rl.Lock(c, "n").acquire(timeout=1)
    bare = make_server(load_module=False).client()
    with pytest.raises(redis.ResponseError, match="unknown command"):
        rl.Lock(bare, "n").acquire()


# ---------------------------------------------------------------------------
# release, extend, reset


def test_release(c):
    lock = rl.Lock(c, "n", signal_expire=5000)
    with pytest.raises(rl.NotAcquired, match=re.escape("Lock(lock:n) is not acquired or it already expired.")):
        lock.release()
    assert lock.acquire()
    lock.release()
    assert c.exists("lock:n") == 0
    assert c.lrange("lock-signal:n", 0, -1) == [b"1"]
    assert 1000 < c.pttl("lock-signal:n") <= 5000  # SIGNAL-EXPIRE was passed
    with pytest.raises(rl.NotAcquired):
        lock.release()


def test_release_by_other_instance_with_same_id(c):
    a = rl.Lock(c, "n")
    assert a.acquire()
    with pytest.raises(rl.NotAcquired):
        rl.Lock(c, "n").release()
    assert owner(c, "n") == a.id
    rl.Lock(c, "n", id=a.id).release()
    assert c.exists("lock:n") == 0


def test_extend(c):
    lock = rl.Lock(c, "n", expire=100)
    with pytest.raises(rl.NotAcquired, match=re.escape("Lock lock:n is not acquired or it already expired.")):
        lock.extend()
    assert lock.acquire()
    c.expire("lock:n", 5)
    assert lock.extend() is None
    assert 98 <= c.ttl("lock:n") <= 100  # default: the constructor's expire
    lock.extend(500)
    assert 498 <= c.ttl("lock:n") <= 500
    lock.extend("9")
    assert 7 <= c.ttl("lock:n") <= 9
    lock.extend(0)  # falsy: the constructor's expire again
    assert 98 <= c.ttl("lock:n") <= 100
    with pytest.raises(ValueError, match="negative"):
        lock.extend(-1)
    c.set("lock:n", "someone-else")
    with pytest.raises(rl.NotAcquired):
        lock.extend()


def test_extend_without_expire(c):
    lock = rl.Lock(c, "n")
    with pytest.raises(TypeError, match="expire"):
        lock.extend()
    assert lock.acquire()
    with pytest.raises(rl.NotExpirable, match="Lock lock:n has no assigned expiration time"):
        lock.extend(10)
    assert c.ttl("lock:n") == -1


def test_reset(server, c, protocol):
    a = rl.Lock(c, "n")
    assert a.acquire()
    b = rl.Lock(server.client(protocol=protocol), "n")
    call = Call(b.acquire, "b")
    wait_waiters(c, "n", 1)
    assert rl.Lock(c, "n").reset() is None
    assert call.result() is True  # the waiter got the forcibly freed lock
    assert owner(c, "n") == b.id
    assert rl.Lock(c, "n", signal_expire=4000).reset() is None
    assert c.exists("lock:n") == 0
    assert c.lrange("lock-signal:n", 0, -1) == [b"1"] and 1000 < c.pttl("lock-signal:n") <= 4000
    assert rl.Lock(c, "n").reset() is None  # resetting a free lock is fine


# ---------------------------------------------------------------------------
# locked, get_owner_id, id, reset_all


def test_locked_and_owner(server, c, protocol):
    a, b = rl.Lock(c, "n"), rl.Lock(c, "n")
    assert a.locked() is False and a.get_owner_id() is None
    assert a.acquire()
    assert a.locked() is True and b.locked() is True  # true whoever holds it
    assert b.get_owner_id() == a.id and isinstance(b.get_owner_id(), str)
    c.set("lock:raw", b"\xffab")
    assert rl.Lock(c, "raw").get_owner_id() == "\ufffdab"
    text = server.client(protocol=protocol, decode_responses=True)
    assert rl.Lock(text, "n").get_owner_id() == a.id
    assert rl.Lock(text, "n").locked() is True
    t = rl.Lock(text, "t", expire=5)
    assert t.acquire(blocking=False) and t.get_owner_id() == t.id
    t.release()


def test_id_property(c):
    lock = rl.Lock(c, "n", id="mine")
    assert lock.id == "mine"
    with pytest.raises(AttributeError):
        lock.id = "other"


def test_reset_all(c):
    for name, kw in (("a", {}), ("b", {"expire": 50}), ("c", {"id": "fixed"})):
        assert rl.Lock(c, name, **kw).acquire()
    c.set("other", "1")
    c.set("lockx", "1")
    c.rpush("lock:list", "not a lock")
    assert rl.reset_all(c) is None
    assert sorted(c.keys()) == [b"lock-signal:a", b"lock-signal:b", b"lock-signal:c", b"lock:list", b"lockx", b"other"]
    for name in "abc":
        assert c.lrange(f"lock-signal:{name}", 0, -1) == [b"1"]
    assert c.get("other") == b"1"


# ---------------------------------------------------------------------------
# context manager


def test_context_manager(c):
    with rl.Lock(c, "n") as lock:
        assert isinstance(lock, rl.Lock) and owner(c, "n") == lock.id
    assert c.exists("lock:n") == 0
    with pytest.raises(ZeroDivisionError):
        with rl.Lock(c, "n"):
            1 / 0
    assert c.exists("lock:n") == 0


def test_context_manager_non_blocking_busy(c):
    holder = rl.Lock(c, "n")
    assert holder.acquire()
    with pytest.raises(rl.NotAcquired, match=re.escape("Lock(lock:n) is not acquired")):
        with rl.Lock(c, "n", blocking=False):
            pytest.fail("entered a busy lock")
    assert owner(c, "n") == holder.id


def test_context_manager_blocking_waits(server, c, protocol):
    holder = rl.Lock(c, "n")
    assert holder.acquire()
    entered = []

    def section():
        with rl.Lock(server.client(protocol=protocol), "n") as lock:
            entered.append(owner(c, "n") == lock.id)
        return True

    call = Call(section, "with")
    wait_waiters(c, "n", 1)
    assert entered == []
    holder.release()
    assert call.result() is True and entered == [True]
    assert c.exists("lock:n") == 0


def test_exit_after_lock_lost_raises_not_acquired(c):
    with pytest.raises(rl.NotAcquired):
        with rl.Lock(c, "n"):
            c.delete("lock:n")


# ---------------------------------------------------------------------------
# auto-renewal


def test_auto_renewal_keeps_lock_alive(server):
    c = server.client(protocol=3)
    lock = rl.Lock(c, "n", expire=1, auto_renewal=True)
    assert lock._lock_renewal_interval == pytest.approx(2 / 3)
    assert lock.acquire()
    thread = lock._lock_renewal_thread
    assert thread.is_alive() and thread.daemon
    deadline = time.monotonic() + 2.2  # more than two expire periods: three renewals
    while time.monotonic() < deadline:
        assert owner(c, "n") == lock.id
        time.sleep(0.05)
    lock.release()
    assert not thread.is_alive() and lock._lock_renewal_thread is None
    assert c.exists("lock:n") == 0


def test_without_auto_renewal_no_thread(c):
    lock = rl.Lock(c, "n", expire=1)
    assert lock.acquire()
    assert lock._lock_renewal_thread is None and lock._lock_renewal_interval is None
    assert 0 < c.pttl("lock:n") <= 1000
    c.delete("lock:n")  # as if it had expired
    with pytest.raises(rl.NotAcquired):
        lock.release()


def test_already_started(c):
    lock = rl.Lock(c, "n", expire=5, auto_renewal=True)
    assert lock.acquire()
    c.delete("lock:n")  # the lock is lost while the renewal thread runs
    with pytest.raises(rl.AlreadyStarted):
        lock.acquire()
    # as in python-redis-lock the lock itself was taken before the thread check
    assert owner(c, "n") == lock.id
    lock.release()
    assert lock._lock_renewal_thread is None


def test_renewal_thread_stops_when_lock_is_collected(c):
    class Fast(rl.Lock):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self._lock_renewal_interval = 0.05

    lock = Fast(c, "n", expire=1, auto_renewal=True)
    assert lock.acquire()
    thread = lock._lock_renewal_thread
    time.sleep(0.2)
    assert thread.is_alive()
    del lock
    gc.collect()
    thread.join(2)
    assert not thread.is_alive()
