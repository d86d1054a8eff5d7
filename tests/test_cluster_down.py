"""Cluster down (CLUSTER_FAIL) with the module loaded: a primary without replica stops
answering (SIGSTOP), the others mark it failed and, with cluster-require-full-coverage yes (the
default), stop serving. Every module waiter gets exactly one error reply, none hangs; after the
node is back the locks are usable again. Its own 3-primary cluster with a short node timeout."""

import pytest
import redis

from harness import acquire_bg, error_code, wait_until, wait_waiters
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
            # Redis answers them itself; Valkey 9.1.2 does not (module-blocked clients not
            # blocked on keys are skipped), so the module's health watch does
            assert isinstance(w.error, redis.ResponseError), (type(w.error).__name__, w.error)
            assert error_code(w.error) == "CLUSTERDOWN", w.error
            w.assert_clean()
        assert ca.info("lock")["lock_waiters"] == 0
    wait_until(lambda: all(c.cluster("info").get("cluster_state") == "ok" for c in cl.clients),
               timeout=30, message="the cluster is back")
    assert ca.get(f"lock:{name}") == b"h", "the lock changed while the cluster was down"
    rc = cl.cluster_client()
    assert rc.execute_command("LOCK.RELEASE", name, "h") == b"OK"
    assert rc.execute_command("LOCK.ACQUIRE", name, "ID", "n", "NOWAIT") == b"n"


def test_failover_inside_the_cluster_answers_waiters_and_the_promoted_node_serves_the_lock(cl):
    """A replica of the lock's primary takes over (CLUSTER FAILOVER on the replica). Waiters on
    the old primary each get one error reply (it is demoted), none hangs; the lock, replicated,
    is held on the promoted node and works there through a cluster client."""
    from harness import RedisServer
    name = "{fo}:x"
    slot = cl.keyslot(name)
    a = cl.owner_of_slot(slot)
    ca = cl.clients[a]
    replica = RedisServer(extra_config=[("cluster-enabled", "yes"),
                                        ("cluster-config-file", "nodes.conf"),
                                        ("cluster-node-timeout", str(NODE_TIMEOUT_MS))])
    replica.start()
    try:
        cr = replica.client()
        cr.execute_command("CLUSTER", "MEET", "127.0.0.1", cl.nodes[a].port)
        wait_until(lambda: len(ca.execute_command("CLUSTER", "NODES").splitlines()) == 4,
                   timeout=30, message="the new node joined")
        wait_until(lambda: _try(lambda: cr.execute_command("CLUSTER", "REPLICATE", cl.node_id(a))),
                   timeout=30, message="CLUSTER REPLICATE accepted")
        wait_until(lambda: cr.info("replication").get("master_link_status") == "up", timeout=30,
                   message="replica link up")
        assert ca.execute_command("LOCK.ACQUIRE", name, "ID", "h", "PX", "60000") == b"h"
        assert ca.execute_command("WAIT", 1, 5000) == 1
        waiters = [acquire_bg(cl.nodes[a], name, "ID", f"w{i}", "TIMEOUT", "30") for i in range(2)]
        wait_waiters(ca, name, 2)
        assert cr.execute_command("CLUSTER", "FAILOVER") == b"OK"
        wait_until(lambda: cr.info("replication").get("role") == "master", timeout=30,
                   message="the replica was promoted")
        for w in waiters:
            w.join(15)
            assert w.error is not None, f"a waiter on the demoted node got {w.reply!r}"
            # an error reply, never a socket timeout (a hang). Redis 7.0/8.2 close the demoted
            # node's client connections right after (observed): a waiter may see the close
            # instead of, or after, its UNBLOCKED; it learns at once either way.
            assert not isinstance(w.error, redis.TimeoutError), "a waiter hung"
            assert (error_code(w.error) == "UNBLOCKED"
                    or isinstance(w.error, redis.ConnectionError)), (type(w.error).__name__, w.error)
            if error_code(w.error) == "UNBLOCKED":
                try:
                    w.assert_clean()
                except redis.ConnectionError:
                    pass  # closed after its one reply: no second reply can follow
        # the demoted node may close its normal connections: ask with fresh ones
        nodes = cl.nodes + [replica]
        wait_until(lambda: all(_cluster_ok(n) for n in nodes), timeout=30, message="cluster ok")
        cr = replica.client()
        assert cr.get(f"lock:{name}") == b"h"
        rc = cl.cluster_client()
        assert rc.execute_command("LOCK.ACQUIRE", name, "ID", "n", "NOWAIT") is None
        assert rc.execute_command("LOCK.RELEASE", name, "h") == b"OK"
        assert rc.execute_command("LOCK.ACQUIRE", name, "ID", "n", "NOWAIT") == b"n"
        assert cr.get(f"lock:{name}") == b"n"
    finally:
        problem = replica.stop()
    assert problem is None, problem


def _cluster_ok(node):
    try:
        return node.client().cluster("info").get("cluster_state") == "ok"
    except Exception:  # noqa: BLE001
        return False


def _try(fn):
    try:
        fn()
        return True
    except Exception:  # noqa: BLE001
        return False
