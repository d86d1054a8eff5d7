"""Regressions of issue 15 (reliability and security): input edge cases, writable replicas,
leaked timers and records, undelivered grants, ACL key permissions."""

import time

import pytest
import redis

from harness import LOCK_MODULE, RedisServer, acquire_bg, error_code, wait_until, wait_waiters


# ---------------------------------------------------------------------------
# 8. input


def test_tiny_positive_timeout_waits_and_ends(server):
    """1e-400 underflows an f64 to 0 (which would mean forever): it must be a short wait."""
    c = server.client()
    c.execute_command("LOCK.ACQUIRE", "t", "ID", "h")
    w = acquire_bg(server, "t", "ID", "w", "TIMEOUT", "1e-400")
    assert w.result(timeout=5) is None
    assert c.execute_command("LOCK.OWNER", "t") == b"h"


@pytest.mark.parametrize("option", ["EX", "PX"])
@pytest.mark.parametrize("value", ["01", "00", "-0", "+1", " 1", "1 "])
def test_expiry_spellings_set_refuses_are_refused(server, option, value):
    c = server.client()
    with pytest.raises(redis.ResponseError) as set_error:
        c.execute_command("SET", "k", "v", option, value)
    with pytest.raises(redis.ResponseError) as acquire_error:
        c.execute_command("LOCK.ACQUIRE", "n", "ID", "a", option, value)
    assert error_code(acquire_error.value) == error_code(set_error.value) == "ERR"
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "a")
    with pytest.raises(redis.ResponseError):
        c.execute_command("LOCK.EXTEND", "n", "a", option, value)
    assert c.dbsize() == 1 and c.pttl("lock:n") == -1


@pytest.mark.parametrize("args", [["bogus", "1"], ["signal-expire"],
                                  ["signal-expire", "500", "bogus", "1"]])
def test_unknown_or_incomplete_module_argument_fails_the_load(make_server, args):
    s = make_server(load_module=False)
    c = s.client()
    with pytest.raises(redis.ResponseError):
        c.execute_command("MODULE", "LOAD", LOCK_MODULE, *args)
    assert not any(b"lock" in repr(m).encode() for m in c.execute_command("MODULE", "LIST"))
    name = args[0] if args[0] == "bogus" or len(args) == 1 else "bogus"
    wait_until(lambda: f"'{name}'" in s.log_tail(200), timeout=5,
               message=f"a log line naming {name}")


def test_server_refuses_to_start_with_unknown_module_argument():
    s = RedisServer(module_args=["bogus", "1"])
    try:
        assert not s.try_start(), "server started with module argument 'bogus'"
        assert "'bogus'" in s.log_tail(200)
    finally:
        s.stop()
