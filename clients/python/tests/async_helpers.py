"""Helpers for the redis_lock_native.asyncio tests (no pytest-asyncio: each test drives its
coroutines with `arun`, inside a plain test that uses the harness's sync fixtures)."""

import asyncio
import time

import redis
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

import redis_lock_native.asyncio as arl

try:
    from redis.maint_notifications import MaintNotificationsConfig
    _NO_MAINT = {"maint_notifications_config": MaintNotificationsConfig(enabled=False)}
except ImportError:  # older redis-py
    _NO_MAINT = {}


def arun(coro, timeout=60.0):
    """Run one coroutine on a fresh event loop; a hang fails the test instead of the run."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def async_client(server, protocol=3, **kw):
    """A redis.asyncio.Redis as server.client() makes sync ones: bytes, 10 s socket timeout, no retries.
    Use it as `async with async_client(server) as r:` (closed at the end)."""
    opts = dict(host="127.0.0.1", port=server.port, protocol=protocol, decode_responses=False,
                socket_timeout=10, socket_connect_timeout=10, retry=Retry(NoBackoff(), 0), **_NO_MAINT)
    opts.update(kw)
    return redis.asyncio.Redis(**opts)


async def lock_info(r, name):
    reply = await r.execute_command("LOCK.INFO", name)
    if isinstance(reply, list):  # RESP2: flat array
        reply = dict(zip(reply[::2], reply[1::2]))
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in reply.items()}


async def wait_waiters(r, name, n, timeout=10.0):
    """Bounded poll until exactly `n` module waiters are queued on `name`."""
    deadline = time.monotonic() + timeout
    while True:
        got = (await lock_info(r, name))["waiters"]
        if got == n:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{got} waiters on {name!r}, expected {n}")
        await asyncio.sleep(0.005)


async def owner(r, name):
    v = await r.execute_command("LOCK.OWNER", name)
    return v.decode() if isinstance(v, bytes) else v


# ---------------------------------------------------------------------------
# a sync view of the asyncio drop-in, to run test_native_parity's scenario table on it


class _Blocking:
    """`Lock.blocking` is None on the class, the instance's value on an instance."""

    def __get__(self, obj, cls=None):
        return arl.Lock.blocking if obj is None else obj._target.blocking


class _View:
    def __init__(self, loop, target):
        self._loop, self._target = loop, target

    def _call(self, name):
        method = getattr(self._target, name)
        return lambda *a, **kw: self._loop.run_until_complete(method(*a, **kw))


class SyncView:
    """Looks like the `redis_lock_native` module to a parity scenario: `Lock(c, ...)` builds an
    asyncio Lock on an asyncio client for the same server and db as the sync client `c`, and each
    method call runs the coroutine on one event loop (where the renewal task runs too)."""

    __name__ = "redis_lock_native.asyncio"

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self._clients = {}
        view = self

        class Lock(_View):
            blocking = _Blocking()

            def __init__(self, c, *args, **kwargs):
                super().__init__(view.loop, arl.Lock(view.client_for(c), *args, **kwargs))

            def __getattr__(self, name):
                if name in ("acquire", "release", "extend", "reset", "locked", "get_owner_id"):
                    return self._call(name)
                return getattr(self._target, name)

            @property
            def _lock_renewal_thread(self):
                return self._target._lock_renewal_task

            @property
            def _held(self):
                return self._call("get_owner_id")() == self.id

            def __enter__(self):
                self._loop.run_until_complete(self._target.__aenter__())
                return self

            def __exit__(self, *exc):
                self._loop.run_until_complete(self._target.__aexit__(*exc))

        self.Lock = Lock
        for name in ("AlreadyAcquired", "NotAcquired", "AlreadyStarted", "TimeoutNotUsable",
                     "InvalidTimeout", "TimeoutTooLarge", "NotExpirable"):
            setattr(self, name, getattr(arl, name))

    def client_for(self, c):
        if not isinstance(c, redis.Redis):
            return c  # object(): the constructor's own checks see it as given
        key = id(c)
        if key not in self._clients:
            kw = c.connection_pool.connection_kwargs
            self._clients[key] = redis.asyncio.Redis(
                host=kw["host"], port=kw["port"], db=kw.get("db", 0), protocol=kw.get("protocol", 2),
                socket_timeout=10, retry=Retry(NoBackoff(), 0), **_NO_MAINT)
        return self._clients[key]

    def reset_all(self, c):
        return self.loop.run_until_complete(arl.reset_all(self.client_for(c)))

    def close(self):
        for client in self._clients.values():
            self.loop.run_until_complete(client.aclose())
        pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.wait(pending))
        self.loop.close()
