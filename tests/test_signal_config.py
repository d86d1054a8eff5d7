"""The `signal` config (commands.md, Configuration): `yes` by default; `no` skips
python-redis-lock's signal list; a lock written by a non-module command while `no` is counted
in INFO lock and logged once."""

import redis_lock

from harness import acquire_bg, assert_signalled, wait_until, wait_waiters
from test_commands import config_get


def foreign_count(c) -> int:
    return int(c.info("lock")["lock_foreign_locks_without_signal"])


def warnings_in_log(server) -> int:
    with open(server.log_path, "rb") as f:
        return f.read().count(b"lock.signal is no")


def test_signal_defaults_to_yes_and_release_signals(server, protocol):
    c = server.client(protocol=protocol)
    assert config_get(c, "lock.signal") == b"yes"
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "a")
    assert c.execute_command("LOCK.RELEASE", "n", "a") == b"OK"
    assert_signalled(c, b"n")


def test_signal_no_writes_only_the_del(make_server, protocol):
    s = make_server("signal", "no")
    c = s.client(protocol=protocol)
    assert config_get(c, "lock.signal") == b"no"
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "a")
    assert c.execute_command("LOCK.RELEASE", "n", "a") == b"OK"
    assert c.exists("lock:n", "lock-signal:n") == 0
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "b")
    assert c.execute_command("LOCK.RESET", "n") == 1
    assert c.exists("lock:n", "lock-signal:n") == 0
    # expiry with nobody waiting: freed, not signalled
    c.execute_command("LOCK.ACQUIRE", "e", "ID", "x", "PX", "50")
    wait_until(lambda: c.exists("lock:e") == 0, message="lock:e expired")
    assert c.exists("lock-signal:e") == 0
    assert c.dbsize() == 0
    # the module's own locks are not "foreign"
    assert foreign_count(c) == 0


def test_signal_no_still_hands_over_to_module_waiters(make_server, protocol):
    s = make_server("signal", "no")
    c = s.client(protocol=protocol)
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder", "PX", "100")
    w1 = acquire_bg(s, "n", "ID", "w1", protocol=protocol, label="w1")
    wait_waiters(c, "n", 1)
    w2 = acquire_bg(s, "n", "ID", "w2", protocol=protocol, label="w2")
    wait_waiters(c, "n", 2)
    assert w1.result(timeout=5) == b"w1"  # expiry hand-off
    assert c.execute_command("LOCK.RELEASE", "n", "w1") == b"OK"
    assert w2.result(timeout=5) == b"w2"  # release hand-off
    assert c.execute_command("LOCK.RELEASE", "n", "w2") == b"OK"
    assert c.dbsize() == 0


def test_foreign_lock_while_signal_no_is_counted_and_logged_once(server, protocol):
    c = server.client(protocol=protocol)
    assert c.execute_command("CONFIG", "SET", "lock.signal", "no") in (True, b"OK")
    assert foreign_count(c) == 0
    lock = redis_lock.Lock(server.client(protocol=protocol), "py1", expire=30)
    assert lock.acquire(blocking=False)
    assert foreign_count(c) == 1
    assert c.set("lock:py2", "someone", nx=True) is True
    assert foreign_count(c) == 2
    assert warnings_in_log(server) == 1
    # an unrelated key is not counted; with signal back on nothing is counted
    c.set("other", "x")
    assert c.execute_command("CONFIG", "SET", "lock.signal", "yes") in (True, b"OK")
    assert c.set("lock:py3", "someone", nx=True) is True
    assert foreign_count(c) == 2
    # back on: python's own release signals as usual
    lock.release()
    assert c.exists("lock:py1") == 0


def test_foreign_lock_is_counted_when_loaded_with_signal_no(make_server, protocol):
    """Loaded with `signal no` (the module listens to key creation from its load on), a lock
    another command creates without expiry is counted at once, and only locks are."""
    s = make_server("signal", "no")
    c = s.client(protocol=protocol)
    lock = redis_lock.Lock(s.client(protocol=protocol), "py1")  # no expiry: SET NX only
    assert lock.acquire(blocking=False)
    c.set("other", "x")
    assert foreign_count(c) == 1
    assert warnings_in_log(s) == 1
    lock.release()


def test_signal_rejects_a_non_boolean(server):
    c = server.client()
    try:
        c.execute_command("CONFIG", "SET", "lock.signal", "maybe")
    except Exception as e:  # redis.ResponseError
        assert "lock.signal" in str(e) or "argument" in str(e).lower() or "ERR" in str(e)
    else:
        raise AssertionError("CONFIG SET lock.signal maybe was accepted")
    assert config_get(c, "lock.signal") == b"yes"
