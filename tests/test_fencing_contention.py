"""Fencing tokens strictly increase over more than 10 000 grants of one lock, made every way
at once: immediate grants, hand-offs by release, by expiry (the deadline timer), by a foreign
DEL and by LOCK.RESET, while real python-redis-lock 4.0.1 clients (which do not fence) contend
for the same lock.

Ground truth is the AOF: every FENCE grant writes `SET lock-fence:<name> <token>` in the same
MULTI/EXEC as the grant, in execution order, so the AOF lists the tokens in grant order."""

import threading
import time

import redis
import redis_lock

from harness import SOCKET_TIMEOUT
from test_fencing import _aof_commands, _fence_writes_are_in_transactions_with_their_grant

GRANTS = 10_000
NAME = "hot"


def test_tokens_strictly_increase_over_10000_mixed_grants(make_server):
    s = make_server(extra_config=[("appendonly", "yes"), ("appendfsync", "no"),
                                  ("auto-aof-rewrite-percentage", "0")])
    control = s.client()
    received = []          # (worker, token) in the order each worker got them
    received_lock = threading.Lock()
    stop = threading.Event()
    quiet = threading.Event()  # set: workers hold back, so the lock becomes free for a while
    errors = []
    counts = {}

    def record(kind, token):
        with received_lock:
            received.append((kind, token))
            counts[kind] = counts.get(kind, 0) + 1
            if len(received) >= GRANTS:
                stop.set()

    def module_worker(kind, px):
        c = s.client(single_connection_client=True)
        mine = []
        try:
            while not stop.is_set():
                while quiet.is_set() and not stop.is_set():
                    time.sleep(0.001)
                reply = c.execute_command("LOCK.ACQUIRE", NAME, "FENCE", "PX", px, "TIMEOUT", 2)
                if reply is None:
                    continue
                owner, token = reply
                assert not mine or token > mine[-1], (kind, mine[-1], token)
                mine.append(token)
                record(kind, token)
                if kind == "release":
                    c.execute_command("LOCK.RELEASE", NAME, owner)
                elif kind == "delete":
                    c.delete("lock:" + NAME)      # a foreign free: the settle step hands it on
                elif kind == "reset":
                    c.execute_command("LOCK.RESET", NAME)
                # "expire": never released; the deadline timer hands it on after px ms
        except Exception as e:  # noqa: BLE001 - reported by the test
            errors.append((kind, repr(e)))
            stop.set()

    def python_worker():
        c = redis.Redis(port=s.port, socket_timeout=SOCKET_TIMEOUT)
        try:
            while not stop.is_set():
                lock = redis_lock.Lock(c, NAME, expire=1)
                if lock.acquire(timeout=1):
                    with received_lock:
                        counts["python-redis-lock"] = counts.get("python-redis-lock", 0) + 1
                    try:
                        lock.release()
                    except redis_lock.NotAcquired:
                        pass  # a foreign DEL or RESET took it meanwhile: that is the point
        except Exception as e:  # noqa: BLE001
            errors.append(("python-redis-lock", repr(e)))
            stop.set()

    kinds = [("release", 5000)] * 3 + [("expire", 3), ("delete", 5000), ("reset", 5000)]
    threads = [threading.Thread(target=module_worker, args=k, daemon=True) for k in kinds]
    threads += [threading.Thread(target=python_worker, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    # Every 100 ms a quiet phase: the workers hold back, the queue drains, and the main thread
    # takes the free lock with immediate (NOWAIT) grants.
    deadline = time.monotonic() + 240
    while not stop.is_set() and time.monotonic() < deadline:
        time.sleep(0.1)
        quiet.set()
        quiet_end = time.monotonic() + 0.05
        while time.monotonic() < quiet_end and not stop.is_set():
            reply = control.execute_command("LOCK.ACQUIRE", NAME, "FENCE", "NOWAIT", "PX", 5000)
            if reply is not None:
                record("nowait", reply[1])
                control.execute_command("LOCK.RELEASE", NAME, reply[0])
        quiet.clear()
    stop.set()
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive(), "a worker hung"
    assert not errors, errors
    assert len(received) >= GRANTS, f"only {len(received)} grants in 240 s: {counts}"
    for kind in ("release", "expire", "delete", "reset", "nowait"):
        assert counts.get(kind, 0) > 0, f"no {kind} grant: {counts}"
    stats = control.info("lock")
    for field in ("grants_immediate", "handoffs_release", "handoffs_expiry",
                  "handoffs_foreign_delete", "handoffs_reset"):
        assert stats[f"lock_{field}"] > 0, (field, stats)

    # AOF rewrites are off, so the incremental AOF holds every write; a write with
    # appendfsync always flushes what is still buffered.
    control.config_set("appendfsync", "always")
    control.set("aof-flush-marker", "1")
    written = _fence_writes_are_in_transactions_with_their_grant(_aof_commands(s), NAME.encode())
    assert all(b > a for a, b in zip(written, written[1:])), "tokens not strictly increasing"
    # every token a client received was written by its grant, and none twice
    tokens = [t for _, t in received]
    assert len(set(tokens)) == len(tokens), "a token was handed out twice"
    assert set(tokens) <= set(written)
    print(f"\n{len(written)} fenced grants, strictly increasing; by kind: {counts}")
