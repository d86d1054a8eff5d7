"""Lock(..., fence=True): lock.token is the grant's fencing token (an int, strictly increasing
per lock, after waiting too); None for a Lock made without fence. Nothing else changes."""

import redis_lock_native as rl
from harness import Background, lock_info, wait_waiters


def test_token_after_each_acquire(c):
    lock = rl.Lock(c, "n", expire=30, fence=True)
    assert lock.token is None, "no token before the first acquire"
    tokens = []
    for _ in range(3):
        assert lock.acquire()
        assert isinstance(lock.token, int) and lock.token > 0
        assert c.get("lock-fence:n") == str(lock.token).encode()
        assert lock.get_owner_id() == lock.id
        tokens.append(lock.token)
        lock.release()
    assert tokens == sorted(set(tokens))
    with rl.Lock(c, "n", fence=True) as other:
        assert other.token > tokens[-1]
        assert lock_info(c, "n")["fence"] == other.token


def test_without_fence_token_is_none_and_the_fence_key_untouched(c):
    with rl.Lock(c, "n", fence=True) as first:
        token = first.token
    lock = rl.Lock(c, "n", expire=5)
    assert lock.acquire(blocking=False)
    assert lock.token is None
    assert c.get("lock-fence:n") == str(token).encode()
    lock.release()


def test_token_of_a_grant_after_waiting(server, c):
    holder = rl.Lock(c, "n", fence=True)
    assert holder.acquire()
    waiter = rl.Lock(server.client(), "n", fence=True)
    bg = Background(server, lambda conn: waiter.acquire(timeout=10), label="waiter").start()
    wait_waiters(c, "n", 1)
    holder.release()
    assert bg.result() is True
    assert waiter.token > holder.token
    waiter.release()


def test_non_blocking_busy_leaves_token_unset(c):
    with rl.Lock(c, "n", fence=True):
        other = rl.Lock(c, "n", fence=True)
        assert other.acquire(blocking=False) is False
        assert other.token is None
