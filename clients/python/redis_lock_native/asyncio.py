"""The asyncio drop-in: ``redis_lock_native``'s API as coroutines over ``redis.asyncio.Redis``.

    from redis_lock_native.asyncio import Lock

    async with Lock(redis.asyncio.Redis(), "reports", expire=60, auto_renewal=True):
        ...

Same constructor, exceptions (the very classes of ``redis_lock_native``), keys and commands as
the sync drop-in; ``acquire``, ``release``, ``extend``, ``locked``, ``get_owner_id``, ``reset``
and ``reset_all`` are coroutines, auto-renewal is an asyncio task (no threads).

A blocking ``acquire()`` never blocks the event loop: after one ``LOCK.ACQUIRE … NOWAIT`` on a
pooled connection it waits on a connection of its own (as BLPOP must), outside the pool, so
queued waiters never exhaust the pool. A cancelled ``acquire()`` leaves no waiter queued and no
lock held: it makes the server answer the waiting command at once (``CLIENT UNBLOCK``), reads
that answer and, if the lock had been granted meanwhile, releases it.
"""

import asyncio
from logging import getLogger

import redis.asyncio
from redis.exceptions import ConnectionError as _RedisConnectionError
from redis.exceptions import ResponseError as _ResponseError
from redis.exceptions import TimeoutError as _RedisTimeoutError

from . import (  # noqa: F401 - the same exception classes as the sync drop-in
    AlreadyAcquired,
    AlreadyStarted,
    InvalidTimeout,
    NotAcquired,
    NotExpirable,
    TimeoutNotUsable,
    TimeoutTooLarge,
)
from ._core import LockRules as _LockRules
from ._core import owner_text as _owner_text

logger_for_acquire = getLogger(f'{__name__}.acquire')
logger_for_refresh_thread = getLogger(f'{__name__}.refresh.thread')
logger_for_refresh_start = getLogger(f'{__name__}.refresh.start')
logger_for_refresh_shutdown = getLogger(f'{__name__}.refresh.shutdown')
logger_for_refresh_exit = getLogger(f'{__name__}.refresh.exit')
logger_for_release = getLogger(f'{__name__}.release')

# Clean-ups of cancelled acquires that outlive a second cancellation: asyncio keeps only weak
# references to tasks, so they are held here until they end.
_background = set()


def _keep(task):
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


def _log_late_release(task):
    if not task.cancelled() and task.exception() is not None:
        logger_for_release.warning('Release after a cancellation failed.', exc_info=task.exception())


async def _pooled_connection(pool):
    try:
        return await pool.get_connection()
    except TypeError:  # redis-py < 5.3 wants a command name
        return await pool.get_connection('LOCK.ACQUIRE')


class _Waiting:
    """What the clean-up of a cancelled blocking acquire needs to know about its wait."""

    def __init__(self):
        self.abandoned = False  # no further LOCK.ACQUIRE may be sent
        self.client_id = asyncio.get_running_loop().create_future()  # CLIENT ID, None if refused

    def learned(self, client_id):
        if not self.client_id.done():
            self.client_id.set_result(client_id)


class Lock(_LockRules):
    """
    A Lock (async context manager) implemented with the ``lock`` module's native commands,
    with the API of python-redis-lock's Lock as coroutines.
    """

    unlock_script = None
    extend_script = None
    reset_script = None
    reset_all_script = None
    blocking = None

    #: How long (seconds) a cancelled acquire waits for the server's answer to its LOCK.ACQUIRE
    #: before closing the connection and reading the owner back instead.
    _cancel_grace: float = 5.0

    def __init__(self, redis_client, name, expire=None, id=None, auto_renewal=False, strict=True, signal_expire=1000, blocking=True):
        """
        The parameters of ``redis_lock_native.Lock`` (python-redis-lock's), with a
        ``redis.asyncio.Redis`` as ``redis_client``. The sync drop-in's future options
        (``fence=``, ``session=``) are added here the same way: to the signature, stored by
        ``_configure`` and sent by ``_acquire_args`` (redis_lock_native/_core.py).

        Auto-renewal runs as an asyncio task every ``expire*2/3`` seconds; subclass and set
        ``self._lock_renewal_interval`` for another interval, as with the sync drop-in.
        """
        self._configure(redis_client, name, expire, id, auto_renewal, strict, signal_expire, blocking,
                        client_class=redis.asyncio.Redis)
        self._lock_renewal_task = None
        self._lock_renewal_stop = None
        self.register_scripts(redis_client)

    async def reset(self):
        """
        Forcibly deletes the lock. Use this with care.
        """
        await self._stop_lock_renewer()
        await self._client.execute_command(*self._reset_args())

    async def get_owner_id(self):
        return _owner_text(await self._client.execute_command('LOCK.OWNER', self._lock_name))

    async def acquire(self, blocking=True, timeout=None):
        """
        :param blocking:
            Boolean value specifying whether lock should be blocking or not.
        :param timeout:
            An integer value specifying the maximum number of seconds to block.
        """
        logger_for_acquire.debug('Acquiring Lock(%r) ...', self._name)
        timeout, error = self._acquire_arg_error(blocking, timeout)
        if error is not None:
            # python-redis-lock checks "already held by this id" before the arguments
            if await self.get_owner_id() == self._id:
                raise AlreadyAcquired('Already acquired from this Lock instance.')
            raise error

        reply = await self._acquire(blocking, timeout)
        return self._acquired(reply, blocking, logger_for_acquire)

    async def _acquire(self, blocking, timeout):
        """The owner id when acquired, None when not. LOCK.ACQUIRE is never re-sent by redis-py's
        retries (a second waiter, or ALREADYACQUIRED for a grant whose reply was lost)."""
        client = self._client
        pool = getattr(client, 'connection_pool', None)
        if not isinstance(client, redis.asyncio.Redis) or pool is None:
            # strict=False with some other client: no control over its connections.
            args = self._wait_args(timeout) if blocking else self._nowait_args()
            return await self._attempt(client.execute_command(*args))
        # One try first, on a pooled connection (answered at once): an uncontended lock costs
        # one round trip and no connection of its own.
        reply = await self._attempt(self._nowait_on_pool(pool))
        if reply is not None or not blocking:
            return reply
        waiting = _Waiting()
        return await self._attempt(self._wait_on_own_connection(pool, timeout, waiting), waiting)

    async def _attempt(self, work, waiting=None):
        """Await `work` (a LOCK.ACQUIRE exchange) so that cancelling the caller never interrupts it
        mid-way: on cancellation the exchange is brought to its end and a grant handed back."""
        task = asyncio.ensure_future(self._outcome(work))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            cleanup = _keep(asyncio.ensure_future(self._abandon(task, waiting)))
            try:
                await asyncio.shield(cleanup)
            except asyncio.CancelledError:
                pass  # cancelled again: the clean-up goes on by itself
            raise

    async def _outcome(self, work):
        """The reply of `work`, with the module's errors mapped and a lost reply read back."""
        try:
            return await work
        except _ResponseError as exc:
            translated = self._acquire_failure(exc)
            if translated is not None:
                raise translated from exc
            raise
        except (_RedisConnectionError, _RedisTimeoutError, OSError):
            if await self._owner_after_lost_reply() == self._id:
                return self._id
            raise

    async def _owner_after_lost_reply(self):
        try:
            return await self.get_owner_id()
        except Exception:  # noqa: BLE001 - the original error is what the caller sees
            return None

    async def _nowait_on_pool(self, pool):
        conn = await _pooled_connection(pool)
        try:
            await conn.send_command(*self._nowait_args())
            return await conn.read_response()
        except BaseException:
            await conn.disconnect()  # never hand the pool a connection with a reply pending
            raise
        finally:
            await pool.release(conn)

    async def _wait_on_own_connection(self, pool, timeout, waiting):
        """The blocking LOCK.ACQUIRE(s) of one acquire, on a new connection with the pool's settings.

        The connection's socket timeout is not applied to a read: each reply is awaited as long
        as the command may block plus that socket timeout (see LockRules._waits)."""
        conn = pool.make_connection()
        margin = conn.socket_timeout
        conn.socket_timeout = None  # reads are bounded below instead
        try:
            await conn.connect()
            for wait in self._waits(timeout, margin):
                if waiting.abandoned:
                    return None
                if not waiting.client_id.done():
                    # CLIENT ID rides along with the first command: it costs no round trip
                    await conn.send_packed_command(conn.pack_commands([('CLIENT', 'ID'), self._wait_args(wait)]))
                    try:
                        waiting.learned(int(await conn.read_response()))
                    except _ResponseError:  # e.g. refused by an ACL
                        waiting.learned(None)
                else:
                    await conn.send_command(*self._wait_args(wait))
                if margin and wait is not None:
                    limit = wait + margin
                    try:
                        reply = await asyncio.wait_for(conn.read_response(), limit)
                    except asyncio.TimeoutError:
                        raise _RedisTimeoutError(f'No reply to LOCK.ACQUIRE within {limit:.3f}s') from None
                else:
                    reply = await conn.read_response()
                if reply is not None:
                    return reply
            return None
        finally:
            waiting.learned(None)
            await conn.disconnect()

    async def _abandon(self, task, waiting):
        """The caller of `task` was cancelled: end the wait, learn whether it was granted and if so
        release the lock, so that the cancelled acquire leaves no waiter and no lock behind.

        The reply on the waiting connection is the only sure answer, so the server is asked to
        give it now (CLIENT UNBLOCK: a null reply, or the id if the grant came first). Only if that
        fails (ACL, no answer within _cancel_grace) is the connection closed, which drops the
        waiter, and the owner read back (a grant racing the close is then left to its expiry)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._cancel_grace
        if waiting is not None:
            waiting.abandoned = True
            await asyncio.wait({task, waiting.client_id}, timeout=self._cancel_grace,
                               return_when=asyncio.FIRST_COMPLETED)
            client_id = waiting.client_id.result() if waiting.client_id.done() else None
            pause = 0.002
            # UNBLOCK answers 0 while the LOCK.ACQUIRE has not been read by the server yet
            while client_id is not None and not task.done() and loop.time() < deadline:
                try:
                    await self._client.execute_command('CLIENT', 'UNBLOCK', client_id)
                except Exception:  # noqa: BLE001 - NOPERM & co: fall back on closing
                    client_id = None
                    break
                await asyncio.wait({task}, timeout=pause)
                pause = min(pause * 2, 0.25)
            if client_id is None:
                deadline = loop.time()  # nothing would end the wait: close now
        if not task.done():
            await asyncio.wait({task}, timeout=max(deadline - loop.time(), 0))
        if not task.done():
            task.cancel()  # its connection is closed on the way out
            await asyncio.wait({task})
        if task.cancelled() or task.exception() is not None:
            if not task.cancelled():
                logger_for_acquire.debug('Cancelled acquire of Lock(%r) ended with %r', self._name, task.exception())
            granted = await self._owner_after_lost_reply() == self._id
        else:
            granted = task.result() is not None
        if granted:
            logger_for_acquire.info('Releasing Lock(%r), granted to a cancelled acquire.', self._name)
            try:
                await self._client.execute_command(*self._release_args())
            except Exception:  # noqa: BLE001 - nobody to tell; it expires if it has an expire
                logger_for_acquire.warning('Could not release Lock(%r) after a cancelled acquire.',
                                           self._name, exc_info=True)

    async def extend(self, expire=None):
        """
        Extends expiration time of the lock.

        :param expire:
            New expiration time. If ``None`` - `expire` provided during
            lock initialization will be taken.
        """
        args = self._extend_args(expire)
        try:
            await self._client.execute_command(*args)
        except _ResponseError as exc:
            translated = self._extend_failure(exc)
            if translated is not None:
                raise translated from exc
            raise

    @staticmethod
    async def _lock_renewer(name, lockref, interval, stop):
        """
        Renew the lock every `interval` seconds until `stop` is set, the lock is garbage
        collected or a renewal fails (the lock was lost: nothing left to renew).
        """
        while True:
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
                break
            except asyncio.TimeoutError:
                pass
            logger_for_refresh_thread.debug('Refreshing Lock(%r).', name)
            lock = lockref()
            if lock is None:
                logger_for_refresh_thread.debug('Stopping loop because Lock(%r) was garbage collected.', name)
                break
            try:
                await lock.extend(expire=lock._expire)
            except Exception:  # noqa: BLE001 - logged; the holder learns it at release()
                logger_for_refresh_thread.error('Stopping renewal of Lock(%r): extend failed.', name, exc_info=True)
                break
            finally:
                del lock
        logger_for_refresh_thread.debug('Exiting renewal task for Lock(%r).', name)

    def _start_lock_renewer(self):
        """
        Starts the lock refresher task.
        """
        kwargs = self._renewer_kwargs(self._lock_renewal_task, 'task', logger_for_refresh_start, asyncio.Event())
        self._lock_renewal_task = asyncio.ensure_future(self._lock_renewer(**kwargs))

    async def _stop_lock_renewer(self):
        """
        Stop the lock renewer: signal the task and wait for its end.
        """
        task = self._lock_renewal_task
        if task is None:
            return
        if not task.done():
            logger_for_refresh_shutdown.debug('Signaling renewal task for Lock(%r) to exit.', self._name)
            self._lock_renewal_stop.set()
            await task
        self._lock_renewal_task = None
        logger_for_refresh_exit.debug('Renewal task for Lock(%r) exited.', self._name)

    async def __aenter__(self):
        if not await self.acquire(blocking=self.blocking):
            raise self._not_entered()
        return self

    async def __aexit__(self, exc_type=None, exc_value=None, traceback=None):
        # A task cancelled again while leaving the block (a TaskGroup, a wait_for) still releases.
        release = asyncio.ensure_future(self.release())
        try:
            await asyncio.shield(release)
        except asyncio.CancelledError:
            _keep(release).add_done_callback(_log_late_release)
            raise

    async def release(self):
        """Releases the lock, that was acquired with the same object.

        To release a lock acquired elsewhere: ``Lock(conn, name, id=its_id).release()`` or
        ``Lock(conn, name).reset()``.
        """
        await self._stop_lock_renewer()
        logger_for_release.debug('Releasing Lock(%r).', self._name)
        try:
            await self._client.execute_command(*self._release_args())
        except _ResponseError as exc:
            translated = self._release_failure(exc)
            if translated is not None:
                raise translated from exc
            raise

    async def locked(self):
        """
        True if the lock is held, by whichever id.
        """
        return await self._client.exists(self._name) == 1


reset_all_script = None


async def reset_all(redis_client):
    """
    Forcibly deletes all locks if its remains (like a crash reason). Use this with care.

    :param redis_client:
        An instance of :class:`redis.asyncio.Redis`.
    """
    Lock.register_scripts(redis_client)
    await redis_client.execute_command('LOCK.RESETALL')
