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
import time
import weakref
from base64 import b64encode
from logging import getLogger
from os import urandom
from typing import Union

import redis
from redis import StrictRedis
from redis.exceptions import ConnectionError as _RedisConnectionError
from redis.exceptions import ResponseError as _ResponseError
from redis.exceptions import TimeoutError as _RedisTimeoutError

__version__ = '0.1.0'

logger_for_acquire = getLogger(f'{__name__}.acquire')
logger_for_refresh_thread = getLogger(f'{__name__}.refresh.thread')
logger_for_refresh_start = getLogger(f'{__name__}.refresh.start')
logger_for_refresh_shutdown = getLogger(f'{__name__}.refresh.shutdown')
logger_for_refresh_exit = getLogger(f'{__name__}.refresh.exit')
logger_for_release = getLogger(f'{__name__}.release')

class AlreadyAcquired(RuntimeError):
    pass


class NotAcquired(RuntimeError):
    pass


class AlreadyStarted(RuntimeError):
    pass


class TimeoutNotUsable(RuntimeError):
    pass


class InvalidTimeout(RuntimeError):
    pass


class TimeoutTooLarge(RuntimeError):
    pass


class NotExpirable(RuntimeError):
    pass


# The module's error code (first word of the error reply) is the exception name in capitals.
_ERROR_CLASSES = {
    cls.__name__.upper(): cls
    for cls in (AlreadyAcquired, NotAcquired, NotExpirable, TimeoutNotUsable, InvalidTimeout)
}


def _error_code(exc):
    text = str(exc)
    return text.split(' ', 1)[0] if text else ''


def _translate(exc, message=None):
    """The python-redis-lock exception for a module error reply, or None if it has no match."""
    cls = _ERROR_CLASSES.get(_error_code(exc))
    if cls is None:
        return None
    return cls(message or str(exc))


def _fmt_seconds(seconds):
    """Decimal seconds for TIMEOUT; never '0' (which would mean 'forever')."""
    if isinstance(seconds, int):
        return str(max(seconds, 1))
    return f'{max(seconds, 0.001):.3f}'


class Lock:
    """
    A Lock context manager implemented with the ``lock`` module's native commands
    (LOCK.ACQUIRE / LOCK.RELEASE / LOCK.EXTEND ...), compatible with python-redis-lock.
    """

    unlock_script = None
    extend_script = None
    reset_script = None
    reset_all_script = None
    blocking = None

    #: When the connection has a socket timeout, a blocking acquire is sent as LOCK.ACQUIRE
    #: commands of at most this many seconds each (the reply is awaited for that long plus the
    #: socket timeout). Between two of them the waiter loses its place in the FIFO queue.
    #: Without a socket timeout the whole wait is one command.
    _wait_chunk: float = 30.0

    _lock_renewal_interval: float
    _lock_renewal_thread: Union[threading.Thread, None]

    #: The fencing token of the last successful acquire (an int) when the Lock was made with
    #: ``fence=True``; None otherwise, and before the first acquire.
    token: Union[int, None] = None

    def __init__(self, redis_client, name, expire=None, id=None, auto_renewal=False, strict=True, signal_expire=1000, blocking=True,
                 fence=False):
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
        :param fence:
            (not in python-redis-lock) Acquire with ``LOCK.ACQUIRE … FENCE``: after each
            successful acquire, ``self.token`` is the grant's fencing token, an int larger than
            every token this lock had before, for the protected resource to check. Every
            acquirer of a fenced lock must use it.
        """
        if strict and not isinstance(redis_client, StrictRedis):
            raise ValueError("redis_client must be instance of StrictRedis. Use strict=False if you know what you're doing.")
        if auto_renewal and expire is None:
            raise ValueError('Expire may not be None when auto_renewal is set')

        self._client = redis_client

        if expire:
            expire = int(expire)
            if expire < 0:
                raise ValueError('A negative expire is not acceptable.')
        else:
            expire = None
        self._expire = expire

        self._signal_expire = signal_expire
        if id is None:
            self._id = b64encode(urandom(18)).decode('ascii')
        elif isinstance(id, bytes):
            try:
                self._id = id.decode('ascii')
            except UnicodeDecodeError:
                self._id = b64encode(id).decode('ascii')
        elif isinstance(id, str):
            self._id = id
        else:
            raise TypeError(f'Incorrect type for `id`. Must be bytes/str not {type(id)}.')
        self._name = 'lock:' + name
        self._signal = 'lock-signal:' + name
        # the module takes the name without the "lock:" prefix and adds it itself
        self._lock_name = name
        self._lock_renewal_interval = float(expire) * 2 / 3 if auto_renewal else None
        self._lock_renewal_thread = None

        self.blocking = blocking
        self._fence = bool(fence)
        self.token = None

        self.register_scripts(redis_client)

    @classmethod
    def register_scripts(cls, redis_client):
        """Kept for compatibility: there are no scripts to register."""

    @property
    def _held(self):
        return self.id == self.get_owner_id()

    def reset(self):
        """
        Forcibly deletes the lock. Use this with care.
        """
        self._client.execute_command('LOCK.RESET', self._lock_name, 'SIGNAL-EXPIRE', self._signal_expire)

    @property
    def id(self):
        return self._id

    def get_owner_id(self):
        owner_id = self._client.execute_command('LOCK.OWNER', self._lock_name)
        if isinstance(owner_id, bytes):
            owner_id = owner_id.decode('ascii', 'replace')
        return owner_id

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
        error = None
        if not blocking and timeout is not None:
            error = TimeoutNotUsable('Timeout cannot be used if blocking=False')
        elif timeout:
            timeout = int(timeout)
            if timeout < 0:
                error = InvalidTimeout(f'Timeout ({timeout}) cannot be less than or equal to 0')
            elif self._expire and not self._lock_renewal_interval and timeout > self._expire:
                error = TimeoutTooLarge(f'Timeout ({timeout}) cannot be greater than expire ({self._expire})')
        if error is not None:
            if self._held:
                raise AlreadyAcquired('Already acquired from this Lock instance.')
            raise error

        reply = self._acquire(blocking, timeout or None)
        if self._fence and reply is not None:
            reply = self._take_token(reply)
        if reply is None:
            if not blocking:
                logger_for_acquire.warning('Failed to acquire Lock(%r).', self._name)
            return False

        logger_for_acquire.info('Acquired Lock(%r).', self._name)
        if self._lock_renewal_interval is not None:
            self._start_lock_renewer()
        return True

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
                translated = _translate(exc)
                if isinstance(translated, AlreadyAcquired):
                    raise AlreadyAcquired('Already acquired from this Lock instance.') from exc
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
                        self._client.execute_command('LOCK.RELEASE', self._lock_name, self._id,
                                                     'SIGNAL-EXPIRE', self._signal_expire)
                except Exception:  # noqa: BLE001 - best effort, the original error wins
                    pass
                raise
        finally:
            if single is None and conn is not None:
                pool.release(conn)
            if guard is not None:
                guard.release()

    def _take_token(self, reply):
        """Keep the token of a FENCE reply ``[id, token]`` and return the id. A reply that was
        lost (``_acquire`` read the owner back instead) is the id alone: the fence key then
        holds this grant's token, since only FENCE grants write it."""
        if isinstance(reply, (list, tuple)) and len(reply) == 2:
            owner, self.token = reply
            return owner
        self.token = self._last_token()
        return reply

    def _last_token(self):
        info = self._client.execute_command('LOCK.INFO', self._lock_name)
        if isinstance(info, (list, tuple)):
            info = dict(zip(info[::2], info[1::2]))
        for key, value in info.items():
            if key in (b'fence', 'fence'):
                return value
        return None

    def _owner_after_lost_reply(self):
        try:
            return self.get_owner_id()
        except Exception:  # noqa: BLE001 - the original error is what the caller sees
            return None

    def _acquire_args(self):
        args = ['LOCK.ACQUIRE', self._lock_name, 'ID', self._id]
        if self._expire is not None:
            args += ['EX', self._expire]
        if self._fence:
            args.append('FENCE')
        return args

    def _acquire_on(self, conn, blocking, timeout):
        base = self._acquire_args()
        if not blocking:
            conn.send_command(*base, 'NOWAIT')
            return conn.read_response()

        socket_timeout = getattr(conn, 'socket_timeout', None)
        deadline = None if timeout is None else time.monotonic() + timeout
        first = True
        while True:
            if deadline is None:
                wait = self._wait_chunk if socket_timeout else None
            else:
                # the first command carries the caller's timeout as given
                wait = timeout if first else deadline - time.monotonic()
                if wait <= 0:
                    return None
                if socket_timeout and wait > self._wait_chunk:
                    wait = self._wait_chunk
            first = False
            conn.send_command(*base, 'TIMEOUT', 0 if wait is None else _fmt_seconds(wait))
            if socket_timeout and wait is not None:
                # The socket timeout must not cut a wait the server will end by itself: wait
                # for the reply as long as the command may block, plus the socket timeout.
                if not conn.can_read(timeout=wait + socket_timeout):
                    raise _RedisTimeoutError(f'No reply to LOCK.ACQUIRE within {wait + socket_timeout:.3f}s')
            reply = conn.read_response()
            if reply is not None:
                return reply

    def _acquire_via_execute_command(self, blocking, timeout):
        args = self._acquire_args()
        if not blocking:
            args.append('NOWAIT')
        else:
            args += ['TIMEOUT', timeout or 0]
        try:
            return self._client.execute_command(*args)
        except _ResponseError as exc:
            translated = _translate(exc)
            if isinstance(translated, AlreadyAcquired):
                raise AlreadyAcquired('Already acquired from this Lock instance.') from exc
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
        if expire:
            expire = int(expire)
            if expire < 0:
                raise ValueError('A negative expire is not acceptable.')
        elif self._expire is not None:
            expire = self._expire
        else:
            raise TypeError("To extend a lock 'expire' must be provided as an argument to extend() method or at initialization time.")

        try:
            self._client.execute_command('LOCK.EXTEND', self._lock_name, self._id, 'EX', expire)
        except _ResponseError as exc:
            code = _error_code(exc)
            if code == 'NOTACQUIRED':
                raise NotAcquired(f'Lock {self._name} is not acquired or it already expired.') from exc
            if code == 'NOTEXPIRABLE':
                raise NotExpirable(f'Lock {self._name} has no assigned expiration time') from exc
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
        if self._lock_renewal_thread is not None:
            raise AlreadyStarted('Lock refresh thread already started')

        logger_for_refresh_start.debug(
            'Starting renewal thread for Lock(%r). Refresh interval: %s seconds.', self._name, self._lock_renewal_interval
        )
        self._lock_renewal_stop = threading.Event()
        self._lock_renewal_thread = threading.Thread(
            group=None,
            target=self._lock_renewer,
            kwargs={
                'name': self._name,
                'lockref': weakref.ref(self),
                'interval': self._lock_renewal_interval,
                'stop': self._lock_renewal_stop,
            },
        )
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
        acquired = self.acquire(blocking=self.blocking)
        if not acquired:
            if self.blocking:
                raise AssertionError(f"Lock({self._name}) wasn't acquired, but blocking=True was used!")
            raise NotAcquired(f'Lock({self._name}) is not acquired or it already expired.')
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
            self._client.execute_command('LOCK.RELEASE', self._lock_name, self._id, 'SIGNAL-EXPIRE', self._signal_expire)
        except _ResponseError as exc:
            if _error_code(exc) == 'NOTACQUIRED':
                raise NotAcquired(f'Lock({self._name}) is not acquired or it already expired.') from exc
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
