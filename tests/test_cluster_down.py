"""Cluster down (CLUSTER_FAIL) with the module loaded: a primary without replica stops
answering (SIGSTOP), the others mark it failed and, with cluster-require-full-coverage yes (the
default), stop serving. Every module waiter gets exactly one error reply, none hangs; after the
node is back the locks are usable again. Its own 3-primary cluster with a short node timeout."""

import pytest

from harness import acquire_bg, wait_until, wait_waiters
from topology import running_cluster, stopped

NODE_TIMEOUT_MS = 1000


@pytest.fixture(scope="module")
def cl():
    with running_cluster(3, extra_config=[("cluster-node-timeout", str(NODE_TIMEOUT_MS)),
                                          ("cluster-require-full-coverage", "yes")]) as cluster:
        yield cluster


def test_waiters_get_an_error_when_the_cluster_goes_down(cl):
    name = "{down}:x"
    slot = cl.keyslot(name)
    a = cl.owner_of_slot(slot)
    c_stop = (a + 1) % 3
    ca = cl.clients[a]
    assert ca.execute_command("LOCK.ACQUIRE", name, "ID", "h", "PX", "60000") == b"h"
    waiters = [acquire_bg(cl.nodes[a], name, "ID", f"w{i}", "TIMEOUT", "30") for i in range(3)]
    wait_waiters(ca, name, 3)
    with stopped(cl.nodes[c_stop]):
        wait_until(lambda: ca.cluster("info").get("cluster_state") == "fail", timeout=30,
                   message="the cluster went down")
        for w in waiters:
            w.join(15)
            assert not w.is_running(), "a waiter still hangs while the cluster is down"
            assert w.error is not None, f"a waiter was granted {w.reply!r} while the cluster is down"
            w.assert_clean()
        assert ca.info("lock")["lock_waiters"] == 0
    wait_until(lambda: all(c.cluster("info").get("cluster_state") == "ok" for c in cl.clients),
               timeout=30, message="the cluster is back")
    assert ca.get(f"lock:{name}") == b"h", "the lock changed while the cluster was down"
    rc = cl.cluster_client()
    assert rc.execute_command("LOCK.RELEASE", name, "h") == b"OK"
    assert rc.execute_command("LOCK.ACQUIRE", name, "ID", "n", "NOWAIT") == b"n"
