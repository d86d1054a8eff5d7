"""Small helpers shared by the redis_lock_native tests."""

import threading
import time

import pytest
import redis


def cmd_calls(client, command):
    """How many times `command` ran on the server (INFO commandstats), 0 if never."""
    stats = client.info("commandstats")
    entry = stats.get("cmdstat_" + command.lower())
    return entry["calls"] if entry else 0


def owner(client, name):
    v = client.execute_command("LOCK.OWNER", name)
    return v.decode() if isinstance(v, bytes) else v


class Call:
    """Run fn() in a daemon thread; .result(timeout) joins (bounded) and returns / re-raises."""

    def __init__(self, fn, label=""):
        self.fn = fn
        self.label = label
        self.value = None
        self.error = None
        self.t0 = self.t1 = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"call-{label}")
        self.thread.start()

    def _run(self):
        self.t0 = time.monotonic()
        try:
            self.value = self.fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            self.error = e
        finally:
            self.t1 = time.monotonic()
            self.done.set()

    @property
    def elapsed(self):
        return None if self.t1 is None else self.t1 - self.t0

    def running(self):
        return not self.done.is_set()

    def result(self, timeout=10.0):
        if not self.done.wait(timeout):
            pytest.fail(f"call {self.label!r} still running after {timeout}s")
        if self.error is not None:
            raise self.error
        return self.value


def plain_client(server, protocol=3, **kw):
    """A redis-py client with redis-py's own defaults (retries included), unlike server.client()."""
    c = redis.Redis(host="127.0.0.1", port=server.port, protocol=protocol, **kw)
    server._clients.append(c)  # closed by the harness at teardown
    return c
