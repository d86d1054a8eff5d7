"""test_native_parity's scenario table run against redis_lock_native.asyncio (through a sync
view that runs each coroutine on one event loop) and against python-redis-lock on the same
server: return values, exceptions and the resulting keyspace must be identical."""

import pytest

import redis_lock
from async_helpers import SyncView
from test_native_parity import CASES


@pytest.mark.parametrize("protocol,scenario", CASES)
def test_same_outcome_asyncio(server, protocol, scenario):
    view = SyncView()
    try:
        theirs = scenario(redis_lock, server.client(protocol=protocol, db=0))
        ours = scenario(view, server.client(protocol=protocol, db=1))
    finally:
        view.close()
    assert ours == theirs


def test_view_runs_the_asyncio_lock(server):
    """The view is not the sync drop-in in disguise: its locks are asyncio Locks, the renewal a task."""
    import redis_lock_native.asyncio as arl

    view = SyncView()
    try:
        lock = view.Lock(server.client(), "n", expire=5, auto_renewal=True)
        assert isinstance(lock._target, arl.Lock)
        assert lock.acquire() is True
        assert lock._lock_renewal_thread is not None and not lock._lock_renewal_thread.done()
        lock.release()
        assert lock._lock_renewal_thread is None
    finally:
        view.close()
