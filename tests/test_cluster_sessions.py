"""SESSION locks whose slot moves to another node (Valkey's CLUSTER MIGRATESLOTS; classic
SETSLOT/MIGRATE resharding on every server).

The binding is a connection of the source, and the lock key leaves the source: the binding ends
there, the source renews nothing more and writes nothing of the slot, the lock lapses on the
target by its lease (bindings are not migrated, as they are not replicated), and the holder's
later disconnect frees nothing anywhere, not even the lock of a newer holder with the same id.
"""

import pytest

from harness import lock_info, wait_until
from test_cluster_asm import _has_migrateslots
from topology import running_cluster

LEASE_MS = 1500


@pytest.fixture(scope="module")
def cl():
    with running_cluster(3) as cluster:
        yield cluster


def classic_move(cl, slot, src, dst):
    cl.begin_migration(slot, src, dst)
    cl.migrate_keys(slot, src, dst)
    cl.end_migration(slot, dst)


def session_holder_whose_slot_moves(cl, name, move):
    lock = f"lock:{name}"
    slot, a, b = cl.fresh_move(name)
    ca, cb = cl.clients[a], cl.clients[b]
    holder = cl.nodes[a].raw()
    assert holder.call("LOCK.ACQUIRE", name, "ID", "h", "PX", LEASE_MS, "SESSION") == b"h"
    # a session lock of another slot of the source, which stays there
    stays = next(n for n in (f"{{stay{i}}}:y" for i in range(1000))
                 if cl.keyslot(n) != slot and cl.owner_of_key(n) == a)
    other = cl.nodes[a].raw()
    assert other.call("LOCK.ACQUIRE", stays, "ID", "o", "PX", LEASE_MS, "SESSION") == b"o"
    assert ca.info("lock")["lock_session_locks"] == 2
    # the source renews while the slot is its own
    renewals = ca.info("lock")["lock_session_renewals"]
    wait_until(lambda: ca.info("lock")["lock_session_renewals"] > renewals, timeout=10,
               message="a renewal on the source")

    move(cl, slot, a, b)
    wait_until(lambda: ca.info("lock")["lock_session_locks"] == 1, timeout=10,
               message="the binding ended on the source")

    # the target holds the lock with the deadline it came with, and nobody renews it: it
    # lapses by its lease (no reading of its deadline ever moves)
    deadline = cb.execute_command("PEXPIRETIME", lock)
    assert deadline > 0 and cb.get(lock) == b"h"
    seen = set()

    def lapsed():
        t = cb.execute_command("PEXPIRETIME", lock)
        if t > 0:
            seen.add(t)
        return t == -2

    wait_until(lapsed, timeout=LEASE_MS / 1000 + 10, interval=0.02,
               message="the lock lapsed on the target")
    assert seen == {deadline}, f"the lock's deadline was renewed after the move: {seen}"
    # the other slot's session lock is still bound and renewed on the source
    assert lock_info(ca, stays)["session"] == other.call("CLIENT", "ID")
    renewed_to = ca.execute_command("PEXPIRETIME", f"lock:{stays}")
    wait_until(lambda: ca.execute_command("PEXPIRETIME", f"lock:{stays}") > renewed_to,
               timeout=10, message="the staying session lock is renewed")

    # a newer holder with the same id on the target; then the old holder's connection closes
    rc = cl.cluster_client()
    assert rc.execute_command("LOCK.ACQUIRE", name, "ID", "h", "PX", 60000) == b"h"
    holder_id = holder.call("CLIENT", "ID")
    frees = ca.info("lock")["lock_session_frees"]
    holder.close()
    wait_until(lambda: f"id={holder_id} " not in ca.execute_command("CLIENT", "LIST").decode(),
               message="the source saw the holder go")
    for _ in range(20):  # the source's free step runs from a 0 ms timer: give it turns
        ca.ping()
    assert cb.get(lock) == b"h", "the old holder's disconnect freed the target's lock"
    assert cb.execute_command("PTTL", lock) > 50_000
    assert ca.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0, \
        "the source wrote a key of a slot it no longer serves"
    assert ca.info("lock")["lock_session_frees"] == frees, "the source freed a lock at the close"
    other.close()
    wait_until(lambda: ca.get(f"lock:{stays}") is None, timeout=10,
               message="the staying session lock is freed when its holder goes")
    log = cl.nodes[a].log_tail(400)
    assert "renewal was refused" not in log, log


def test_session_binding_ends_on_the_source_at_atomic_slot_migration(cl):
    if not _has_migrateslots(cl.nodes[0]):
        pytest.skip("this server has no atomic slot migration (CLUSTER MIGRATESLOTS)")
    session_holder_whose_slot_moves(
        cl, "{sessasm}:x", lambda cl, slot, a, b: cl.migrate_slot_atomically(slot, a, b))


def test_session_binding_ends_on_the_source_at_classic_migration(cl):
    session_holder_whose_slot_moves(cl, "{sesscl}:x", classic_move)
