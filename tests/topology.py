"""Topologies of real servers for the replication, persistence, failover and cluster tests.

Built on harness.RedisServer; nothing here changes how a single test server works.

    keyspace(client)                 {key: (type, value, PEXPIRETIME)} of the client's db
    assert_same_keyspace(p, r, what) replica r holds exactly p's keys, values, absolute deadlines
    sync(primary_client)             WAIT until the (one) replica acknowledged everything
    start_replica(make_server, primary, *module_args)   a replica with the module, link up
    restart(server, how="kill")      stop (SIGKILL, or SHUTDOWN SAVE/NOSAVE) and start again on
                                     the same port and --dir (same argv)
    stopped(server)                  context manager: SIGSTOP the process, SIGCONT on exit
    Cluster(n=3).start()             n primaries on loopback, created by redis-cli --cluster create
        .nodes / .clients / .client_for_key(key) / .node_for_slot(slot) / .cluster_client()
        .begin_migration(slot, src, dst) / .migrate_keys(slot, src, dst) / .end_migration(slot, dst)
        .migrate_slot_atomically(slot, src, dst)  (Valkey 9 CLUSTER MIGRATESLOTS)
        .reshard_one_slot(src, dst)  (redis-cli --cluster reshard of src's lowest slot)
        .flushall() / .fresh_move(name) / .stop()
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.maint_notifications import MaintNotificationsConfig
from redis.retry import Retry

from harness import SOCKET_TIMEOUT, RedisServer, wait_until

REDIS_CLI = os.environ.get("REDIS_CLI", "redis-cli")


# ---------------------------------------------------------------------------
# keyspace comparison


def _s(x):
    return x.decode() if isinstance(x, (bytes, bytearray)) else x


def keyspace(c, db_keys=None) -> dict:
    """{key: (type, value, PEXPIRETIME)} for every key of the client's database.

    PEXPIRETIME is the absolute Unix time in ms (-1: no expiry), so two servers holding the
    same deadline report the same number, whatever their clocks did since.
    """
    out = {}
    keys = db_keys if db_keys is not None else list(c.scan_iter(count=1000))
    for k in keys:
        t = _s(c.type(k))
        if t == "none":
            continue  # expired or deleted between SCAN and now
        if t == "string":
            v = c.get(k)
        elif t == "list":
            v = tuple(c.lrange(k, 0, -1))
        else:
            v = f"<{t}>"
        out[k] = (t, v, c.execute_command("PEXPIRETIME", k))
    return out


def diff_keyspaces(expected: dict, got: dict) -> list:
    lines = []
    for k in sorted(set(expected) | set(got)):
        e, g = expected.get(k), got.get(k)
        if e != g:
            lines.append(f"  {k!r}: expected {e!r}, got {g!r}")
    return lines


def assert_same_keyspace(p, r, what=""):
    """The replica (client r) holds exactly the primary's (client p) keys: type, value and
    absolute deadline (PEXPIRETIME, equal to the ms), no key more, no key less."""
    kp, kr = keyspace(p), keyspace(r)
    problems = diff_keyspaces(kp, kr)
    assert not problems, f"replica differs from primary after {what}:\n" + "\n".join(problems)
    # DBSIZE also counts keys the replica holds but hides as logically expired
    assert r.dbsize() == p.dbsize(), f"after {what}: DBSIZE replica {r.dbsize()} != {p.dbsize()}"
    assert r.execute_command("DEBUG", "DIGEST") == p.execute_command("DEBUG", "DIGEST"), \
        f"after {what}: DEBUG DIGEST differs"


def sync(p, replicas=1, timeout_ms=5000):
    """WAIT until `replicas` replicas acknowledged every write the primary made so far."""
    got = p.execute_command("WAIT", replicas, timeout_ms)
    assert got >= replicas, f"WAIT {replicas} {timeout_ms} -> {got}"


def info_field(c, section, field):
    return c.info(section).get(field)


def wait_link_up(primary_client, replica_client, replicas=1):
    wait_until(lambda: info_field(replica_client, "replication", "master_link_status") == "up",
               message="replica link up")
    wait_until(lambda: info_field(primary_client, "replication", "connected_slaves") == replicas,
               message="primary sees its replica")


def start_replica(make_server, primary: RedisServer, *module_args, extra_config=()):
    """A replica of `primary` (module loaded, with `module_args`), link up and synced."""
    replica = make_server(*module_args, extra_config=[
        ("replicaof", f"127.0.0.1 {primary.port}"), *extra_config])
    wait_link_up(primary.client(), replica.client())
    return replica


# ---------------------------------------------------------------------------
# restarting a server on the same port and directory


def restart(server: RedisServer, how: str = "kill"):
    """Stop the server and start it again with the same argv (same port, same --dir).

    how: "kill" (SIGKILL: only what reached the disk counts), "shutdown-save" (SHUTDOWN SAVE)
    or "shutdown-nosave" (SHUTDOWN NOSAVE). Clients of the old process get connection errors.
    """
    proc = server.proc
    if how == "kill":
        proc.send_signal(signal.SIGKILL)
    else:
        arg = {"shutdown-save": "SAVE", "shutdown-nosave": "NOSAVE"}[how]
        c = server.client()
        try:
            c.execute_command("SHUTDOWN", arg)
        except (redis.ConnectionError, redis.TimeoutError):
            pass  # the server closed the connection: that is the success case
    try:
        rc = proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"redis-server did not stop ({how}):\n{server.log_tail()}")
    if how != "kill":
        assert rc == 0, f"SHUTDOWN exited with {rc}:\n{server.log_tail()}"
    if getattr(server, "_log", None):
        server._log.close()
    server._log = open(server.log_path, "ab")
    server.proc = subprocess.Popen(server._argv(), stdout=server._log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    if not server._wait_ready():
        pytest.fail(f"redis-server did not restart on port {server.port}:\n{server.log_tail()}")
    # PING answers while loading only with -LOADING; wait until the dataset is loaded
    c = server.client()
    wait_until(lambda: info_field(c, "persistence", "loading") == 0, message="loading done")
    return server


def _proc_state(pid) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


@contextlib.contextmanager
def stopped(server: RedisServer):
    """SIGSTOP the server for the duration of the block: it runs no timer, expires nothing,
    propagates nothing. SIGCONT on exit, whatever happens."""
    pid = server.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_until(lambda: _proc_state(pid) in ("T", "t"), timeout=5, message="process stopped")
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


# ---------------------------------------------------------------------------
# a real cluster of primaries on loopback


def cluster_client_kw():
    return dict(
        decode_responses=False,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=SOCKET_TIMEOUT,
        # never re-send a command on a socket error: a retried LOCK.ACQUIRE is a second waiter
        retry=Retry(NoBackoff(), 0),
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
    )


class Cluster:
    """n primaries, no replicas, every slot assigned by `redis-cli --cluster create`."""

    def __init__(self, n=3, module_args=(), extra_config=()):
        self.nodes = [
            RedisServer(module_args=module_args, extra_config=[
                ("cluster-enabled", "yes"),
                ("cluster-config-file", "nodes.conf"),
                *extra_config,
            ])
            for _ in range(n)
        ]
        self.clients = []
        self._cluster_clients = []

    def start(self):
        for node in self.nodes:
            node.start()
        cli = shutil.which(REDIS_CLI) or REDIS_CLI
        addrs = [f"127.0.0.1:{node.port}" for node in self.nodes]
        res = subprocess.run([cli, "--cluster", "create", *addrs, "--cluster-yes"],
                             capture_output=True, text=True, timeout=60,
                             stdin=subprocess.DEVNULL)
        if res.returncode != 0:
            pytest.fail(f"redis-cli --cluster create failed:\n{res.stdout}\n{res.stderr}")
        self.clients = [node.client() for node in self.nodes]
        for c in self.clients:
            wait_until(lambda c=c: c.cluster("info").get("cluster_state") == "ok",
                       timeout=30, message="cluster_state:ok")
        # every node knows every other node's slots
        wait_until(self._slots_agree, timeout=30, message="all nodes agree on the slot map")
        return self

    def _slot_map(self, c):
        out = []
        for start, end, master, *_ in c.execute_command("CLUSTER", "SLOTS"):
            out.append((start, end, int(master[1])))
        return sorted(out)

    def _slots_agree(self):
        maps = [self._slot_map(c) for c in self.clients]
        return all(m == maps[0] for m in maps) and sum(e - s + 1 for s, e, _ in maps[0]) == 16384

    def node_id(self, i) -> str:
        return _s(self.clients[i].execute_command("CLUSTER", "MYID"))

    def keyslot(self, key) -> int:
        return self.clients[0].execute_command("CLUSTER", "KEYSLOT", key)

    def owner_of_slot(self, slot) -> int:
        """Index of the node that serves `slot`, by that node's own view."""
        for i, c in enumerate(self.clients):
            for start, end, master, *_ in c.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end and int(master[1]) == self.nodes[i].port:
                    return i
        raise AssertionError(f"no node serves slot {slot}")

    def owner_of_key(self, key) -> int:
        return self.owner_of_slot(self.keyslot(key))

    def cluster_client(self, **kw) -> RedisCluster:
        opts = cluster_client_kw()
        opts.update(kw)
        rc = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", n.port) for n in self.nodes],
                          **opts)
        self._cluster_clients.append(rc)
        return rc

    def flushall(self):
        for c in self.clients:
            c.flushall()

    def fresh_move(self, name):
        """Empties every node; (slot, src, dst): `name`'s slot, the node serving it and the
        next node, for a test that moves the slot from src to dst."""
        self.flushall()
        slot = self.keyslot(name)
        src = self.owner_of_slot(slot)
        return slot, src, (src + 1) % len(self.nodes)

    # -- moving a slot by hand, as redis-cli --cluster reshard does ----------------------

    def begin_migration(self, slot, src, dst):
        self.clients[dst].execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", self.node_id(src))
        self.clients[src].execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", self.node_id(dst))

    def migrate_keys(self, slot, src, dst):
        c = self.clients[src]
        moved = []
        while True:
            keys = c.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100)
            if not keys:
                return moved
            reply = c.execute_command("MIGRATE", "127.0.0.1", self.nodes[dst].port, "", 0, 5000,
                                      "KEYS", *keys)
            assert reply in (b"OK", b"NOKEY"), reply
            moved += keys

    def end_migration(self, slot, dst):
        """SETSLOT NODE on the destination first, then on every other node."""
        dst_id = self.node_id(dst)
        order = [dst] + [i for i in range(len(self.nodes)) if i != dst]
        for i in order:
            self.clients[i].execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        wait_until(self._slots_agree, timeout=30, message="all nodes agree on the slot map")

    def migrate_slot_atomically(self, slot, src, dst, timeout=30):
        """Valkey 9's `CLUSTER MIGRATESLOTS` of one slot from node src to node dst; waits until
        every node sees dst as its owner."""
        c = self.clients[src]
        assert c.execute_command("CLUSTER", "MIGRATESLOTS", "SLOTSRANGE", slot, slot,
                                 "NODE", self.node_id(dst)) == b"OK"
        wait_until(lambda: self.owner_of_slot(slot) == dst, timeout=timeout,
                   message=f"slot {slot} owned by node {dst}")
        wait_until(self._slots_agree, timeout=timeout, message="all nodes agree on the slot map")

    def reshard_one_slot(self, src, dst, timeout=60):
        """`redis-cli --cluster reshard` of one slot from node src to node dst, as an operator
        runs it (SETSLOT IMPORTING/MIGRATING, MIGRATE in batches, SETSLOT NODE). redis-cli moves
        the source's lowest slot; that slot is returned."""
        slot = min(s for s, _, port in self._slot_map(self.clients[src])
                   if port == self.nodes[src].port)
        cli = shutil.which(REDIS_CLI) or REDIS_CLI
        res = subprocess.run([cli, "--cluster", "reshard", f"127.0.0.1:{self.nodes[src].port}",
                              "--cluster-from", self.node_id(src), "--cluster-to", self.node_id(dst),
                              "--cluster-slots", "1", "--cluster-yes"],
                             capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL)
        if res.returncode != 0:
            pytest.fail(f"redis-cli --cluster reshard failed:\n{res.stdout[-3000:]}\n{res.stderr}")
        wait_until(lambda: self.owner_of_slot(slot) == dst, timeout=timeout,
                   message=f"slot {slot} owned by node {dst}")
        wait_until(self._slots_agree, timeout=timeout, message="all nodes agree on the slot map")
        return slot

    def stabilize(self):
        """Cancel any slot migration left half-done (SETSLOT STABLE where a node still shows a
        slot as importing or migrating)."""
        for c in self.clients:
            for line in _s(c.execute_command("CLUSTER", "NODES")).splitlines():
                parts = line.split()
                if "myself" not in parts[2]:
                    continue
                for field in parts[8:]:
                    if field.startswith("["):
                        slot = int(field[1:].split("-", 1)[0])
                        c.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")

    def stop(self):
        for rc in self._cluster_clients:
            try:
                rc.close()
            except Exception:  # noqa: BLE001
                pass
        problems = [p for p in (node.stop() for node in self.nodes) if p]
        return problems


@contextlib.contextmanager
def running_cluster(n=3, check=None, **kw):
    """A started Cluster(n) for a module-scoped fixture: `check(cluster)` may skip the module
    (the cluster is stopped then); at the end a crash or hang of any node fails the run."""
    cluster = Cluster(n, **kw)
    try:
        cluster.start()
        if check is not None:
            check(cluster)
    except BaseException:
        cluster.stop()
        raise
    yield cluster
    problems = cluster.stop()
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


def stop_all(servers):
    """Stop servers; a list of problem strings (crash, hang) for the caller to report."""
    return [p for p in (s.stop() for s in servers) if p]


def sleep_until_wallclock_ms(deadline_ms, slack_ms=50, timeout=30.0):
    """Wait until the wall clock (the servers' expiry clock) passed deadline_ms + slack_ms.
    Not an ordering sleep: expiry is defined by the wall clock."""
    end = time.monotonic() + timeout
    while time.time() * 1000 <= deadline_ms + slack_ms:
        if time.monotonic() > end:
            pytest.fail(f"wall clock never reached {deadline_ms}")
        time.sleep(0.01)


# ---------------------------------------------------------------------------
# what a server did to its keyspace, as keyspace notifications


class KeyEvents:
    """Records the keyevent notifications (generic, string, list, expired, evicted) of one
    server, in the order the server emitted them.

    A replica applies exactly the primary's stream, so its event list is the primary's with
    `expired` turned into `del` (the primary propagates an expiry as DEL, or UNLINK on Valkey 8+,
    which notifies `del`). Any other difference is a write the replica made on its own.
    """

    MARKER = "keyevents-marker"

    def __init__(self, client):
        self.client = client
        client.config_set("notify-keyspace-events", "Eg$lxe")
        self.pubsub = client.pubsub()
        self.pubsub.psubscribe("__keyevent@*__:*")
        self.pubsub.subscribe(self.MARKER)
        self._seq = 0
        # both subscriptions confirmed
        confirmed = 0
        end = time.monotonic() + 10
        while confirmed < 2:
            assert time.monotonic() < end, "pubsub subscriptions not confirmed"
            m = self.pubsub.get_message(timeout=1.0)
            if m and m["type"] in ("psubscribe", "subscribe"):
                confirmed += 1

    def drain(self) -> list:
        """Every event since the last drain: [(event, key)]. Publishes a marker and reads up to
        it, so nothing the server emitted before this call is left behind."""
        self._seq += 1
        token = str(self._seq).encode()
        self.client.publish(self.MARKER, token)
        out = []
        end = time.monotonic() + 10
        while True:
            assert time.monotonic() < end, "keyevent marker never arrived"
            m = self.pubsub.get_message(timeout=1.0)
            if not m or m["type"] not in ("message", "pmessage"):
                continue
            channel = _s(m["channel"])
            if channel == self.MARKER:
                if m["data"] == token:
                    return out
                continue
            event = channel.split(":", 1)[1]
            out.append((event, m["data"]))

    def close(self):
        try:
            self.pubsub.close()
        except Exception:  # noqa: BLE001
            pass


def as_replicated(events: list) -> list:
    """A primary's events as its replica sees them: an expiry arrives as a deletion."""
    return [("del" if e == "expired" else e, k) for e, k in events]
