"""Test harness: a real redis-server per test, with the lock module loaded.

Everything a test needs lives here; conftest.py only turns it into fixtures.

    RedisServer(module_args=(), extra_config=(), load_module=True)
        .start() / .stop()       spawn / kill (stop also checks the server did not crash)
        .port                    TCP port on 127.0.0.1
        .client(protocol=2|3)    redis.Redis, bytes replies, 10 s socket timeout, no retries
        .raw(protocol=2|3)       RawConnection: a tiny RESP client that keeps reply types
        .log_tail()              last lines of the server's stdout/stderr

    Background(server, fn)       run fn(conn) in a thread on its own connection
    acquire_bg(server, name, *options)   a blocking LOCK.ACQUIRE in a thread (started)
    wait_waiters(client, name, n)        bounded poll until LOCK.INFO reports n waiters
    lock_info(client, name)              LOCK.INFO as a dict {str: value}
    error_code(exc)                      first word of a Redis error reply
    snapshot(client)                     DEBUG DIGEST + every key's type and value, for "unchanged" checks
"""

from __future__ import annotations

import atexit
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.maint_notifications import MaintNotificationsConfig
from redis.retry import Retry

REPO = Path(__file__).resolve().parent.parent
REDIS_SERVER = os.environ.get("REDIS_SERVER", "redis-server")
LOCK_MODULE_SOURCE = os.environ.get(
    "LOCK_MODULE", str(REPO / "target" / "release" / "libredis_lock.so")
)


def _snapshot_module(src: str) -> str:
    """Copy the module once per test session and load the copy everywhere.

    The build may rewrite target/release/libredis_lock.so in place while the suite runs; a
    server that has the file mapped would then crash. The copy also guarantees that every
    test of a run exercises the same build.
    """
    if not os.path.exists(src):
        return src  # RedisServer.start() reports the missing module
    dst_dir = tempfile.mkdtemp(prefix="redis-lock-module-")
    dst = os.path.join(dst_dir, os.path.basename(src))
    shutil.copy2(src, dst)
    atexit.register(shutil.rmtree, dst_dir, True)
    return dst


LOCK_MODULE = _snapshot_module(LOCK_MODULE_SOURCE)

SOCKET_TIMEOUT = 10.0  # client socket timeout (s)
START_TIMEOUT = 10.0  # how long we wait for PING after spawning
JOIN_TIMEOUT = 10.0  # default bound for background threads


# ---------------------------------------------------------------------------
# small utilities


def wait_until(predicate, timeout=10.0, interval=0.005, message="condition"):
    """Poll predicate() until it returns a truthy value; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message} (last value: {last!r})")
        time.sleep(interval)


def error_code(exc: BaseException) -> str:
    """The error code (first word) of a Redis error reply raised by redis-py.

    redis-py strips a known prefix such as "ERR" from the message and keeps it in
    `status_code`; unknown prefixes (WRONGTYPE, NOTACQUIRED, ...) stay in the message.
    """
    code = getattr(exc, "status_code", None)
    if code:
        return code
    text = str(exc)
    return text.split(" ", 1)[0] if text else ""


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port(cluster: bool = False) -> int:
    if not cluster:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    # cluster mode also listens on port + 10000, and refuses ports above 55535
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 30000)
        if _port_free(port) and _port_free(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _to_str(x):
    return x.decode() if isinstance(x, (bytes, bytearray)) else x


# ---------------------------------------------------------------------------
# a raw RESP client, for tests that care about the exact reply type


class RespError(Exception):
    """An error reply read by RawConnection (returned, not raised)."""

    @property
    def code(self) -> str:
        return str(self).split(" ", 1)[0]


class RawConnection:
    """Minimal RESP2/RESP3 client that keeps the top-level reply type in `last_type`.

    call() returns: bytes for bulk and simple strings, int, None for any null,
    list, dict (RESP3 maps), RespError for error replies (returned, not raised).
    last_type is the first byte of the reply (b"$", b"+", b"_", b"*", b"%", b":", b"-" ...).
    """

    def __init__(self, port: int, protocol: int = 2, timeout: float = SOCKET_TIMEOUT):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.last_type = None
        self.protocol = protocol
        if protocol == 3:
            hello = self.call("HELLO", "3")
            assert isinstance(hello, dict), hello

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    @staticmethod
    def encode(*args) -> bytes:
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            elif isinstance(a, int):
                a = str(a).encode()
            elif isinstance(a, float):
                a = repr(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def send(self, *args):
        self.sock.sendall(self.encode(*args))

    def call(self, *args):
        self.send(*args)
        return self.read()

    def pending(self, wait: float = 0.0) -> bool:
        """True if unread reply bytes are (or within `wait` seconds become) available."""
        if self.buf:
            return True
        self.sock.settimeout(wait if wait > 0 else 0.0001)
        try:
            chunk = self.sock.recv(65536)
        except (socket.timeout, BlockingIOError):
            return False
        finally:
            self.sock.settimeout(SOCKET_TIMEOUT)
        if not chunk:
            raise ConnectionError("connection closed by server")
        self.buf += chunk
        return True

    def read(self, timeout: float = SOCKET_TIMEOUT):
        self.sock.settimeout(timeout)
        try:
            t = self._peek_type()
            self.last_type = t
            return self._read_value()
        finally:
            self.sock.settimeout(SOCKET_TIMEOUT)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed by server")
        self.buf += chunk

    def _peek_type(self) -> bytes:
        while not self.buf:
            self._fill()
        return self.buf[:1]

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2 :]
        return data

    def _read_value(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest
        if t == b"-" or t == b"!":
            msg = self._exact(int(rest)) if t == b"!" else rest
            return RespError(msg.decode(errors="replace"))
        if t == b":":
            return int(rest)
        if t == b"$" or t == b"=":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if t == b"_":
            return None
        if t == b"#":
            return rest == b"t"
        if t == b",":
            return float(rest)
        if t == b"(":
            return int(rest)
        if t in (b"*", b"~", b">"):
            n = int(rest)
            return None if n < 0 else [self._read_value() for _ in range(n)]
        if t == b"%" or t == b"|":
            n = int(rest)
            d = {}
            for _ in range(n):
                k = self._read_value()
                d[k] = self._read_value()
            if t == b"|":  # attribute: skip it, return the value that follows
                return self._read_value()
            return d
        raise AssertionError(f"unknown RESP type {line!r}")


# ---------------------------------------------------------------------------
# the server


class RedisServer:
    def __init__(self, module_args=(), extra_config=(), load_module=True, module_path=None,
                 env=None):
        self.module_path = module_path or LOCK_MODULE
        self.env = dict(env or {})  # added to the server's environment
        self.module_args = [str(a) for a in module_args]
        self.extra_config = list(extra_config)  # [(name, value), ...]
        self.load_module = load_module
        self.port = None
        self.proc = None
        self.dir = tempfile.mkdtemp(prefix="redis-lock-test-")
        self.log_path = os.path.join(self.dir, "redis.log")
        self._clients = []
        self._raws = []
        self._threads = []
        self.started = False

    # -- lifecycle ----------------------------------------------------------

    def _argv(self):
        argv = [
            REDIS_SERVER,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--enable-debug-command", "yes",
            "--enable-module-command", "yes",
            "--dir", self.dir,
            "--daemonize", "no",
            "--loglevel", "verbose",
        ]
        for name, value in self.extra_config:
            argv += ["--" + name, str(value)]
        if self.load_module:
            argv += ["--loadmodule", self.module_path, *self.module_args]
        return argv

    def start(self):
        if self.try_start():
            return self
        pytest.fail(f"redis-server did not start ({self._argv()}):\n{self.log_tail()}")

    def try_start(self) -> bool:
        """Spawn the server; True once it answers PING, False if it exited at startup."""
        if self.load_module and not os.path.exists(self.module_path):
            pytest.fail(f"module not built: {self.module_path} (set LOCK_MODULE or build it)")
        if shutil.which(REDIS_SERVER) is None and not os.path.exists(REDIS_SERVER):
            pytest.fail(f"redis-server binary not found: {REDIS_SERVER} (set REDIS_SERVER)")
        for _attempt in range(5):
            self.port = _free_port(cluster=any(
                name == "cluster-enabled" and str(v) == "yes" for name, v in self.extra_config))
            self._log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                self._argv(), stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env} if self.env else None,
            )
            if self._wait_ready():
                self.started = True
                return True
            # died at startup: retry only if the port was taken under our feet
            self._kill()
            if "Address already in use" not in self.log_tail():
                break
        return False

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    s.settimeout(1)
                    if s.recv(64).startswith(b"+PONG"):
                        return True
            except OSError:
                pass
            time.sleep(0.01)
        return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines=60) -> str:
        try:
            with open(self.log_path, "rb") as f:
                data = f.read().decode(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(data[-lines:])

    def crash_excerpt(self) -> str:
        """The interesting part of the log: Redis's bug report header and stack trace if any,
        else the last lines."""
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        for i, line in enumerate(lines):
            if "BUG REPORT START" in line or "ASSERTION FAILED" in line or "crashed by signal" in line:
                out = lines[max(0, i - 10): i + 4]
                for j in range(i + 4, len(lines)):
                    if "STACK TRACE" in lines[j]:
                        out += ["..."] + lines[j: j + 25]
                        break
                return "\n".join(out)
        return "\n".join(lines[-60:])

    def _kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def stop(self):
        """Kill the server; return an error string if it had crashed or hung, else None."""
        problem = None
        if self.proc is not None and self.started:
            if not self.alive():
                problem = f"redis-server died during the test (exit code {self.proc.returncode})"
            else:
                # the server must still answer (a module deadlock or endless loop is a failure)
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                        s.settimeout(5)
                        s.sendall(b"PING\r\n")
                        if not s.recv(64).startswith(b"+PONG"):
                            problem = "redis-server did not answer PING at teardown"
                except OSError as e:
                    problem = f"redis-server did not answer PING at teardown: {e!r}"
        for c in self._clients:
            try:
                c.close()
            except Exception:
                pass
        for r in self._raws:
            r.close()
        self._kill()
        for t in self._threads:
            t.thread.join(timeout=5)
        if problem:
            problem += "\n--- from " + self.log_path + " ---\n" + self.crash_excerpt()
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        return problem

    # -- connections ----------------------------------------------------------

    def client(self, protocol: int = 2, **kw) -> redis.Redis:
        opts = dict(
            host="127.0.0.1",
            port=self.port,
            protocol=protocol,
            decode_responses=False,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
            # never re-send a command: a retried LOCK.ACQUIRE would be a second waiter
            retry=Retry(NoBackoff(), 0),
            maint_notifications_config=MaintNotificationsConfig(enabled=False),
        )
        opts.update(kw)
        c = redis.Redis(**opts)
        self._clients.append(c)
        return c

    def raw(self, protocol: int = 2) -> RawConnection:
        r = RawConnection(self.port, protocol)
        self._raws.append(r)
        return r


# ---------------------------------------------------------------------------
# background (blocking) calls


class Background:
    """Run fn(conn) in a daemon thread, on a dedicated single-connection client.

    The client id is known before the thread starts (for CLIENT KILL / UNBLOCK).
    After .result() / .join(), .reply or .error hold the outcome and .elapsed
    the seconds the call took.
    """

    def __init__(self, server: RedisServer, fn, protocol: int = 2, label: str = "", **client_kw):
        self.server = server
        self.fn = fn
        self.label = label
        self.conn = server.client(protocol=protocol, single_connection_client=True, **client_kw)
        self.client_id = self.conn.client_id()
        self.reply = None
        self.error = None
        self.t0 = None
        self.t1 = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"bg-{label}")
        server._threads.append(self)

    def start(self):
        self.thread.start()
        return self

    def _run(self):
        self.t0 = time.monotonic()
        try:
            self.reply = self.fn(self.conn)
        except BaseException as e:  # noqa: BLE001 - recorded for the test to inspect
            self.error = e
        finally:
            self.t1 = time.monotonic()
            self.done.set()

    @property
    def elapsed(self):
        return None if self.t1 is None else self.t1 - self.t0

    def is_running(self) -> bool:
        return self.thread.is_alive() and not self.done.is_set()

    def join(self, timeout: float = JOIN_TIMEOUT):
        if not self.done.wait(timeout):
            pytest.fail(f"background call {self.label!r} still blocked after {timeout}s")
        self.thread.join(timeout)
        return self

    def result(self, timeout: float = JOIN_TIMEOUT):
        """Join and return the reply; re-raise the exception the call got."""
        self.join(timeout)
        if self.error is not None:
            raise self.error
        return self.reply

    def assert_clean(self):
        """The connection has no extra reply queued (exactly one reply was sent)."""
        marker = b"marker-%d" % id(self)
        got = self.conn.execute_command("ECHO", marker)
        assert got == marker, f"extra reply pending on the waiter's connection: {got!r}"

    def close_socket(self):
        """Close the waiter's socket under it (as a client process that just goes away)."""
        sock = self.conn.connection._sock
        sock.shutdown(socket.SHUT_RDWR)


def acquire_bg(server: RedisServer, name, *options, protocol: int = 2, label: str = "",
               then=None, **client_kw) -> Background:
    """Start a blocking LOCK.ACQUIRE <name> <options...> in a thread.

    If `then` is given, then(conn, reply) runs in the thread right after the reply
    (e.g. to release) and its return value is ignored; .reply is still the ACQUIRE reply.
    """

    def fn(conn):
        reply = conn.execute_command("LOCK.ACQUIRE", name, *options)
        if then is not None:
            then(conn, reply)
        return reply

    return Background(server, fn, protocol=protocol, label=label or repr(name), **client_kw).start()


# ---------------------------------------------------------------------------
# LOCK.INFO and keyspace helpers


def lock_info(client, name) -> dict:
    """LOCK.INFO as {field name (str): value}; accepts a RESP3 map or a RESP2 flat array."""
    reply = client.execute_command("LOCK.INFO", name)
    if isinstance(reply, dict):
        return {_to_str(k): v for k, v in reply.items()}
    assert isinstance(reply, list) and len(reply) % 2 == 0, f"bad LOCK.INFO reply {reply!r}"
    return {_to_str(reply[i]): reply[i + 1] for i in range(0, len(reply), 2)}


def waiters(client, name) -> int:
    return int(lock_info(client, name)["waiters"])


def wait_waiters(client, name, n: int, timeout: float = 10.0):
    """Bounded poll until LOCK.INFO <name> reports exactly n waiters."""
    wait_until(lambda: waiters(client, name) == n, timeout=timeout,
               message=f"LOCK.INFO {name!r} waiters == {n} (now {waiters(client, name)})")


def snapshot(client) -> dict:
    """Everything observable about the keyspace of the client's db, for equality checks.

    DEBUG DIGEST covers values and absolute expire times of every db; the per-key dump
    makes a failure readable. TTLs are reported as has-ttl booleans (they tick).
    """
    digest = client.execute_command("DEBUG", "DIGEST")
    keys = {}
    for k in client.scan_iter(count=1000):
        t = _to_str(client.type(k))
        if t == "string":
            v = client.get(k)
        elif t == "list":
            v = client.lrange(k, 0, -1)
        elif t == "hash":
            v = client.hgetall(k)
        elif t == "set":
            v = sorted(client.smembers(k))
        else:
            v = None
        keys[k] = (t, v, client.pttl(k) >= 0)
    return {"digest": digest, "keys": keys}


# ---------------------------------------------------------------------------
# assertions shared by the test files

AUTO_ID = re.compile(rb"^[A-Za-z0-9+/]{24}$")
DEFAULT_SIGNAL_EXPIRE = 1000


def lk(name: bytes) -> bytes:
    return b"lock:" + name


def sig(name: bytes) -> bytes:
    return b"lock-signal:" + name


def assert_pttl(c, key, expected_ms, slack_ms=None):
    """PTTL of key is in (expected - slack, expected]; slack defaults to min(2000, expected/2)."""
    if slack_ms is None:
        slack_ms = min(2000, expected_ms // 2)
    pttl = c.pttl(key)
    assert expected_ms - slack_ms < pttl <= expected_ms, f"PTTL {key!r} = {pttl}, expected ~{expected_ms}"


def assert_signalled(c, name, expire_ms=DEFAULT_SIGNAL_EXPIRE):
    """The signal list is exactly [b"1"] and expires in about expire_ms."""
    assert c.type(sig(name)) == b"list"
    assert c.lrange(sig(name), 0, -1) == [b"1"]
    assert_pttl(c, sig(name), expire_ms)


# ---------------------------------------------------------------------------
# knobs for slow servers (valgrind, tools/reliability/leak-check.sh); no effect when unset
#   REDIS_START_TIMEOUT=<s>  how long a server may take to answer PING after spawning (default 10)
#   REDIS_STOP_SIGNAL=TERM   stop servers with SIGTERM and wait for them to exit (valgrind writes
#                            its leak report at exit), SIGKILL only after REDIS_STOP_TIMEOUT
#                            seconds (default 120)

START_TIMEOUT = float(os.environ.get("REDIS_START_TIMEOUT") or START_TIMEOUT)
STOP_TIMEOUT = float(os.environ.get("REDIS_STOP_TIMEOUT") or 120)


def _terminate_then_kill(self, _kill=RedisServer._kill):
    if self.proc is not None and self.proc.poll() is None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass  # _kill sends SIGKILL
    _kill(self)


if os.environ.get("REDIS_STOP_SIGNAL", "").upper() in ("TERM", "SIGTERM"):
    RedisServer._kill = _terminate_then_kill
