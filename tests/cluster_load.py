"""Contention on one lock of a real cluster while its slot moves (test_cluster_load.py).

    load = ClusterLoad(cluster, name, module_workers=4, python_workers=2).start()
    ... move the slot ...
    load.stop(); problems = load.check(); print(load.summary())

Module workers speak RESP on one raw connection per node and follow the cluster themselves,
as a cluster client does (MOVED: switch node; ASK: ASKING + the command there; TRYAGAIN,
UNBLOCKED, CLUSTERDOWN: retry after 10 ms). Each request is read exactly once with a deadline
of its TIMEOUT + 10 s, and the connection is checked for a second reply after it, so "every
waiter got exactly one reply" is checked per request. Grants use FENCE.

Python workers are python-redis-lock 4.0.1 `redis_lock.Lock` objects on a redis-py
`RedisCluster` (strict=False: it is not a StrictRedis), which follows MOVED/ASK/TRYAGAIN itself.

Sections are recorded client-side on the shared monotonic clock: `enter` after the grant reply
was read, `leave` before the release is sent. A real hold starts before `enter` and ends after
`leave`, and every lock is taken with a 30 s lease (far longer than a run, so no lease lapses
legitimately), so two recorded sections that overlap are two holders at once. Fence tokens, in
the order of the sections, must strictly increase.
"""

from __future__ import annotations

import random
import socket
import threading
import time

import redis
import redis_lock

from harness import RawConnection, RespError

LEASE_MS = 30_000
ACQUIRE_TIMEOUT_S = 1
REPLY_SLACK_S = 10.0
RETRYABLE = ("TRYAGAIN", "UNBLOCKED", "CLUSTERDOWN")


class Section:
    __slots__ = ("worker", "enter", "leave", "token")

    def __init__(self, worker, enter, token):
        self.worker, self.enter, self.leave, self.token = worker, enter, None, token


class _Worker(threading.Thread):
    def __init__(self, load, tag, seed):
        super().__init__(daemon=True, name=tag)
        self.load, self.tag = load, tag
        self.rng = random.Random(seed)
        self.seq = 0
        self.error = None

    def run(self):
        try:
            while not self.load.stopping.is_set():
                self.cycle()
        except BaseException as e:  # noqa: BLE001 - reported by check()
            self.error = e
            self.load.violation(f"{self.tag} crashed: {type(e).__name__}: {e}")

    def hold(self, token):
        s = Section(self.tag, time.monotonic(), token)
        time.sleep(self.rng.uniform(0.001, 0.004))
        s.leave = time.monotonic()
        self.load.record(s)


class ModuleWorker(_Worker):
    def __init__(self, load, tag, seed):
        super().__init__(load, tag, seed)
        self.port = load.initial_port
        self.conns = {}

    def conn(self, port) -> RawConnection:
        if port not in self.conns:
            self.conns[port] = RawConnection(port)
        return self.conns[port]

    def request(self, *args, read_timeout):
        """One command, following the cluster: the reply that is not a redirect or a retryable
        error. Every sent command's reply is read once; a second reply is a violation."""
        asking_port = None
        for _ in range(2000):
            port = asking_port or self.port
            c = self.conn(port)
            if asking_port:
                c.send("ASKING")
                ok = c.read()
                assert ok == b"OK", ok
            c.send(*args)
            t0 = time.monotonic()
            try:
                reply = c.read(read_timeout)
            except socket.timeout:
                self.load.violation(f"{self.tag}: no reply to {args[0]} within "
                                    f"{time.monotonic() - t0:.1f}s")
                raise
            if c.pending():
                self.load.violation(f"{self.tag}: second reply after {args[0]}: {c.read()!r}")
            asking_port = None
            if not isinstance(reply, RespError):
                return reply
            code = reply.code
            self.load.count(f"{args[0].lower()}:{code}")
            if code == "MOVED":
                self.port = int(str(reply).split()[-1].rsplit(":", 1)[1])
            elif code == "ASK":
                asking_port = int(str(reply).split()[-1].rsplit(":", 1)[1])
            elif code in RETRYABLE:
                time.sleep(0.01)
            else:
                return reply
        raise AssertionError(f"{self.tag}: {args[0]} still redirected after 2000 tries")

    def cycle(self):
        self.seq += 1
        me = f"{self.tag}-{self.seq}".encode()
        name = self.load.name
        reply = self.request("LOCK.ACQUIRE", name, "ID", me, "PX", LEASE_MS,
                             "TIMEOUT", ACQUIRE_TIMEOUT_S, "FENCE",
                             read_timeout=ACQUIRE_TIMEOUT_S + REPLY_SLACK_S)
        if reply is None:
            self.load.count("module:timeout")
            return
        if isinstance(reply, RespError) or not (isinstance(reply, list) and reply[0] == me):
            self.load.violation(f"{self.tag}: LOCK.ACQUIRE answered {reply!r}")
            return
        self.load.count("module:grant")
        self.hold(reply[1])
        released = self.request("LOCK.RELEASE", name, me, read_timeout=REPLY_SLACK_S)
        if released != b"OK":
            self.load.violation(f"{self.tag}: LOCK.RELEASE of a held lock answered {released!r}")
        # a pause before the next try, so the queue sometimes empties and python-redis-lock's
        # SET NX gets its share (it never wins against a queued module waiter)
        time.sleep(self.rng.uniform(0, 0.02))

    def close(self):
        for c in self.conns.values():
            try:
                if c.pending(0.2):
                    self.load.violation(f"{self.tag}: a reply nobody asked for: {c.read()!r}")
            except ConnectionError:
                pass
            c.close()


class PythonWorker(_Worker):
    def __init__(self, load, tag, seed):
        super().__init__(load, tag, seed)
        self.rc = load.cluster.cluster_client()

    def cycle(self):
        self.seq += 1
        lock = redis_lock.Lock(self.rc, self.load.name, expire=LEASE_MS // 1000,
                               id=f"{self.tag}-{self.seq}", strict=False)
        try:
            got = lock.acquire(timeout=ACQUIRE_TIMEOUT_S)
        except redis.ResponseError as e:
            self.load.count(f"python-acquire:{str(e).split()[0]}")
            time.sleep(0.01)
            return
        if not got:
            self.load.count("python:timeout")
            return
        self.load.count("python:grant")
        self.hold(None)
        for _ in range(2000):
            try:
                lock.release()
                return
            except redis_lock.NotAcquired:
                self.load.violation(f"{self.tag}: release of a held lock: NotAcquired")
                return
            except redis.ResponseError as e:
                self.load.count(f"python-release:{str(e).split()[0]}")
                time.sleep(0.01)
        self.load.violation(f"{self.tag}: release never succeeded")

    def close(self):
        self.rc.close()


class ClusterLoad:
    def __init__(self, cluster, name, module_workers=4, python_workers=2, seed=1):
        self.cluster, self.name = cluster, name
        self.initial_port = cluster.nodes[cluster.owner_of_key(name)].port
        self.stopping = threading.Event()
        self._mu = threading.Lock()
        self.sections: list[Section] = []
        self.counts: dict[str, int] = {}
        self.violations: list[str] = []
        self.workers = (
            [ModuleWorker(self, f"m{i}", seed * 100 + i) for i in range(module_workers)]
            + [PythonWorker(self, f"p{i}", seed * 100 + 50 + i) for i in range(python_workers)])
        self.t0 = self.t1 = None

    def record(self, section):
        with self._mu:
            self.sections.append(section)

    def count(self, what):
        with self._mu:
            self.counts[what] = self.counts.get(what, 0) + 1

    def violation(self, what):
        with self._mu:
            self.violations.append(what)

    def start(self):
        self.t0 = time.monotonic()
        for w in self.workers:
            w.start()
        return self

    def grants(self) -> int:
        with self._mu:
            return len(self.sections)

    def stop(self, join_timeout=ACQUIRE_TIMEOUT_S + REPLY_SLACK_S + 5):
        self.stopping.set()
        for w in self.workers:
            w.join(join_timeout)
            if w.is_alive():
                self.violation(f"{w.tag} still running {join_timeout}s after stop")
        self.t1 = time.monotonic()
        for w in self.workers:
            if not w.is_alive():
                w.close()

    def overlaps(self) -> list:
        out = []
        latest = None
        for s in sorted(self.sections, key=lambda s: s.enter):
            if latest is not None and s.enter < latest.leave:
                out.append((latest.worker, s.worker, round((latest.leave - s.enter) * 1000, 3)))
            if latest is None or s.leave > latest.leave:
                latest = s
        return out

    def token_inversions(self) -> list:
        tokens = [s.token for s in sorted(self.sections, key=lambda s: s.enter)
                  if s.token is not None]
        return [(a, b) for a, b in zip(tokens, tokens[1:]) if b <= a]

    def max_token(self):
        return max((s.token for s in self.sections if s.token is not None), default=None)

    def check(self) -> list:
        """Every problem found: violations seen by workers, overlaps, token inversions."""
        problems = list(self.violations)
        problems += [f"overlap: {a} still held when {b} entered ({ms} ms)"
                     for a, b, ms in self.overlaps()]
        problems += [f"token went backwards: {a} then {b}" for a, b in self.token_inversions()]
        return problems

    def summary(self, moves) -> str:
        counts = dict(sorted(self.counts.items()))
        retries = sum(n for k, n in counts.items() if not k.endswith((":grant", ":timeout")))
        return (f"grants={len(self.sections)} (module {counts.get('module:grant', 0)}, python "
                f"{counts.get('python:grant', 0)}) moves={moves} retries/redirects={retries} "
                f"overlaps={len(self.overlaps())} token_inversions={len(self.token_inversions())} "
                f"max_token={self.max_token()} duration={self.t1 - self.t0:.1f}s counts={counts}")
