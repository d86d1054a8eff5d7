"""Cluster mode.

- One node owning every slot: names need a non-empty {hash tag}.
- A real cluster of 3 primaries on loopback (cluster-enabled yes, created by
  `redis-cli --cluster create`), used through redis-py's RedisCluster, which routes LOCK.* by
  the key position that COMMAND reports: no manual routing, no MOVED on the way.
- Slot migration by hand (SETSLOT IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE): a waiter on the
  old node gets an error it can retry (TRYAGAIN), never a grant of a key the node no longer
  serves, never a hang; a cluster client's retry lands on the new node and gets the lock there.
"""

import threading

import pytest

from harness import (RawConnection, acquire_bg, error_code, lock_info, snapshot, wait_until,
                     wait_waiters, waiters)
from topology import running_cluster

COMMANDS_WITH_NAME = ["lock.acquire", "lock.release", "lock.extend", "lock.owner", "lock.reset",
                      "lock.info"]


def _b(x):
    return x.encode() if isinstance(x, str) else x


def test_cluster_names_need_a_hash_tag(make_server):
    s = make_server(extra_config=[("cluster-enabled", "yes"),
                                  ("cluster-config-file", "nodes.conf")])
    c = s.client()
    c.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
    wait_until(lambda: c.cluster("info").get("cluster_state") == "ok", message="cluster ok")

    # a name with a hash tag works; lock:x{t} and lock-signal:x{t} share its slot
    assert c.execute_command("LOCK.ACQUIRE", "x{t}", "ID", "a", "EX", "10") == b"a"
    assert c.get("lock:x{t}") == b"a"
    assert c.execute_command("LOCK.RELEASE", "x{t}", "a") == b"OK"
    assert c.lrange("lock-signal:x{t}", 0, -1) == [b"1"]

    # without a non-empty hash tag: a clear error, nothing written
    for name in ("x", "x{}", "{}x", ""):
        before = snapshot(c)
        try:
            reply = c.execute_command("LOCK.ACQUIRE", name, "ID", "a")
        except Exception as e:  # noqa: BLE001
            assert error_code(e), name
        else:
            raise AssertionError(f"LOCK.ACQUIRE {name!r} in cluster mode replied {reply!r}")
        assert snapshot(c) == before, name


# ---------------------------------------------------------------------------
# a real 3-primary cluster, shared by the tests below (each starts from empty nodes)


@pytest.fixture(scope="module")
def cluster3():
    with running_cluster(3) as cl:
        yield cl


@pytest.fixture
def cl(cluster3):
    cluster3.flushall()
    for c in cluster3.clients:
        c.config_resetstat()
    yield cluster3
    cluster3.stabilize()  # a test that failed mid-migration leaves no slot half-moved
    # a crash or hang of any node fails the test that caused it
    for node in cluster3.nodes:
        assert node.alive(), f"cluster node {node.port} died:\n{node.crash_excerpt()}"


def tags_on_every_node(cl, per_node=2):
    """Hash tags {t0}, {t1}, ... until every node serves `per_node` of them."""
    found = {i: [] for i in range(len(cl.nodes))}
    n = 0
    while any(len(v) < per_node for v in found.values()):
        tag = f"{{t{n}}}"
        owner = cl.owner_of_key(tag)
        if len(found[owner]) < per_node:
            found[owner].append(tag)
        n += 1
    return found


def redirections(cl):
    """MOVED/ASK error replies sent by all nodes since the last CONFIG RESETSTAT."""
    total = 0
    for c in cl.clients:
        stats = c.info("errorstats")
        for code in ("MOVED", "ASK"):
            total += stats.get(f"errorstat_{code}", {}).get("count", 0)
    return total


def all_snapshots(cl):
    return [snapshot(c) for c in cl.clients]


def test_command_info_reports_the_name_as_routing_key(cl):
    for c in cl.clients:
        info = c.execute_command("COMMAND", "INFO", *COMMANDS_WITH_NAME, "lock.resetall")
        for name in COMMANDS_WITH_NAME:
            entry = info[name]
            assert (entry["first_key_pos"], entry["last_key_pos"], entry["step_count"]) == (1, 1, 1), entry
            assert "movablekeys" not in entry["flags"], entry
            assert "module" in entry["flags"]
        assert info["lock.resetall"]["first_key_pos"] == 0  # no key: sent to every primary
        # The name is declared NOT_KEY (ACL key patterns apply to lock:<name>): COMMAND GETKEYS
        # follows the key specs and lists no key, while routing (the legacy range above, which
        # the server's redirection and redis-py use) still goes by the name.
        with pytest.raises(Exception) as e:
            c.command_getkeys("LOCK.OWNER", "{t}:x")
        assert "no key" in str(e.value)


def test_cluster_client_routes_lock_commands_without_redirection(cl):
    rc = cl.cluster_client()
    tags = tags_on_every_node(cl)
    for owner, owner_tags in tags.items():
        for tag in owner_tags:
            name = f"{tag}:job"
            slot = cl.keyslot(name)
            assert rc.determine_slot("LOCK.ACQUIRE", name, "ID", "a") == slot
            assert cl.keyslot(f"lock:{name}") == cl.keyslot(f"lock-signal:{name}") == slot
            assert rc.execute_command("LOCK.ACQUIRE", name, "ID", "a", "PX", "60000") == b"a"
            # the keys are on the node that serves the slot, nowhere else
            assert cl.clients[owner].get(f"lock:{name}") == b"a"
            assert rc.execute_command("LOCK.OWNER", name) == b"a"
            assert rc.execute_command("LOCK.EXTEND", name, "a", "PX", "70000") == b"OK"
            assert rc.execute_command("LOCK.ACQUIRE", name, "ID", "b", "NOWAIT") is None
            info = lock_info(rc, name)
            assert info["owner"] == b"a" and info["waiters"] == 0, info
            assert rc.execute_command("LOCK.RELEASE", name, "a") == b"OK"
            assert cl.clients[owner].lrange(f"lock-signal:{name}", 0, -1) == [b"1"]
            assert rc.execute_command("LOCK.ACQUIRE", name, "ID", "c", "EX", "60") == b"c"
            assert rc.execute_command("LOCK.RESET", name) == 1
    for i, c in enumerate(cl.clients):
        assert c.dbsize() == len(tags[i]), (i, list(c.scan_iter()))  # the signal lists
    assert redirections(cl) == 0, "a LOCK.* command was sent to a node that does not serve it"

    # a blocking acquire through the cluster client, handed over by a release from another one
    name = f"{tags[1][0]}:blocking"
    owner = cl.owner_of_key(name)
    assert rc.execute_command("LOCK.ACQUIRE", name, "ID", "h") == b"h"
    waiter_rc = cl.cluster_client()
    result = {}
    t = threading.Thread(target=lambda: result.setdefault(
        "reply", waiter_rc.execute_command("LOCK.ACQUIRE", name, "ID", "w", "TIMEOUT", "20")),
        daemon=True)
    t.start()
    wait_waiters(cl.clients[owner], name, 1)
    assert rc.execute_command("LOCK.RELEASE", name, "h") == b"OK"
    t.join(10)
    assert not t.is_alive() and result.get("reply") == b"w"
    assert cl.clients[owner].get(f"lock:{name}") == b"w"
    assert redirections(cl) == 0

    # LOCK.RESETALL has no key: a cluster client sends it to every primary
    counts = rc.execute_command("LOCK.RESETALL", target_nodes=rc.get_primaries())
    total = sum(counts.values()) if isinstance(counts, dict) else counts
    assert total == 1, counts
    assert cl.clients[owner].exists(f"lock:{name}") == 0


def test_names_without_hash_tag_refused_on_every_node(cl):
    rc = cl.cluster_client()
    before = all_snapshots(cl)
    for name in ("x", "x{}", "{}x", "", "lock", "{"):
        for args in (["LOCK.ACQUIRE", name, "ID", "a"], ["LOCK.ACQUIRE", name, "NOWAIT"],
                     ["LOCK.RELEASE", name, "a"], ["LOCK.EXTEND", name, "a", "EX", "5"],
                     ["LOCK.OWNER", name], ["LOCK.RESET", name], ["LOCK.INFO", name]):
            with pytest.raises(Exception) as ei:
                rc.execute_command(*args)
            assert error_code(ei.value) == "ERR", (args, ei.value)
            assert "hash tag" in str(ei.value), (args, ei.value)
        # sent straight to every node: the same refusal or a redirection, never a write
        for c in cl.clients:
            with pytest.raises(Exception) as ei:
                c.execute_command("LOCK.ACQUIRE", name, "ID", "a")
            assert error_code(ei.value) in ("ERR", "MOVED"), ei.value
    assert all_snapshots(cl) == before


def asking_get(c, key):
    """GET on a node that is importing the key's slot (ASKING first, on the same connection)."""
    p = c.pipeline(transaction=False)
    p.execute_command("ASKING")
    p.get(key)
    return p.execute()[1]


def other_node(cl, i):
    return (i + 1) % len(cl.nodes)


def test_waiter_gets_tryagain_when_its_lock_migrates(cl):
    """Holder and waiters on node A; the slot moves to B with MIGRATE, which deletes the key on
    A. The hand-off on A is refused (A no longer serves the key): every waiter gets TRYAGAIN, at
    once, not at its timeout, and nothing is written on A. A cluster client that waited retries
    on its own, ends up waiting on B, and gets the lock there when the holder releases it."""
    name = "{mig}:x"
    slot = cl.keyslot(name)
    a = cl.owner_of_slot(slot)
    b = other_node(cl, a)
    ca, cb = cl.clients[a], cl.clients[b]
    rc = cl.cluster_client()

    assert rc.execute_command("LOCK.ACQUIRE", name, "ID", "h") == b"h"
    w1 = acquire_bg(cl.nodes[a], name, "ID", "w1", "TIMEOUT", "20")      # plain connection
    wait_waiters(ca, name, 1)
    waiter_rc = cl.cluster_client()
    result = {}

    def cluster_waiter():
        try:
            result["reply"] = waiter_rc.execute_command("LOCK.ACQUIRE", name, "ID", "w2",
                                                        "TIMEOUT", "20")
        except Exception as e:  # noqa: BLE001
            result["error"] = e

    t = threading.Thread(target=cluster_waiter, daemon=True)
    t.start()
    wait_waiters(ca, name, 2)

    cl.begin_migration(slot, a, b)
    moved = cl.migrate_keys(slot, a, b)
    assert moved == [b"lock:" + name.encode()]
    w1.join(10)
    assert w1.error is not None, f"waiter on the old node got {w1.reply!r}"
    assert error_code(w1.error) == "TRYAGAIN", w1.error
    assert w1.elapsed < 10, "the waiter learned it only at its timeout"
    assert ca.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0, \
        "the old node wrote a key of a slot it no longer serves"
    cl.end_migration(slot, b)
    assert ca.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    assert cb.get(f"lock:{name}") == b"h" and cb.pttl(f"lock:{name}") == -1

    # the cluster client retried after TRYAGAIN and now waits on B
    wait_until(lambda: waiters(cb, name) == 1, message="the cluster client waits on the new node")
    assert t.is_alive()
    assert rc.execute_command("LOCK.RELEASE", name, "h") == b"OK"
    t.join(10)
    assert not t.is_alive()
    assert result.get("reply") == b"w2", result
    assert cb.get(f"lock:{name}") == b"w2"
    assert waiters(cb, name) == 0
    assert ca.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0


def test_waiter_on_expiring_lock_during_migration_gets_tryagain(cl):
    """The slot is MIGRATING from A to B when the holder's lock expires on A: the hand-off write
    on A is refused (the key would now be created on B), so the waiter gets TRYAGAIN instead of
    a lock nobody can see; after the move the lock is free on B."""
    name = "{exp}:x"
    slot = cl.keyslot(name)
    a = cl.owner_of_slot(slot)
    b = other_node(cl, a)
    ca = cl.clients[a]
    raw = RawConnection(cl.nodes[a].port)
    try:
        assert raw.call("LOCK.ACQUIRE", name, "ID", "h", "PX", "600") == b"h"
        w = acquire_bg(cl.nodes[a], name, "ID", "w", "PX", "30000", "TIMEOUT", "15")
        wait_waiters(ca, name, 1)
        cl.begin_migration(slot, a, b)
        w.join(10)
        assert w.error is not None, f"waiter got {w.reply!r} for a slot that is moving away"
        assert error_code(w.error) == "TRYAGAIN", w.error
        assert ca.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
        assert cl.migrate_keys(slot, a, b) == []
        cl.end_migration(slot, b)
    finally:
        raw.close()
    rc = cl.cluster_client()
    assert rc.execute_command("LOCK.ACQUIRE", name, "ID", "w", "NOWAIT") == b"w"
    assert cl.clients[b].get(f"lock:{name}") == b"w"


def test_waiter_on_a_moving_slot_ends_by_timeout_or_error(cl):
    """While the slot is MIGRATING away from A, the lock stays held on A and is never freed
    there: the server tells modules nothing (Redis 7.0 has no slot-move event), so the waiter
    learns nothing until its TIMEOUT. It must then end within it, with null or an error it can
    retry — never a grant from A, never a hang — and A must not have written anything."""
    name = "{to}:x"
    slot = cl.keyslot(name)
    a = cl.owner_of_slot(slot)
    b = other_node(cl, a)
    ca, cb = cl.clients[a], cl.clients[b]
    assert ca.execute_command("LOCK.ACQUIRE", name, "ID", "h") == b"h"
    w = acquire_bg(cl.nodes[a], name, "ID", "w", "TIMEOUT", "1")
    wait_waiters(ca, name, 1)
    cl.begin_migration(slot, a, b)
    w.join(10)
    assert w.elapsed < 1 + 5, f"the wait took {w.elapsed:.1f}s for a TIMEOUT of 1s"
    if w.error is None:
        assert w.reply is None, f"the old node granted {w.reply!r}"
    else:
        assert error_code(w.error) in ("TRYAGAIN", "MOVED", "ASK", "UNBLOCKED"), w.error
    w.assert_clean()
    # (LOCK.INFO would be redirected: the name itself is never a key, so a MIGRATING node
    # answers ASK for it; the module's INFO section counts the waiters of this node)
    assert ca.info("lock")["lock_waiters"] == 0
    assert ca.get(f"lock:{name}") == b"h" and ca.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 1
    assert cl.migrate_keys(slot, a, b) == [b"lock:" + name.encode()]
    cl.end_migration(slot, b)
    assert ca.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    assert cb.get(f"lock:{name}") == b"h"


def test_lock_stays_exclusive_while_its_slot_is_migrating(cl):
    """Between SETSLOT MIGRATING and the MIGRATE of its key, the lock is still held on A. A
    cluster client's LOCK.* on it must not be served by B as if it were free: LOCK.OWNER does not
    say "free", LOCK.ACQUIRE does not make a second owner (an error such as TRYAGAIN is fine),
    and the key can then be migrated. (MIGRATE re-creates the key with a relative TTL, so B's
    deadline may differ by the transfer time: that is the server's doing, not the module's.)"""
    name = "{ex}:x"
    slot = cl.keyslot(name)
    a = cl.owner_of_slot(slot)
    b = other_node(cl, a)
    ca, cb = cl.clients[a], cl.clients[b]
    rc = cl.cluster_client()
    assert rc.execute_command("LOCK.ACQUIRE", name, "ID", "h", "PX", "60000") == b"h"
    deadline = ca.execute_command("PEXPIRETIME", f"lock:{name}")
    cl.begin_migration(slot, a, b)

    def outcome(*args):
        try:
            return rc.execute_command(*args)
        except Exception as e:  # noqa: BLE001
            return e

    problems = []
    owner = outcome("LOCK.OWNER", name)
    if owner is None:
        problems.append(f"LOCK.OWNER {name} replied null while A holds the lock for 'h'")
    second = outcome("LOCK.ACQUIRE", name, "ID", "y", "NOWAIT")
    if second == b"y":
        problems.append(f"LOCK.ACQUIRE {name} ID y NOWAIT granted a second owner "
                        f"(A holds lock:{name} = {ca.get(f'lock:{name}')!r}, "
                        f"B holds {asking_get(cb, f'lock:{name}')!r})")
    try:
        cl.migrate_keys(slot, a, b)
    except Exception as e:  # noqa: BLE001
        problems.append(f"MIGRATE of the lock key failed: {e}")
    assert not problems, "during the migration of the lock's slot:\n  " + "\n  ".join(problems)
    cl.end_migration(slot, b)
    assert cb.get(f"lock:{name}") == b"h"
    assert cb.execute_command("PEXPIRETIME", f"lock:{name}") - deadline in range(-50, 51)
    assert rc.execute_command("LOCK.RELEASE", name, "h") == b"OK"


def test_fence_key_lives_in_the_names_slot(cl):
    rc = cl.cluster_client()
    for name in ["{a}job", "{b}x", "q{orders}:42"]:
        owner, token = rc.execute_command("LOCK.ACQUIRE", name, "FENCE")
        node = cl.clients[cl.owner_of_key(name)]
        assert cl.keyslot("lock-fence:" + name) == cl.keyslot(name)
        assert node.get("lock-fence:" + name) == str(token).encode()
        assert node.get("lock:" + name) == owner
        assert rc.execute_command("LOCK.RELEASE", name, owner) == b"OK"
        _, later = rc.execute_command("LOCK.ACQUIRE", name, "FENCE", "ID", "again")
        assert later > token


def asking_call(port, *args):
    """One command sent with ASKING first, on its own connection: what a cluster client does
    after an ASK redirect. Returns the reply or the RespError."""
    raw = RawConnection(port)
    try:
        assert raw.call("ASKING") == b"OK"
        return raw.call(*args)
    finally:
        raw.close()


def test_importing_node_answers_tryagain_while_the_lock_key_is_on_the_source(cl):
    """Slot MIGRATING on A, IMPORTING on B, lock:{t}x still on A. A answers ASK for every LOCK.*
    (the name is never a key), so the client asks B. B must not treat the lock as free, and must
    answer TRYAGAIN (a cluster client retries it), not the generic RM_Call error; nothing is
    written anywhere. Once the key moved, the same commands work on B."""
    name = "{imp}:x"
    slot = cl.keyslot(name)
    a = cl.owner_of_slot(slot)
    b = other_node(cl, a)
    ca, cb = cl.clients[a], cl.clients[b]
    assert ca.execute_command("LOCK.ACQUIRE", name, "ID", "h", "PX", "60000") == b"h"
    cl.begin_migration(slot, a, b)
    before = all_snapshots(cl)
    for args in (["LOCK.RELEASE", name, "h"],
                 ["LOCK.EXTEND", name, "h", "PX", "70000"],
                 ["LOCK.ACQUIRE", name, "ID", "y", "NOWAIT"],
                 ["LOCK.ACQUIRE", name, "ID", "y", "TIMEOUT", "5"],
                 ["LOCK.OWNER", name]):
        reply = asking_call(cl.nodes[b].port, *args)
        assert error_code(reply) == "TRYAGAIN", (args, reply)
        # the source redirects: the client never gets a wrong answer from A either
        with pytest.raises(Exception) as ei:
            ca.execute_command(*args)
        assert error_code(ei.value) == "ASK", (args, ei.value)
    assert all_snapshots(cl) == before, "a refused command wrote something"
    assert cb.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0

    assert cl.migrate_keys(slot, a, b) == [b"lock:" + name.encode()]
    # the key is on B now: B serves it (with ASKING until SETSLOT NODE)
    assert asking_call(cl.nodes[b].port, "LOCK.EXTEND", name, "h", "PX", "70000") == b"OK"
    cl.end_migration(slot, b)
    rc = cl.cluster_client()
    assert rc.execute_command("LOCK.RELEASE", name, "h") == b"OK"
    assert rc.execute_command("LOCK.ACQUIRE", name, "ID", "y", "NOWAIT") == b"y"
    assert cb.get(f"lock:{name}") == b"y"
    assert ca.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
