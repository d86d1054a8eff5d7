"""session=True (both drop-ins) and fence=True in the asyncio drop-in."""

import subprocess
import sys
import time

import pytest

import redis_lock_native as rl
import redis_lock_native.asyncio as arl
from async_helpers import arun, async_client
from harness import lock_info, wait_until

HOLDER = """
import sys, time, redis, redis_lock_native as rl
lock = rl.Lock(redis.Redis(port=int(sys.argv[1])), "x", expire=60, session=True)
assert lock.acquire()
print("held", flush=True)
time.sleep(3600)
"""


def test_session_lock_lives_on_its_own_pool_connection(server, c):
    conn = server.client()
    lock = rl.Lock(conn, "x", expire=1, session=True)
    assert lock.acquire()
    bound = lock_info(c, "x")["session"]
    assert bound is not None and bound != conn.client_id()
    assert len(conn.connection_pool._in_use_connections) == 1, "kept out of the pool while held"
    time.sleep(1.5)  # longer than expire: the server renews the lease
    assert lock.locked() and lock.get_owner_id() == lock.id
    lock.release()
    assert len(conn.connection_pool._in_use_connections) == 0, "given back at release"
    assert lock_info(c, "x")["owner"] is None


def test_a_killed_process_frees_its_session_lock_at_once(server, c):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(server.port)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    assert lock_info(c, "x")["session"] is not None
    waiter = rl.Lock(server.client(), "x", expire=60)
    proc.kill()
    proc.wait()
    t0 = time.monotonic()
    assert waiter.acquire(timeout=10)
    assert time.monotonic() - t0 < 1.0
    waiter.release()


def test_session_needs_a_redis_client(c):
    class Other:
        def execute_command(self, *args):
            raise AssertionError("not reached")
    with pytest.raises(ValueError):
        rl.Lock(Other(), "x", session=True, strict=False).acquire()


def test_asyncio_session_and_fence(server, c):
    async def scenario():
        async with async_client(server) as r:
            lock = arl.Lock(r, "x", expire=1, session=True, fence=True)
            assert await lock.acquire()
            info = lock_info(c, "x")
            assert info["session"] is not None and info["fence"] == lock.token
            first = lock.token
            await __import__("asyncio").sleep(1.5)
            assert await lock.get_owner_id() == lock.id, "renewed by the server"
            await lock.release()
            assert lock_info(c, "x")["session"] is None and lock._session_conn is None
            assert await lock.acquire(blocking=False)
            assert lock.token > first
            # The session connection closing frees it (as a crashed process would).
            await lock._session_conn.disconnect()
            wait_until(lambda: lock_info(c, "x")["owner"] is None, timeout=2, message="freed")
            plain = arl.Lock(r, "y")
            assert await plain.acquire() and plain.token is None
            await plain.release()
    arun(scenario())
