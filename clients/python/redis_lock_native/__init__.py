"""A drop-in replacement for python-redis-lock 4.x on top of the ``lock`` Redis module.

``import redis_lock_native as redis_lock`` works in code written for python-redis-lock: the
same classes, exceptions, functions, arguments and keyspace (``lock:<name>`` holds the owner
id, ``lock-signal:<name>`` is the signal list), but every operation is one native command
(``LOCK.ACQUIRE``, ``LOCK.RELEASE``, ``LOCK.EXTEND``, ``LOCK.OWNER``, ``LOCK.RESET``,
``LOCK.RESETALL``) instead of SET NX / BLPOP polling and Lua scripts. Processes using this
package and processes using python-redis-lock can share the same locks.

The server must have the module loaded (``redis-server --loadmodule libredis_lock.so``).
"""

import threading
from logging import getLogger
from typing import Union

import redis
from redis import StrictRedis
from redis.exceptions import ConnectionError as _RedisConnectionError
from redis.exceptions import ResponseError as _ResponseError
from redis.exceptions import TimeoutError as _RedisTimeoutError

from ._core import (  # noqa: F401 - the exceptions are this package's API
    AlreadyAcquired,
    AlreadyStarted,
    InvalidTimeout,
    LockRules as _LockRules,
    NotAcquired,
    NotExpirable,
    TimeoutNotUsable,
    TimeoutTooLarge,
    owner_text as _owner_text,
)

__version__ = '0.1.0'

logger_for_acquire = getLogger(f'{__name__}.acquire')
logger_for_refresh_thread = getLogger(f'{__name__}.refresh.thread')
logger_for_refresh_start = getLogger(f'{__name__}.refresh.start')
logger_for_refresh_shutdown = getLogger(f'{__name__}.refresh.shutdown')
logger_for_refresh_exit = getLogger(f'{__name__}.refresh.exit')
logger_for_release = getLogger(f'{__name__}.release')


class Lock(_LockRules):
    """
    A Lock context manager implemented with the ``lock`` module's native commands
    (LOCK.ACQUIRE / LOCK.RELEASE / LOCK.EXTEND ...), compatible with python-redis-lock.
    """

    unlock_script = None
    extend_script = None
    reset_script = None
    reset_all_script = None
    blocking = None

    _lock_renewal_interval: float
    _lock_renewal_thread: Union[threading.Thread, None]

    def __init__(self, redis_client, name, expire=None, id=None, auto_renewal=False, strict=True, signal_expire=1000, blocking=True):
        """
        :param redis_client:
            An instance of :class:`~StrictRedis`.
        :param name:
            The name (redis key) the lock should have.
        :param expire:
            The lock expiry time in seconds. If left at the default (None)
            the lock will not expire.
        :param id:
            The ID (redis value) the lock should have. A random value is
            generated when left at the default.

            Note that if you specify this then the lock is marked as "held". Acquires
            won't be possible.
        :param auto_renewal:
            If set to ``True``, Lock will automatically renew the lock so that it
            doesn't expire for as long as the lock is held (acquire() called
            or running in a context manager).

            Implementation note: Renewal will happen using a daemon thread with
            an interval of ``expire*2/3``. If wishing to use a different renewal
            time, subclass Lock, call ``super().__init__()`` then set
            ``self._lock_renewal_interval`` to your desired interval.
        :param strict:
            If set ``True`` then the ``redis_client`` needs to be an instance of ``redis.StrictRedis``.
        :param signal_expire:
            Advanced option to override signal list expiration in milliseconds. Increase it for very slow clients. Default: ``1000``.
        :param blocking:
            Boolean value specifying whether lock should be blocking or not.
            Used in `__enter__` method.
        """
        self._configure(redis_client, name, expire, id, auto_renewal, strict, signal_expire, blocking,
                        client_class=StrictRedis)
        self._lock_renewal_thread = None
        self.register_scripts(redis_client)

    @property
    def _held(self):
        return self.id == self.get_owner_id()

    def reset(self):
        """
        Forcibly deletes the lock. Use this with care.
        """
        self._client.execute_command(*self._reset_args())

    def get_owner_id(self):
        return _owner_text(self._client.execute_command('LOCK.OWNER', self._lock_name))

    def acquire(self, blocking=True, timeout=None):
        """
        :param blocking:
            Boolean value specifying whether lock should be blocking or not.
        :param timeout:
            An integer value specifying the maximum number of seconds to block.
        """
        logger_for_acquire.debug('Acquiring Lock(%r) ...', self._name)

        # python-redis-lock checks "already held by this id" (one GET) before anything else.
        # The server checks it too (ALREADYACQUIRED), so the GET is only needed to give that
        # exception precedence over a client-side argument error.
        timeout, error = self._acquire_arg_error(blocking, timeout)
        if error is not None:
            if self._held:
                raise AlreadyAcquired('Already acquired from this Lock instance.')
            raise error

        reply = self._acquire(blocking, timeout)
        return self._acquired(reply, blocking, logger_for_acquire)

    def _acquire(self, blocking, timeout):
        """Run LOCK.ACQUIRE; the owner id when acquired, None when not.

        The command is sent on a connection taken from the pool directly, never through
        redis-py's retry machinery: a re-sent LOCK.ACQUIRE would queue a second waiter, or
        answer ALREADYACQUIRED for a grant whose reply was lost. When the reply is lost
        (connection error, timeout) the lock's owner is read back to learn the outcome.
        """
        client = self._client
        pool = getattr(client, 'connection_pool', None)
        if not isinstance(client, redis.Redis) or pool is None:
            # strict=False with some other client: no control over its connections.
            return self._acquire_via_execute_command(blocking, timeout)

        single = getattr(client, 'connection', None)
        guard = getattr(client, 'single_connection_lock', None) if single is not None else None
        if guard is not None:
            guard.acquire()
        conn = None
        try:
            if single is not None:
                conn = single
            else:
                try:
                    conn = pool.get_connection()
                except TypeError:  # redis-py < 5.3 wants a command name
                    conn = pool.get_connection('LOCK.ACQUIRE')
            try:
                return self._acquire_on(conn, blocking, timeout)
            except _ResponseError as exc:
                translated = self._acquire_failure(exc)
                if translated is not None:
                    raise translated from exc
                raise
            except (_RedisConnectionError, _RedisTimeoutError, OSError):
                conn.disconnect()
                if self._owner_after_lost_reply() == self._id:
                    return self._id
                raise
            except BaseException:
                # KeyboardInterrupt & co: the waiter is dropped when its connection closes; if the
                # lock was granted meanwhile, hand it back rather than leave it held by nobody.
                conn.disconnect()
                try:
                    if self._owner_after_lost_reply() == self._id:
                        self._client.execute_command(*self._release_args())
                except Exception:  # noqa: BLE001 - best effort, the original error wins
                    pass
                raise
        finally:
            if single is None and conn is not None:
                pool.release(conn)
            if guard is not None:
                guard.release()

    def _owner_after_lost_reply(self):
        try:
            return self.get_owner_id()
        except Exception:  # noqa: BLE001 - the original error is what the caller sees
            return None

    def _acquire_on(self, conn, blocking, timeout):
        if not blocking:
            conn.send_command(*self._nowait_args())
            return conn.read_response()

        socket_timeout = getattr(conn, 'socket_timeout', None)
        for wait in self._waits(timeout, socket_timeout):
            conn.send_command(*self._wait_args(wait))
            if socket_timeout and wait is not None:
                # The socket timeout must not cut a wait the server will end by itself: wait
                # for the reply as long as the command may block, plus the socket timeout.
                if not conn.can_read(timeout=wait + socket_timeout):
                    raise _RedisTimeoutError(f'No reply to LOCK.ACQUIRE within {wait + socket_timeout:.3f}s')
            reply = conn.read_response()
            if reply is not None:
                return reply
        return None

    def _acquire_via_execute_command(self, blocking, timeout):
        args = self._nowait_args() if not blocking else self._wait_args(timeout)
        try:
            return self._client.execute_command(*args)
        except _ResponseError as exc:
            translated = self._acquire_failure(exc)
            if translated is not None:
                raise translated from exc
            raise

    def extend(self, expire=None):
        """
        Extends expiration time of the lock.

        :param expire:
            New expiration time. If ``None`` - `expire` provided during
            lock initialization will be taken.
        """
        args = self._extend_args(expire)
        try:
            self._client.execute_command(*args)
        except _ResponseError as exc:
            translated = self._extend_failure(exc)
            if translated is not None:
                raise translated from exc
            raise

    @staticmethod
    def _lock_renewer(name, lockref, interval, stop):
        """
        Renew the lock key in redis every `interval` seconds for as long
        as `self._lock_renewal_thread.should_exit` is False.
        """
        while not stop.wait(timeout=interval):
            logger_for_refresh_thread.debug('Refreshing Lock(%r).', name)
            lock: Lock = lockref()
            if lock is None:
                logger_for_refresh_thread.debug('Stopping loop because Lock(%r) was garbage collected.', name)
                break
            lock.extend(expire=lock._expire)
            del lock
        logger_for_refresh_thread.debug('Exiting renewal thread for Lock(%r).', name)

    def _start_lock_renewer(self):
        """
        Starts the lock refresher thread.
        """
        kwargs = self._renewer_kwargs(self._lock_renewal_thread, 'thread', logger_for_refresh_start, threading.Event())
        self._lock_renewal_thread = threading.Thread(group=None, target=self._lock_renewer, kwargs=kwargs)
        self._lock_renewal_thread.daemon = True
        self._lock_renewal_thread.start()

    def _stop_lock_renewer(self):
        """
        Stop the lock renewer.

        This signals the renewal thread and waits for its exit.
        """
        if self._lock_renewal_thread is None or not self._lock_renewal_thread.is_alive():
            return
        logger_for_refresh_shutdown.debug('Signaling renewal thread for Lock(%r) to exit.', self._name)
        self._lock_renewal_stop.set()
        self._lock_renewal_thread.join()
        self._lock_renewal_thread = None
        logger_for_refresh_exit.debug('Renewal thread for Lock(%r) exited.', self._name)

    def __enter__(self):
        if not self.acquire(blocking=self.blocking):
            raise self._not_entered()
        return self

    def __exit__(self, exc_type=None, exc_value=None, traceback=None):
        self.release()

    def release(self):
        """Releases the lock, that was acquired with the same object.

        .. note::

            If you want to release a lock that you acquired in a different place you have two choices:

            * Use ``Lock("name", id=id_from_other_place).release()``
            * Use ``Lock("name").reset()``
        """
        if self._lock_renewal_thread is not None:
            self._stop_lock_renewer()
        logger_for_release.debug('Releasing Lock(%r).', self._name)
        try:
            self._client.execute_command(*self._release_args())
        except _ResponseError as exc:
            translated = self._release_failure(exc)
            if translated is not None:
                raise translated from exc
            raise

    def locked(self):
        """
        Return true if the lock is acquired.

        Checks that lock with same name already exists. This method returns true, even if
        lock have another id.
        """
        return self._client.exists(self._name) == 1


reset_all_script = None


def reset_all(redis_client):
    """
    Forcibly deletes all locks if its remains (like a crash reason). Use this with care.

    :param redis_client:
        An instance of :class:`~StrictRedis`.
    """
    Lock.register_scripts(redis_client)

    redis_client.execute_command('LOCK.RESETALL')
