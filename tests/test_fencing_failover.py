"""A real Sentinel failover (the same server binary with --sentinel): 1 primary, 1 replica,
1 sentinel with quorum 1. The primary is killed; a redis-py Sentinel client acquires with FENCE
on the promoted replica and gets a token above every token issued before; clients that were
waiting on the old primary got an error, none hangs."""

import os
import subprocess
import tempfile

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel

from harness import REDIS_SERVER, _free_port, acquire_bg, wait_until, wait_waiters
from topology import start_replica, sync
from test_fencing import fenced

MASTER = "fencing-primary"


def start_sentinel(primary_port):
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="redis-lock-sentinel-")
    conf = os.path.join(workdir, "sentinel.conf")
    with open(conf, "w") as f:
        f.write(f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {primary_port} 1\n"
                f"sentinel down-after-milliseconds {MASTER} 500\n"
                f"sentinel failover-timeout {MASTER} 10000\n")
    log = open(os.path.join(workdir, "sentinel.log"), "wb")
    proc = subprocess.Popen([REDIS_SERVER, conf, "--sentinel"], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return proc, port, log


def test_sentinel_failover_next_token_is_larger_and_old_waiters_get_errors(make_server):
    p = make_server()
    r = start_replica(make_server, p)
    c = p.client()
    proc, sport, log = start_sentinel(p.port)
    try:
        s = redis.Redis(port=sport, socket_timeout=5, decode_responses=True)
        wait_until(lambda: _ping(s), timeout=10, message="sentinel up")
        wait_until(lambda: len(s.execute_command("SENTINEL", "REPLICAS", MASTER)) == 1,
                   timeout=30, message="sentinel sees the replica")
        issued = []
        for _ in range(5):
            owner, t = fenced(c, "x")
            issued.append(t)
            c.execute_command("LOCK.RELEASE", "x", owner)
        _, held = fenced(c, "x", "PX", 2000)  # still held when the primary dies
        issued.append(held)
        waiting = [acquire_bg(p, "x", "ID", f"old-{i}", "FENCE", label=f"old-{i}") for i in range(2)]
        wait_waiters(c, "x", 2)
        sync(c)

        p.proc.kill()
        p.proc.wait(timeout=10)
        for w in waiting:
            w.join(timeout=20)  # fails the test if it hangs
            assert isinstance(w.error, (redis.ConnectionError, redis.ResponseError)), w.reply

        sentinel = Sentinel([("127.0.0.1", sport)], socket_timeout=5)
        wait_until(lambda: _master(sentinel) == ("127.0.0.1", r.port),
                   timeout=60, interval=0.1, message="sentinel promoted the replica")
        primary = sentinel.master_for(MASTER, socket_timeout=30, retry=Retry(NoBackoff(), 0))
        reply = primary.execute_command("LOCK.ACQUIRE", "x", "ID", "after", "FENCE", "TIMEOUT", 20)
        assert reply is not None and reply[0] == b"after"
        assert reply[1] > max(issued), (reply, issued)
        assert r.client().info("replication")["role"] == "master"
    finally:
        proc.kill()
        proc.wait(timeout=10)
        log.close()
        p.proc = None  # killed above: nothing left for the fixture to stop


def _master(sentinel):
    """The primary the sentinel names, or None while it has none (the old one is down)."""
    try:
        return sentinel.discover_master(MASTER)
    except MasterNotFoundError:
        return None


def _ping(s):
    try:
        return s.ping()
    except redis.ConnectionError:
        return False
