"""Every bad input gets an error reply with the right CODE and leaves the keyspace unchanged.

Only the error code (first word) is checked, never the wording. The keyspace is compared
with DEBUG DIGEST plus a dump of every key (harness.snapshot) before and after.

Names used by the cases (see the `ks` fixture):
    free     no lock, no signal: a command that wrongly succeeded would create keys
    held     lock:held = "owner", EX 100: a wrongly accepted RELEASE/EXTEND/RESET would change it
    noexp    lock:noexp = "owner2", no TTL
    listy    lock:listy is a list          hashy   lock:hashy is a hash
    strsig   lock:strsig = "owner3" EX 100, lock-signal:strsig is a string
    hashsig  lock:hashsig = "owner4", lock-signal:hashsig is a hash
    freestr  no lock, lock-signal:freestr is a string
"""

import pytest

from harness import acquire_bg, error_code, lock_info, snapshot, wait_waiters


@pytest.fixture
def ks(c):
    c.set("lock:held", "owner", ex=100)
    c.set("lock:noexp", "owner2")
    c.rpush("lock:listy", "a", "b")
    c.hset("lock:hashy", "f", "v")
    c.set("lock:strsig", "owner3", ex=100)
    c.set("lock-signal:strsig", "not-a-list")
    c.set("lock:hashsig", "owner4")
    c.hset("lock-signal:hashsig", "f", "v")
    c.set("lock-signal:freestr", "not-a-list")
    c.set("unrelated", "1")
    return c


def check_error(c, code, args):
    before = snapshot(c)
    with pytest.raises(Exception) as ei:
        reply = c.execute_command(*args)
        print("unexpected reply:", reply)
    got = error_code(ei.value)
    after = snapshot(c)
    assert got == code, f"{args!r}: got {ei.value!r}, expected code {code}"
    assert after == before, f"{args!r} changed the keyspace"
    # and no waiter was left behind
    if len(args) > 1 and args[0].upper() == "LOCK.ACQUIRE" and args[1] in ("free", "held", "noexp"):
        assert lock_info(c, args[1])["waiters"] == 0


A = "LOCK.ACQUIRE"
R = "LOCK.RELEASE"
E = "LOCK.EXTEND"

BAD_EXPIRES = ["abc", "-1", "0", "99999999999999999999", "1.5", "", "10abc", " 10"]
BAD_SIGNAL_EXPIRES = ["abc", "-1", "0", "99999999999999999999", "1.5", ""]
BAD_TIMEOUTS = ["abc", "", "1x", "nan", "inf", "1e400", "99999999999999999999"]

CASES = [
    # --- wrong arity
    ("ERR", [A]),
    ("ERR", [R]),
    ("ERR", [R, "held"]),
    ("ERR", [E]),
    ("ERR", [E, "held"]),
    ("ERR", [E, "held", "owner"]),  # EXTEND needs EX or PX
    ("ERR", ["LOCK.OWNER"]),
    ("ERR", ["LOCK.OWNER", "held", "extra"]),
    ("ERR", ["LOCK.RESET"]),
    ("ERR", ["LOCK.RESETALL", "extra"]),
    ("ERR", ["LOCK.INFO"]),
    ("ERR", ["LOCK.INFO", "held", "extra"]),
    # --- option without its value
    ("ERR", [A, "free", "ID"]),
    ("ERR", [A, "free", "EX"]),
    ("ERR", [A, "free", "PX"]),
    ("ERR", [A, "free", "TIMEOUT"]),
    ("ERR", [A, "free", "ID", "a", "EX"]),
    ("ERR", [R, "held", "owner", "SIGNAL-EXPIRE"]),
    ("ERR", ["LOCK.RESET", "held", "SIGNAL-EXPIRE"]),
    ("ERR", [E, "held", "owner", "EX"]),
    ("ERR", [E, "held", "owner", "PX"]),
    # --- unknown option / stray argument
    ("ERR", [A, "free", "FOO"]),
    ("ERR", [A, "free", "ID", "a", "FOO"]),
    ("ERR", [A, "free", "NX"]),
    ("ERR", [A, "free", "KEEPTTL"]),
    ("ERR", [A, "free", "ID", "a", "b"]),
    ("ERR", [R, "held", "owner", "FOO"]),
    ("ERR", [R, "held", "owner", "extra", "args"]),
    ("ERR", [E, "held", "owner", "EX", "10", "FOO"]),
    ("ERR", [E, "held", "owner", "FOO", "10"]),
    ("ERR", [E, "held", "owner", "EX", "10", "NOWAIT"]),
    ("ERR", ["LOCK.RESET", "held", "FOO"]),
    ("ERR", ["LOCK.RESET", "held", "FOO", "10"]),
    # --- repeated option
    ("ERR", [A, "free", "ID", "a", "ID", "a"]),
    ("ERR", [A, "free", "ID", "a", "ID", "b"]),
    ("ERR", [A, "free", "id", "a", "ID", "b"]),
    ("ERR", [A, "free", "EX", "10", "EX", "10"]),
    ("ERR", [A, "free", "PX", "100", "PX", "100"]),
    ("ERR", [A, "free", "NOWAIT", "NOWAIT"]),
    ("ERR", [A, "free", "nowait", "NOWAIT"]),
    ("ERR", [A, "free", "TIMEOUT", "1", "TIMEOUT", "1"]),
    ("ERR", [R, "held", "owner", "SIGNAL-EXPIRE", "100", "SIGNAL-EXPIRE", "100"]),
    ("ERR", ["LOCK.RESET", "held", "SIGNAL-EXPIRE", "100", "SIGNAL-EXPIRE", "100"]),
    ("ERR", [E, "held", "owner", "EX", "10", "EX", "10"]),
    ("ERR", [E, "held", "owner", "PX", "10", "PX", "10"]),
    # --- conflicting options
    ("ERR", [A, "free", "EX", "10", "PX", "100"]),
    ("ERR", [A, "free", "PX", "100", "EX", "10"]),
    ("ERR", [A, "free", "ex", "10", "Px", "100"]),
    ("ERR", [E, "held", "owner", "EX", "10", "PX", "100"]),
    # --- numbers
    *[("ERR", [A, "free", opt, v]) for opt in ("EX", "PX") for v in BAD_EXPIRES],
    *[("ERR", [E, "held", "owner", opt, v]) for opt in ("EX", "PX") for v in BAD_EXPIRES],
    ("ERR", [A, "free", "EX", "9223372036854775807"]),  # * 1000 overflows
    ("ERR", [A, "free", "PX", "9223372036854775807"]),  # now + px overflows
    ("ERR", [E, "held", "owner", "EX", "9223372036854775807"]),
    ("ERR", [E, "held", "owner", "PX", "9223372036854775807"]),
    *[("ERR", [R, "held", "owner", "SIGNAL-EXPIRE", v]) for v in BAD_SIGNAL_EXPIRES],
    *[("ERR", ["LOCK.RESET", "held", "SIGNAL-EXPIRE", v]) for v in BAD_SIGNAL_EXPIRES],
    *[("ERR", [A, "free", "TIMEOUT", v]) for v in BAD_TIMEOUTS],
    # --- timeouts
    ("INVALIDTIMEOUT", [A, "free", "TIMEOUT", "-1"]),
    ("INVALIDTIMEOUT", [A, "free", "TIMEOUT", "-0.5"]),
    ("INVALIDTIMEOUT", [A, "held", "TIMEOUT", "-1"]),
    ("TIMEOUTNOTUSABLE", [A, "free", "NOWAIT", "TIMEOUT", "1"]),
    ("TIMEOUTNOTUSABLE", [A, "free", "TIMEOUT", "1", "NOWAIT"]),
    ("TIMEOUTNOTUSABLE", [A, "free", "NOWAIT", "TIMEOUT", "0"]),
    ("TIMEOUTNOTUSABLE", [A, "free", "nowait", "timeout", "1"]),
    ("TIMEOUTNOTUSABLE", [A, "held", "NOWAIT", "TIMEOUT", "1"]),
    # --- ids
    ("ERR", [A, "free", "ID", ""]),
    # --- python-redis-lock errors
    ("ALREADYACQUIRED", [A, "held", "ID", "owner"]),
    ("ALREADYACQUIRED", [A, "held", "ID", "owner", "NOWAIT"]),
    ("NOTACQUIRED", [R, "held", "not-owner"]),
    ("NOTACQUIRED", [R, "free", "owner"]),
    ("NOTACQUIRED", [E, "held", "not-owner", "EX", "10"]),
    ("NOTACQUIRED", [E, "free", "owner", "EX", "10"]),
    ("NOTEXPIRABLE", [E, "noexp", "owner2", "EX", "10"]),
    ("NOTEXPIRABLE", [E, "noexp", "owner2", "PX", "10"]),
    # --- wrong type of lock:<name>
    ("WRONGTYPE", [A, "listy"]),
    ("WRONGTYPE", [A, "listy", "NOWAIT"]),
    ("WRONGTYPE", [A, "hashy", "ID", "a", "EX", "10"]),
    ("WRONGTYPE", [A, "hashy", "TIMEOUT", "1"]),
    ("WRONGTYPE", [R, "listy", "a"]),
    ("WRONGTYPE", [R, "hashy", "a"]),
    ("WRONGTYPE", ["LOCK.RESET", "listy"]),
    ("WRONGTYPE", ["LOCK.RESET", "hashy"]),
    ("WRONGTYPE", [E, "listy", "a", "EX", "10"]),
    ("WRONGTYPE", ["LOCK.OWNER", "listy"]),
    ("WRONGTYPE", ["LOCK.INFO", "hashy"]),
    # --- wrong type of lock-signal:<name>
    ("WRONGTYPE", [A, "freestr"]),
    ("WRONGTYPE", [A, "freestr", "NOWAIT"]),
    ("WRONGTYPE", [A, "strsig", "NOWAIT"]),
    ("WRONGTYPE", [A, "hashsig", "TIMEOUT", "1"]),
    ("WRONGTYPE", [R, "strsig", "owner3"]),
    ("WRONGTYPE", [R, "hashsig", "owner4"]),
    ("WRONGTYPE", [R, "strsig", "owner3", "SIGNAL-EXPIRE", "100"]),
    ("WRONGTYPE", ["LOCK.RESET", "strsig"]),
    ("WRONGTYPE", ["LOCK.RESET", "hashsig"]),
    ("WRONGTYPE", ["LOCK.RESET", "freestr"]),
]


def _case_id(case):
    code, args = case
    return code + ":" + " ".join(a if a else "''" for a in args)


@pytest.mark.parametrize("code,args", CASES, ids=[_case_id(x) for x in CASES])
def test_error(ks, code, args):
    check_error(ks, code, args)


# ---------------------------------------------------------------------------
# errors while module waiters are queued


def test_release_with_waiter_and_bad_signal_key_is_wrongtype(server, protocol):
    """RELEASE checks both keys before writing anything, even when a waiter would take the lock."""
    c = server.client(protocol=protocol)
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder")
    w = acquire_bg(server, "n", "ID", "waiter", "TIMEOUT", "0", protocol=protocol)
    wait_waiters(c, "n", 1)
    c.set("lock-signal:n", "not-a-list")
    before = snapshot(c)
    with pytest.raises(Exception) as ei:
        c.execute_command("LOCK.RELEASE", "n", "holder")
    assert error_code(ei.value) == "WRONGTYPE"
    assert snapshot(c) == before
    assert c.get("lock:n") == b"holder"
    assert w.is_running()
    assert lock_info(c, "n")["waiters"] == 1
    # once the signal key is fixed, the waiter gets the lock
    c.delete("lock-signal:n")
    assert c.execute_command("LOCK.RELEASE", "n", "holder") == b"OK"
    assert w.result() == b"waiter"
    assert c.get("lock:n") == b"waiter"


def test_reset_with_waiter_and_bad_signal_key_is_wrongtype(server, protocol):
    c = server.client(protocol=protocol)
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder")
    w = acquire_bg(server, "n", "ID", "waiter", protocol=protocol)
    wait_waiters(c, "n", 1)
    c.hset("lock-signal:n", "f", "v")
    before = snapshot(c)
    with pytest.raises(Exception) as ei:
        c.execute_command("LOCK.RESET", "n")
    assert error_code(ei.value) == "WRONGTYPE"
    assert snapshot(c) == before
    assert w.is_running()
    assert lock_info(c, "n")["waiters"] == 1


def test_bad_acquire_does_not_queue_a_waiter(server, protocol):
    """A rejected ACQUIRE on a busy lock must not block nor queue."""
    c = server.client(protocol=protocol)
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder")
    for args in (["TIMEOUT", "-1"], ["NOWAIT", "TIMEOUT", "1"], ["EX", "0"], ["FOO"]):
        with pytest.raises(Exception):
            c.execute_command("LOCK.ACQUIRE", "n", *args)
    assert lock_info(c, "n")["waiters"] == 0
    assert c.execute_command("LOCK.RELEASE", "n", "holder") == b"OK"
    assert c.exists("lock:n") == 0


def test_connection_still_usable_after_errors(c):
    for args in (["LOCK.ACQUIRE"], ["LOCK.ACQUIRE", "n", "EX", "abc"], ["LOCK.RELEASE", "n", "x"]):
        with pytest.raises(Exception):
            c.execute_command(*args)
    assert c.execute_command("LOCK.ACQUIRE", "n", "ID", "ok") == b"ok"
