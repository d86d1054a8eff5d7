"""redis_lock_native.asyncio under contention: many tasks on one event loop, FIFO order, and
cancellation of waiting acquires (no waiter left queued, no lock left held), racing a grant too."""

import asyncio

import pytest
import redis
import redis.asyncio

import redis_lock_native.asyncio as arl
from async_helpers import arun, async_client, lock_info, owner, wait_waiters
from harness import waiters
from helpers import cmd_calls


def _ids(reply):
    """LOCK.WAITERS' client ids in queue order (RESP2 flat arrays or RESP3 maps)."""
    out = []
    for entry in reply:
        if isinstance(entry, list):
            entry = dict(zip(entry[::2], entry[1::2]))
        out.append({(k.decode() if isinstance(k, bytes) else k): v for k, v in entry.items()}["client-id"])
    return out


async def _held_with_one_waiter(r, name="n"):
    """A holder Lock and a task queued behind it (acquire() without timeout)."""
    holder = arl.Lock(r, name)
    assert await holder.acquire()
    task = asyncio.create_task(arl.Lock(r, name).acquire())
    await wait_waiters(r, name, 1)
    return holder, task


@pytest.mark.parametrize("burst", [False, True], ids=["queued-one-by-one", "all-at-once"])
def test_200_tasks_fifo_no_overlap(server, protocol, burst):
    n = 200

    async def body():
        # the pool serves the NOWAIT tries of a burst; the waits use connections of their own
        async with async_client(server, protocol, max_connections=n + 10) as r:
            holder = arl.Lock(r, "n", expire=60)
            assert await holder.acquire()
            inside, grants, holders = [0], [], []

            async def worker(i):
                lock = arl.Lock(r, "n", expire=60)
                assert await lock.acquire(timeout=60) is True
                try:
                    inside[0] += 1
                    assert inside[0] == 1, "two tasks inside at once"
                    info = await lock_info(r, "n")
                    assert info["owner"].decode() == lock.id
                    holders.append(info["holder-client"])
                    grants.append(i)
                    await asyncio.sleep(0)
                    inside[0] -= 1
                finally:
                    await lock.release()

            tasks = []
            for i in range(n):
                tasks.append(asyncio.create_task(worker(i)))
                if not burst:
                    await wait_waiters(r, "n", i + 1)  # the order of queueing is the order of creation
            if burst:
                await wait_waiters(r, "n", n, timeout=30)
            queue = _ids(await r.execute_command("LOCK.WAITERS", "n"))
            assert len(queue) == n
            await holder.release()
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
            assert holders == queue  # granted in the server's queue order
            if not burst:
                assert grants == list(range(n))
            assert sorted(grants) == list(range(n))
            assert await r.exists("lock:n") == 0

    arun(body(), timeout=120)


def _cancel_waiting(server, protocol, client_kw=None):
    async def body():
        async with async_client(server, protocol) as r, async_client(server, protocol, **(client_kw or {})) as w:
            holder = arl.Lock(r, "n", expire=60)
            assert await holder.acquire()
            waiter = arl.Lock(w, "n", expire=60)
            task = asyncio.create_task(waiter.acquire())
            await wait_waiters(r, "n", 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert (await lock_info(r, "n"))["waiters"] == 0  # no waiter left behind
            assert await owner(r, "n") == holder.id
            await holder.release()
            assert await r.exists("lock:n") == 0  # nobody got it behind our back
            # a wait_for timeout is a cancellation too
            assert await holder.acquire()
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(waiter.acquire(), 0.3)
            assert (await lock_info(r, "n"))["waiters"] == 0
            await holder.release()
            assert await waiter.acquire(timeout=5) is True  # the same Lock works afterwards
            await waiter.release()

    arun(body())


def test_cancel_waiting_task(server, protocol):
    _cancel_waiting(server, protocol)
    assert cmd_calls(server.client(), "client|unblock") >= 2  # the server was asked to answer


def test_cancel_waiting_task_without_client_unblock(server, protocol):
    """A user that may not run CLIENT UNBLOCK: the connection is closed instead."""
    c = server.client()
    c.acl_setuser("limited", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-client|unblock"])
    _cancel_waiting(server, protocol, {"username": "limited", "password": "pw"})
    assert cmd_calls(c, "client|unblock") == 0


@pytest.mark.parametrize("unblock", [True, False], ids=["unblock", "close"])
def test_cancel_racing_a_grant(server, protocol, unblock):
    """The server granted the lock and sent the id, but the task was cancelled before it read
    the reply: the clean-up reads it and releases the lock."""
    c = server.client(protocol=protocol)
    kw = {}
    if not unblock:
        c.acl_setuser("limited", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-client|unblock"])
        kw = {"username": "limited", "password": "pw"}

    async def body():
        async with async_client(server, protocol, **kw) as w:
            assert c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder") == b"holder"
            waiter = arl.Lock(w, "n", expire=60)
            task = asyncio.create_task(waiter.acquire())
            for _ in range(2000):
                if waiters(c, "n") == 1:
                    break
                await asyncio.sleep(0.005)
            assert waiters(c, "n") == 1
            # a sync call blocks the loop: the grant's reply arrives while nobody reads it
            assert c.execute_command("LOCK.RELEASE", "n", "holder") == b"OK"
            assert c.execute_command("LOCK.OWNER", "n").decode() == waiter.id  # granted, unread
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await w.exists("lock:n") == 0  # handed back
            assert await waiter.acquire(blocking=False) is True
            await waiter.release()

    arun(body())
    assert c.info("lock")["lock_grants_after_wait"] >= 1


def test_cancelled_twice(server, protocol):
    """A second cancellation during the clean-up does not stop it."""

    async def body():
        async with async_client(server, protocol) as r:
            holder, task = await _held_with_one_waiter(r)
            task.cancel()
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await wait_waiters(r, "n", 0)
            for _ in range(100):  # the clean-up finishes on its own
                if not arl._background:
                    break
                await asyncio.sleep(0.01)
            assert not arl._background
            assert await owner(r, "n") == holder.id

    arun(body())


def test_cancelled_again_while_leaving_the_block_still_releases(server):
    """The release of `async with` survives a second cancellation that lands before the command
    is even sent (here: the only pooled connection is busy with a BLPOP)."""

    async def body():
        pool = redis.asyncio.BlockingConnectionPool(host="127.0.0.1", port=server.port, max_connections=1,
                                                    timeout=None, socket_timeout=10)
        async with redis.asyncio.Redis(connection_pool=pool) as r, async_client(server) as other:
            lock = arl.Lock(r, "n", expire=60)
            inside = asyncio.Event()

            async def section():
                async with lock:
                    inside.set()
                    await asyncio.Event().wait()

            task = asyncio.create_task(section())
            await inside.wait()
            busy = asyncio.create_task(r.blpop("k", 0))  # takes the only connection
            while not any(cl.get("cmd") == "blpop" for cl in await other.client_list()):
                await asyncio.sleep(0.005)
            task.cancel()  # leaves the block: release() waits for the connection
            await asyncio.sleep(0.05)
            task.cancel()  # ... and is cancelled again
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await owner(other, "n") == lock.id  # not released yet: no connection
            await other.lpush("k", "go")
            assert list(await asyncio.wait_for(busy, 10)) == [b"k", b"go"]
            for _ in range(1000):
                if not await other.exists("lock:n"):
                    break
                await asyncio.sleep(0.005)
            assert await other.exists("lock:n") == 0  # released in the background
        await pool.aclose()

    arun(body())


def test_waiter_connection_killed_is_not_resent(server, protocol):
    """A lost waiting connection is an error for the caller, never a silently re-sent acquire."""

    async def body():
        async with async_client(server, protocol) as r:
            holder, task = await _held_with_one_waiter(r)
            blocked = [cl for cl in await r.client_list() if cl.get("cmd") == "lock.acquire"]
            assert len(blocked) == 1
            await r.client_kill_filter(_id=blocked[0]["id"])
            with pytest.raises(redis.ConnectionError):
                await asyncio.wait_for(task, 10)
            assert (await lock_info(r, "n"))["waiters"] == 0
            await holder.release()
            assert await r.exists("lock:n") == 0  # nobody was granted the lock behind our back

    arun(body())
