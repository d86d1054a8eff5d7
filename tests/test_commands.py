"""Happy paths and replies of every LOCK.* command, under RESP2 and RESP3 (fixture `c`)."""

import pytest
import redis

from harness import (AUTO_ID, LOCK_MODULE, assert_pttl, assert_signalled,
                     RedisServer, error_code, lk, lock_info, sig)


def all_keys(c):
    return set(c.scan_iter(count=1000))


def config_get(c, name):
    reply = c.execute_command("CONFIG", "GET", name)
    if isinstance(reply, dict):
        items = list(reply.items())
    else:
        items = list(zip(reply[::2], reply[1::2]))
    assert len(items) == 1, f"CONFIG GET {name}: {reply!r}"
    return items[0][1]


def module_names(c):
    names = []
    for m in c.execute_command("MODULE", "LIST"):
        if isinstance(m, dict):
            fields = m
        else:
            fields = dict(zip(m[::2], m[1::2]))
        names.append(fields.get(b"name", fields.get("name")))
    return names


def err(c, *args):
    """Run a command that must fail; return its error code."""
    with pytest.raises(Exception) as ei:
        c.execute_command(*args)
    return error_code(ei.value)


# ---------------------------------------------------------------------------
# module


def test_module_is_listed_as_lock(c):
    assert b"lock" in module_names(c)


def test_module_load_at_runtime_with_args(make_server):
    s = make_server(load_module=False)
    c = s.client()
    assert b"lock" not in module_names(c)
    assert c.execute_command("MODULE", "LOAD", LOCK_MODULE, "signal-expire", "700") in (b"OK", True)
    assert b"lock" in module_names(c)
    assert config_get(c, "lock.signal-expire") == b"700"
    assert c.execute_command("LOCK.ACQUIRE", "n", "ID", "a") == b"a"
    assert c.execute_command("LOCK.RELEASE", "n", "a") == b"OK"
    assert_signalled(c, b"n", 700)


@pytest.mark.parametrize("bad", ["abc", "-5", "0"])
def test_module_load_rejects_bad_signal_expire_arg(make_server, bad):
    s = make_server(load_module=False)
    c = s.client()
    try:
        c.execute_command("MODULE", "LOAD", LOCK_MODULE, "signal-expire", bad)
    except redis.ResponseError:
        pass
    else:
        pytest.fail(f"MODULE LOAD ... signal-expire {bad} succeeded; "
                    f"CONFIG GET lock.signal-expire = {config_get(c, 'lock.signal-expire')!r}")
    assert b"lock" not in module_names(c)


@pytest.mark.parametrize("bad", ["abc", "-5", "0"])
def test_server_refuses_to_start_with_bad_signal_expire_arg(bad):
    s = RedisServer(module_args=["signal-expire", bad])
    try:
        assert not s.try_start(), f"server started with signal-expire {bad}"
    finally:
        s.stop()


def test_command_key_is_the_name(server):
    """The name (argument 1) is the routing position clients compute the slot from (COMMAND's
    first/last/step), declared NOT_KEY so ACL patterns apply to lock:<name> instead
    (test_acl_keys.py); COMMAND GETKEYS follows the key specs and so lists no key."""
    c = server.client()
    names = ["lock.acquire", "lock.release", "lock.extend", "lock.owner", "lock.reset", "lock.info",
             "lock.waiters"]
    info = c.execute_command("COMMAND", "INFO", *names)
    for name in names:
        entry = info[name]
        assert (entry["first_key_pos"], entry["last_key_pos"], entry["step_count"]) == (1, 1, 1), entry
    r = server.raw()
    reply = r.call("COMMAND", "GETKEYS", "LOCK.OWNER", "x{t}")
    assert isinstance(reply, Exception) and "no key" in str(reply), reply


# ---------------------------------------------------------------------------
# LOCK.ACQUIRE


def test_acquire_generates_python_style_id(c):
    token = c.execute_command("LOCK.ACQUIRE", "n")
    assert isinstance(token, bytes)
    assert AUTO_ID.match(token), token
    assert c.get(lk(b"n")) == token
    assert c.pttl(lk(b"n")) == -1  # no EX/PX: never expires
    other = c.execute_command("LOCK.ACQUIRE", "m")
    assert AUTO_ID.match(other) and other != token


def test_acquire_generated_ids_are_random(c):
    ids = {c.execute_command("LOCK.ACQUIRE", f"n{i}") for i in range(50)}
    assert len(ids) == 50


def test_acquire_with_given_id(c):
    assert c.execute_command("LOCK.ACQUIRE", "n", "ID", "my-id") == b"my-id"
    assert c.get(lk(b"n")) == b"my-id"
    assert c.pttl(lk(b"n")) == -1


def test_acquire_ex_sets_ttl(c):
    assert c.execute_command("LOCK.ACQUIRE", "n", "ID", "a", "EX", "10") == b"a"
    assert_pttl(c, lk(b"n"), 10000)


def test_acquire_px_sets_ttl(c):
    assert c.execute_command("LOCK.ACQUIRE", "n", "ID", "a", "PX", "1500") == b"a"
    assert_pttl(c, lk(b"n"), 1500, slack_ms=1000)


def test_acquire_large_ex(c):
    # a year: well inside range, must not overflow into an error
    assert c.execute_command("LOCK.ACQUIRE", "n", "ID", "a", "EX", str(365 * 86400)) == b"a"
    assert_pttl(c, lk(b"n"), 365 * 86400 * 1000)


def test_acquire_keys_are_exactly_python_redis_locks(c):
    assert c.execute_command("LOCK.ACQUIRE", "n", "ID", "abc", "EX", "10") == b"abc"
    assert c.get("lock:n") == b"abc"
    assert 8 <= c.ttl("lock:n") <= 10
    # nothing else is stored in the keyspace
    assert all_keys(c) == {b"lock:n"}


def test_acquire_nowait_on_busy_lock_returns_null(c):
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder")
    assert c.execute_command("LOCK.ACQUIRE", "n", "ID", "other", "NOWAIT") is None
    assert c.execute_command("LOCK.ACQUIRE", "n", "NOWAIT") is None
    assert c.get(lk(b"n")) == b"holder"
    assert c.pttl(lk(b"n")) == -1
    assert all_keys(c) == {lk(b"n")}


def test_acquire_nowait_on_busy_lock_keeps_its_ttl(c):
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder", "EX", "100")
    assert c.execute_command("LOCK.ACQUIRE", "n", "ID", "other", "NOWAIT", "PX", "5") is None
    assert c.get(lk(b"n")) == b"holder"
    assert_pttl(c, lk(b"n"), 100000)


def test_acquire_nowait_on_free_lock_acquires(c):
    assert c.execute_command("LOCK.ACQUIRE", "n", "ID", "a", "NOWAIT", "EX", "5") == b"a"
    assert c.get(lk(b"n")) == b"a"
    assert_pttl(c, lk(b"n"), 5000)


def test_acquire_timeout_on_free_lock_acquires_at_once(c):
    assert c.execute_command("LOCK.ACQUIRE", "n", "ID", "a", "TIMEOUT", "5") == b"a"
    assert c.execute_command("LOCK.ACQUIRE", "m", "ID", "b", "TIMEOUT", "0.25", "PX", "3000") == b"b"
    assert_pttl(c, lk(b"m"), 3000)


def test_acquire_timeout_longer_than_expire_is_allowed(c):
    # python's TimeoutTooLarge is client-side only
    assert c.execute_command("LOCK.ACQUIRE", "n", "ID", "a", "EX", "1", "TIMEOUT", "100") == b"a"


@pytest.mark.parametrize("extra", [[], ["NOWAIT"], ["TIMEOUT", "1"], ["EX", "10"]],
                         ids=["blocking", "nowait", "timeout", "ex"])
def test_acquire_already_acquired(c, extra):
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "abc", "PX", "60000")
    assert err(c, "LOCK.ACQUIRE", "n", "ID", "abc", *extra) == "ALREADYACQUIRED"
    assert c.get(lk(b"n")) == b"abc"
    assert_pttl(c, lk(b"n"), 60000)


def test_acquire_options_any_order_and_case_insensitive(c):
    assert c.execute_command("LOCK.ACQUIRE", "a", "ex", "10", "id", "x") == b"x"
    assert_pttl(c, lk(b"a"), 10000)
    assert c.execute_command("LOCK.ACQUIRE", "b", "nowait", "Px", "2000", "Id", "y") == b"y"
    assert_pttl(c, lk(b"b"), 2000, slack_ms=1500)
    assert c.execute_command("LOCK.ACQUIRE", "c", "timeout", "1", "iD", "z", "eX", "3") == b"z"
    assert_pttl(c, lk(b"c"), 3000)
    assert c.execute_command("lock.acquire", "d", "NoWait") is not None


def test_acquire_reply_types_raw(server, protocol):
    r = server.raw(protocol)
    assert r.call("LOCK.ACQUIRE", "n", "ID", "abc") == b"abc"
    assert r.last_type == b"$"  # a bulk string
    token = r.call("LOCK.ACQUIRE", "m")
    assert r.last_type == b"$" and AUTO_ID.match(token)
    assert r.call("LOCK.ACQUIRE", "n", "NOWAIT") is None
    if protocol == 3:
        assert r.last_type == b"_"
    else:
        assert r.last_type in (b"$", b"*")  # $-1 or *-1


# ---------------------------------------------------------------------------
# LOCK.RELEASE


def test_release(c):
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "a", "EX", "100")
    assert c.execute_command("LOCK.RELEASE", "n", "a") == b"OK"
    assert c.exists(lk(b"n")) == 0
    assert_signalled(c, b"n")
    assert all_keys(c) == {sig(b"n")}
    # free again
    assert c.execute_command("LOCK.ACQUIRE", "n", "ID", "b", "NOWAIT") == b"b"


def test_release_signal_expire_option(c):
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "a")
    assert c.execute_command("LOCK.RELEASE", "n", "a", "SIGNAL-EXPIRE", "5000") == b"OK"
    assert c.exists(lk(b"n")) == 0
    assert_signalled(c, b"n", 5000)


def test_release_signal_expire_option_case_insensitive(c):
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "a")
    assert c.execute_command("LOCK.RELEASE", "n", "a", "signal-expire", "3000") == b"OK"
    assert_signalled(c, b"n", 3000)


def test_release_replaces_stale_signal_list(c):
    c.rpush(sig(b"n"), "x", "y", "z")
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "a")
    assert c.execute_command("LOCK.RELEASE", "n", "a") == b"OK"
    assert_signalled(c, b"n")


def test_release_of_lock_taken_by_plain_set(c):
    # a lock taken by python-redis-lock (SET NX EX) is released the same way
    c.set(lk(b"n"), b"pyid", nx=True, ex=30)
    assert c.execute_command("LOCK.RELEASE", "n", "pyid") == b"OK"
    assert c.exists(lk(b"n")) == 0
    assert_signalled(c, b"n")


def test_release_wrong_id_is_notacquired(c):
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "a", "EX", "100")
    assert err(c, "LOCK.RELEASE", "n", "b") == "NOTACQUIRED"
    assert c.get(lk(b"n")) == b"a"
    assert_pttl(c, lk(b"n"), 100000)
    assert c.exists(sig(b"n")) == 0


def test_release_free_lock_is_notacquired(c):
    assert err(c, "LOCK.RELEASE", "n", "a") == "NOTACQUIRED"
    assert all_keys(c) == set()


def test_release_twice_is_notacquired(c):
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "a")
    assert c.execute_command("LOCK.RELEASE", "n", "a") == b"OK"
    assert err(c, "LOCK.RELEASE", "n", "a") == "NOTACQUIRED"
    assert_signalled(c, b"n")


def test_release_reply_type_raw(server, protocol):
    r = server.raw(protocol)
    r.call("LOCK.ACQUIRE", "n", "ID", "a")
    assert r.call("LOCK.RELEASE", "n", "a") == b"OK"
    assert r.last_type == b"+"


# ---------------------------------------------------------------------------
# LOCK.EXTEND


def test_extend_ex(c):
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "a", "EX", "10")
    assert c.execute_command("LOCK.EXTEND", "n", "a", "EX", "100") == b"OK"
    assert c.get(lk(b"n")) == b"a"
    assert_pttl(c, lk(b"n"), 100000)


def test_extend_px(c):
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "a", "PX", "10000")
    assert c.execute_command("LOCK.EXTEND", "n", "a", "PX", "50000") == b"OK"
    assert_pttl(c, lk(b"n"), 50000)


def test_extend_can_shorten(c):
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "a", "EX", "100")
    assert c.execute_command("LOCK.EXTEND", "n", "a", "px", "3000") == b"OK"
    assert_pttl(c, lk(b"n"), 3000)


def test_extend_lock_taken_by_plain_set(c):
    c.set(lk(b"n"), b"pyid", ex=5)
    assert c.execute_command("LOCK.EXTEND", "n", "pyid", "EX", "50") == b"OK"
    assert_pttl(c, lk(b"n"), 50000)


def test_extend_without_ttl_is_notexpirable(c):
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "a")
    assert err(c, "LOCK.EXTEND", "n", "a", "EX", "10") == "NOTEXPIRABLE"
    assert c.pttl(lk(b"n")) == -1
    assert c.get(lk(b"n")) == b"a"


def test_extend_wrong_id_is_notacquired(c):
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "a", "EX", "10")
    assert err(c, "LOCK.EXTEND", "n", "b", "EX", "100") == "NOTACQUIRED"
    assert_pttl(c, lk(b"n"), 10000)


def test_extend_free_lock_is_notacquired(c):
    assert err(c, "LOCK.EXTEND", "n", "a", "EX", "100") == "NOTACQUIRED"
    assert all_keys(c) == set()


def test_extend_notacquired_wins_over_notexpirable(c):
    # python's extend script checks the owner first
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "a")
    assert err(c, "LOCK.EXTEND", "n", "b", "EX", "10") == "NOTACQUIRED"


# ---------------------------------------------------------------------------
# LOCK.OWNER


def test_owner(c):
    assert c.execute_command("LOCK.OWNER", "n") is None
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "a")
    assert c.execute_command("LOCK.OWNER", "n") == b"a"
    c.execute_command("LOCK.RELEASE", "n", "a")
    assert c.execute_command("LOCK.OWNER", "n") is None


def test_owner_of_lock_taken_by_any_client(c):
    c.set(lk(b"n"), b"someone-else")
    assert c.execute_command("LOCK.OWNER", "n") == b"someone-else"


def test_owner_reply_types_raw(server, protocol):
    r = server.raw(protocol)
    assert r.call("LOCK.OWNER", "n") is None
    if protocol == 3:
        assert r.last_type == b"_"
    r.call("LOCK.ACQUIRE", "n", "ID", "a")
    assert r.call("LOCK.OWNER", "n") == b"a"
    assert r.last_type == b"$"


# ---------------------------------------------------------------------------
# LOCK.RESET / LOCK.RESETALL


def test_reset_held_lock(c):
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "a", "EX", "100")
    assert c.execute_command("LOCK.RESET", "n") == 1
    assert c.exists(lk(b"n")) == 0
    assert_signalled(c, b"n")


def test_reset_signal_expire_option(c):
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "a")
    assert c.execute_command("LOCK.RESET", "n", "SIGNAL-EXPIRE", "4000") == 1
    assert c.exists(lk(b"n")) == 0
    assert_signalled(c, b"n", 4000)


def test_reset_free_lock_returns_0(c):
    assert c.execute_command("LOCK.RESET", "n") == 0
    assert c.exists(lk(b"n")) == 0


def test_reset_lock_taken_by_plain_set(c):
    c.set(lk(b"n"), b"whoever")
    assert c.execute_command("LOCK.RESET", "n") == 1
    assert c.exists(lk(b"n")) == 0
    assert_signalled(c, b"n")


def test_resetall_empty(c):
    assert c.execute_command("LOCK.RESETALL") == 0


def test_resetall_many_locks_only_lock_strings(c):
    n_locks = 500
    p = c.pipeline(transaction=False)
    for i in range(n_locks):
        if i % 2:
            p.set(b"lock:l%d" % i, b"id%d" % i, ex=100)
        else:
            p.set(b"lock:l%d" % i, b"id%d" % i)
    p.rpush("lock:x", "a", "b")        # lock:* but a list: untouched
    p.hset("lock:y", "f", "v")         # lock:* but a hash: untouched
    p.sadd("lock:z", "m")              # lock:* but a set: untouched
    p.set("other", "1")
    p.set("lockish", "1")              # does not match lock:*
    p.set("xlock:a", "1")
    p.execute()

    assert c.execute_command("LOCK.RESETALL") == n_locks

    keys = all_keys(c)
    for i in range(n_locks):
        assert b"lock:l%d" % i not in keys
    assert c.lrange("lock:x", 0, -1) == [b"a", b"b"]
    assert c.hget("lock:y", "f") == b"v"
    assert c.sismember("lock:z", "m")
    assert c.get("other") == b"1" and c.get("lockish") == b"1" and c.get("xlock:a") == b"1"
    # every reset lock was signalled
    for i in (0, 1, 2, n_locks // 2, n_locks - 1):
        assert_signalled(c, b"l%d" % i)
    sig_keys = {k for k in keys if k.startswith(b"lock-signal:")}
    assert sig_keys == {b"lock-signal:l%d" % i for i in range(n_locks)}
    assert keys == sig_keys | {b"lock:x", b"lock:y", b"lock:z", b"other", b"lockish", b"xlock:a"}


def test_resetall_only_current_db(server, protocol):
    c0 = server.client(protocol=protocol, db=0)
    c1 = server.client(protocol=protocol, db=1)
    c0.execute_command("LOCK.ACQUIRE", "a", "ID", "x")
    c1.execute_command("LOCK.ACQUIRE", "b", "ID", "y")
    assert c0.execute_command("LOCK.RESETALL") == 1
    assert c0.exists("lock:a") == 0
    assert c1.get("lock:b") == b"y"
    assert c1.execute_command("LOCK.RESETALL") == 1
    assert c1.exists("lock:b") == 0


def test_resetall_replaces_non_list_signal_key(c):
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "a")
    c.set(sig(b"n"), "garbage")
    assert c.execute_command("LOCK.RESETALL") == 1
    assert c.exists(lk(b"n")) == 0
    assert_signalled(c, b"n")


# ---------------------------------------------------------------------------
# LOCK.INFO


def test_info_free(c):
    info = lock_info(c, "n")
    assert info["owner"] is None
    assert info["ttl-ms"] == -2
    assert info["waiters"] == 0


def test_info_held_without_expiry(c):
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "a")
    info = lock_info(c, "n")
    assert info["owner"] == b"a"
    assert info["ttl-ms"] == -1
    assert info["waiters"] == 0


def test_info_held_with_expiry(c):
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "a", "EX", "10")
    info = lock_info(c, "n")
    assert info["owner"] == b"a"
    assert 8000 < info["ttl-ms"] <= 10000
    assert info["waiters"] == 0


def test_info_reply_shape(server, protocol):
    c = server.client(protocol=protocol)
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "a")
    reply = c.execute_command("LOCK.INFO", "n")
    if protocol == 3:
        assert isinstance(reply, dict)
        keys = set(reply)
    else:
        assert isinstance(reply, list) and len(reply) % 2 == 0
        keys = set(reply[::2])
    assert {b"owner", b"ttl-ms", b"waiters"} <= keys  # extra fields are tolerated
    r = server.raw(protocol)
    r.call("LOCK.INFO", "n")
    assert r.last_type == (b"%" if protocol == 3 else b"*")


# ---------------------------------------------------------------------------
# binary safety


BIN_NAME = b"bin\x00ary\xff\xfe\r\n name"
BIN_ID = b"\x00\xff\xc3(\r\nid \x01"


def test_binary_name_and_id(c):
    assert c.execute_command("LOCK.ACQUIRE", BIN_NAME, "ID", BIN_ID, "PX", "10000") == BIN_ID
    assert c.get(lk(BIN_NAME)) == BIN_ID
    assert_pttl(c, lk(BIN_NAME), 10000)
    assert c.execute_command("LOCK.OWNER", BIN_NAME) == BIN_ID
    assert lock_info(c, BIN_NAME)["owner"] == BIN_ID
    assert c.execute_command("LOCK.ACQUIRE", BIN_NAME, "NOWAIT") is None
    assert err(c, "LOCK.ACQUIRE", BIN_NAME, "ID", BIN_ID) == "ALREADYACQUIRED"
    assert c.execute_command("LOCK.EXTEND", BIN_NAME, BIN_ID, "EX", "20") == b"OK"
    assert_pttl(c, lk(BIN_NAME), 20000)
    # an id differing only after a NUL byte is another id
    assert err(c, "LOCK.RELEASE", BIN_NAME, BIN_ID[:1]) == "NOTACQUIRED"
    assert c.execute_command("LOCK.RELEASE", BIN_NAME, BIN_ID) == b"OK"
    assert c.exists(lk(BIN_NAME)) == 0
    assert_signalled(c, BIN_NAME)
    assert all_keys(c) == {sig(BIN_NAME)}


def test_names_differing_after_nul_are_distinct(c):
    assert c.execute_command("LOCK.ACQUIRE", b"a\x00b", "ID", "1") == b"1"
    assert c.execute_command("LOCK.ACQUIRE", b"a\x00c", "ID", "2", "NOWAIT") == b"2"
    assert c.execute_command("LOCK.ACQUIRE", b"a", "ID", "3", "NOWAIT") == b"3"
    assert all_keys(c) == {b"lock:a\x00b", b"lock:a\x00c", b"lock:a"}


def test_empty_name(c):
    assert c.execute_command("LOCK.ACQUIRE", b"", "ID", "x", "EX", "10") == b"x"
    assert c.get(b"lock:") == b"x"
    assert c.execute_command("LOCK.OWNER", b"") == b"x"
    assert lock_info(c, b"")["owner"] == b"x"
    assert c.execute_command("LOCK.ACQUIRE", b"", "NOWAIT") is None
    assert c.execute_command("LOCK.RELEASE", b"", "x") == b"OK"
    assert c.exists(b"lock:") == 0
    assert_signalled(c, b"")
    c.execute_command("LOCK.ACQUIRE", b"", "ID", "y")
    assert c.execute_command("LOCK.RESET", b"") == 1


def test_non_ascii_utf8_name_and_id(c):
    name, token = "verrou-é-锁".encode(), "propriétaire-🔒".encode()
    assert c.execute_command("LOCK.ACQUIRE", name, "ID", token) == token
    assert c.get(b"lock:" + name) == token


# ---------------------------------------------------------------------------
# configuration


def test_config_default_signal_expire(c):
    assert config_get(c, "lock.signal-expire") == b"1000"


def test_config_set_signal_expire_applies_to_release_and_reset(c):
    assert c.execute_command("CONFIG", "SET", "lock.signal-expire", "300") in (b"OK", True)
    assert config_get(c, "lock.signal-expire") == b"300"
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "a")
    c.execute_command("LOCK.RELEASE", "n", "a")
    assert_signalled(c, b"n", 300)
    c.execute_command("LOCK.ACQUIRE", "m", "ID", "a")
    assert c.execute_command("LOCK.RESET", "m") == 1
    assert_signalled(c, b"m", 300)


def test_config_set_larger_signal_expire(c):
    c.execute_command("CONFIG", "SET", "lock.signal-expire", "60000")
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "a")
    c.execute_command("LOCK.RELEASE", "n", "a")
    assert_signalled(c, b"n", 60000)


def test_signal_expire_option_overrides_config(c):
    c.execute_command("CONFIG", "SET", "lock.signal-expire", "300")
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "a")
    c.execute_command("LOCK.RELEASE", "n", "a", "SIGNAL-EXPIRE", "5000")
    assert_signalled(c, b"n", 5000)


def test_module_arg_signal_expire(make_server, protocol):
    s = make_server("signal-expire", 500)
    c = s.client(protocol=protocol)
    assert config_get(c, "lock.signal-expire") == b"500"
    c.execute_command("LOCK.ACQUIRE", "n", "ID", "a")
    c.execute_command("LOCK.RELEASE", "n", "a")
    assert_signalled(c, b"n", 500)


@pytest.mark.parametrize("bad", ["-1", "0", "abc", "1.5", "99999999999999999999"])
def test_config_set_out_of_range_is_error(c, bad):
    with pytest.raises(Exception):
        c.execute_command("CONFIG", "SET", "lock.signal-expire", bad)
    assert config_get(c, "lock.signal-expire") == b"1000"
