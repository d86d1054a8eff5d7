"""A contended lock's slot moves back and forth while module clients (LOCK.ACQUIRE … FENCE,
following MOVED/ASK/TRYAGAIN themselves) and python-redis-lock clients (on redis-py's
RedisCluster) contend for it (cluster_load.py): 0 overlapping sections, every module request
answered exactly once, fence tokens strictly increasing across the moves, and grants resume on
the new owner after every move.

- Valkey 9's atomic slot migration (`CLUSTER MIGRATESLOTS`), skipped where the server lacks it.
- Classic resharding with `redis-cli --cluster reshard` (MIGRATE based), on every server (the
  redis-cli on PATH: Debian's 7.0.15; the Redis 8.2.3 and Valkey builds ship no redis-cli).

The numbers (grants, moves, retries, max token, duration) are printed: run with -s to see them.
"""

import time

import pytest

from cluster_load import ClusterLoad
from harness import wait_until
from test_cluster_asm import _has_migrateslots
from topology import running_cluster

# "{load9356}" hashes to slot 0, the lowest slot of whichever node owns it, so that
# `redis-cli --cluster reshard --cluster-slots 1` (which moves the source's lowest slot)
# moves exactly this lock's slot, back and forth.
NAME = "{load9356}:contended"
MOVES = 6
GRANTS_BETWEEN_MOVES = 15
LOAD_BETWEEN_MOVES_S = 0.5


@pytest.fixture(scope="module")
def cl():
    with running_cluster(3) as cluster:
        yield cluster


def contend_while_moving(cl, move, label):
    slot, a, b = cl.fresh_move(NAME)
    assert slot == 0
    load = ClusterLoad(cl, NAME, module_workers=4, python_workers=3).start()
    try:
        wait_until(lambda: load.grants() >= GRANTS_BETWEEN_MOVES, timeout=30,
                   message="the load runs")
        for i in range(MOVES):
            src, dst = (a, b) if i % 2 == 0 else (b, a)
            move(slot, src, dst)
            before, moved_at = load.grants(), time.monotonic()
            wait_until(lambda: load.grants() >= before + GRANTS_BETWEEN_MOVES
                       and time.monotonic() - moved_at >= LOAD_BETWEEN_MOVES_S, timeout=30,
                       message=f"grants resume after move {i + 1} to node {dst}")
    finally:
        load.stop()
    print(f"\n[{label}] {load.summary(MOVES)}")
    problems = load.check()
    assert not problems, "\n".join(problems[:30])
    assert load.counts.get("module:grant", 0) > 0 and load.counts.get("python:grant", 0) > 0, \
        load.counts
    # nothing left behind: the lock is free and no node keeps a waiter
    rc = cl.cluster_client()
    wait_until(lambda: rc.execute_command("LOCK.OWNER", NAME) is None, timeout=10,
               message="the lock is free after the load")
    for c in cl.clients:
        wait_until(lambda c=c: c.info("lock")["lock_waiters"] == 0, timeout=10,
                   message="no waiter left on any node")
    owner = cl.owner_of_slot(slot)
    for i, c in enumerate(cl.clients):
        if i != owner:
            assert c.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0, \
                f"node {i} kept keys of slot {slot} it no longer serves"


def test_contended_lock_under_atomic_slot_migration(cl):
    if not _has_migrateslots(cl.nodes[0]):
        pytest.skip("this server has no atomic slot migration (CLUSTER MIGRATESLOTS)")
    contend_while_moving(cl, cl.migrate_slot_atomically, "MIGRATESLOTS")


def test_contended_lock_under_redis_cli_reshard(cl):
    def reshard(slot, src, dst):
        assert cl.reshard_one_slot(src, dst) == slot

    contend_while_moving(cl, reshard, "redis-cli --cluster reshard")


def test_the_checker_finds_overlaps_and_token_inversions():
    """The checks above can fail: sections that overlap, and tokens that go backwards."""
    from cluster_load import Section

    load = ClusterLoad.__new__(ClusterLoad)
    load.violations = []

    def sec(worker, enter, leave, token):
        s = Section(worker, enter, token)
        s.leave = leave
        return s

    load.sections = [sec("a", 1.0, 2.0, 10), sec("b", 2.0, 3.0, 11), sec("c", 3.5, 4.0, 12)]
    assert load.check() == []
    load.sections = [sec("a", 1.0, 2.0, 10), sec("b", 1.5, 3.0, 11), sec("c", 3.5, 4.0, 11)]
    problems = load.check()
    assert len(problems) == 2, problems
    assert problems[0].startswith("overlap: a still held when b entered")
    assert problems[1] == "token went backwards: 11 then 11"
    # a long section covers later short ones too
    load.sections = [sec("a", 1.0, 5.0, None), sec("b", 2.0, 2.5, None), sec("c", 3.0, 3.5, None)]
    assert len(load.check()) == 2
