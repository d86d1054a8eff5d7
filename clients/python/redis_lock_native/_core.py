"""What the sync drop-in (``redis_lock_native``) and the asyncio one (``redis_lock_native.asyncio``)
share: the exceptions, the constructor's argument rules, the command lines, the error mapping and
the plan of a blocking wait. No I/O here: each drop-in sends the commands its own way.
"""

import time
import weakref
from base64 import b64encode
from os import urandom


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


EXCEPTIONS = (AlreadyAcquired, NotAcquired, AlreadyStarted, TimeoutNotUsable, InvalidTimeout,
              TimeoutTooLarge, NotExpirable)
for _cls in EXCEPTIONS:
    # users see (and pickle) them as redis_lock_native.X, where they are exported
    _cls.__module__ = 'redis_lock_native'

# The module's error code (first word of the error reply) is the exception name in capitals.
_ERROR_CLASSES = {
    cls.__name__.upper(): cls
    for cls in (AlreadyAcquired, NotAcquired, NotExpirable, TimeoutNotUsable, InvalidTimeout)
}


def error_code(exc):
    text = str(exc)
    return text.split(' ', 1)[0] if text else ''


def translate(exc, message=None):
    """The python-redis-lock exception for a module error reply, or None if it has no match."""
    cls = _ERROR_CLASSES.get(error_code(exc))
    if cls is None:
        return None
    return cls(message or str(exc))


def fmt_seconds(seconds):
    """Decimal seconds for TIMEOUT; never '0' (which would mean 'forever')."""
    if isinstance(seconds, int):
        return str(max(seconds, 1))
    return f'{max(seconds, 0.001):.3f}'


def owner_text(reply):
    """LOCK.OWNER's reply as python-redis-lock's get_owner_id() returns it (str or None)."""
    if isinstance(reply, bytes):
        return reply.decode('ascii', 'replace')
    return reply


class LockRules:
    """The state and rules of one lock, without I/O; both drop-ins' ``Lock`` inherit them."""

    #: When the connection has a socket timeout, a blocking acquire is sent as LOCK.ACQUIRE
    #: commands of at most this many seconds each (the reply is awaited for that long plus the
    #: socket timeout). Between two of them the waiter loses its place in the FIFO queue.
    #: Without a socket timeout the whole wait is one command.
    _wait_chunk: float = 30.0

    def _configure(self, redis_client, name, expire, id, auto_renewal, strict, signal_expire, blocking,
                   client_class):
        """The constructor of python-redis-lock's Lock: same checks, same order, same messages."""
        if strict and not isinstance(redis_client, client_class):
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
        self.blocking = blocking

    @property
    def id(self):
        return self._id

    @classmethod
    def register_scripts(cls, redis_client):
        """Kept for compatibility: there are no scripts to register."""

    # -- acquire

    def _acquire_arg_error(self, blocking, timeout):
        """(timeout as sent, None) or (None, the exception python-redis-lock raises for these arguments).

        The caller raises AlreadyAcquired instead when this id already holds the lock, as
        python-redis-lock checks that first."""
        if not blocking and timeout is not None:
            return None, TimeoutNotUsable('Timeout cannot be used if blocking=False')
        if timeout:
            timeout = int(timeout)
            if timeout < 0:
                return None, InvalidTimeout(f'Timeout ({timeout}) cannot be less than or equal to 0')
            if self._expire and not self._lock_renewal_interval and timeout > self._expire:
                return None, TimeoutTooLarge(f'Timeout ({timeout}) cannot be greater than expire ({self._expire})')
        return timeout or None, None

    def _acquire_args(self):
        # FENCE / SESSION (the fence= / session= constructor options) are appended here.
        args = ['LOCK.ACQUIRE', self._lock_name, 'ID', self._id]
        if self._expire is not None:
            args += ['EX', self._expire]
        return args

    def _nowait_args(self):
        return self._acquire_args() + ['NOWAIT']

    def _wait_args(self, wait):
        """One blocking LOCK.ACQUIRE of `wait` seconds (None: forever)."""
        return self._acquire_args() + ['TIMEOUT', 0 if wait is None else fmt_seconds(wait)]

    def _waits(self, timeout, socket_timeout):
        """The TIMEOUT of each LOCK.ACQUIRE of one blocking acquire (None: forever); ends when the
        caller's timeout has passed. Chunked only when the reply is read with a socket timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        first = True
        while True:
            if deadline is None:
                wait = self._wait_chunk if socket_timeout else None
            else:
                # the first command carries the caller's timeout as given
                wait = timeout if first else deadline - time.monotonic()
                if wait <= 0:
                    return
                if socket_timeout and wait > self._wait_chunk:
                    wait = self._wait_chunk
            first = False
            yield wait

    def _acquired(self, reply, blocking, logger):
        """acquire()'s result for LOCK.ACQUIRE's reply; starts the renewal once acquired."""
        if reply is None:
            if not blocking:
                logger.warning('Failed to acquire Lock(%r).', self._name)
            return False
        logger.info('Acquired Lock(%r).', self._name)
        if self._lock_renewal_interval is not None:
            self._start_lock_renewer()
        return True

    def _acquire_failure(self, exc):
        """The exception to raise for an error reply to LOCK.ACQUIRE, or None to re-raise it."""
        translated = translate(exc)
        if isinstance(translated, AlreadyAcquired):
            return AlreadyAcquired('Already acquired from this Lock instance.')
        return translated

    # -- auto-renewal

    def _renewer_kwargs(self, running, kind, logger, stop):
        """The renewal loop's arguments (it holds the lock weakly); AlreadyStarted if one runs."""
        if running is not None:
            raise AlreadyStarted('Lock refresh thread already started')
        logger.debug('Starting renewal %s for Lock(%r). Refresh interval: %s seconds.', kind, self._name,
                     self._lock_renewal_interval)
        self._lock_renewal_stop = stop
        return {'name': self._name, 'lockref': weakref.ref(self), 'interval': self._lock_renewal_interval,
                'stop': stop}

    # -- release, extend, reset

    def _release_args(self):
        return ['LOCK.RELEASE', self._lock_name, self._id, 'SIGNAL-EXPIRE', self._signal_expire]

    def _release_failure(self, exc):
        if error_code(exc) == 'NOTACQUIRED':
            return NotAcquired(f'Lock({self._name}) is not acquired or it already expired.')
        return None

    def _extend_args(self, expire):
        if expire:
            expire = int(expire)
            if expire < 0:
                raise ValueError('A negative expire is not acceptable.')
        elif self._expire is not None:
            expire = self._expire
        else:
            raise TypeError("To extend a lock 'expire' must be provided as an argument to extend() method or at initialization time.")
        return ['LOCK.EXTEND', self._lock_name, self._id, 'EX', expire]

    def _extend_failure(self, exc):
        code = error_code(exc)
        if code == 'NOTACQUIRED':
            return NotAcquired(f'Lock {self._name} is not acquired or it already expired.')
        if code == 'NOTEXPIRABLE':
            return NotExpirable(f'Lock {self._name} has no assigned expiration time')
        return None

    def _reset_args(self):
        return ['LOCK.RESET', self._lock_name, 'SIGNAL-EXPIRE', self._signal_expire]

    def _not_entered(self):
        """The error of a context manager entry whose acquire returned False."""
        if self.blocking:
            return AssertionError(f"Lock({self._name}) wasn't acquired, but blocking=True was used!")
        return NotAcquired(f'Lock({self._name}) is not acquired or it already expired.')
