"""Blocking acquire vs. redis-py's socket timeout and retries, lost replies, FIFO order,
expiry hand-off and the less common client shapes (single connection, strict=False)."""

import threading
import time

import pytest
import redis

import redis_lock_native as rl
from harness import waiters, wait_waiters
from helpers import Call, cmd_calls, owner, plain_client


def test_blocking_acquire_outlives_socket_timeout(server, protocol):
    c = server.client(protocol=protocol)
    holder = rl.Lock(c, "n")
    assert holder.acquire()
    # redis-py's own defaults (retries on) but a socket timeout far below the wait
    waiter = rl.Lock(plain_client(server, protocol, socket_timeout=0.25), "n")
    call = Call(waiter.acquire, "waiter")
    wait_waiters(c, "n", 1)
    time.sleep(0.8)
    assert call.running() and waiters(c, "n") == 1
    holder.release()
    assert call.result() is True
    assert owner(c, "n") == waiter.id
    assert cmd_calls(c, "lock.acquire") == 2  # one command for the whole wait: FIFO place kept


def test_timeout_longer_than_socket_timeout(server):
    c = server.client()
    assert rl.Lock(c, "n").acquire()
    waiter = rl.Lock(plain_client(server, socket_timeout=0.25), "n")
    t0 = time.monotonic()
    assert waiter.acquire(timeout=1) is False
    assert 0.9 <= time.monotonic() - t0 < 1.6
    assert cmd_calls(c, "lock.acquire") == 2
    assert waiters(c, "n") == 0


def test_fifo_kept_despite_short_socket_timeout(server):
    c = server.client()
    holder = rl.Lock(c, "n")
    assert holder.acquire()
    order = []

    def take(label, socket_timeout):
        lock = rl.Lock(plain_client(server, socket_timeout=socket_timeout), "n")
        assert lock.acquire(timeout=5)
        order.append(label)
        lock.release()
        return True

    # the first waiter's socket timeout is much shorter: re-queueing on it would let the second pass
    first = Call(lambda: take("first", 0.2), "first")
    wait_waiters(c, "n", 1)
    second = Call(lambda: take("second", 3), "second")
    wait_waiters(c, "n", 2)
    time.sleep(0.6)
    holder.release()
    assert first.result() and second.result()
    assert order == ["first", "second"]


def test_forever_wait_in_chunks(server):
    class Chunky(rl.Lock):
        _wait_chunk = 0.2

    c = server.client()
    holder = rl.Lock(c, "n")
    assert holder.acquire()
    waiter = Chunky(plain_client(server, socket_timeout=0.3), "n")
    call = Call(waiter.acquire, "chunky")
    wait_waiters(c, "n", 1)
    time.sleep(0.7)
    holder.release()
    assert call.result() is True and owner(c, "n") == waiter.id
    assert cmd_calls(c, "lock.acquire") >= 4  # re-issued every 0.2 s
    waiter.release()
    assert holder.acquire()
    t0 = time.monotonic()
    assert Chunky(plain_client(server, socket_timeout=0.3), "n").acquire(timeout=1) is False
    assert 0.9 <= time.monotonic() - t0 < 1.6


def test_no_chunks_without_socket_timeout(server):
    class Chunky(rl.Lock):
        _wait_chunk = 0.1

    c = server.client()
    holder = rl.Lock(c, "n")
    assert holder.acquire()
    waiter = Chunky(plain_client(server, socket_timeout=None), "n")
    call = Call(waiter.acquire, "waiter")
    wait_waiters(c, "n", 1)
    time.sleep(0.4)
    holder.release()
    assert call.result() is True
    assert cmd_calls(c, "lock.acquire") == 2


def _lossy_pool(server, protocol, exc):
    """A pool whose connections lose the reply of the next LOCK.ACQUIRE that got the lock."""

    class Lossy(redis.Connection):
        fail_with = exc
        last = None

        def send_command(self, *args, **kw):
            self.last = args[0] if args else None
            return super().send_command(*args, **kw)

        def read_response(self, *args, **kw):
            reply = super().read_response(*args, **kw)
            if Lossy.fail_with is not None and self.last == "LOCK.ACQUIRE" and reply is not None:
                error, Lossy.fail_with = Lossy.fail_with, None
                self.disconnect()
                raise error("simulated: reply lost after the grant")
            return reply

    # redis-py's default retry policy stays on (3 retries)
    return redis.ConnectionPool(connection_class=Lossy, host="127.0.0.1", port=server.port,
                                protocol=protocol, socket_timeout=5), Lossy


@pytest.mark.parametrize("exc", [redis.TimeoutError, redis.ConnectionError])
@pytest.mark.parametrize("blocking", [True, False])
def test_lost_grant_reply_is_recovered_not_resent(server, protocol, exc, blocking):
    c = server.client(protocol=protocol)
    pool, lossy = _lossy_pool(server, protocol, exc)
    lock = rl.Lock(redis.Redis(connection_pool=pool), "n", expire=30)
    assert lock.acquire(blocking=blocking) is True
    assert lossy.fail_with is None  # the reply really was dropped
    assert owner(c, "n") == lock.id
    assert cmd_calls(c, "lock.acquire") == 1  # a retried acquire would be a second waiter / ALREADYACQUIRED
    lock.release()
    pool.disconnect()


def test_interrupted_acquire_gives_the_lock_back(server):
    c = server.client()
    pool, lossy = _lossy_pool(server, 3, KeyboardInterrupt)
    lock = rl.Lock(redis.Redis(connection_pool=pool), "n")
    with pytest.raises(KeyboardInterrupt):
        lock.acquire()
    assert lossy.fail_with is None
    assert c.exists("lock:n") == 0  # granted, then released again: not left held by nobody
    assert cmd_calls(c, "lock.acquire") == 1
    pool.disconnect()


def test_waiter_connection_killed_is_not_resent(server, protocol):
    c = server.client(protocol=protocol)
    holder = rl.Lock(c, "n")
    assert holder.acquire()
    waiter = rl.Lock(plain_client(server, protocol), "n")  # redis-py default retries
    call = Call(waiter.acquire, "waiter")
    wait_waiters(c, "n", 1)
    blocked = [cl for cl in c.client_list() if cl.get("cmd") == "lock.acquire"]
    assert len(blocked) == 1
    c.client_kill_filter(_id=blocked[0]["id"])
    with pytest.raises(redis.ConnectionError):
        call.result()
    assert waiters(c, "n") == 0  # a re-sent acquire would be queued again
    # The holder's acquire and the killed one. Redis 7.0 counts a blocked command when it
    # blocks; 8.2 and Valkey only when it completes, and the killed one never does.
    assert cmd_calls(c, "lock.acquire") in (1, 2)
    holder.release()
    assert c.exists("lock:n") == 0  # nobody was granted the lock behind our back


def test_expiry_hands_lock_to_waiter(server):
    c = server.client(protocol=3)
    crashed = rl.Lock(c, "n", expire=1)
    assert crashed.acquire()
    t0 = time.monotonic()
    waiter = rl.Lock(server.client(protocol=2), "n")
    assert waiter.acquire() is True
    assert 0.8 <= time.monotonic() - t0 < 1.5  # at the deadline, not at some polling timeout
    assert owner(c, "n") == waiter.id


def test_single_connection_client(server, protocol):
    c = server.client(protocol=protocol)
    single = plain_client(server, protocol, single_connection_client=True)
    a = rl.Lock(single, "n", expire=10)
    assert a.acquire()
    with pytest.raises(rl.AlreadyAcquired):
        a.acquire(blocking=False)
    b = rl.Lock(c, "n")
    assert b.acquire(blocking=False) is False
    threading.Timer(0.2, a.release).start()
    assert rl.Lock(single, "m").acquire(blocking=False)
    assert b.acquire(timeout=3) is True
    assert single.ping()


def test_non_strict_client_wrapper(server, protocol):
    """strict=False with an object that is not a redis.Redis: plain execute_command calls."""

    class Wrapper:
        def __init__(self, inner):
            self.inner = inner

        def execute_command(self, *args, **kw):
            return self.inner.execute_command(*args, **kw)

        def exists(self, *names):
            return self.inner.exists(*names)

    c = server.client(protocol=protocol)
    w = Wrapper(c)
    a = rl.Lock(w, "n", strict=False, expire=10)
    assert a.acquire(blocking=False) and a.locked() and a.get_owner_id() == a.id
    with pytest.raises(rl.AlreadyAcquired):
        a.acquire()
    b = rl.Lock(w, "n", strict=False, expire=10)
    assert b.acquire(blocking=False) is False
    threading.Timer(0.2, a.release).start()
    assert b.acquire(timeout=3) is True
    b.extend(5)
    b.release()
    with pytest.raises(rl.NotAcquired):
        b.release()
    rl.reset_all(w)
