"""ACL key patterns apply to the keys LOCK.* really touches (issue 15, finding 7).

The name is declared NOT_KEY, so the server checks no pattern on it (and still routes by it);
the module checks the caller's user on `lock:<name>` (read or write), `lock-signal:<name>`
(written by RELEASE/RESET) and `lock-fence:<name>` (read and written by FENCE) with the access
python-redis-lock's own commands need. A refused command answers NOPERM and changes nothing.
"""

import glob
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import redis

from harness import RawConnection, acquire_bg, error_code, lock_info, snapshot, wait_waiters
from topology import running_cluster, start_replica, sync

RULES = {
    # user: ACL key rules (every user may run every command: +@all)
    "lockall": ["~lock:*", "~lock-signal:*"],
    "lockonly": ["~lock:*"],
    "fencer": ["~lock:*", "~lock-signal:*", "~lock-fence:*"],
    "orders": ["~lock:orders*", "~lock-signal:orders*"],
    "barename": ["~orders"],
    "reader": ["%R~lock:*"],
    "writer": ["%W~lock:*", "%W~lock-signal:*"],
    "readwrite": ["%R~lock:*", "%W~lock:*", "%W~lock-signal:*"],
    "nokeys": [],
    # read on every key, read+write only on keys ending in x: no lock write (Valkey 9.1.2's
    # RM_ACLCheckKeyPrefixPermissions says "read+write on every key" for this one)
    "mixed": ["~*x", "%R~*"],
    "emptypattern": ["~"],  # only the empty key
}


def make_users(c):
    for user, rules in RULES.items():
        c.execute_command("ACL", "SETUSER", user, "reset", "on", "nopass", "+@all", *rules)


def as_user(server, user, protocol=2):
    u = server.client(protocol=protocol)
    u.execute_command("AUTH", user, "any")
    return u


# command → (setup as default: hold the lock?, the call, its reply when allowed)
COMMANDS = {
    "acquire": (False, ["LOCK.ACQUIRE", "{n}", "ID", "a", "NOWAIT"], b"a"),
    "acquire-fence": (False, ["LOCK.ACQUIRE", "{n}", "ID", "a", "NOWAIT", "FENCE"], list),
    "release": (True, ["LOCK.RELEASE", "{n}", "h"], b"OK"),
    "extend": (True, ["LOCK.EXTEND", "{n}", "h", "EX", "200"], b"OK"),
    "reset": (True, ["LOCK.RESET", "{n}"], 1),
    "owner": (True, ["LOCK.OWNER", "{n}"], b"h"),
    "info": (True, ["LOCK.INFO", "{n}"], list),
    "waiters": (True, ["LOCK.WAITERS", "{n}"], []),
}

ALL = set(COMMANDS)
READS = {"owner", "info", "waiters"}
# user → commands allowed on lock "orders" (and, for "orders-other", on lock "other")
ALLOWED = {
    "lockall": ALL - {"acquire-fence"},
    "lockonly": {"acquire", "extend"} | READS,  # RELEASE/RESET write the signal list
    "fencer": ALL,
    "orders": ALL - {"acquire-fence"},
    "barename": set(),
    "reader": READS,
    "writer": {"reset"},  # ACQUIRE/RELEASE/EXTEND read the owner first, as python does
    "readwrite": ALL - {"acquire-fence"},
    "nokeys": set(),
    "mixed": READS,
    "emptypattern": set(),
}
CASES = [(user, "orders", cmd) for user in RULES for cmd in COMMANDS]
CASES += [("orders", "other", cmd) for cmd in COMMANDS]  # ~lock:orders* is only those locks


@pytest.mark.parametrize("user,name,cmd", CASES, ids=[f"{u}-{n}-{c}" for u, n, c in CASES])
def test_key_rules_table(server, user, name, cmd):
    admin = server.client()
    make_users(admin)
    hold, call, allowed_reply = COMMANDS[cmd]
    if hold:
        assert admin.execute_command("LOCK.ACQUIRE", name, "ID", "h", "EX", "100") == b"h"
    call = [name if a == "{n}" else a for a in call]
    allowed = cmd in ALLOWED[user] and (name == "orders" or user != "orders")
    before = snapshot(admin)
    u = as_user(server, user)
    try:
        reply = u.execute_command(*call)
    except redis.ResponseError as e:
        assert not allowed, f"{user} {call}: {e}"
        assert error_code(e) == "NOPERM", e
        assert "lock" in str(e), e  # names the key that was refused
        assert snapshot(admin) == before, f"{user} {call} changed the keyspace"
        return
    assert allowed, f"{user} {call} was allowed: {reply!r}"
    if isinstance(allowed_reply, type):
        assert isinstance(reply, allowed_reply), reply
    else:
        assert reply == allowed_reply, reply


def test_denials_are_in_the_acl_log(server):
    admin = server.client()
    make_users(admin)
    admin.execute_command("ACL", "LOG", "RESET")
    u = as_user(server, "reader")
    with pytest.raises(redis.ResponseError) as e:
        u.execute_command("LOCK.ACQUIRE", "orders", "NOWAIT")
    assert "lock:orders" in str(e.value) and "read and write" in str(e.value)
    entries = admin.execute_command("ACL", "LOG")
    entry = {k.decode() if isinstance(k, bytes) else k: v for k, v in zip(entries[0][::2], entries[0][1::2])}
    assert entry["reason"] == b"key"
    assert entry["object"] == b"lock:orders"
    assert entry["username"] == b"reader"


def test_binary_name_is_checked_and_printed_safely(server):
    admin = server.client()
    make_users(admin)
    u = as_user(server, "orders")
    with pytest.raises(redis.ResponseError) as e:
        u.execute_command("LOCK.ACQUIRE", b"x\r\n\x00y", "NOWAIT")
    assert error_code(e.value) == "NOPERM"
    assert "\\x0d\\x0a\\x00" in str(e.value)
    assert admin.keys("*") == []
    assert u.execute_command("LOCK.ACQUIRE", b"orders\x00\xff", "ID", "a", "NOWAIT") == b"a"


def test_signal_config_no_needs_no_signal_permission(server):
    admin = server.client()
    make_users(admin)
    admin.config_set("lock.signal", "no")
    u = as_user(server, "lockonly")
    assert u.execute_command("LOCK.ACQUIRE", "orders", "ID", "a", "NOWAIT") == b"a"
    assert u.execute_command("LOCK.RELEASE", "orders", "a") == b"OK"
    assert u.execute_command("LOCK.ACQUIRE", "orders", "ID", "a", "NOWAIT") == b"a"
    assert u.execute_command("LOCK.RESET", "orders") == 1
    assert admin.keys("*") == []


def test_info_shows_fence_only_to_who_may_read_the_fence_key(server):
    admin = server.client()
    make_users(admin)
    token = admin.execute_command("LOCK.ACQUIRE", "orders", "ID", "h", "FENCE")[1]
    assert lock_info(as_user(server, "fencer"), "orders")["fence"] == token
    info = lock_info(as_user(server, "lockall"), "orders")
    assert "fence" not in info and info["owner"] == b"h", info
    assert lock_info(admin, "orders")["fence"] == token


# ---------------------------------------------------------------------------
# the same user through python-redis-lock (the server checks its SET and scripts)


@pytest.mark.parametrize("user", ["lockall", "lockonly", "orders", "barename", "reader",
                                  "writer", "readwrite"])
def test_same_verdicts_as_python_redis_lock(server, user):
    import redis_lock

    admin = server.client()
    make_users(admin)
    u = as_user(server, user)

    def allowed(fn):
        try:
            fn()
        except redis.ResponseError as e:
            assert error_code(e) == "NOPERM", e
            return False
        return True

    # acquire: python's SET NX PX against LOCK.ACQUIRE (the lock is free each time)
    py_acquire = allowed(lambda: redis_lock.Lock(u, "orders", id="p", expire=100).acquire(blocking=False))
    admin.delete("lock:orders")
    ours = allowed(lambda: u.execute_command("LOCK.ACQUIRE", "orders", "ID", "p", "PX", "100000", "NOWAIT"))
    admin.delete("lock:orders")
    assert py_acquire == ours, f"{user}: python acquire {py_acquire}, LOCK.ACQUIRE {ours}"

    # release: python's unlock script against LOCK.RELEASE (the lock is held by "p" each time)
    admin.set("lock:orders", "p", px=100000)
    py_release = allowed(lambda: redis_lock.Lock(u, "orders", id="p").release())
    admin.set("lock:orders", "p", px=100000)
    ours = allowed(lambda: u.execute_command("LOCK.RELEASE", "orders", "p"))
    if user == "readwrite":
        # The one difference: EVAL declares every key it is given read+write, so python's
        # unlock script needs %R on lock-signal: too, although it only writes it (DEL, LPUSH,
        # PEXPIRE). LOCK.RELEASE asks for what the release really does.
        assert (py_release, ours) == (False, True)
    else:
        assert py_release == ours, f"{user}: python release {py_release}, LOCK.RELEASE {ours}"

    # the owner: python's GET against LOCK.OWNER
    admin.set("lock:orders", "p", px=100000)
    py_owner = allowed(lambda: redis_lock.Lock(u, "orders").get_owner_id())
    ours = allowed(lambda: u.execute_command("LOCK.OWNER", "orders"))
    assert py_owner == ours, f"{user}: python owner {py_owner}, LOCK.OWNER {ours}"


# ---------------------------------------------------------------------------
# scripts, functions, MULTI: the caller's user is checked there too


ACQUIRE_SCRIPT = "return redis.call('LOCK.ACQUIRE', 'orders', 'ID', 'a', 'NOWAIT')"


def test_lua_runs_as_the_caller(server):
    admin = server.client()
    make_users(admin)
    with pytest.raises(redis.ResponseError) as e:
        as_user(server, "reader").eval(ACQUIRE_SCRIPT, 0)
    assert error_code(e.value) == "NOPERM"
    assert admin.keys("*") == []
    assert as_user(server, "lockall").eval(ACQUIRE_SCRIPT, 0) == b"a"
    admin.delete("lock:orders")
    assert admin.eval(ACQUIRE_SCRIPT, 0) == b"a"  # the default user: every key


def test_function_runs_as_the_caller(server):
    admin = server.client()
    make_users(admin)
    admin.execute_command(
        "FUNCTION", "LOAD",
        "#!lua name=acltest\n"
        "redis.register_function('acq', function(keys, args) "
        "return redis.call('LOCK.ACQUIRE', 'orders', 'ID', 'a', 'NOWAIT') end)")
    with pytest.raises(redis.ResponseError) as e:
        as_user(server, "barename").execute_command("FCALL", "acq", 0)
    assert error_code(e.value) == "NOPERM"
    assert admin.keys("*") == []
    assert as_user(server, "orders").execute_command("FCALL", "acq", 0) == b"a"


def test_multi_runs_as_the_caller(server):
    admin = server.client()
    make_users(admin)
    u = as_user(server, "reader")
    pipe = u.pipeline(transaction=True)
    pipe.execute_command("LOCK.ACQUIRE", "orders", "ID", "a", "NOWAIT")
    pipe.execute_command("LOCK.OWNER", "orders")
    replies = pipe.execute(raise_on_error=False)
    assert isinstance(replies[0], redis.ResponseError) and error_code(replies[0]) == "NOPERM"
    assert replies[1] is None
    assert admin.keys("*") == []


def test_waiters_are_checked_when_they_ask(server, protocol):
    """An allowed waiter queues and is granted; a refused one never queues."""
    admin = server.client(protocol=protocol)
    make_users(admin)
    admin.execute_command("LOCK.ACQUIRE", "orders", "ID", "h")
    refused = acquire_bg(server, "orders", "ID", "r", "TIMEOUT", "5", protocol=protocol,
                         username="reader", password="x")
    with pytest.raises(redis.ResponseError) as e:
        refused.result(timeout=5)
    assert error_code(e.value) == "NOPERM"
    assert lock_info(admin, "orders")["waiters"] == 0
    w = acquire_bg(server, "orders", "ID", "w", "TIMEOUT", "10", protocol=protocol,
                   username="lockall", password="x")
    wait_waiters(admin, "orders", 1)
    assert admin.execute_command("LOCK.RELEASE", "orders", "h") == b"OK"
    assert w.result(timeout=5) == b"w"
    assert admin.get("lock:orders") == b"w"


def _redismodule_h():
    """The module API header the redis-module crate vendors (in cargo's registry)."""
    cargo_home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    found = sorted(glob.glob(f"{cargo_home}/registry/src/*/redis-module-*/src/include/redismodule.h"))
    return found[-1] if found else None


@pytest.fixture(scope="module")
def caller_module(tmp_path_factory):
    """tests/fixtures/acl_caller.c built as a second module (CALLER.CALL: RM_Call relay)."""
    header, cc = _redismodule_h(), shutil.which("cc")
    if header is None or cc is None:
        pytest.skip("needs a C compiler and the redis-module crate's redismodule.h to build a second module")
    out = tmp_path_factory.mktemp("aclcaller") / "acl_caller.so"
    src = Path(__file__).parent / "fixtures" / "acl_caller.c"
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-I", os.path.dirname(header), "-o", str(out), str(src)],
                   check=True, capture_output=True, timeout=120)
    return str(out)


def test_another_modules_rm_call_runs_as_root_unless_it_asks_for_the_user(server, caller_module):
    """RM_Call without "C" runs on a temp client with no ACL user (the server checks nothing
    there either); with "C" it runs as the caller's user and is checked."""
    admin = server.client()
    admin.execute_command("MODULE", "LOAD", caller_module)
    make_users(admin)
    u = as_user(server, "reader")
    assert u.execute_command("CALLER.CALL", "-", "LOCK.ACQUIRE", "orders", "ID", "a", "NOWAIT") == b"a"
    assert admin.execute_command("LOCK.OWNER", "orders") == b"a"
    before = snapshot(admin)
    with pytest.raises(redis.ResponseError) as e:
        u.execute_command("CALLER.CALL", "C", "LOCK.RELEASE", "orders", "a")
    assert error_code(e.value) == "NOPERM" and "lock:orders" in str(e.value)
    assert snapshot(admin) == before
    ok = as_user(server, "lockall")
    assert ok.execute_command("CALLER.CALL", "C", "LOCK.RELEASE", "orders", "a") == b"OK"
    assert admin.keys("lock:*") == []


def test_replica_reads_are_checked_too(make_server):
    """On a replica the reads work for who may read lock:<name>; replicated writes are plain
    SET/DEL from the master link, which no ACL user restricts."""
    primary = make_server()
    replica = start_replica(make_server, primary)
    make_users(replica.client())
    primary.client().execute_command("LOCK.ACQUIRE", "orders", "ID", "h")
    sync(primary.client())
    assert as_user(replica, "reader").execute_command("LOCK.OWNER", "orders") == b"h"
    with pytest.raises(redis.ResponseError) as e:
        as_user(replica, "barename").execute_command("LOCK.OWNER", "orders")
    assert error_code(e.value) == "NOPERM"
    assert replica.client().get("lock:orders") == b"h"


# ---------------------------------------------------------------------------
# LOCK.RESETALL: all or nothing


def test_resetall_refuses_when_any_lock_is_not_allowed(server):
    admin = server.client()
    make_users(admin)
    for name in ("orders:1", "orders:2", "other"):
        admin.execute_command("LOCK.ACQUIRE", name, "ID", "h")
    before = snapshot(admin)
    with pytest.raises(redis.ResponseError) as e:
        as_user(server, "orders").execute_command("LOCK.RESETALL")
    assert error_code(e.value) == "NOPERM" and "lock:other" in str(e.value)
    assert snapshot(admin) == before
    assert as_user(server, "lockall").execute_command("LOCK.RESETALL") == 3
    assert admin.keys("lock:*") == []
    # write is all RESETALL needs; read alone is not enough
    admin.execute_command("LOCK.ACQUIRE", "other", "ID", "h")
    with pytest.raises(redis.ResponseError) as e:
        as_user(server, "reader").execute_command("LOCK.RESETALL")
    assert error_code(e.value) == "NOPERM"
    assert as_user(server, "writer").execute_command("LOCK.RESETALL") == 1


def test_resetall_with_only_allowed_locks(server):
    admin = server.client()
    make_users(admin)
    for name in ("orders:1", "orders:2"):
        admin.execute_command("LOCK.ACQUIRE", name, "ID", "h")
    admin.set("unrelated", "x")  # not a lock key: no permission needed
    assert as_user(server, "orders").execute_command("LOCK.RESETALL") == 2
    assert admin.keys("lock:*") == []
    assert as_user(server, "nokeys").execute_command("LOCK.RESETALL") == 0  # nothing to free


# ---------------------------------------------------------------------------
# what the server reports: the name is NOT_KEY, still the routing position


def test_command_info_declares_the_name_not_a_key(server):
    c = server.client()
    info = c.execute_command("COMMAND", "INFO", "lock.acquire", "lock.owner")
    for name in ("lock.acquire", "lock.owner"):
        entry = info[name]
        assert (entry["first_key_pos"], entry["last_key_pos"], entry["step_count"]) == (1, 1, 1)
    raw = server.raw()
    row = raw.call("COMMAND", "INFO", "lock.owner")[0]
    specs = row[8]
    flags = specs[0][specs[0].index(b"flags") + 1]
    assert b"not_key" in flags and b"RO" in flags, specs
    # COMMAND GETKEYS follows the key specs, which now say "no keys"
    reply = raw.call("COMMAND", "GETKEYS", "LOCK.OWNER", "x")
    assert isinstance(reply, Exception) and "no key" in str(reply), reply


# ---------------------------------------------------------------------------
# cluster: routing by the name still works, for a restricted user too


@pytest.fixture(scope="module")
def cluster3():
    with running_cluster(3) as cl:
        for c in cl.clients:
            c.execute_command("ACL", "SETUSER", "tagged", "on", "nopass", "+@all",
                              "~lock:{orders}*", "~lock-signal:{orders}*")
        yield cl


def test_cluster_moved_by_the_name(cluster3):
    cl = cluster3
    cl.flushall()
    name = "{orders}:42"
    slot = cl.keyslot(name)
    owner = cl.owner_of_slot(slot)
    wrong = (owner + 1) % len(cl.nodes)
    for user in ("default", "tagged"):
        conn = RawConnection(cl.nodes[wrong].port)
        try:
            if user != "default":
                assert conn.call("AUTH", user, "x") == b"OK"
            reply = conn.call("LOCK.ACQUIRE", name, "ID", "a", "NOWAIT")
            assert isinstance(reply, Exception) and str(reply).startswith(f"MOVED {slot} "), reply
            assert str(reply).endswith(f":{cl.nodes[owner].port}"), reply
        finally:
            conn.close()
    # on the owner: the restricted user is checked on lock:{orders}:42, which shares the slot
    conn = RawConnection(cl.nodes[owner].port)
    try:
        assert conn.call("AUTH", "tagged", "x") == b"OK"
        assert conn.call("LOCK.ACQUIRE", name, "ID", "a", "NOWAIT") == b"a"
        assert conn.call("LOCK.RELEASE", name, "a") == b"OK"
        refused = conn.call("LOCK.ACQUIRE", "{other}:1", "ID", "a", "NOWAIT")
        assert isinstance(refused, Exception) and ("NOPERM" in str(refused) or "MOVED" in str(refused))
    finally:
        conn.close()
    rc = cl.cluster_client()
    assert rc.execute_command("LOCK.ACQUIRE", name, "ID", "b", "NOWAIT") == b"b"
    assert cl.clients[owner].get(f"lock:{name}") == b"b"
