"""redis_lock_native.asyncio's API against a real server (RESP2 and RESP3): what the parity table
(test_asyncio_parity.py) cannot show: coroutines, the event loop kept free while waiting, the
renewal task, the client shapes."""

import asyncio
import gc
import inspect
import logging
import time

import pytest
import redis

import redis_lock_native as rl
import redis_lock_native.asyncio as arl
from async_helpers import arun, async_client, lock_info, owner, wait_waiters
from helpers import cmd_calls

METHODS = ["acquire", "release", "extend", "reset", "locked", "get_owner_id"]


def test_surface_mirrors_the_sync_drop_in():
    for name in ("AlreadyAcquired", "NotAcquired", "AlreadyStarted", "TimeoutNotUsable",
                 "InvalidTimeout", "TimeoutTooLarge", "NotExpirable"):
        assert getattr(arl, name) is getattr(rl, name)  # the same classes, not look-alikes
        assert getattr(rl, name).__module__ == "redis_lock_native"
    for method in METHODS + ["__init__"]:
        assert inspect.signature(getattr(arl.Lock, method)) == inspect.signature(getattr(rl.Lock, method))
    for method in METHODS:
        assert inspect.iscoroutinefunction(getattr(arl.Lock, method)), method
    assert inspect.iscoroutinefunction(arl.reset_all)
    assert inspect.signature(arl.reset_all) == inspect.signature(rl.reset_all)
    for attr in ("unlock_script", "extend_script", "reset_script", "reset_all_script", "blocking"):
        assert getattr(arl.Lock, attr) is None
    assert isinstance(arl.Lock.id, property)
    ours = {n: getattr(arl, n).name for n in dir(arl) if n.startswith("logger_for_")}
    assert ours == {n: getattr(rl, n).name.replace("redis_lock_native", "redis_lock_native.asyncio", 1)
                    for n in dir(rl) if n.startswith("logger_for_")}


def test_constructor_wants_an_asyncio_client(server):
    with pytest.raises(ValueError, match="StrictRedis"):
        arl.Lock(server.client(), "n")  # a sync client would block the loop
    with pytest.raises(ValueError, match="auto_renewal"):
        arl.Lock(async_client(server), "n", auto_renewal=True)
    assert arl.Lock(object(), "n", strict=False).id


def test_lifecycle(server, protocol):
    async def body():
        async with async_client(server, protocol) as r:
            a, b = arl.Lock(r, "n", expire=10), arl.Lock(r, "n")
            assert await a.locked() is False and await a.get_owner_id() is None
            assert await a.acquire(blocking=False) is True
            assert await b.acquire(blocking=False) is False
            assert await b.locked() is True and await b.get_owner_id() == a.id
            await r.expire("lock:n", 3)
            assert await a.extend() is None and 8 <= await r.ttl("lock:n") <= 10
            await a.extend(50)
            assert 48 <= await r.ttl("lock:n") <= 50
            with pytest.raises(rl.AlreadyAcquired):
                await a.acquire(timeout=20)  # ownership is checked before the arguments
            assert await a.release() is None
            assert await r.lrange("lock-signal:n", 0, -1) == [b"1"]
            with pytest.raises(rl.NotAcquired):
                await a.release()
            with pytest.raises(rl.NotAcquired):
                await a.extend()
            assert await b.acquire() is True
            assert await arl.Lock(r, "n").reset() is None
            assert await r.exists("lock:n") == 0
            for name in "xyz":
                assert await arl.Lock(r, name).acquire(blocking=False)
            assert await arl.reset_all(r) is None
            assert sorted(await r.keys("lock:*")) == []
            assert cmd_calls_async_free(server)

    arun(body())


def cmd_calls_async_free(server):
    """Only native commands ran: no Lua, no BLPOP polling."""
    c = server.client()
    return all(cmd_calls(c, cmd) == 0 for cmd in ("eval", "evalsha", "blpop"))


def test_argument_errors_send_nothing(server):
    async def body():
        async with async_client(server) as r:
            with pytest.raises(rl.TimeoutNotUsable):
                await arl.Lock(r, "n").acquire(blocking=False, timeout=1)
            with pytest.raises(rl.InvalidTimeout):
                await arl.Lock(r, "n").acquire(timeout=-1)
            with pytest.raises(rl.TimeoutTooLarge):
                await arl.Lock(r, "n", expire=1).acquire(timeout=2)
            with pytest.raises(TypeError, match="expire"):
                await arl.Lock(r, "n").extend()
            with pytest.raises(ValueError, match="negative"):
                await arl.Lock(r, "n", expire=5).extend(-1)
            assert await r.keys() == []

    arun(body())
    assert cmd_calls(server.client(), "lock.acquire") == 0


def test_server_errors_pass_through(server, make_server):
    bare = make_server(load_module=False)

    async def body():
        async with async_client(server) as r, async_client(bare) as b:
            await r.rpush("lock:n", "x")
            with pytest.raises(redis.ResponseError, match="^WRONGTYPE"):
                await arl.Lock(r, "n").acquire(blocking=False)
            with pytest.raises(redis.ResponseError, match="^WRONGTYPE"):
                await arl.Lock(r, "n").acquire(timeout=1)
            with pytest.raises(redis.ResponseError, match="unknown command"):
                await arl.Lock(b, "n").acquire()
            with pytest.raises(rl.NotExpirable):
                lock = arl.Lock(r, "m")
                assert await lock.acquire()
                await lock.extend(5)

    arun(body())


def test_blocking_acquire_leaves_the_loop_free(server, protocol):
    """While one task waits for the lock, other tasks of the same loop run (a sync blocking call
    would freeze the ticker) and the pool's connections stay free for them."""

    async def body():
        async with async_client(server, protocol) as r:
            holder = arl.Lock(r, "n")
            assert await holder.acquire()
            waiter = arl.Lock(r, "n")
            task = asyncio.create_task(waiter.acquire())
            await wait_waiters(r, "n", 1)
            ticks = 0
            t0 = time.monotonic()
            while time.monotonic() - t0 < 0.3:
                await asyncio.sleep(0.01)
                ticks += 1
            assert ticks >= 10 and not task.done()
            assert await r.ping()  # the client is usable meanwhile
            await holder.release()
            assert await asyncio.wait_for(task, 10) is True
            assert await owner(r, "n") == waiter.id

    arun(body())


def test_timeouts(server):
    async def body():
        async with async_client(server) as r:
            holder = arl.Lock(r, "n")
            assert await holder.acquire()
            t0 = time.monotonic()
            assert await arl.Lock(r, "n").acquire(timeout=1) is False
            assert 0.9 <= time.monotonic() - t0 < 2.5
            assert (await lock_info(r, "n"))["waiters"] == 0
            forever = asyncio.create_task(arl.Lock(r, "n").acquire(timeout=0))  # 0: no timeout
            await wait_waiters(r, "n", 1)
            await asyncio.sleep(0.2)
            assert not forever.done()
            await holder.release()
            assert await asyncio.wait_for(forever, 10) is True

    arun(body())


def test_wait_outlives_a_short_socket_timeout(server):
    """The reply is awaited for the wait plus the socket timeout: one queued command, FIFO place kept."""

    async def body():
        async with async_client(server) as r, async_client(server, socket_timeout=0.25) as short:
            holder = arl.Lock(r, "n")
            assert await holder.acquire()
            task = asyncio.create_task(arl.Lock(short, "n").acquire())
            await wait_waiters(r, "n", 1)
            await asyncio.sleep(0.8)
            assert not task.done() and (await lock_info(r, "n"))["waiters"] == 1
            await holder.release()
            assert await asyncio.wait_for(task, 10) is True
            t0 = time.monotonic()
            assert await arl.Lock(short, "n").acquire(timeout=1) is False
            assert 0.9 <= time.monotonic() - t0 < 1.8

    arun(body())
    # holder; the waiter's NOWAIT try and its one blocking command; the last one's try and wait
    assert cmd_calls(server.client(), "lock.acquire") == 5


def test_context_manager(server, protocol):
    async def body():
        async with async_client(server, protocol) as r:
            async with arl.Lock(r, "n", expire=10) as lock:
                assert isinstance(lock, arl.Lock) and await owner(r, "n") == lock.id
            assert await r.exists("lock:n") == 0
            with pytest.raises(ZeroDivisionError):
                async with arl.Lock(r, "n"):
                    1 / 0
            assert await r.exists("lock:n") == 0
            holder = arl.Lock(r, "n")
            assert await holder.acquire()
            with pytest.raises(rl.NotAcquired, match=r"Lock\(lock:n\) is not acquired"):
                async with arl.Lock(r, "n", blocking=False):
                    pytest.fail("entered a busy lock")
            entered = []

            async def section():
                async with arl.Lock(r, "n") as inner:
                    entered.append(await owner(r, "n") == inner.id)

            task = asyncio.create_task(section())
            await wait_waiters(r, "n", 1)
            assert entered == []
            await holder.release()
            await asyncio.wait_for(task, 10)
            assert entered == [True] and await r.exists("lock:n") == 0
            with pytest.raises(rl.NotAcquired):
                async with arl.Lock(r, "lost"):
                    await r.delete("lock:lost")

    arun(body())


def test_auto_renewal_task(server):
    async def body():
        async with async_client(server) as r:
            lock = arl.Lock(r, "n", expire=1, auto_renewal=True)
            assert lock._lock_renewal_interval == pytest.approx(2 / 3)
            assert await lock.acquire(timeout=3) is True  # no TimeoutTooLarge with auto-renewal
            task = lock._lock_renewal_task
            assert isinstance(task, asyncio.Task) and not task.done()
            deadline = time.monotonic() + 2.2  # more than two expire periods: three renewals
            while time.monotonic() < deadline:
                assert await owner(r, "n") == lock.id
                await asyncio.sleep(0.05)
            await lock.release()
            assert task.done() and lock._lock_renewal_task is None
            assert await r.exists("lock:n") == 0

    arun(body())
    assert cmd_calls(server.client(), "lock.extend") >= 3


def test_renewal_stops_on_reset_and_on_failure(server, caplog):
    class Fast(arl.Lock):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self._lock_renewal_interval = 0.05

    async def body():
        async with async_client(server) as r:
            lock = Fast(r, "n", expire=5, auto_renewal=True)
            assert await lock.acquire()
            task = lock._lock_renewal_task
            with pytest.raises(rl.AlreadyStarted):
                await r.delete("lock:n")
                await lock.acquire()  # as the sync drop-in: the lock is taken, then the check fails
            assert await owner(r, "n") == lock.id
            await lock.reset()
            assert task.done() and lock._lock_renewal_task is None
            assert await r.exists("lock:n") == 0

            lost = Fast(r, "m", expire=5, auto_renewal=True)
            assert await lost.acquire()
            task = lost._lock_renewal_task
            await r.set("lock:m", "someone else")
            await asyncio.wait_for(asyncio.shield(task), 5)  # the failed extend ends the task
            assert task.exception() is None
            with pytest.raises(rl.NotAcquired):
                await lost.release()
            assert lost._lock_renewal_task is None
            assert await r.get("lock:m") == b"someone else"

            collected = Fast(r, "g", expire=5, auto_renewal=True)
            assert await collected.acquire()
            task = collected._lock_renewal_task
            del collected
            gc.collect()
            await asyncio.wait_for(asyncio.shield(task), 5)

    with caplog.at_level(logging.DEBUG, logger="redis_lock_native.asyncio"):
        arun(body())
    messages = [r.getMessage() for r in caplog.records]
    assert "Stopping renewal of Lock('lock:m'): extend failed." in messages
    assert "Stopping loop because Lock('lock:g') was garbage collected." in messages


def test_client_shapes(server, protocol):
    """decode_responses, a single-connection client, strict=False with a wrapper object."""

    class Wrapper:
        def __init__(self, inner):
            self.inner = inner

        async def execute_command(self, *args, **kw):
            return await self.inner.execute_command(*args, **kw)

        async def exists(self, *names):
            return await self.inner.exists(*names)

    async def body():
        async with async_client(server, protocol) as r, \
                async_client(server, protocol, decode_responses=True) as text, \
                async_client(server, protocol, single_connection_client=True) as single:
            t = arl.Lock(text, "t", expire=5)
            assert await t.acquire() and await t.get_owner_id() == t.id
            await t.release()
            a = arl.Lock(single, "s", expire=10)
            assert await a.acquire()
            # the single connection is not held while another task waits through the same client
            waiting = asyncio.create_task(arl.Lock(single, "s").acquire(timeout=5))
            await wait_waiters(r, "s", 1)
            assert await single.ping()
            await a.release()
            assert await asyncio.wait_for(waiting, 10) is True
            w = Wrapper(r)
            b = arl.Lock(w, "w", strict=False, expire=10)
            assert await b.acquire(blocking=False) and await b.locked()
            c = arl.Lock(w, "w", strict=False)
            task = asyncio.create_task(c.acquire(timeout=5))
            await wait_waiters(r, "w", 1)
            await b.release()
            assert await asyncio.wait_for(task, 10) is True and await owner(r, "w") == c.id
            await arl.reset_all(w)
            assert await r.exists("lock:w") == 0

    arun(body())
