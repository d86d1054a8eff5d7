"""Valkey 9 atomic slot migration (CLUSTER MIGRATESLOTS) with the module loaded.

Skipped on servers without CLUSTER MIGRATESLOTS (Redis 7.0, 8.2): they only have classic
resharding, tested in test_cluster.py. One 3-primary cluster for the module.
"""

import time

import pytest

from harness import RawConnection, acquire_bg, error_code, wait_until, wait_waiters
from topology import running_cluster, stopped


def _has_migrateslots(node):
    raw = RawConnection(node.port)
    try:
        reply = raw.call("COMMAND", "INFO", "CLUSTER|MIGRATESLOTS")
    finally:
        raw.close()
    return isinstance(reply, list) and reply and reply[0] is not None


@pytest.fixture(scope="module")
def cl():
    def check(cluster):
        if not _has_migrateslots(cluster.nodes[0]):
            pytest.skip("this server has no atomic slot migration (CLUSTER MIGRATESLOTS)")

    with running_cluster(3, check=check) as cluster:
        yield cluster


def migrate_slot(cl, slot, src, dst):
    cl.migrate_slot_atomically(slot, src, dst)


def test_migrateslots_is_accepted_and_moves_a_held_lock_with_its_fence_key(cl):
    """The module declares atomic-slot-migration support: MIGRATESLOTS of a slot holding a lock
    is accepted; lock:<name> (with its deadline) and lock-fence:<name> arrive on the target, the
    source keeps nothing of the slot, and the lock works on the target (the holder releases
    it, a newcomer gets it)."""
    name = "{asm1}:x"
    slot, a, b = cl.fresh_move(name)
    assert cl.keyslot(f"lock:{name}") == cl.keyslot(f"lock-fence:{name}") == slot
    ca, cb = cl.clients[a], cl.clients[b]
    assert ca.execute_command("LOCK.ACQUIRE", name, "ID", "h", "PX", "60000") == b"h"
    deadline = ca.execute_command("PEXPIRETIME", f"lock:{name}")
    # the fencing counter (a plain key here: fencing tokens may not be merged yet)
    ca.set(f"lock-fence:{name}", 41)
    migrate_slot(cl, slot, a, b)
    assert cb.get(f"lock:{name}") == b"h"
    assert cb.execute_command("PEXPIRETIME", f"lock:{name}") == deadline
    assert cb.get(f"lock-fence:{name}") == b"41"
    wait_until(lambda: ca.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0,
               message="the source dropped the migrated keys")
    assert cb.incr(f"lock-fence:{name}") == 42  # monotonic across the move
    rc = cl.cluster_client()
    assert rc.execute_command("LOCK.ACQUIRE", name, "ID", "y", "NOWAIT") is None
    assert rc.execute_command("LOCK.RELEASE", name, "h") == b"OK"
    assert rc.execute_command("LOCK.ACQUIRE", name, "ID", "y", "NOWAIT") == b"y"
    assert cb.get(f"lock:{name}") == b"y"
    assert ca.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0


def test_waiters_get_tryagain_when_the_slot_leaves_and_queue_on_the_target(cl):
    """Holder and waiters on the source; the slot moves atomically. Each waiter gets exactly one
    reply, TRYAGAIN, soon after the move (not at its timeout); retried through a cluster client
    it queues on the target and is granted when the holder releases there. The source never
    grants and writes nothing of the slot."""
    name = "{asm2}:x"
    slot, a, b = cl.fresh_move(name)
    ca, cb = cl.clients[a], cl.clients[b]
    assert ca.execute_command("LOCK.ACQUIRE", name, "ID", "h") == b"h"
    w = acquire_bg(cl.nodes[a], name, "ID", "w", "TIMEOUT", "20")
    wait_waiters(ca, name, 1)
    t0 = time.monotonic()
    migrate_slot(cl, slot, a, b)
    w.join(15)
    assert w.error is not None, f"the source answered {w.reply!r} after the slot left"
    assert error_code(w.error) == "TRYAGAIN", w.error
    assert time.monotonic() - t0 < 15, "the waiter learned it only at its timeout"
    w.assert_clean()
    assert ca.info("lock")["lock_waiters"] == 0
    assert cb.get(f"lock:{name}") == b"h"
    wait_until(lambda: ca.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0,
               message="the source dropped the migrated keys")

    # the retry, as a cluster client does it: lands on the target and queues there
    w2 = acquire_bg(cl.nodes[b], name, "ID", "w", "TIMEOUT", "20")
    wait_waiters(cb, name, 1)
    assert cl.cluster_client().execute_command("LOCK.RELEASE", name, "h") == b"OK"
    assert w2.result(10) == b"w"
    w2.assert_clean()
    assert cb.get(f"lock:{name}") == b"w"
    assert ca.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0


def test_a_cancelled_migration_leaves_the_lock_and_its_waiters_on_the_source(cl):
    """MIGRATESLOTS to a target that does not answer (SIGSTOPped), then CANCELSLOTMIGRATIONS:
    the slot stays on the source with its lock, holder and queued waiter; the target keeps no
    key of the slot (a dropped import is not a foreign free there: no signal written); the
    waiter is granted on the source when the holder releases, with a larger fence token."""
    name = "{asm3}:x"
    slot, a, b = cl.fresh_move(name)
    ca, cb = cl.clients[a], cl.clients[b]
    first = ca.execute_command("LOCK.ACQUIRE", name, "ID", "h", "PX", "60000", "FENCE")
    assert first[0] == b"h"
    w = acquire_bg(cl.nodes[a], name, "ID", "w", "TIMEOUT", "30", "FENCE")
    wait_waiters(ca, name, 1)
    target_id = cl.node_id(b)
    with stopped(cl.nodes[b]):
        assert ca.execute_command("CLUSTER", "MIGRATESLOTS", "SLOTSRANGE", slot, slot,
                                  "NODE", target_id) == b"OK"
        assert ca.execute_command("CLUSTER", "CANCELSLOTMIGRATIONS") == b"OK"
    jobs = [dict(zip(j[::2], j[1::2])) for j in ca.execute_command("CLUSTER", "GETSLOTMIGRATIONS")]
    mine = [j[b"state"] for j in jobs
            if j[b"operation"] == b"EXPORT" and j[b"slot_ranges"] == f"{slot}-{slot}".encode()]
    assert mine == [b"cancelled"], jobs
    wait_until(cl._slots_agree, timeout=30, message="all nodes agree on the slot map")
    assert cl.owner_of_slot(slot) == a
    wait_until(lambda: cb.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0, timeout=30,
               message="the target dropped what it imported")
    assert ca.get(f"lock:{name}") == b"h"
    assert w.is_running(), f"the waiter was answered {w.reply!r} {w.error!r}"
    wait_waiters(ca, name, 1)
    assert cl.cluster_client().execute_command("LOCK.RELEASE", name, "h") == b"OK"
    granted = w.result(10)
    assert granted[0] == b"w" and granted[1] > first[1], (first, granted)
    w.assert_clean()
    assert cb.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
