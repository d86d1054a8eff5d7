"""Operators' view: the INFO section, keyspace events, command docs and ACL categories."""

import time

import pytest
import redis

from harness import RawConnection, acquire_bg, wait_waiters


def lock_info_section(c):
    """INFO lock → {field: str} without the `lock_` prefix (read raw: redis-py would parse it)."""
    raw = RawConnection(c.connection_pool.connection_kwargs["port"])
    text = raw.call("INFO", "lock").decode()
    raw.close()
    fields = {}
    for line in text.splitlines():
        if ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            fields[k.removeprefix("lock_")] = v.strip()
    return fields


def test_info_section_counts_what_happened(server):
    c = server.client()
    before = lock_info_section(c)
    assert before["waiters"] == "0" and before["grants_immediate"] == "0"

    c.execute_command("LOCK.ACQUIRE", "a", "ID", "h", "PX", "100")
    w = acquire_bg(server, "a", "ID", "w1")            # granted on expiry
    wait_waiters(c, "a", 1)
    t = acquire_bg(server, "a", "ID", "t", "TIMEOUT", "0.05")  # times out first
    assert lock_info_section(c)["waiters"] in ("1", "2")
    assert t.result(timeout=5) is None
    assert w.result(timeout=5) == b"w1"
    w2 = acquire_bg(server, "a", "ID", "w2")           # granted on release
    wait_waiters(c, "a", 1)
    assert lock_info_section(c)["locks_with_waiters"] == "1"
    c.execute_command("LOCK.RELEASE", "a", "w1")
    assert w2.result(timeout=5) == b"w2"
    w3 = acquire_bg(server, "a", "ID", "w3")           # granted on a foreign DEL
    wait_waiters(c, "a", 1)
    c.delete("lock:a")
    assert w3.result(timeout=5) == b"w3"
    w4 = acquire_bg(server, "a", "ID", "w4")           # granted on reset
    wait_waiters(c, "a", 1)
    c.execute_command("LOCK.RESET", "a")
    assert w4.result(timeout=5) == b"w4"
    k = acquire_bg(server, "a", "ID", "k")             # disconnects
    wait_waiters(c, "a", 1)
    c.execute_command("CLIENT", "KILL", "ID", k.client_id)
    wait_waiters(c, "a", 0)

    info = lock_info_section(c)
    expected = {
        "waiters": "0", "locks_with_waiters": "0",
        "grants_immediate": "1", "grants_after_wait": "4",
        "handoffs_release": "1", "handoffs_expiry": "1",
        "handoffs_foreign_delete": "1", "handoffs_reset": "1",
        "timeouts": "1", "disconnected_waiters": "1", "errors": "0",
        "wait_count": "4",
    }
    assert {k: info[k] for k in expected} == expected
    assert int(info["wait_ms_max"]) >= 50  # w1 waited for the 100 ms lock to expire
    assert int(info["hold_count"]) >= 4


def test_lock_events_reach_subscribers(make_server):
    s = make_server(extra_config=[("notify-keyspace-events", "Ed")])
    c = s.client()
    sub = s.client().pubsub()
    sub.psubscribe("__keyevent@0__:lock.*")
    assert sub.get_message(timeout=2)["type"] == "psubscribe"

    c.execute_command("LOCK.ACQUIRE", "x", "ID", "h", "PX", "100")   # lock.acquired
    w = acquire_bg(s, "x", "ID", "w")
    wait_waiters(c, "x", 1)
    assert w.result(timeout=5) == b"w"                                # lock.expired, lock.handoff
    c.execute_command("LOCK.RELEASE", "x", "w")                      # lock.released

    got = []
    deadline = time.time() + 5
    while len(got) < 4 and time.time() < deadline:
        m = sub.get_message(timeout=0.5)
        if m and m["type"] == "pmessage":
            got.append((m["channel"], m["data"]))
    sub.close()
    assert got == [
        (b"__keyevent@0__:lock.acquired", b"lock:x"),
        (b"__keyevent@0__:lock.expired", b"lock:x"),
        (b"__keyevent@0__:lock.handoff", b"lock:x"),
        (b"__keyevent@0__:lock.released", b"lock:x"),
    ]


def test_lock_events_are_off_unless_enabled(server):
    c = server.client()
    sub = server.client().pubsub()
    sub.psubscribe("__keyevent@*__:*")
    sub.get_message(timeout=2)
    c.execute_command("LOCK.ACQUIRE", "x")
    c.ping()
    assert sub.get_message(timeout=0.3) is None
    sub.close()


def _flat_docs(raw, name):
    docs = raw.call("COMMAND", "DOCS", name)  # RESP2: [name, [k, v, ...]]
    body = docs[1]
    return dict(zip(body[::2], body[1::2]))


def _names(args):
    out = []
    for a in args:
        a = a if isinstance(a, dict) else dict(zip(a[::2], a[1::2]))
        out.append((a[b"name"], a.get(b"token")))
        if b"arguments" in a:
            out.extend(_names(a[b"arguments"]))
    return out


def test_command_docs_describe_every_argument(server):
    c = server.raw()
    d = _flat_docs(c, "lock.acquire")
    assert b"first come" in d[b"summary"]
    assert d[b"since"] == b"0.1.0"
    assert _names(d[b"arguments"]) == [
        (b"name", None), (b"id", b"ID"), (b"expiration", None), (b"seconds", b"EX"),
        (b"milliseconds", b"PX"), (b"wait", None), (b"nowait", b"NOWAIT"), (b"seconds", b"TIMEOUT"),
        (b"fence", b"FENCE"),
    ]
    for name in ["lock.release", "lock.extend", "lock.owner", "lock.reset", "lock.resetall", "lock.info",
                 "lock.waiters"]:
        assert _flat_docs(c, name)[b"summary"], name


def test_command_info_arity_and_key(server):
    raw = server.raw()
    info = raw.call("COMMAND", "INFO", "lock.acquire", "lock.extend", "lock.resetall")
    by_name = {row[0]: row for row in info}
    assert by_name[b"lock.acquire"][1] == -2
    assert by_name[b"lock.extend"][1] == 5
    assert by_name[b"lock.resetall"][1] == 1
    assert by_name[b"lock.acquire"][3:6] == [1, 1, 1]   # first, last, step: the name
    # the name is NOT_KEY (ACL applies to lock:<name>, test_acl_keys.py): GETKEYS lists no key
    assert "no key" in str(raw.call("COMMAND", "GETKEYS", "LOCK.RELEASE", "n", "id"))
    c = server.client()
    with pytest.raises(Exception) as e:
        c.execute_command("LOCK.EXTEND", "n", "id", "EX")
    assert "wrong number of arguments" in str(e.value)


def _categories(raw, name):
    row = raw.call("COMMAND", "INFO", name)[0]
    return set(row[6]) if len(row) > 6 else set()


def test_acl_categories_where_the_server_has_them(server):
    c = server.client()
    raw = server.raw()
    cats = _categories(raw, "lock.acquire")
    has_module_categories = bool(cats)
    c.execute_command("ACL", "SETUSER", "writer", "on", "nopass", "~*", "+@write", "+@read")
    c.execute_command("ACL", "SETUSER", "reader", "on", "nopass", "~*", "+@read")
    c.execute_command("ACL", "SETUSER", "named", "on", "nopass", "~*", "+lock.acquire", "+lock.release")
    as_user = lambda u: server.client(username=u, password="x")  # noqa: E731

    # Naming the commands works everywhere (Redis 7.0 gives module commands no categories).
    named = as_user("named")
    assert named.execute_command("LOCK.ACQUIRE", "n", "ID", "a", "NOWAIT") == b"a"
    assert named.execute_command("LOCK.RELEASE", "n", "a") in (b"OK", True)

    if not has_module_categories:
        with pytest.raises(redis.exceptions.NoPermissionError):
            as_user("writer").execute_command("LOCK.ACQUIRE", "n")
        return

    assert {b"@write", b"@slow", b"@blocking"} <= cats
    assert {b"@read", b"@fast"} <= _categories(raw, "lock.owner")
    assert as_user("writer").execute_command("LOCK.ACQUIRE", "n", "ID", "w", "NOWAIT") == b"w"
    assert as_user("reader").execute_command("LOCK.OWNER", "n") == b"w"
    with pytest.raises(redis.exceptions.NoPermissionError):
        as_user("reader").execute_command("LOCK.RELEASE", "n", "w")
    if b"@lock" in cats:
        c.execute_command("ACL", "SETUSER", "locker", "on", "nopass", "~*", "+@lock")
        locker = as_user("locker")
        assert locker.execute_command("LOCK.RELEASE", "n", "w") in (b"OK", True)
        with pytest.raises(redis.exceptions.NoPermissionError):
            locker.execute_command("SET", "k", "v")
