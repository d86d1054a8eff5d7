"""Mixed fleets: python-redis-lock 4.0.1 clients and LOCK.* clients on the same locks."""

import redis_lock

from harness import Background, acquire_bg, assert_pttl, wait_until, wait_waiters


def blpop_waiting(c, client_id) -> bool:
    for cl in c.client_list():
        if str(cl.get("id")) == str(client_id) and cl.get("cmd") == "blpop":
            return True
    return False


def test_python_lock_seen_and_released_by_module(server, protocol):
    c = server.client(protocol=protocol)
    lock = redis_lock.Lock(c, "n", expire=30)
    assert lock.acquire(blocking=False)
    token = lock.id.encode() if isinstance(lock.id, str) else lock.id
    assert c.execute_command("LOCK.OWNER", "n") == token
    assert c.execute_command("LOCK.ACQUIRE", "n", "NOWAIT") is None
    assert c.execute_command("LOCK.RELEASE", "n", token) == b"OK"
    assert not lock.locked()
    assert c.lrange("lock-signal:n", 0, -1) == [b"1"]


def test_module_lock_seen_and_released_by_python(server, protocol):
    c = server.client(protocol=protocol)
    token = c.execute_command("LOCK.ACQUIRE", "n", "EX", "10")
    assert redis_lock.Lock(c, "n").locked()
    assert redis_lock.Lock(c, "n").get_owner_id() in (token, token.decode())
    assert not redis_lock.Lock(c, "n").acquire(blocking=False)
    redis_lock.Lock(c, "n", id=token.decode()).release()
    assert c.exists("lock:n") == 0
    assert c.lrange("lock-signal:n", 0, -1) == [b"1"]


def test_module_lock_extended_by_python(server, protocol):
    c = server.client(protocol=protocol)
    token = c.execute_command("LOCK.ACQUIRE", "n", "EX", "5")
    redis_lock.Lock(c, "n", id=token.decode(), expire=5).extend(40)
    assert_pttl(c, "lock:n", 40000)


def test_python_waiter_woken_by_module_release(server, protocol):
    c = server.client(protocol=protocol)
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder")
    py = Background(server, lambda conn: redis_lock.Lock(conn, "n").acquire(timeout=8),
                    protocol=protocol, label="python").start()
    wait_until(lambda: blpop_waiting(c, py.client_id), message="python waiter in BLPOP")
    assert c.execute_command("LOCK.RELEASE", "n", "holder") == b"OK"
    assert py.result() is True
    assert py.elapsed < 5, py.elapsed  # woken by the signal, not by its BLPOP timeout
    assert c.get("lock:n") not in (None, b"holder")


def test_python_waiter_woken_by_module_lock_expiry(server, protocol):
    """python-redis-lock never signals an expiry; with the module loaded it is signalled."""
    c = server.client(protocol=protocol)
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder", "PX", "300")
    py = Background(server, lambda conn: redis_lock.Lock(conn, "n").acquire(timeout=8),
                    protocol=protocol, label="python").start()
    assert py.result() is True
    assert py.elapsed < 5, py.elapsed
    assert c.get("lock:n") not in (None, b"holder")


def test_python_reset_hands_over_to_module_waiter(server, protocol):
    c = server.client(protocol=protocol)
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder")
    w = acquire_bg(server, "n", "ID", "w", protocol=protocol)
    wait_waiters(c, "n", 1)
    redis_lock.Lock(c, "n").reset()
    assert w.result(timeout=5) == b"w"
    assert c.get("lock:n") == b"w"


def test_python_reset_all_hands_over_to_module_waiter(server, protocol):
    c = server.client(protocol=protocol)
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder")
    c.execute_command("LOCK.ACQUIRE", "m", "ID", "holder")
    w = acquire_bg(server, "n", "ID", "w", protocol=protocol)
    wait_waiters(c, "n", 1)
    redis_lock.reset_all(c)
    assert w.result(timeout=5) == b"w"
    assert c.get("lock:n") == b"w"
    assert c.exists("lock:m") == 0


def test_python_release_hands_over_to_module_waiter_no_barging(server, protocol):
    """A python release while a module waiter is queued: the module waiter gets the lock,
    a python acquire attempt afterwards fails (the lock is held, not free)."""
    c = server.client(protocol=protocol)
    py_lock = redis_lock.Lock(c, "n", expire=30)
    assert py_lock.acquire(blocking=False)
    w = acquire_bg(server, "n", "ID", "w", protocol=protocol)
    wait_waiters(c, "n", 1)
    py_lock.release()
    assert w.result(timeout=5) == b"w"
    assert not redis_lock.Lock(c, "n").acquire(blocking=False)
    assert c.get("lock:n") == b"w"
