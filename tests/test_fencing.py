"""Fencing tokens (LOCK.ACQUIRE … FENCE): reply shapes, every kind of hand-off, unusable fence
keys, atomic replication and AOF, restarts, lossy failover. The Sentinel failover, the long
mixed-contention run and the Kleppmann scenario are in test_fencing_failover.py and
test_fencing_contention.py."""

import glob
import os
import time

import pytest
import redis

from harness import (AUTO_ID, acquire_bg, error_code, lock_info, snapshot, wait_until,
                     wait_waiters)
from topology import assert_same_keyspace, restart, start_replica, stopped, sync

# 2^63 - 1: no token can follow it
I64_MAX = 9223372036854775807


def fenced(c, name, *options):
    """LOCK.ACQUIRE <name> FENCE <options>: (id, token) when granted, None when not."""
    reply = c.execute_command("LOCK.ACQUIRE", name, "FENCE", *options)
    if reply is None:
        return None
    assert isinstance(reply, list) and len(reply) == 2, reply
    owner, token = reply
    assert isinstance(owner, bytes) and isinstance(token, int) and token > 0, reply
    return owner, token


def now_us():
    return int(time.time() * 1_000_000)


# ---------------------------------------------------------------------------
# replies


def test_immediate_grant_replies_id_and_token(server, protocol):
    c = server.client(protocol=protocol)
    before = now_us()
    owner, token = fenced(c, "n", "PX", 10000)
    assert AUTO_ID.match(owner)
    assert before - 5_000_000 <= token <= now_us() + 5_000_000, "a fresh lock's token is the clock"
    assert c.get("lock:n") == owner
    assert c.get("lock-fence:n") == str(token).encode()
    assert c.pttl("lock-fence:n") == -1, "the fence key never expires"
    assert lock_info(c, "n")["fence"] == token
    # busy: null stays null, for NOWAIT and for a timed-out wait
    assert c.execute_command("LOCK.ACQUIRE", "n", "FENCE", "NOWAIT") is None
    assert c.execute_command("LOCK.ACQUIRE", "n", "FENCE", "TIMEOUT", "0.05") is None
    assert c.get("lock-fence:n") == str(token).encode(), "no grant, no token"
    # exact reply types: an array of a bulk string and an integer
    r = server.raw(protocol)
    reply = r.call("LOCK.ACQUIRE", "m", "ID", "me", "FENCE")
    assert r.last_type == b"*" and reply[0] == b"me" and isinstance(reply[1], int)


def test_plain_acquires_do_not_touch_the_fence_key(c):
    owner, token = fenced(c, "n")
    c.execute_command("LOCK.RELEASE", "n", owner)
    assert c.execute_command("LOCK.ACQUIRE", "n", "ID", "plain") == b"plain"
    assert c.execute_command("LOCK.RELEASE", "n", "plain") == b"OK"
    assert c.get("lock-fence:n") == str(token).encode()
    assert lock_info(c, "free-never-fenced")["fence"] is None
    assert c.exists("lock-fence:free-never-fenced") == 0
    _, later = fenced(c, "n")
    assert later > token


def test_fence_in_multi_and_lua_tries_once(c):
    p = c.pipeline(transaction=True)
    p.execute_command("LOCK.ACQUIRE", "n", "ID", "m", "FENCE")
    p.execute_command("LOCK.ACQUIRE", "n", "ID", "other", "FENCE")  # busy: one try, null
    first, second = p.execute()
    assert first[0] == b"m" and isinstance(first[1], int) and second is None
    c.execute_command("LOCK.RELEASE", "n", "m")
    got = c.eval("return redis.call('LOCK.ACQUIRE', KEYS[1], 'ID', 'lua', 'FENCE')", 1, "n")
    assert got[0] == b"lua" and got[1] > first[1]


# ---------------------------------------------------------------------------
# grants after waiting


def _free_by(c, how, name, holder):
    if how == "release":
        assert c.execute_command("LOCK.RELEASE", name, holder) == b"OK"
    elif how == "delete":
        assert c.delete("lock:" + name) == 1
    elif how == "reset":
        assert c.execute_command("LOCK.RESET", name) == 1
    elif how == "resetall":
        assert c.execute_command("LOCK.RESETALL") >= 1
    # "expiry": the holder's PX runs out


@pytest.mark.parametrize("how", ["release", "expiry", "delete", "reset", "resetall"])
def test_grant_after_waiting_replies_id_and_a_larger_token(server, protocol, how):
    c = server.client(protocol=protocol)
    holder, first = fenced(c, "n", "PX", 300 if how == "expiry" else 60000)
    w = acquire_bg(server, "n", "ID", "w", "FENCE", "PX", 5000, protocol=protocol, label="w")
    wait_waiters(c, "n", 1)  # w queues first
    p = acquire_bg(server, "n", "ID", "p", protocol=protocol, label="plain")
    wait_waiters(c, "n", 2)
    _free_by(c, how, "n", holder)
    owner, token = w.result()
    assert owner == b"w" and token > first
    assert c.get("lock-fence:n") == str(token).encode()
    w.assert_clean()
    # the plain waiter after it gets the bare id, and the fence key stays
    assert c.execute_command("LOCK.RELEASE", "n", "w") == b"OK"
    assert p.result() == b"p"
    assert c.get("lock-fence:n") == str(token).encode()


def test_taken_back_grant_is_re_granted_with_a_new_token(server, protocol):
    """RELEASE grants to A, CLIENT KILL A in the same turn: A's grant is taken back and B, a
    FENCE waiter, gets the lock with a token above A's (A's grant wrote one already)."""
    c = server.client(protocol=protocol)
    holder, first = fenced(c, "n")
    a = acquire_bg(server, "n", "ID", "A", "FENCE", protocol=protocol, label="A")
    wait_waiters(c, "n", 1)
    b = acquire_bg(server, "n", "ID", "B", "FENCE", protocol=protocol, label="B")
    wait_waiters(c, "n", 2)
    pipe = server.client(protocol=protocol).pipeline(transaction=False)
    pipe.execute_command("LOCK.RELEASE", "n", holder)
    pipe.execute_command("CLIENT", "KILL", "ID", a.client_id)
    assert pipe.execute() == [b"OK", 1]
    a.join()
    if a.error is None:  # A's reply made it out before the kill: A owns it, legitimately
        assert a.reply[0] == b"A" and a.reply[1] > first
        return
    owner, token = b.result()
    assert owner == b"B" and token > first + 1, "A's grant issued first + 1 (at least)"
    assert c.get("lock-fence:n") == str(token).encode()


# ---------------------------------------------------------------------------
# unusable fence keys


UNUSABLE = {
    "garbage": lambda c: c.set("lock-fence:n", "garbage"),
    "negative": lambda c: c.set("lock-fence:n", "-5"),
    "i64-max": lambda c: c.set("lock-fence:n", str(I64_MAX)),
    "list": lambda c: c.rpush("lock-fence:n", "1"),
    "hash": lambda c: c.hset("lock-fence:n", "a", "1"),
}


@pytest.mark.parametrize("kind", list(UNUSABLE))
def test_unusable_fence_key_refuses_fence_acquires_and_changes_nothing(server, protocol, kind):
    c = server.client(protocol=protocol)
    UNUSABLE[kind](c)
    for busy in (False, True):
        if busy:
            c.execute_command("LOCK.ACQUIRE", "n", "ID", "holder")
        before = snapshot(c)
        with pytest.raises(redis.ResponseError) as exc:
            c.execute_command("LOCK.ACQUIRE", "n", "FENCE", "TIMEOUT", 5)
        assert error_code(exc.value) == "ERR"
        assert "lock-fence:n" in str(exc.value)
        assert snapshot(c) == before
        assert lock_info(c, "n")["waiters"] == 0, "refused before it waits"
    assert lock_info(c, "n")["fence"] == (I64_MAX if kind == "i64-max" else None)
    # plain acquires are unaffected
    assert c.execute_command("LOCK.RELEASE", "n", "holder") == b"OK"
    assert c.execute_command("LOCK.ACQUIRE", "n", "ID", "plain") == b"plain"


def test_fence_waiter_whose_fence_key_broke_gets_err_and_the_next_waiter_the_lock(server, protocol):
    c = server.client(protocol=protocol)
    holder, _ = fenced(c, "n")
    f = acquire_bg(server, "n", "ID", "f", "FENCE", protocol=protocol, label="fenced")
    wait_waiters(c, "n", 1)
    p = acquire_bg(server, "n", "ID", "p", protocol=protocol, label="plain")
    wait_waiters(c, "n", 2)
    c.set("lock-fence:n", "not a number")
    assert c.execute_command("LOCK.RELEASE", "n", holder) == b"OK"
    with pytest.raises(redis.ResponseError) as exc:
        f.result()
    assert error_code(exc.value) == "ERR" and "lock-fence:n" in str(exc.value)
    assert p.result() == b"p"
    assert c.get("lock-fence:n") == b"not a number"
    f.assert_clean()


# ---------------------------------------------------------------------------
# the fence key survives everything that frees the lock


def test_reset_resetall_and_expiry_never_delete_fence_keys(c):
    _, t1 = fenced(c, "a")
    _, t2 = fenced(c, "b", "PX", 50)
    assert c.execute_command("LOCK.RESET", "a") == 1
    wait_until(lambda: c.exists("lock:b") == 0, message="lock:b expired")
    fenced(c, "c")
    assert c.execute_command("LOCK.RESETALL") >= 1
    assert c.keys("lock:*") == []
    assert c.get("lock-fence:a") == str(t1).encode()
    assert c.get("lock-fence:b") == str(t2).encode()
    assert c.exists("lock-fence:c") == 1
    # a user's expiry on the fence key is cleared by the next grant
    c.pexpire("lock-fence:a", 100000)
    fenced(c, "a")
    assert c.pttl("lock-fence:a") == -1


# ---------------------------------------------------------------------------
# replication and the AOF: the token and the lock in one MULTI/EXEC


def _aof_commands(server):
    """Every command in the server's incremental AOF files, in order, as lists of bytes."""
    files = sorted(glob.glob(os.path.join(server.dir, "appendonlydir", "*.incr.aof")))
    assert files, os.listdir(server.dir)
    data = b"".join(open(f, "rb").read() for f in files)
    out, i = [], 0
    while i < len(data):
        assert data[i:i + 1] == b"*", data[i:i + 40]
        end = data.index(b"\r\n", i)
        n = int(data[i + 1:end])
        i = end + 2
        cmd = []
        for _ in range(n):
            end = data.index(b"\r\n", i)
            size = int(data[i + 1:end])
            cmd.append(data[end + 2:end + 2 + size])
            i = end + 2 + size + 2
        out.append(cmd)
    return out


def _fence_writes_are_in_transactions_with_their_grant(cmds, name):
    """Each SET lock-fence:<name> sits in a MULTI/EXEC that also SETs lock:<name>. Returns the
    tokens written, in order."""
    tokens, in_multi, block = [], False, []
    fence_key, lock_key = b"lock-fence:" + name, b"lock:" + name
    for cmd in cmds:
        word = cmd[0].upper()
        if word == b"MULTI":
            in_multi, block = True, []
        elif word == b"EXEC":
            sets = [c[1] for c in block if c[0].upper() == b"SET"]
            if fence_key in sets:
                assert lock_key in sets[sets.index(fence_key):], block
            in_multi = False
        elif in_multi:
            block.append(cmd)
        if word == b"SET" and cmd[1] == fence_key:
            assert in_multi, f"fence write outside MULTI/EXEC: {cmd}"
            tokens.append(int(cmd[2]))
    return tokens


def test_grant_and_token_are_one_transaction_on_replicas_and_in_the_aof(make_server):
    p = make_server(extra_config=[("appendonly", "yes"), ("appendfsync", "always")])
    r = start_replica(make_server, p)
    c = p.client()
    issued = []

    def handoff(free, holder_px=60000):
        holder, t = fenced(c, "x", "PX", holder_px)
        issued.append(t)
        w = acquire_bg(p, "x", "ID", "w", "FENCE", "PX", 60000)
        wait_waiters(c, "x", 1)
        free(holder)
        issued.append(w.result()[1])
        assert c.execute_command("LOCK.RELEASE", "x", "w") == b"OK"

    handoff(lambda h: c.execute_command("LOCK.RELEASE", "x", h))   # inside a command
    handoff(lambda h: None, holder_px=100)                          # deadline timer
    handoff(lambda h: c.delete("lock:x"))                           # post-notification job / 0 ms timer
    handoff(lambda h: c.execute_command("LOCK.RESET", "x"))
    sync(c)
    assert_same_keyspace(c, r.client(), "fenced hand-offs")
    assert r.client().get("lock-fence:x") == str(issued[-1]).encode()
    written = _fence_writes_are_in_transactions_with_their_grant(_aof_commands(p), b"x")
    assert written == issued and written == sorted(set(written))


# ---------------------------------------------------------------------------
# restarts and a lossy failover


AHEAD_US = 10 ** 12  # a fence key ~11 days ahead of the clock: only `last + 1` can beat it


@pytest.mark.parametrize("mode", ["aof-kill", "rdb-shutdown-save", "debug-reload"])
def test_next_token_after_a_restart_is_larger_than_all_before(make_server, mode):
    config = [("appendonly", "yes"), ("appendfsync", "always")] if mode == "aof-kill" else []
    s = make_server(extra_config=config)
    c = s.client()
    c.set("lock-fence:x", now_us() + AHEAD_US)  # so the clock cannot hide a lost fence key
    tokens = []
    for _ in range(3):
        owner, t = fenced(c, "x")
        tokens.append(t)
        c.execute_command("LOCK.RELEASE", "x", owner)
    _, held = fenced(c, "x", "PX", 600000)  # held across the restart
    tokens.append(held)
    if mode == "debug-reload":
        assert c.execute_command("DEBUG", "RELOAD") == b"OK"
    else:
        restart(s, "kill" if mode == "aof-kill" else "shutdown-save")
        c = s.client()
    assert c.get("lock-fence:x") == str(held).encode()
    assert c.pttl("lock-fence:x") == -1
    c.execute_command("LOCK.RESET", "x")
    _, after = fenced(c, "x")
    assert after == max(tokens) + 1, (after, tokens)


def test_lossy_failover_still_issues_larger_tokens(make_server):
    """The replica misses the last grants (stopped, its link cut), the primary dies, the
    replica is promoted: its next token is still above every token the old primary issued."""
    p = make_server()
    r = start_replica(make_server, p)
    c = p.client()
    replicated = []
    for _ in range(3):
        owner, t = fenced(c, "x")
        replicated.append(t)
        c.execute_command("LOCK.RELEASE", "x", owner)
    sync(c)
    lost = []
    with stopped(r):
        # The replica cannot read while stopped, but its kernel would still buffer what the
        # primary sends: cut the link so the following grants are really lost.
        c.execute_command("CLIENT", "KILL", "TYPE", "replica")
        for _ in range(5):
            owner, t = fenced(c, "x")
            lost.append(t)
            c.execute_command("LOCK.RELEASE", "x", owner)
        p.proc.kill()
        p.proc.wait(timeout=10)
    rc = r.client()
    rc.execute_command("REPLICAOF", "NO", "ONE")
    wait_until(lambda: rc.info("replication")["role"] == "master", message="replica promoted")
    assert rc.get("lock-fence:x") == str(replicated[-1]).encode(), "the replica missed the last grants"
    assert max(lost) > replicated[-1]
    _, token = fenced(rc, "x")
    assert token > max(lost), (token, lost)
    p.proc = None  # already dead: nothing for the fixture to stop


def test_waiters_show_who_asked_for_fence(server, protocol):
    c = server.client(protocol=protocol)
    holder, _ = fenced(c, "n")
    f = acquire_bg(server, "n", "ID", "f", "FENCE", protocol=protocol, label="fenced")
    wait_waiters(c, "n", 1)
    p = acquire_bg(server, "n", "ID", "p", protocol=protocol, label="plain")
    wait_waiters(c, "n", 2)
    listed = c.execute_command("LOCK.WAITERS", "n")
    as_dicts = [w if isinstance(w, dict) else dict(zip(w[::2], w[1::2])) for w in listed]
    assert [w[b"fence"] for w in as_dicts] == [1, 0]
    c.execute_command("LOCK.RELEASE", "n", holder)
    assert f.result()[0] == b"f"
    c.execute_command("LOCK.RELEASE", "n", "f")
    assert p.result() == b"p"
